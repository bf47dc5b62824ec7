"""WebEngageClient.send: classification, retries, 429 handling, headers, stats, builders."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import orjson
import pytest

from etl.config import Secret
from etl.errors import TerminalAPIError
from etl.webengage import (
    FakeClock,
    SendRequest,
    UserPayload,
    deterministic_request_id,
)
from etl.webengage.client import WebEngageClient
from etl.webengage.options import ClientOptions
from etl.webengage.retry import AUTH_HINT, HOST_HINT, NOT_FOUND_HINT
from tests.helpers.requests import bulk_events_request, bulk_users_request, event_request

from .fakes import KEY, FakeAPI, a_user, error_body, fail, make_client, reply

MINUTE = 1_800_000_000.0  # a minute boundary


@pytest.mark.parametrize(
    ("status", "body"),
    [(201, {"response": {"status": "queued"}}), (200, {"response": {"status": "success"}}), (202, None)],
)
def test_2xx_with_accepted_status_is_accepted(status: int, body: object) -> None:
    api = FakeAPI(reply(status, body))
    users: list[UserPayload] = [{"userId": "u1"}, {"userId": "u2", "firstName": "Ana"}]
    with make_client(api) as client:
        result = client.send(bulk_users_request(users, "rid-7"))
        stats = client.stats.snapshot()
    assert (result.outcome, result.status_code, result.attempts, result.throttled) == (
        "accepted",
        status,
        1,
        0,
    )
    assert result.accepted and result.message is None
    (sent,) = api.requests
    assert sent.method == "POST"
    assert str(sent.url) == "http://we.test/v1/accounts/~2024bb40/bulk-users"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert orjson.loads(sent.content) == {"users": users}
    assert stats["accepted"] == 1 and stats["items_accepted"] == 2 and stats["items_sent"] == 2
    assert stats["requests"] == 1 and stats[f"status_{status}"] == 1 and stats["bytes_sent"] == len(sent.content)


@pytest.mark.parametrize(
    "body",
    [
        orjson.dumps(error_body("Error: something failed")),
        b"OK",
        b"{}",
        b"",
        b'{"response": {"status": "failed"}}',
    ],
)
def test_2xx_without_accepted_status_is_retried_then_transient(body: bytes) -> None:
    # Once the API has judged a request, an odd 2xx is a hiccup of WebEngage's: retried (before that, a
    # non-WebEngage 2xx is terminal: test_a_non_webengage_answer_before_any_verdict_is_terminal).
    api = FakeAPI(reply(201), reply(200, content=body))
    clock = FakeClock()
    client = make_client(api, clock=clock, max_retries=2)
    assert client.send(a_user()).outcome == "accepted"
    result = client.send(a_user())
    assert result.outcome == "transient"
    assert result.attempts == 3 and len(api.requests) == 4
    assert len(clock.sleeps) == 2  # two backoffs between three attempts
    assert result.message is not None and "2xx without an accepted status" in result.message


def test_2xx_error_then_queued_is_accepted() -> None:
    api = FakeAPI(reply(200, error_body("Error: busy")), reply(201))
    result = make_client(api).send(a_user())
    assert result.outcome == "accepted" and result.attempts == 2


def test_5xx_is_retried_with_jittered_exponential_backoff_then_accepted() -> None:
    api = FakeAPI(reply(500, error_body("oops")), reply(502, content=b"<html>"), reply(503), reply(201))
    clock = FakeClock()
    client = make_client(api, clock=clock, rng=random.Random(7), backoff_base_s=0.5, backoff_max_s=1.5)
    result = client.send(a_user())
    expected_rng = random.Random(7)
    expected = [min(1.5, 0.5 * 2**i) * expected_rng.random() for i in range(3)]
    assert clock.sleeps == pytest.approx(expected)
    assert all(0 <= s <= cap for s, cap in zip(clock.sleeps, [0.5, 1.0, 1.5], strict=True))
    assert (result.outcome, result.attempts, result.status_code) == ("accepted", 4, 201)
    assert result.elapsed_s == pytest.approx(sum(expected))
    assert client.stats.snapshot()["retries"] == 3


@pytest.mark.parametrize("max_retries", [0, 2])
def test_retries_exhausted_is_transient(max_retries: int) -> None:
    api = FakeAPI(reply(503, error_body("Service Unavailable")))
    client = make_client(api, max_retries=max_retries)
    result = client.send(a_user())
    assert result.outcome == "transient" and result.status_code == 503
    assert result.attempts == max_retries + 1 == len(api.requests)
    assert result.message == "Service Unavailable"
    stats = client.stats.snapshot()
    assert stats["transient"] == 1 and stats["retries"] == max_retries and stats["accepted"] == 0


def test_transport_errors_after_first_answer_are_transient() -> None:
    api = FakeAPI(reply(201), fail(httpx.ConnectError, "refused"), fail(httpx.ReadTimeout, "slow"), reply(201))
    client = make_client(api)
    assert client.send(a_user(1)).outcome == "accepted"
    result = client.send(a_user(2))
    assert result.outcome == "accepted" and result.attempts == 3
    assert client.stats.snapshot()["status_transport_error"] == 2


def test_timeouts_exhausted_are_transient_with_no_status() -> None:
    api = FakeAPI(fail(httpx.ReadTimeout, "timed out"))
    result = make_client(api, max_retries=1).send(a_user())
    assert (result.outcome, result.status_code, result.attempts) == ("transient", None, 2)
    assert result.message == "ReadTimeout: timed out"


def test_429_with_retry_after_waits_and_is_not_an_attempt() -> None:
    api = FakeAPI(reply(429, error_body("Too many"), headers={"Retry-After": "7"}), reply(201))
    clock = FakeClock()
    client = make_client(api, clock=clock)
    result = client.send(a_user())
    assert clock.sleeps == pytest.approx([7.0])
    assert (result.outcome, result.attempts, result.throttled) == ("accepted", 1, 1)
    assert result.elapsed_s == pytest.approx(7.0)
    stats = client.stats.snapshot()
    assert stats["throttled"] == 1 and stats["retries"] == 0 and stats["requests"] == 2


def test_429_with_http_date_retry_after() -> None:
    clock = FakeClock(start=MINUTE + 5)
    when = format_datetime(datetime.fromtimestamp(MINUTE + 35, UTC), usegmt=True)
    api = FakeAPI(reply(429, headers={"Retry-After": when}), reply(201))
    assert make_client(api, clock=clock).send(a_user()).outcome == "accepted"
    assert clock.sleeps == pytest.approx([30.0])


@pytest.mark.parametrize(("backoff_max_s", "expected"), [(60.0, 45.0), (20.0, 20.0)])
def test_429_without_retry_after_waits_to_minute_boundary_capped(backoff_max_s: float, expected: float) -> None:
    clock = FakeClock(start=MINUTE + 15)
    api = FakeAPI(reply(429), reply(201))
    result = make_client(api, clock=clock, backoff_max_s=backoff_max_s).send(a_user())
    assert result.outcome == "accepted"
    assert clock.sleeps == pytest.approx([expected])


def test_429_storm_longer_than_max_throttle_wait_is_transient() -> None:
    api = FakeAPI(reply(429, headers={"Retry-After": "100"}))
    clock = FakeClock()
    client = make_client(api, clock=clock, max_throttle_wait_s=250)
    result = client.send(a_user())
    assert (result.outcome, result.attempts, result.throttled, result.status_code) == ("transient", 0, 3, 429)
    assert clock.sleeps == pytest.approx([100.0, 100.0])  # a third 100 s wait would pass 250 s
    assert len(api.requests) == 3
    assert client.stats.snapshot()["throttled"] == 3


def test_429_pauses_the_whole_budget_not_only_the_request() -> None:
    """A request that gives up on a 429 still leaves the budget paused for the next one."""
    api = FakeAPI(reply(429, headers={"Retry-After": "7"}), reply(201))
    clock = FakeClock()
    client = make_client(api, clock=clock, max_throttle_wait_s=0)
    assert client.send(a_user(1)).outcome == "transient"
    assert clock.sleeps == []
    assert client.send(a_user(2)).outcome == "accepted"
    assert clock.sleeps == pytest.approx([7.0])


def test_ratelimit_remaining_zero_waits_to_minute_boundary() -> None:
    clock = FakeClock(start=MINUTE + 15)
    api = FakeAPI(reply(201, headers={"X-RateLimit-Limit": "500", "X-RateLimit-Remaining": "0"}), reply(201))
    client = make_client(api, clock=clock)
    client.send(a_user(1))
    assert clock.sleeps == []
    assert client.send(a_user(2)).outcome == "accepted"
    assert clock.sleeps == pytest.approx([45.0])
    assert client.budgets["users"].last_limit == 500


@pytest.mark.parametrize("status", [400, 413, 422])
def test_data_errors_are_rejected_without_retry(status: int) -> None:
    message = "Error: userId and anonymousId cannot be empty."
    api = FakeAPI(reply(status, error_body(message)))
    clock = FakeClock()
    client = make_client(api, clock=clock)
    result = client.send(a_user())
    assert (result.outcome, result.status_code, result.attempts) == ("rejected", status, 1)
    assert result.message == message
    assert len(api.requests) == 1 and clock.sleeps == []
    assert client.stats.snapshot()["rejected"] == 1


@pytest.mark.parametrize(("status", "hint"), [(401, AUTH_HINT), (403, AUTH_HINT), (404, NOT_FOUND_HINT)])
def test_auth_and_not_found_are_terminal_after_one_request(status: int, hint: str) -> None:
    # The fake echoes the key back, as a careless server might: it must still never surface.
    api = FakeAPI(reply(status, error_body(f"invalid token {KEY}")))
    client = make_client(api)
    with pytest.raises(TerminalAPIError) as caught:
        client.send(a_user(request_id="rid-9"))
    err = caught.value
    assert len(api.requests) == 1
    assert err.status_code == status and err.hint == hint
    assert hint in str(err) and "rid-9" in str(err) and "bulk" not in err.endpoint
    assert "/v1/accounts/~2024bb40/users" in err.endpoint
    assert KEY not in str(err) and KEY not in repr(err)
    assert client.stats.snapshot()["terminal"] == 1


def test_400_naming_the_license_is_terminal() -> None:
    api = FakeAPI(reply(400, error_body("Invalid license code")))
    with pytest.raises(TerminalAPIError, match="WEBENGAGE_LICENSE_CODE"):
        make_client(api).send(a_user())


def test_connection_refused_on_first_request_is_terminal() -> None:
    api = FakeAPI(fail(httpx.ConnectError, "[Errno 111] Connection refused"))
    clock = FakeClock()
    with pytest.raises(TerminalAPIError) as caught:
        make_client(api, clock=clock).send(a_user())
    assert len(api.requests) == 1 and clock.sleeps == []
    assert caught.value.hint == HOST_HINT and caught.value.status_code is None
    assert "Connection refused" in str(caught.value)


def test_x_request_id_is_sent_and_stable_across_retries() -> None:
    rid = deterministic_request_id(["u2", "u1"])
    api = FakeAPI(reply(500), reply(429, headers={"Retry-After": "1"}), reply(201))
    make_client(api).send(bulk_users_request([{"userId": "u1"}, {"userId": "u2"}], rid))
    assert [r.headers.get("x-request-id") for r in api.requests] == [rid, rid, rid]


def test_request_id_on_bulk_can_be_switched_off() -> None:
    api = FakeAPI(reply(201))
    client = make_client(api, request_id_on_bulk=False)
    client.send(bulk_events_request([{"eventName": "Signed Up", "userId": "u1"}], "rid-bulk"))
    client.send(event_request({"eventName": "Signed Up", "userId": "u1"}, "rid-one"))
    client.send(a_user(request_id=None))
    assert [r.headers.get("x-request-id") for r in api.requests] == [None, "rid-one", None]


def test_deterministic_request_id() -> None:
    one = deterministic_request_id(["b", "a", "c"])
    assert one == deterministic_request_id(iter(["c", "a", "b"]))
    assert len(one) == 32 and int(one, 16) >= 0
    assert one != deterministic_request_id(["a", "b"])
    assert deterministic_request_id(["ab"]) != deterministic_request_id(["a", "b"])  # separator matters


def test_builders_serialize_with_orjson_and_cap_bulk_items() -> None:
    users: list[UserPayload] = [{"userId": f"u{i}"} for i in range(25)]
    request = bulk_users_request(users, "r", key="batch-1")
    assert request.endpoint == "bulk-users" and request.items == 25 and request.key == "batch-1"
    assert request.body == orjson.dumps({"users": users})
    with pytest.raises(ValueError, match="1 to 25"):
        bulk_users_request([*users, {"userId": "u25"}], "r")
    with pytest.raises(ValueError):
        bulk_events_request([], "r")
    event = event_request({"eventName": "Bought", "eventData": {"amount": 3}})
    assert (event.endpoint, event.items, event.request_id) == ("events", 1, None)
    assert "Bought" not in repr(event)  # bodies carry personal data: never in reprs


def test_oversized_body_is_rejected_without_a_request() -> None:
    api = FakeAPI(reply(201))
    client = make_client(api, max_batch_bytes=1024)
    big = SendRequest("users", b'{"userId": "' + b"x" * 2000 + b'"}', "r", 1)
    result = client.send(big)
    assert result.outcome == "rejected" and result.attempts == 0
    assert result.message is not None and "max_batch_bytes" in result.message
    assert api.requests == []


def test_repr_shows_host_and_license_only() -> None:
    client = make_client(FakeAPI())
    assert repr(client) == "WebEngageClient(host='we.test', license_code='~2024bb40')"


def test_context_manager_closes_the_http_client() -> None:
    api = FakeAPI()
    with make_client(api) as client:
        client.send(a_user())
    with pytest.raises(RuntimeError):
        client.send(a_user())


def test_429_retry_after_wins_over_its_remaining_zero() -> None:
    clock = FakeClock(start=MINUTE + 15)
    headers = {"Retry-After": "7", "X-RateLimit-Limit": "500", "X-RateLimit-Remaining": "0"}
    api = FakeAPI(reply(429, headers=headers), reply(201))
    client = make_client(api, clock=clock)
    assert client.send(a_user()).outcome == "accepted"
    assert clock.sleeps == pytest.approx([7.0])  # not the 45 s to the minute boundary
    assert client.budgets["users"].last_limit == 500


@pytest.mark.parametrize("body", [b"<html><body>Sign in to the Wi-Fi</body></html>", b"OK", b"", b"{}"])
def test_a_non_webengage_answer_before_any_verdict_is_terminal(body: bytes) -> None:
    api = FakeAPI(reply(200, content=body, headers={"content-type": "text/html"}))
    with pytest.raises(TerminalAPIError) as err:
        make_client(api, max_retries=5).send(a_user())
    assert len(api.requests) == 1 and "not WebEngage's" in str(err.value) and "captive portal" in str(err.value)


def test_a_webengage_error_body_before_any_verdict_is_still_retried() -> None:
    api = FakeAPI(reply(200, error_body("Error: busy")), reply(201))
    assert make_client(api).send(a_user()).outcome == "accepted" and len(api.requests) == 2


def test_a_connect_timeout_before_any_verdict_is_terminal_and_after_one_transient() -> None:
    def blackhole(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    api = FakeAPI(blackhole)
    with pytest.raises(TerminalAPIError, match="ConnectTimeout"):
        make_client(api, max_retries=5).send(a_user())
    assert len(api.requests) == 1
    later = FakeAPI(reply(201), blackhole)
    client = make_client(later, max_retries=2)
    assert client.send(a_user()).outcome == "accepted"
    assert client.send(a_user()).outcome == "transient" and len(later.requests) == 4


def test_the_client_stands_alone_on_keyword_options() -> None:
    """No application settings: the account, a limit and the transport, by keyword."""
    api = FakeAPI(reply(201))
    options = ClientOptions(license_code="~2024bb40", api_key=Secret(KEY), base_url="http://we.test", users_rpm=60_000)
    with WebEngageClient(options, transport=httpx.MockTransport(api), clock=FakeClock()) as client:
        assert client.send(a_user()).outcome == "accepted"
    assert str(api.requests[0].url) == "http://we.test/v1/accounts/~2024bb40/users"
    assert KEY not in repr(options) and api.requests[0].headers["authorization"] == f"Bearer {KEY}"
    with pytest.raises(ValueError, match="license code and an API key"):
        ClientOptions(license_code="", api_key=Secret(KEY))
