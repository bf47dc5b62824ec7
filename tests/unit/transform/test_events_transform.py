"""Event rows -> WebEngage event payloads: names, properties, coercion, type pinning, rejects."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from etl.errors import ConfigError
from etl.mappings.events import EventMapping, event_mapping_from_dict, load_event_mapping, parse_lookback
from etl.transform.event_names import DATAFLY_EVENT_NAMES, camel_case, default_name_table, name_key
from etl.transform.events import TypeRegistry, transform_events, wire_value

ROOT = Path(__file__).resolve().parents[3]


def frame(*rows: dict[str, Any]) -> pd.DataFrame:
    base = {"event_id": None, "user_id": None, "anonymous_id": None, "event_name": None, "event_time": None}
    return pd.DataFrame([{**base, **r} for r in rows])


def event(i: int, name: str = "Order Completed", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{i}",
        "user_id": f"u{i}",
        "event_name": name,
        "event_time": pd.Timestamp("2026-06-06T18:29:00Z") + pd.Timedelta(seconds=i),
        **extra,
    }


def registry(pinned: dict[str, dict[str, str]] | None = None) -> TypeRegistry:
    known = pinned or {}
    return TypeRegistry(lambda scope: {n: (t, "events") for n, t in known.get(scope, {}).items()})


def run(df: pd.DataFrame, mapping: EventMapping | None = None, reg: TypeRegistry | None = None) -> Any:
    return transform_events(df, mapping or EventMapping(), reg or registry())


# -- names ------------------------------------------------------------------------------------------
def test_datafly_example_is_delivered_as_in_the_seed() -> None:
    """Seed 001: Order Completed with order_id, revenue, currency and a products array."""
    props = {
        "order_id": "ORD-1337",
        "revenue": 39.80,
        "currency": "USD",
        "products": [{"product_id": "SKU-1", "product_name": "Givenchy Pour Homme", "price": 39.80, "quantity": 1}],
    }
    out = run(
        frame(
            {
                "event_id": "x1",
                "user_id": "johndoe",
                "event_name": "Order Completed",
                "event_time": pd.Timestamp("2026-06-06T18:29:00Z"),
                "properties": json.dumps(props),
            }
        )
    )
    assert out.payloads == [
        {
            "userId": "johndoe",
            "eventName": "Order Completed",
            "eventTime": "2026-06-06T18:29:00+0000",
            "eventData": {
                "orderId": "ORD-1337",
                "amount": 39.80,
                "currency": "USD",
                "products": [
                    {"product_id": "SKU-1", "product_name": "Givenchy Pour Homme", "price": 39.80, "quantity": 1}
                ],
            },
        }
    ]


@pytest.mark.parametrize(
    ("source", "sent"),
    [
        ("page", "Page Viewed"),
        ("Products Searched", "Searched"),
        ("products_searched", "Searched"),
        ("PRODUCT ADDED", "Added to Cart"),
        ("product-removed", "Removed from Cart"),
        ("Signed Up", "Signed Up"),
        ("screen", "Screen Viewed"),
        ("Page Viewed", "Page Viewed"),
        ("Wishlist Shared", "Wishlist Shared"),
    ],
)
def test_event_names_follow_the_datafly_table_and_unmapped_ones_pass_through(source: str, sent: str) -> None:
    assert run(frame(event(1, source))).payloads[0]["eventName"] == sent


def test_every_datafly_name_is_mapped() -> None:
    table = default_name_table()
    assert {s: table.lookup(s) for s in DATAFLY_EVENT_NAMES} == DATAFLY_EVENT_NAMES


def test_mapping_file_overrides_and_extends_names() -> None:
    mapping = event_mapping_from_dict(
        {"event_names": {"Products Searched": "Product Searched", "Wishlist Shared": "Shared Wishlist"}}
    )
    out = run(frame(event(1, "products_searched"), event(2, "Wishlist Shared"), event(3, "page")), mapping)
    assert [p["eventName"] for p in out.payloads] == ["Product Searched", "Shared Wishlist", "Page Viewed"]


def test_drop_unmapped_rejects_unknown_names_with_a_reason() -> None:
    mapping = event_mapping_from_dict({"options": {"drop_unmapped": True}})
    out = run(frame(event(1, "Order Completed"), event(2, "Debug Ping"), event(3, "Searched")), mapping)
    assert [p["eventName"] for p in out.payloads] == ["Order Completed", "Searched"]
    assert [(r.event_id, r.reason) for r in out.rejects] == [("e2", "unmapped_event")]


def test_event_names_are_made_webengage_safe_and_reported() -> None:
    long_name = "Subscription Renewal Reminder Acknowledged By Customer"
    out = run(frame(event(1, "we_internal_ping"), event(2, long_name)))
    names = [p["eventName"] for p in out.payloads]
    assert names[0] == "attr_internal_ping"
    assert len(names[1]) < 50 and names[1].startswith(long_name[:40])
    assert out.renamed == {"we_internal_ping": "attr_internal_ping", long_name: names[1]}


@pytest.mark.parametrize(
    ("name", "camel"),
    [
        ("order_id", "orderId"),
        ("product_name", "productName"),
        ("orderId", "orderId"),
        ("page url", "pageUrl"),
        ("utm-source", "utmSource"),
        ("URL", "URL"),
        ("Cart_ID", "cartID"),
        ("a__b", "aB"),
    ],
)
def test_camel_case(name: str, camel: str) -> None:
    assert camel_case(name) == camel


def test_name_key_ignores_case_and_separators() -> None:
    assert name_key("Products Searched") == name_key("products_searched") == name_key(" PRODUCTS-searched ")


# -- properties -------------------------------------------------------------------------------------
def test_properties_from_columns_and_json_are_renamed_camelcased_and_coerced() -> None:
    df = frame(
        event(
            1,
            properties='{"order_id": "A", "nested": {"inner_key": [1, 2]}, "note": null}',
            coupon_code="SAVE",
            revenue=Decimal("10.50"),
            shipped_at=pd.Timestamp("2026-06-07T01:02:03.9Z"),
            gift=True,
            items=3,
        )
    )
    [payload] = run(df).payloads
    assert payload["eventData"] == {
        "orderId": "A",
        "nested": {"inner_key": [1, 2]},
        "couponCode": "SAVE",
        "amount": 10.5,
        "shippedAt": "2026-06-07T01:02:03+0000",
        "gift": True,
        "items": 3,
    }


def test_rename_table_and_exclude_list_and_camel_case_off() -> None:
    mapping = event_mapping_from_dict(
        {"options": {"camel_case": False}, "properties": {"rename": {"sku": "productSku"}, "exclude": ["secret"]}}
    )
    [payload] = run(frame(event(1, sku="S1", secret="x", order_id="O", we_flag="y", revenue=1.5)), mapping).payloads
    assert payload["eventData"] == {"productSku": "S1", "order_id": "O", "attr_flag": "y", "amount": 1.5}


def test_values_nan_inf_and_long_strings_are_never_sent_as_is() -> None:
    df = frame(
        event(1, price=float("nan"), score=float("inf"), bio="x" * 1500, tags='["a"]'),
        event(2, price=2.5, score=-math.inf, bio="short", tags=None),
    )
    out = run(df)
    first, second = (p["eventData"] for p in out.payloads)
    assert "price" not in first and "score" not in first and len(first["bio"]) == 999
    assert first["tags"] == '["a"]'  # a text column stays text unless listed in json_columns
    assert second == {"price": 2.5, "bio": "short"}
    assert Counter(d.reason for d in out.drops) == {"non_finite_number": 2}
    assert out.trimmed == 1


def test_json_columns_are_sent_as_objects_and_invalid_json_is_left_out() -> None:
    mapping = event_mapping_from_dict({"source": {"json_columns": ["tags"]}})
    out = run(frame(event(1, tags='["a", "b"]'), event(2, tags="{broken"), event(3, properties="[1, 2]")), mapping)
    assert out.payloads[0]["eventData"] == {"tags": ["a", "b"]}
    assert "eventData" not in out.payloads[1] and "eventData" not in out.payloads[2]
    assert sorted((d.event_id, d.reason) for d in out.drops) == [
        ("e2", "invalid_json"),
        ("e3", "properties_not_object"),
    ]


def test_property_name_clash_keeps_the_property_already_named_as_sent() -> None:
    out = run(frame(event(1, properties='{"order_id": "from-snake", "orderId": "explicit"}')))
    assert out.payloads[0]["eventData"] == {"orderId": "explicit"}
    assert [(d.column, d.reason) for d in out.drops] == [("order_id", "property_name_clash")]


@pytest.mark.parametrize(
    ("value", "kind", "sent"),
    [
        (True, "boolean", True),
        (np.int64(3), "number", 3),
        (2.5, "number", 2.5),
        (Decimal("2.50"), "number", 2.5),
        ("2026-06-06T18:29:00+0000", "date", "2026-06-06T18:29:00+0000"),
        ("hello", "string", "hello"),
        ({"a": [1]}, "object", {"a": [1]}),
        (np.array([1, 2]), "object", [1, 2]),
        (None, None, None),
        (float("nan"), None, None),
    ],
)
def test_wire_value_types(value: Any, kind: str | None, sent: Any) -> None:
    wire = wire_value(value)
    assert (wire.kind, wire.value) == (kind, sent)


# -- type pinning and limits ------------------------------------------------------------------------
def test_type_is_pinned_on_first_send_and_later_values_are_coerced_or_dropped() -> None:
    reg = registry({"event:Order Completed": {"orderNumber": "string", "amount": "number", "gift": "boolean"}})
    df = frame(
        event(1, order_number=12345, revenue="19.90", gift="yes"),
        event(2, order_number="A-7", revenue="n/a", gift="maybe"),
    )
    out = run(df, reg=reg)
    assert out.payloads[0]["eventData"] == {"orderNumber": "12345", "amount": 19.9, "gift": True}
    assert out.payloads[1]["eventData"] == {"orderNumber": "A-7"}
    assert out.coerced == 3
    assert sorted((d.column, d.reason) for d in out.drops) == [("gift", "type_mismatch"), ("revenue", "type_mismatch")]
    assert reg.take_pending() == {}  # nothing new was pinned


def test_first_value_pins_the_type_within_a_run_and_is_handed_over_once() -> None:
    reg = registry()
    out = run(frame(event(1, properties='{"size": 42}'), event(2, properties='{"size": "XL"}')), reg=reg)
    assert out.payloads[0]["eventData"] == {"size": 42} and "eventData" not in out.payloads[1]
    assert reg.take_pending() == {"event:Order Completed": {"size": "number"}}
    assert reg.take_pending() == {}


def test_a_date_string_sent_to_a_string_attribute_stays_a_string() -> None:
    reg = registry({"event:Order Completed": {"note": "string"}})
    [payload] = run(frame(event(1, note="2026-06-06T18:29:00+0000")), reg=reg).payloads
    assert payload["eventData"]["note"] == "2026-06-06 18:29:00+0000"
    assert wire_value(payload["eventData"]["note"]).kind == "string"


def test_at_most_25_attributes_per_type_per_event_name() -> None:
    reg = registry({"event:Order Completed": {f"s{i}": "string" for i in range(24)}})
    df = frame(event(1, **{f"extra_{i}": "v" for i in range(3)}, flag=True), event(2, "Other", extra_9="v"))
    out = run(df, reg=reg)
    assert out.payloads[0]["eventData"] == {"extra0": "v", "flag": True}
    assert [(d.column, d.reason) for d in out.drops] == [("extra_1", "attribute_limit"), ("extra_2", "attribute_limit")]
    assert out.payloads[1]["eventData"] == {"extra9": "v"}  # the limit is per event name


# -- rejects ----------------------------------------------------------------------------------------
def test_reject_reasons_one_per_row() -> None:
    df = frame(
        event(1),
        {**event(2), "user_id": None},  # no ids at all
        {**event(3), "user_id": None, "anonymous_id": "anon-3"},  # anonymous only: fine
        {**event(4), "event_name": "  "},
        {**event(5), "event_time": "not a date"},
        {**event(6), "event_time": None},
        {**event(7), "user_id": "u" * 101},
        {**event(8), "user_id": None, "anonymous_id": "a" * 101},
        {**event(9), "event_id": None},
        {**event(10), "event_id": "x" * 256},
        {**event(11), "event_id": None, "user_id": None},  # first reason wins
    )
    out = run(df)
    assert [p.get("userId", p.get("anonymousId")) for p in out.payloads] == ["u1", "anon-3"]
    assert [(r.event_id, r.reason) for r in out.rejects] == [
        ("e2", "missing_id"),
        ("e4", "missing_event_name"),
        ("e5", "invalid_event_time"),
        ("e6", "invalid_event_time"),
        ("e7", "user_id_too_long"),
        ("e8", "anonymous_id_too_long"),
        (None, "missing_event_id"),
        ("x" * 256, "event_id_too_long"),
        (None, "missing_event_id"),
    ]


def test_event_time_accepts_naive_in_source_zone_and_strings() -> None:
    mapping = event_mapping_from_dict({"options": {"source_timezone": "Asia/Kolkata"}})
    df = frame(
        {**event(1), "event_time": pd.Timestamp("2026-06-07 00:00:00")},
        {**event(2), "event_time": "2026-06-06T18:29:00Z"},
    )
    assert [p["eventTime"] for p in run(df, mapping).payloads] == [
        "2026-06-06T18:30:00+0000",
        "2026-06-06T18:29:00+0000",
    ]


def test_missing_required_columns_fail_before_anything_is_sent() -> None:
    with pytest.raises(ConfigError, match="event_time"):
        run(pd.DataFrame({"event_id": ["1"], "user_id": ["u"], "event_name": ["x"]}))
    with pytest.raises(ConfigError, match="user_id"):
        run(pd.DataFrame({"event_id": ["1"], "event_name": ["x"], "event_time": ["2026-01-01"]}))


# -- mapping file -----------------------------------------------------------------------------------
def test_default_mapping_file_loads_with_the_datafly_defaults() -> None:
    mapping = load_event_mapping(ROOT / "etl/defaults/mappings" / "events.toml")
    assert mapping.lookback == timedelta(hours=2) and mapping.endpoint == "bulk-events"
    assert mapping.property_renames["revenue"] == "amount"
    assert mapping.names.lookup("Product Removed") == "Removed from Cart"


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("2h", timedelta(hours=2)),
        ("90m", timedelta(minutes=90)),
        ("1d", timedelta(days=1)),
        (30, timedelta(minutes=30)),
    ],
)
def test_lookback_durations(text: Any, delta: timedelta) -> None:
    assert parse_lookback(text) == delta


@pytest.mark.parametrize(
    "doc",
    [
        {"source": {"lookback": "2 weeks"}},
        {"options": {"endpoint": "bulk-users"}},
        {"source": {"typo": 1}},
        {"names": {}},
        {"properties": {"rename": {"a": "we_a"}}},
        {"options": {"source_timezone": "Mars/Base"}},
        {"event_names": {"x": " "}},
    ],
)
def test_bad_mapping_is_refused_naming_the_setting(doc: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        event_mapping_from_dict(doc)


def test_camel_case_and_revenue_as_amount_can_both_be_switched_off() -> None:
    """Issue 14: the Datafly conventions are defaults, not laws: the mapping can keep the warehouse's names."""
    kept = event_mapping_from_dict({"options": {"camel_case": False}, "properties": {"rename": {"revenue": "revenue"}}})
    frame = pd.DataFrame(
        {
            "event_id": ["e1"],
            "user_id": ["u1"],
            "event_name": ["Order Completed"],
            "event_time": [pd.Timestamp("2026-11-01T10:00:00Z")],
            "properties": ['{"order_id": "ORD-1", "revenue": 10.5}'],
        }
    )
    default = transform_events(frame, event_mapping_from_dict({}), TypeRegistry(lambda scope: {}))
    switched = transform_events(frame, kept, TypeRegistry(lambda scope: {}))
    assert default.payloads[0]["eventData"] == {"orderId": "ORD-1", "amount": 10.5}
    assert switched.payloads[0]["eventData"] == {"order_id": "ORD-1", "revenue": 10.5}
