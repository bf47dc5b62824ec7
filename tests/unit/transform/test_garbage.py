"""Garbage from upstream bugs (issue 14): null-like tokens, control characters, objects over 16 KB, blank
property names, events in the future -- the pure pieces, users, events, cohorts and the sandbox's checks."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

import pandas as pd
import pytest

from etl.config import Settings
from etl.errors import ConfigError
from etl.mappings.events import EventMapping, event_mapping_from_dict
from etl.mappings.users import user_mapping_from_dict
from etl.transform import cohorts
from etl.transform import users as tx
from etl.transform.events import TypeRegistry, transform_events
from etl.transform.formats import garbage
from webengage_dev.sandbox.validation import check_event, check_user

TOKENS = garbage.null_tokens()
TODAY = dt.date(2026, 11, 1)
NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


# -- the pure pieces --------------------------------------------------------------------------------
def test_tokens_are_trimmed_lower_cased_and_blanks_left_out() -> None:
    assert garbage.null_tokens([" NULL", "n/a ", " ", "None"]) == {"null", "n/a", "none"}
    assert {"null", "none", "nan", "undefined", "nil"} == TOKENS


@pytest.mark.parametrize("text", ["null", "NULL", "None", "nan", "NaN", " undefined ", "Nil"])
def test_null_like_tokens_any_case_after_trimming(text: str) -> None:
    assert garbage.is_null_like(text, TOKENS)
    assert garbage.null_like_mask(pd.Series([text], dtype="string"), TOKENS).tolist() == [True]


@pytest.mark.parametrize("text", ["nullable", "Nancy", "none of them", "0", "", "n u l l"])
def test_words_that_only_look_alike_are_not_null_like(text: str) -> None:
    assert not garbage.is_null_like(text, TOKENS)


@pytest.mark.parametrize("text", ["\x00", "a\x00b", "tab\there", "line\n", "\x1b[0m", "del\x7f", "c1\x85"])
def test_any_control_character_is_found(text: str) -> None:
    assert garbage.has_control(text)
    assert garbage.control_mask(pd.Series([text, "fine", None], dtype="string")).tolist() == [True, False, False]


def test_keys_lose_every_control_character_values_keep_tab_and_newlines() -> None:
    assert garbage.clean_key("k\x00e\ty\n") == "key"
    assert garbage.clean_text("a\x00b\tc\nd\x07") == "ab\tc\nd"


def test_clean_json_cleans_keys_and_strings_at_every_depth_and_counts_them() -> None:
    value = {"k\x00": ["x\x01", {"in\x1fner": "v", "n": 1}], "ok": "fine"}
    assert garbage.clean_json(value) == ({"k": ["x", {"inner": "v", "n": 1}], "ok": "fine"}, 3)
    assert garbage.clean_json([1, None, True]) == ([1, None, True], 0)


def test_json_size_is_the_compact_encoding() -> None:
    assert garbage.json_size({"a": [1, 2]}) == len(b'{"a":[1,2]}')
    assert garbage.json_size({"a": "x" * garbage.OBJECT_MAX_BYTES}) > garbage.OBJECT_MAX_BYTES


def test_printable_escapes_control_characters_and_cuts() -> None:
    assert garbage.printable("a\x00b") == "a\\x00b"
    assert garbage.printable("x" * 100, 10) == "x" * 10 + "…"


@pytest.mark.parametrize("dtype", [object, "string"])
def test_clean_values_cleans_and_blanks_null_like_strings_only(dtype: Any) -> None:
    col = pd.Series(["a\x00b", "NULL", " nan ", None, "Pune"], dtype=dtype)
    values, null_like, cleaned = garbage.clean_values(col, TOKENS, keep_null_like=False)
    assert [None if pd.isna(v) else v for v in values] == ["ab", None, None, None, "Pune"]
    assert null_like.tolist() == [False, True, True, False, False]
    assert cleaned.tolist() == [True, False, False, False, False]
    kept, none_like, _ = garbage.clean_values(col, TOKENS, keep_null_like=True)
    assert kept.tolist()[1:3] == ["NULL", " nan "] and not none_like.any()


def test_clean_values_leaves_other_columns_and_values_alone() -> None:
    numbers = pd.Series([1.0, float("nan")])
    assert garbage.clean_values(numbers, TOKENS, keep_null_like=False)[0] is numbers
    mixed = pd.Series([{"a": "null"}, 5, "null"], dtype=object)
    values, null_like, _ = garbage.clean_values(mixed, TOKENS, keep_null_like=False)
    assert values.tolist() == [{"a": "null"}, 5, None] and null_like.tolist() == [False, False, True]


# -- users ------------------------------------------------------------------------------------------
MAPPING = user_mapping_from_dict(
    {
        "source": {"user_id": "id", "updated_at": None},
        "system_attributes": {"first": "firstName", "city": "city"},
        "custom_attributes": {"a": {"type": "json"}, "b": {"type": "json"}},
    }
)


def test_null_like_and_control_character_user_ids_are_rejected_by_position() -> None:
    df = pd.DataFrame({"id": ["u1", "null", "None", "nan", "u\x00x", " NULL ", "nullable"]})
    keys = tx.normalise_keys(df, "id")
    usable, rejects = tx.screen_keys(df, keys, MAPPING)
    assert usable.tolist() == [True, False, False, False, False, False, True]
    assert {(r.row_key, r.reason) for r in rejects} == {
        ("row:1", "null_like_id"),
        ("row:2", "null_like_id"),
        ("row:3", "null_like_id"),
        ("row:4", "control_character_in_id"),
        ("row:5", "null_like_id"),
    }
    assert all("\x00" not in r.detail for r in rejects)
    _usable, only_null = tx.screen_keys(df, keys, MAPPING, null_tokens=frozenset({"null"}))
    assert Counter(r.reason for r in only_null) == {"null_like_id": 2, "control_character_in_id": 1}


def build(df: pd.DataFrame, mapping: Any = MAPPING) -> tx.Built:
    types = {"a": "json", "b": "json"}
    return tx.build_payloads(df, df["id"], mapping, types, [None] * len(df), today=TODAY)  # type: ignore[arg-type]


def users_frame(**cols: list[Any]) -> pd.DataFrame:
    n = len(cols["id"])
    return pd.DataFrame({"first": [None] * n, "city": [None] * n, "a": [None] * n, "b": [None] * n, **cols})


def test_null_like_string_values_are_left_out_and_reported() -> None:
    built = build(users_frame(id=["u1", "u2"], first=["Ann", "None"], city=["null", "Pune"]))
    assert built.payloads == [{"userId": "u1", "firstName": "Ann"}, {"userId": "u2", "city": "Pune"}]
    assert {(r.row_key, r.column, r.reason) for r in built.rejects} == {
        ("u1", "city", "null_like_value"),
        ("u2", "first", "null_like_value"),
    }
    assert built.stats.dropped == {"null_like_value": 2}
    assert built.masks == ["1000", "0100"]


def test_keep_null_like_values_sends_them() -> None:
    keep = user_mapping_from_dict(
        {
            "source": {"user_id": "id", "updated_at": None},
            "options": {"keep_null_like_values": True},
            "system_attributes": {"city": "city"},
        }
    )
    df = pd.DataFrame({"id": ["u1"], "city": ["null"]})
    built = tx.build_payloads(df, df["id"], keep, {}, [None], today=TODAY)
    assert built.payloads == [{"userId": "u1", "city": "null"}] and not built.rejects
    assert (
        keep.fingerprint()
        != user_mapping_from_dict(
            {"source": {"user_id": "id", "updated_at": None}, "system_attributes": {"city": "city"}}
        ).fingerprint()
    )


def test_the_default_options_and_tokens_keep_earlier_fingerprints_and_hashes() -> None:
    salt = tx.types_salt(MAPPING, {"a": "json"})
    assert salt == tx.types_salt(MAPPING, {"a": "json"}, null_tokens=TOKENS)
    assert salt != tx.types_salt(MAPPING, {"a": "json"}, null_tokens=frozenset({"null"}))


def test_control_characters_are_stripped_from_values_and_json_and_counted() -> None:
    built = build(users_frame(id=["u1"], first=["A\x00n\x07n"], a=['{"k\\u0000": "v\\u0001"}']))
    assert built.payloads == [{"userId": "u1", "firstName": "Ann", "attributes": {"a": {"k": "v"}}}]
    assert built.stats.cleaned == 3 and not built.rejects


def test_objects_of_one_profile_stay_within_16_kb_largest_left_out_first() -> None:
    big, mid, small = ("x" * 12_000, "y" * 9_000, "z" * 100)
    df = users_frame(
        id=["u1", "u2", "u3"],
        first=["A", "B", "C"],
        a=[json.dumps({"s": big}), json.dumps({"s": mid}), json.dumps({"s": "x" * 20_000})],
        b=[json.dumps({"s": mid}), json.dumps({"s": small}), None],
    )
    built = build(df)
    assert built.payloads[0] == {"userId": "u1", "firstName": "A", "attributes": {"b": {"s": mid}}}
    assert built.payloads[1]["attributes"] == {"a": {"s": mid}, "b": {"s": small}}
    assert built.payloads[2] == {"userId": "u3", "firstName": "C"}
    assert {(r.row_key, r.column, r.reason) for r in built.rejects} == {
        ("u1", "a", "object_too_large"),
        ("u3", "a", "object_too_large"),
    }
    assert built.masks[0] == "1001" and built.masks[2] == "1000"


# -- events -----------------------------------------------------------------------------------------
def events_frame(*rows: dict[str, Any]) -> pd.DataFrame:
    base = {
        "event_id": None,
        "user_id": "u1",
        "anonymous_id": None,
        "event_name": "Viewed",
        "event_time": pd.Timestamp("2026-10-31T10:00:00Z"),
    }
    return pd.DataFrame([{**base, "event_id": f"e{i}", **r} for i, r in enumerate(rows)])


def transform(df: pd.DataFrame, mapping: EventMapping | None = None, **kwargs: Any) -> Any:
    reg = TypeRegistry(lambda _scope: {})
    return transform_events(df, mapping or EventMapping(camel_case=False), reg, **kwargs)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("null", "null_like_event_name"),
        ("NULL", "null_like_event_name"),
        ("None", "null_like_event_name"),
        ("nan", "null_like_event_name"),
        ("NaN", "null_like_event_name"),
        ("undefined", "null_like_event_name"),
        ("\x00", "control_character_in_event_name"),
        ("a\x00b", "control_character_in_event_name"),
    ],
)
def test_garbage_event_names_are_rejected(name: str, reason: str) -> None:
    out = transform(events_frame({"event_name": name}))
    assert not out.payloads and [(r.event_id, r.reason) for r in out.rejects] == [("e0", reason)]


@pytest.mark.parametrize(
    ("ids", "reason"),
    [
        ({"user_id": "null"}, "null_like_id"),
        ({"user_id": "None"}, "null_like_id"),
        ({"user_id": "nan"}, "null_like_id"),
        ({"user_id": "u\x00"}, "control_character_in_id"),
        ({"user_id": None, "anonymous_id": "undefined"}, "null_like_id"),
    ],
)
def test_garbage_event_user_ids_are_rejected(ids: dict[str, Any], reason: str) -> None:
    out = transform(events_frame(ids))
    assert not out.payloads and [r.reason for r in out.rejects] == [reason]


def test_the_event_token_list_is_an_argument() -> None:
    out = transform(events_frame({"event_name": "None"}, {"event_name": "null"}), null_tokens=frozenset({"null"}))
    assert [p["eventName"] for p in out.payloads] == ["None"] and [r.reason for r in out.rejects] == [
        "null_like_event_name"
    ]


def test_property_keys_lose_control_characters_and_blank_ones_are_reported() -> None:
    props = json.dumps({"k\x00ey": 1, "": 2, " ": 3, "\x00": 4, "ok": "a\x00b"})
    out = transform(events_frame({"properties": props}))
    assert out.payloads[0]["eventData"] == {"key": 1, "ok": "ab"}
    assert [(d.column, d.reason) for d in out.drops] == [
        ('""', "empty_property_name"),
        (" ", "empty_property_name"),
        ("\\x00", "empty_property_name"),
    ]
    assert out.cleaned == 2


def test_excluded_properties_stay_silent() -> None:
    mapping = event_mapping_from_dict({"options": {"camel_case": False}, "properties": {"exclude": ["secret"]}})
    out = transform(events_frame({"properties": json.dumps({"secret": 1, "ok": 2})}), mapping)
    assert out.payloads[0]["eventData"] == {"ok": 2} and not out.drops


def test_null_like_property_values_are_left_out_unless_kept() -> None:
    df = events_frame({"city": "null", "properties": json.dumps({"label": " None ", "n": 1})})
    out = transform(df)
    assert out.payloads[0]["eventData"] == {"n": 1}
    assert sorted((d.column, d.reason) for d in out.drops) == [
        ("city", "null_like_value"),
        ("label", "null_like_value"),
    ]
    kept = transform(df, event_mapping_from_dict({"options": {"camel_case": False, "keep_null_like_values": True}}))
    assert kept.payloads[0]["eventData"] == {"city": "null", "label": " None ", "n": 1} and not kept.drops


def test_event_objects_over_16_kb_are_left_out_per_value() -> None:
    big = {"s": "x" * 20_000}
    props = {"big": big, "fits": {"s": "y" * 15_000}, "n": 1}
    out = transform(events_frame({"properties": json.dumps(props)}))
    assert set(out.payloads[0]["eventData"]) == {"fits", "n"}
    assert [(d.event_id, d.column, d.reason) for d in out.drops] == [("e0", "big", "object_too_large")]


def test_events_beyond_the_future_tolerance_are_rejected_against_the_clock_passed_in() -> None:
    df = events_frame(
        {"event_time": pd.Timestamp("2031-11-01T00:00:00Z")},
        {"event_time": pd.Timestamp("2026-11-01T23:59:59Z")},
        {"event_time": pd.Timestamp("2026-11-02T00:00:01Z")},
    )
    out = transform(df, now=NOW)
    assert [p["eventTime"] for p in out.payloads] == ["2026-11-01T23:59:59+0000"]
    assert [(r.event_id, r.reason) for r in out.rejects] == [
        ("e0", "event_time_in_future"),
        ("e2", "event_time_in_future"),
    ]
    assert len(transform(df, now=NOW, future_tolerance_s=10 * 366 * 86_400).payloads) == 3
    assert len(transform(df).payloads) == 3  # no clock: no check
    naive = transform(df, now=NOW.replace(tzinfo=None))
    assert len(naive.payloads) == 1


# -- cohorts ----------------------------------------------------------------------------------------
def test_cohort_member_ids_are_screened_alike() -> None:
    ids, excluded = cohorts.screen_ids(pd.Series(["u1", "null", "None", "nan", "u\x00", None, " "], dtype=object))
    assert ids.tolist() == ["u1"]
    assert excluded == {"null_like_id": 3, "control_character_in_id": 1, "anonymous": 1, "empty_user_id": 1}
    kept, _ = cohorts.screen_ids(pd.Series(["None", "null"]), null_tokens=["null"])
    assert kept.tolist() == ["None"]


# -- settings ---------------------------------------------------------------------------------------
def test_null_tokens_and_future_tolerance_are_settings() -> None:
    defaults = Settings()
    assert defaults.null_tokens == ("null", "none", "nan", "undefined", "nil")
    assert defaults.event_future_tolerance_s == 86_400
    loaded = Settings._load({}, env={"WEBENGAGE_NULL_TOKENS": "null, N/A", "WEBENGAGE_EVENT_FUTURE_TOLERANCE_S": "60"})
    assert loaded.null_tokens == ("null", "N/A") and loaded.event_future_tolerance_s == 60
    with pytest.raises(ConfigError, match="event_future_tolerance_s"):
        Settings(event_future_tolerance_s=-1)


# -- the sandbox's strict checks ----------------------------------------------------------------------
def rules(violations: list[Any]) -> list[str]:
    return [v.rule for v in violations]


@pytest.mark.parametrize("user_id", ["null", "None", "nan", "NaN", "undefined"])
def test_sandbox_counts_null_like_ids(user_id: str) -> None:
    assert rules(check_user({"userId": user_id})) == ["null_like_id"]
    assert rules(check_event({"anonymousId": user_id, "eventName": "E"})) == ["null_like_id"]


def test_sandbox_counts_control_characters_in_ids_names_and_keys() -> None:
    assert rules(check_user({"userId": "a\x00b"})) == ["control_character_in_id"]
    assert rules(check_event({"userId": "u", "eventName": "a\x00b"})) == ["control_character_in_event_name"]
    assert rules(check_event({"userId": "u", "eventName": "null"})) == ["null_like_event_name"]
    assert rules(check_event({"userId": "u", "eventName": "E", "eventData": {"k\x00": 1, " ": 2}})) == [
        "attribute_name_garbage",
        "attribute_name_garbage",
    ]
    assert check_user({"userId": "u", "firstName": "null"}) == []  # a value: kept on purpose, not garbage


def test_sandbox_counts_objects_over_16_kb() -> None:
    big = {"s": "x" * 16_400}
    assert rules(check_event({"userId": "u", "eventName": "E", "eventData": {"o": big, "p": 1}})) == [
        "object_too_large"
    ]
    assert check_event({"userId": "u", "eventName": "E", "eventData": {"o": {"s": "x" * 16_000}}}) == []
