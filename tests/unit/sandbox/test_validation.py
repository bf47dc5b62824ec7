"""Each contract rule of the sandbox's per-item checks fails on its own, with its own rule code."""

from __future__ import annotations

from typing import Any

import pytest

from webengage_dev.sandbox.store import SandboxStore
from webengage_dev.sandbox.validation import (
    NonFinite,
    check_event,
    check_user,
    classify,
    parse_json,
    validate_event,
    validate_user,
)

VALID_USER: dict[str, Any] = {
    "userId": "u-1",
    "firstName": "Ada",
    "lastName": "Lovelace",
    "birthDate": "1990-01-01T00:00:00+0000",
    "gender": "female",
    "email": "ada@example.com",
    "phone": "+917850009678",
    "company": "Analytical Engines",
    "emailOptIn": True,
    "smsOptIn": False,
    "whatsappOptIn": False,
    "country": "IN",
    "city": "Pune",
    "postalCode": "411001",
    "attributes": {
        "plan": "gold",
        "ltv": 12.5,
        "orders": 3,
        "vip": False,
        "signup": "2024-05-01T10:00:00+0530",
        "tags": ["a", "b"],
    },
}
VALID_EVENT: dict[str, Any] = {
    "userId": "u-1",
    "eventName": "Order Placed",
    "eventTime": "2026-06-06T18:29:00+0000",
    "eventData": {"amount": 10.5, "sku": "X1", "gift": True, "items": [{"sku": "X1"}]},
}


def user(**changes: Any) -> dict[str, Any]:
    return {**VALID_USER, **changes}


def user_attrs(**attrs: Any) -> dict[str, Any]:
    return {"userId": "u-1", "attributes": attrs}


def event(**changes: Any) -> dict[str, Any]:
    return {**VALID_EVENT, **changes}


def rules(violations: list[Any]) -> list[str]:
    return [v.rule for v in violations]


def test_valid_user_and_event_have_no_violations() -> None:
    assert check_user(VALID_USER) == []
    assert check_user({"anonymousId": "anon-1"}) == []
    assert check_event(VALID_EVENT) == []
    assert check_event({"anonymousId": "a", "eventName": "Viewed"}) == []


@pytest.mark.parametrize(
    ("item", "rule"),
    [
        pytest.param(user(userId="u" * 101), "user_id_too_long", id="101-char userId"),
        pytest.param({"anonymousId": "a" * 101}, "anonymous_id_too_long", id="101-char anonymousId"),
        pytest.param({"userId": 42}, "invalid_id", id="numeric userId"),
        pytest.param({"firstName": "A"}, "missing_id", id="no id"),
        pytest.param({"userId": "", "anonymousId": ""}, "missing_id", id="empty ids"),
        pytest.param(user_attrs(**{"a" * 50: 1}), "attribute_name_too_long", id="50-char attribute name"),
        pytest.param(user_attrs(we_x=1), "attribute_name_reserved", id="we_x"),
        pytest.param(user_attrs(WE_plan=1), "attribute_name_reserved", id="WE_ uppercase"),
        pytest.param(user_attrs(**{"": 1}), "attribute_name_empty", id="empty attribute name"),
        pytest.param(user_attrs(bio="x" * 1000), "string_too_long", id="1000-char attribute string"),
        pytest.param(user(firstName="x" * 1000), "string_too_long", id="1000-char system string"),
        pytest.param(user(birthDate="1990-01-01T00:00:00Z"), "invalid_date", id="birthDate Z"),
        pytest.param(user(birthDate="1990-01-01T00:00:00.000+0000"), "invalid_date", id="birthDate millis"),
        pytest.param(user(birthDate="1990-01-01T00:00:00+00:00"), "invalid_date", id="birthDate +00:00"),
        pytest.param(user(birthDate="1990-01-01"), "invalid_date", id="birthDate date only"),
        pytest.param(user(phone="917850009678"), "invalid_phone", id="phone without +"),
        pytest.param(user(phone="+0123456789"), "invalid_phone", id="phone leading 0"),
        pytest.param(user(gender="M"), "invalid_gender", id="gender M"),
        pytest.param(user(emailOptIn="yes"), "invalid_opt_in", id="opt-in string"),
        pytest.param(user(smsOptIn=1), "invalid_opt_in", id="opt-in number"),
        pytest.param(user(email="a@b@c"), "invalid_email", id="two @"),
        pytest.param(user(email="nobody"), "invalid_email", id="no @"),
        pytest.param(user(firstName=5), "invalid_type", id="numeric firstName"),
        pytest.param(user(nickname="Ada"), "unknown_field", id="unknown field"),
        pytest.param(user(attributes=["x"]), "invalid_attributes", id="attributes not object"),
        pytest.param(user_attrs(score=float("nan")), "non_finite_number", id="NaN"),
        pytest.param(user_attrs(score=float("inf")), "non_finite_number", id="Infinity"),
        pytest.param(user_attrs(deep={"x": [float("-inf")]}), "non_finite_number", id="nested -Infinity"),
        pytest.param(user_attrs(plan=None), "null_value", id="null attribute"),
        pytest.param(user(city=None), "null_value", id="null system field"),
    ],
)
def test_user_rule(item: dict[str, Any], rule: str) -> None:
    assert rules(check_user(item)) == [rule]


