"""The webhook JSON shapes of seed 003: every example validates; broken ones fail with a reason code."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from etl.webhooks.examples import CUSTOM_EVENT, EXAMPLES, JOURNEY_ACTIVATED, PUSH_ACCEPTED
from etl.webhooks.shapes import ShapeError, dumps, loads, parse_body, parse_event_time, request_id_for, validate


@pytest.mark.parametrize(("event_type", "body"), EXAMPLES, ids=[e for e, _ in EXAMPLES])
def test_every_seed_example_validates(event_type: str, body: dict[str, Any]) -> None:
    event = validate(parse_body(orjson.dumps(body)))
    assert event.event_name == body["event_name"] and event.category == body["category"]
    assert event.event_data == body["event_data"] and event.system_data == body.get("system_data")
    assert event.user_id == body["user_id"] and event.anonymous_id == body.get("anonymous_id")
    assert event.event_time.tzinfo is UTC


def test_push_example_fields() -> None:
    event = validate(PUSH_ACCEPTED)
    assert event.event_time == datetime(2016, 6, 1, 15, 53, 59, tzinfo=UTC)
    assert event.license_code == "~99199077" and event.extra is None
    assert isinstance(event.system_data, dict) and event.system_data["push_notification_content"].startswith("{")


def test_journey_keeps_keys_beyond_the_envelope() -> None:
    event = validate(JOURNEY_ACTIVATED)
    assert event.extra == {"resource": "Journey", "version": 1}
    assert event.system_data is None and event.anonymous_id is None and event.category == "account"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2016-06-01T15:53:59+0000", datetime(2016, 6, 1, 15, 53, 59, tzinfo=UTC)),
        ("2016-06-01T21:23:59+0530", datetime(2016, 6, 1, 15, 53, 59, tzinfo=UTC)),
        ("2016-06-01T15:53:59.250Z", datetime(2016, 6, 1, 15, 53, 59, 250000, tzinfo=UTC)),
        ("2016-06-01T15:53:59", datetime(2016, 6, 1, 15, 53, 59, tzinfo=UTC)),  # no offset: UTC
    ],
)
def test_event_time_to_utc(text: str, expected: datetime) -> None:
    assert parse_event_time(text) == expected


@pytest.mark.parametrize("value", ["2016-06-01", "yesterday", "2016-13-01T00:00:00+0000", 1464796439, None])
def test_bad_event_time(value: object) -> None:
    with pytest.raises(ShapeError) as caught:
        parse_event_time(value)
    assert caught.value.reason == "bad_event_time" and caught.value.status == 422


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"event_name": None}, "missing_event_name"),
        ({"event_time": ""}, "missing_event_time"),
        ({"category": None}, "missing_category"),
        ({"event_name": 5}, "bad_event_name"),
        ({"event_time": "soon-ish, maybe tomorrow"}, "bad_event_time"),
        ({"event_data": [1, 2]}, "bad_event_data"),
        ({"system_data": "x"}, "bad_system_data"),
        ({"user_id": {"id": 1}}, "bad_user_id"),
        ({"user_id": "a\x00b"}, "bad_user_id"),
        ({"license_code": 7}, "bad_license_code"),
    ],
)
def test_shape_problems_have_reasons(change: dict[str, Any], reason: str) -> None:
    body = {**CUSTOM_EVENT, **change}
    with pytest.raises(ShapeError) as caught:
        validate(body)
    assert caught.value.reason == reason and caught.value.status == 422


def test_unknown_category_and_numeric_ids_are_accepted() -> None:
    event = validate({**CUSTOM_EVENT, "category": "whatsapp", "user_id": 12345})
    assert event.category == "whatsapp" and event.user_id == "12345"


@pytest.mark.parametrize("raw", [b"{bad", b"", b"\xff\xfe{}", b'{"a": NaN}', b"[" * 5000])
def test_malformed_json_is_400(raw: bytes) -> None:
    with pytest.raises(ShapeError) as caught:
        parse_body(raw)
    assert (caught.value.reason, caught.value.status) == ("malformed_json", 400)


def test_non_object_is_422() -> None:
    with pytest.raises(ShapeError) as caught:
        parse_body(b"[1, 2]")
    assert (caught.value.reason, caught.value.status) == ("not_an_object", 422)


def test_big_integers_stay_exact() -> None:
    raw = b'{"event_data": {"order": 123456789012345678901234567890, "n": 1.5}}'
    value = loads(raw)
    assert value["event_data"]["order"] == 123456789012345678901234567890
    assert dumps(value["event_data"]) == '{"order":123456789012345678901234567890,"n":1.5}'


def test_request_id_rules() -> None:
    assert request_id_for("  7f3a-uuid  ", b"{}") == "7f3a-uuid"
    derived = request_id_for(None, b'{"a":1}')
    assert derived.startswith("body-") and derived == request_id_for("", b'{"a":1}')
    assert derived != request_id_for(None, b'{"a":2}')
    long_id = request_id_for("x" * 500, b"{}")
    assert long_id.startswith("hdr-") and long_id == request_id_for("x" * 500, b"other body")
    assert request_id_for("bad\x01id", b"{}").startswith("hdr-")
