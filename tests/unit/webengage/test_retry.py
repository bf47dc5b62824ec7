"""RetryPolicy: the classification table, backoff bounds and Retry-After parsing."""

from __future__ import annotations

import random

import httpx
import orjson
import pytest

from etl.webengage import RetryPolicy, parse_retry_after
from etl.webengage.retry import AUTH_HINT, NOT_FOUND_HINT

from .fakes import error_body, make_settings

QUEUED = orjson.dumps({"response": {"status": "queued"}})


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (201, QUEUED, "accepted"),
        (200, b'{"response": {"status": "SUCCESS"}}', "accepted"),
        (204, b"", "transient"),
        (200, b"[1, 2]", "transient"),
        (200, b'{"response": "queued"}', "transient"),
        (429, b"", "throttled"),
        (500, b"", "transient"),
        (504, b"gateway", "transient"),
        (408, b"", "transient"),
        (400, orjson.dumps(error_body("Error: bad")), "rejected"),
        (413, b"", "rejected"),
        (422, b"", "rejected"),
        (409, b"", "rejected"),
        (401, b"", "terminal"),
        (403, b"", "terminal"),
        (404, b"", "terminal"),
        (301, b"", "terminal"),
    ],
)
def test_classification(status: int, body: bytes, kind: str) -> None:
    assert RetryPolicy(make_settings()).classify(status, body).kind == kind


def test_accepted_statuses_are_configurable() -> None:
    policy = RetryPolicy(make_settings(accepted_statuses="queued"))
    assert policy.classify(200, b'{"response": {"status": "success"}}').kind == "transient"
    assert policy.classify(200, QUEUED).kind == "accepted"


def test_terminal_hints_and_messages() -> None:
    policy = RetryPolicy(make_settings())
    assert policy.classify(401, b"").hint == AUTH_HINT
    not_found = policy.classify(404, orjson.dumps(error_body("Not found")))
    assert (not_found.hint, not_found.message) == (NOT_FOUND_HINT, "Not found")
    assert policy.classify(400, b"<html>secret page</html>").message == "HTTP 400"  # never a raw body


def test_transport_errors_terminal_only_before_first_contact() -> None:
    policy = RetryPolicy(make_settings())
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    assert policy.classify_error(refused, first_contact=True).kind == "terminal"
    assert policy.classify_error(refused, first_contact=False).kind == "transient"
    assert policy.classify_error(httpx.ReadTimeout("t"), first_contact=True).kind == "transient"
    assert policy.classify_error(httpx.UnsupportedProtocol("ftp"), first_contact=False).kind == "terminal"


def test_backoff_is_full_jitter_under_the_exponential_cap() -> None:
    policy = RetryPolicy(make_settings(backoff_base_s=0.5, backoff_max_s=10), random.Random(3))
    for attempt in range(12):
        cap = min(10.0, 0.5 * 2**attempt)
        draws = [policy.backoff(attempt) for _ in range(200)]
        assert all(0 <= d <= cap for d in draws)
        assert max(draws) > 0.8 * cap and min(draws) < 0.2 * cap  # spread over the whole range


def test_throttle_delay() -> None:
    policy = RetryPolicy(make_settings(backoff_max_s=30))
    boundary = 1_800_000_000.0
    assert policy.throttle_delay("7", boundary + 50) == 7
    assert policy.throttle_delay(None, boundary + 50) == pytest.approx(10)
    assert policy.throttle_delay("soon", boundary + 10) == 30  # unreadable: minute boundary, capped
    assert policy.throttle_delay(None, boundary) == 30  # on a boundary: the next one, capped


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 1.5 ", 1.5),
        ("-3", 0.0),
        ("nan", None),
        ("soon", None),
        ("Fri, 15 Jan 2027 08:00:30 GMT", 30.0),
        ("Fri, 15 Jan 2027 07:59:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
    assert parse_retry_after(value, now) == expected