@pytest.mark.parametrize(
    ("item", "rule"),
    [
        pytest.param({"userId": "u-1"}, "missing_event_name", id="no name"),
        pytest.param(event(eventName=""), "missing_event_name", id="empty name"),
        pytest.param(event(eventName="e" * 50), "event_name_too_long", id="50-char name"),
        pytest.param(event(eventName="we_open"), "event_name_reserved", id="we_ name"),
        pytest.param(event(eventName=7), "invalid_type", id="numeric name"),
        pytest.param(event(eventTime="2026-06-06T18:29:00Z"), "invalid_date", id="eventTime Z"),
        pytest.param(event(eventTime="2026-06-06 18:29:00"), "invalid_date", id="eventTime no T"),
        pytest.param(event(eventTime=1780000000), "invalid_date", id="eventTime epoch"),
        pytest.param({"eventName": "Viewed"}, "missing_id", id="no id"),
        pytest.param(event(userId="u" * 101), "user_id_too_long", id="101-char userId"),
        pytest.param(event(eventData={"we_x": 1}), "attribute_name_reserved", id="we_ data key"),
        pytest.param(event(eventData={"k" * 50: 1}), "attribute_name_too_long", id="50-char data key"),
        pytest.param(event(eventData={"note": "x" * 1000}), "string_too_long", id="1000-char data string"),
        pytest.param(event(eventData={"v": float("nan")}), "non_finite_number", id="NaN data"),
        pytest.param(event(eventData="x"), "invalid_event_data", id="eventData not object"),
        pytest.param(event(properties={}), "unknown_field", id="unknown field"),
    ],
)
def test_event_rule(item: dict[str, Any], rule: str) -> None:
    assert rules(check_event(item)) == [rule]


def test_boundaries_are_allowed() -> None:
    assert check_user(user(userId="u" * 100, firstName="x" * 999, attributes={"a" * 49: 1})) == []
    assert check_event(event(eventName="e" * 49, eventData={"k" * 49: "x" * 999})) == []


def test_cleaned_copy_keeps_what_webengage_keeps() -> None:
    clean, violations = validate_user(
        user(phone="123", nickname="x", attributes={"bio": "x" * 1500, "we_a": 1, "ok": 1}), item_index=3
    )
    assert clean is not None
    assert "phone" not in clean and "nickname" not in clean
    assert clean["attributes"] == {"bio": "x" * 999, "ok": 1}  # truncated, not dropped
    assert {v.item_index for v in violations} == {3}
    clean_event, _ = validate_event(event(eventTime="bad"))
    assert clean_event is not None and "eventTime" not in clean_event


def test_violation_detail_never_carries_the_value() -> None:
    secret = "secret-value@example.com@x"
    (violation,) = check_user(user(email=secret))
    assert secret not in violation.detail


def test_parse_json_flags_non_finite_literals() -> None:
    parsed = parse_json(b'{"userId": "u", "attributes": {"a": NaN, "b": -Infinity}}')
    assert isinstance(parsed["attributes"]["a"], NonFinite)
    assert parsed["attributes"]["b"].literal == "-Infinity"
    assert rules(check_user(parsed)) == ["non_finite_number", "non_finite_number"]


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (True, "boolean"),
        (1, "number"),
        (1.5, "number"),
        ("2026-01-01T00:00:00+0000", "date"),
        ("2026-01-01", "string"),
        ({"a": 1}, "object"),
        ([1], "object"),
        (None, None),
    ],
)
def test_classify(value: Any, kind: str | None) -> None:
    assert classify(value) == kind


def test_26th_string_attribute_is_refused_per_account() -> None:
    store = SandboxStore()
    attrs = {f"s{i}": "x" for i in range(25)}
    _, found = store.ingest_users([(None, user_attrs(**attrs))], endpoint="users", request_id=None)
    assert found == []
    # Another user, same account: the 26th string attribute is new and goes nowhere.
    _, found = store.ingest_users(
        [(None, {"userId": "u-2", "attributes": {"s25": "x", "n1": 1}})], endpoint="users", request_id="r1"
    )
    assert rules(found) == ["attribute_limit"]
    assert found[0].field == "attributes.s25" and found[0].request_id == "r1"
    assert store.get_profile("u-2") == {"userId": "u-2", "attributes": {"n1": 1}}


def test_type_change_is_not_applied() -> None:
    store = SandboxStore()
    store.ingest_users([(None, user_attrs(score=1))], endpoint="users", request_id=None)
    _, found = store.ingest_users([(None, user_attrs(score="high"))], endpoint="users", request_id=None)
    assert rules(found) == ["type_change"]
    profile = store.get_profile("u-1")
    assert profile is not None and profile["attributes"] == {"score": 1}


def test_event_attribute_registry_is_per_event_name() -> None:
    store = SandboxStore()
    store.ingest_events([(None, event(eventData={"v": 1}))], endpoint="events", request_id=None)
    _, same_name = store.ingest_events([(None, event(eventData={"v": "x"}))], endpoint="events", request_id=None)
    _, other_name = store.ingest_events(
        [(None, event(eventName="Other", eventData={"v": "x"}))], endpoint="events", request_id=None
    )
    assert rules(same_name) == ["type_change"]
    assert other_name == []
    many = {f"n{i}": i for i in range(26)}
    _, found = store.ingest_events(
        [(None, event(eventName="Wide", eventData=many))], endpoint="events", request_id=None
    )
    assert rules(found) == ["attribute_limit"]


def test_object_attributes_capped_at_16_kb_per_profile() -> None:
    store = SandboxStore()
    big = {"blob": "x" * 900}
    payload = {f"o{i}": [big] * 2 for i in range(9)}  # ~1.8 KB each, ~16.3 KB together
    _, found = store.ingest_users([(None, user_attrs(**payload))], endpoint="users", request_id=None)
    assert rules(found) == ["object_size_limit"]
    profile = store.get_profile("u-1")
    assert profile is not None and len(profile["attributes"]) == 8
