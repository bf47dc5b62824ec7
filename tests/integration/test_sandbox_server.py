"""The sandbox as a real HTTP server on loopback: auth, limits, faults, dedupe and inspection."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.helpers.sandbox import shared_sandbox_fixtures
from webengage_dev.sandbox import SandboxConfig, SandboxServer
from webengage_dev.sandbox.runner import SandboxProcess

KEY = "test-key"
LICENSE = "~2024bb40"
DEFAULTS = SandboxConfig(license_code=LICENSE, api_key=KEY)


server, sandbox, client = shared_sandbox_fixtures(DEFAULTS)


def post(client: httpx.Client, endpoint: str, body: Any, **headers: str) -> httpx.Response:
    return client.post(f"/v1/accounts/{LICENSE}/{endpoint}", json=body, headers=headers)


def users(n: int, prefix: str = "u") -> dict[str, Any]:
    return {"users": [{"userId": f"{prefix}{i}", "firstName": "A"} for i in range(n)]}


def test_wrong_key_is_401_and_wrong_license_is_404(client: httpx.Client, sandbox: SandboxServer) -> None:
    wrong_key = client.post(
        f"/v1/accounts/{LICENSE}/users", json={"userId": "u"}, headers={"Authorization": "Bearer nope"}
    )
    assert wrong_key.status_code == 401
    missing = httpx.post(f"{sandbox.url}/v1/accounts/{LICENSE}/users", json={"userId": "u"})
    assert missing.status_code == 401
    wrong_license = client.post("/v1/accounts/other/users", json={"userId": "u"})
    assert wrong_license.status_code == 404
    assert wrong_license.json() == {"response": {"status": "error", "message": "Invalid license code"}}
    assert sandbox.store.get_user("u") is None


def test_queued_and_merge_visible_through_inspection(client: httpx.Client) -> None:
    first = post(client, "users", {"userId": "u1", "firstName": "Ada", "attributes": {"plan": "gold", "n": 1}})
    assert first.status_code == 201
    assert first.json() == {"response": {"status": "queued"}}
    assert first.headers["X-RateLimit-Limit"] == "5000"
    assert first.headers["X-RateLimit-Remaining"] == "4999"
    post(client, "users", {"userId": "u1", "city": "Pune", "attributes": {"n": 2}})
    record = client.get("/_sandbox/users/u1").json()
    assert record["profile"] == {
        "userId": "u1",
        "firstName": "Ada",
        "city": "Pune",
        "attributes": {"plan": "gold", "n": 2},
    }
    assert record["updates"] == 2
    assert client.get("/_sandbox/users/missing").status_code == 404
    listing = client.get("/_sandbox/users", params={"limit": 10}).json()
    assert listing["total"] == 1 and listing["users"][0]["id"] == "u1"


def test_events_are_recorded_and_filterable(client: httpx.Client) -> None:
    event = {
        "userId": "u1",
        "eventName": "Added",
        "eventTime": "2026-01-01T00:00:00+0000",
        "eventData": {"v": 1},
    }
    assert post(client, "events", event, **{"x-request-id": "e1"}).status_code == 201
    bulk = {"events": [{**event, "eventName": "Viewed"}, {**event, "userId": "u2"}]}
    assert post(client, "bulk-events", bulk).status_code == 201
    found = client.get("/_sandbox/events", params={"user_id": "u1"}).json()
    assert [e["event"]["eventName"] for e in found["events"]] == ["Added", "Viewed"]
    assert found["events"][0]["request_id"] == "e1"
    assert client.get("/_sandbox/events", params={"event_name": "Added", "limit": 1}).json()["count"] == 1


def test_bulk_of_26_is_400_with_violation(client: httpx.Client, sandbox: SandboxServer) -> None:
    response = post(client, "bulk-users", users(26))
    assert response.status_code == 400
    assert response.json()["response"]["status"] == "error"
    assert sandbox.stats()["violations_by_rule"] == {"oversize_bulk": 1}
    assert sandbox.stats()["users"] == 0
    assert post(client, "bulk-users", users(25)).status_code == 201
    assert sandbox.stats()["items_accepted"] == {"bulk-users": 25}


def test_oversize_bulk_accepted_when_configured(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.update_config(oversize_bulk="accept")
    assert post(client, "bulk-users", users(26)).status_code == 201
    assert sandbox.stats()["users"] == 26
    assert sandbox.stats()["violations_by_rule"] == {"oversize_bulk": 1}


def test_bulk_invalid_item_drop_or_reject(client: httpx.Client, sandbox: SandboxServer) -> None:
    body = {"users": [{"userId": "ok"}, {"firstName": "no id"}, "junk"]}
    assert post(client, "bulk-users", body).status_code == 201
    assert sandbox.stats()["users"] == 1
    assert sandbox.stats()["violations_by_rule"] == {"missing_id": 1, "invalid_item": 1}
    sandbox.reset()
    sandbox.update_config(bulk_invalid_item="reject_batch")
    assert post(client, "bulk-users", body).status_code == 400
    assert sandbox.stats()["users"] == 0


def test_single_without_ids_is_400(client: httpx.Client, sandbox: SandboxServer) -> None:
    response = post(client, "users", {"firstName": "Ada"})
    assert response.status_code == 400
    assert response.json()["response"]["message"] == "Error: userId and anonymousId cannot be empty."
    assert sandbox.stats()["violations_by_rule"] == {"missing_id": 1}


@pytest.mark.parametrize("retry_after", [True, False])
def test_429_after_limit(client: httpx.Client, sandbox: SandboxServer, retry_after: bool) -> None:
    sandbox.update_config(users_rpm=5, retry_after=retry_after)
    statuses = [post(client, "users", {"userId": f"u{i}"}).status_code for i in range(5)]
    assert statuses == [201] * 5
    throttled = post(client, "users", {"userId": "late"})
    assert throttled.status_code == 429
    assert throttled.json() == {"response": {"status": "error", "message": "Rate limit exceeded"}}
    assert throttled.headers["X-RateLimit-Limit"] == "5"
    assert throttled.headers["X-RateLimit-Remaining"] == "0"
    if retry_after:
        assert 1 <= int(throttled.headers["Retry-After"]) <= 60
    else:
        assert "Retry-After" not in throttled.headers
    assert post(client, "events", {"userId": "u", "eventName": "E"}).status_code == 201  # own budget
    stats = sandbox.stats()
    assert stats["throttled"] == 1 and stats["responses"]["429"] == 1
    assert sandbox.store.get_user("late") is None


def test_shared_bulk_budget(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.update_config(bulk_users_rpm=2, shared_bulk_budget=True)
    assert post(client, "bulk-users", users(1)).status_code == 201
    assert post(client, "bulk-events", {"events": [{"userId": "u", "eventName": "E"}]}).status_code == 201
    assert post(client, "bulk-events", {"events": []}).status_code == 429


def test_request_id_dedupe(client: httpx.Client, sandbox: SandboxServer) -> None:
    event = {"userId": "u", "eventName": "E"}
    assert post(client, "events", event, **{"x-request-id": "abc"}).status_code == 201
    again = post(client, "events", event, **{"x-request-id": "abc"})
    assert again.status_code == 200 and again.json() == {"response": {"status": "queued"}}
    assert len(sandbox.store.events()) == 1
    assert sandbox.stats()["deduplicated_requests"] == 1
    assert sandbox.stats()["duplicate_events"] == 0
    sandbox.update_config(dedupe_bulk_request_ids=False)
    for _ in range(2):
        post(client, "bulk-events", {"events": [event]}, **{"x-request-id": "bulk1"})
    assert len(sandbox.store.events()) == 3
    assert sandbox.stats()["duplicate_events"] == 2  # what an exactly-once test looks for


def test_fault_5xx_stores_nothing(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.update_config(error_5xx_rate=1.0)
    response = post(client, "users", {"userId": "u"}, **{"x-request-id": "r"})
    assert response.status_code == 503
    assert response.json()["response"]["status"] == "error"
    assert sandbox.store.get_user("u") is None
    assert sandbox.stats()["faults"] == {"error_5xx": 1}
    sandbox.update_config(error_5xx_rate=0.0)
    assert post(client, "users", {"userId": "u"}, **{"x-request-id": "r"}).status_code == 201  # not remembered


def test_fault_error_body_with_200(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.update_config(error_body_2xx_rate=1.0)
    response = post(client, "bulk-users", users(2))
    assert response.status_code == 200
    assert response.json() == {"response": {"status": "error", "message": "internal error"}}
    assert sandbox.stats()["users"] == 0


def test_fault_timeouts(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.update_config(timeout_rate=1.0, timeout_sleep_s=0.05)
    assert post(client, "users", {"userId": "u"}).status_code == 504
    assert sandbox.store.get_user("u") is None
    # Stored, then answered too late: the client gives up, then retries with the same request id.
    sandbox.update_config(timeout_rate=0.0, timeout_after_store_rate=1.0, timeout_sleep_s=0.5)
    with pytest.raises(httpx.ReadTimeout):
        client.post(f"/v1/accounts/{LICENSE}/users", json={"userId": "u"}, headers={"x-request-id": "t1"}, timeout=0.1)
    assert sandbox.store.get_user("u") is not None
    sandbox.update_config(timeout_after_store_rate=0.0)
    assert post(client, "users", {"userId": "u"}, **{"x-request-id": "t1"}).status_code == 200
    assert sandbox.store.get_user("u")["updates"] == 1  # type: ignore[index]
    assert sandbox.stats()["faults"] == {"timeout": 1, "timeout_after_store": 1}


def test_throttle_storm_has_no_retry_after(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.update_config(throttle_storm_rate=1.0)
    response = post(client, "users", {"userId": "u"})
    assert response.status_code == 429 and "Retry-After" not in response.headers
    assert sandbox.stats()["throttled"] == 1
    sandbox.update_config(throttle_storm_rate=0.0)
    assert post(client, "users", {"userId": "u"}).headers["X-RateLimit-Remaining"] == "4999"  # not counted


def test_latency_is_applied(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.update_config(latency_ms=60.0, jitter_ms=10.0)
    started = time.perf_counter()
    assert post(client, "users", {"userId": "u"}).status_code == 201
    assert time.perf_counter() - started >= 0.045


def test_invalid_json_and_shape_are_400(client: httpx.Client) -> None:
    url = f"/v1/accounts/{LICENSE}/users"
    bad = client.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["response"]["status"] == "error"
    assert post(client, "users", ["not", "an", "object"]).status_code == 400
    assert post(client, "bulk-users", {"users": {"userId": "u"}}).status_code == 400


def test_body_over_max_is_413(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.update_config(max_body_bytes=100)
    assert post(client, "users", {"userId": "u", "firstName": "x" * 200}).status_code == 413


def test_nan_is_a_violation(client: httpx.Client, sandbox: SandboxServer) -> None:
    body = b'{"userId": "u", "attributes": {"score": NaN, "ok": 1}}'
    response = client.post(f"/v1/accounts/{LICENSE}/users", content=body, headers={"x-request-id": "n1"})
    assert response.status_code == 201
    violations = client.get("/_sandbox/violations").json()["violations"]
    assert [(v["rule"], v["field"], v["request_id"]) for v in violations] == [
        ("non_finite_number", "attributes.score", "n1")
    ]
    assert sandbox.store.get_profile("u") == {"userId": "u", "attributes": {"ok": 1}}


def test_stats_counters(client: httpx.Client) -> None:
    post(client, "users", {"userId": "u", "gender": "M"})
    post(client, "bulk-users", users(3))
    client.post("/v1/accounts/other/events", json={})
    stats = client.get("/_sandbox/stats").json()
    assert stats["requests"] == {"users": 1, "bulk-users": 1, "events": 1}
    assert stats["responses"] == {"201": 2, "404": 1}
    assert stats["items_accepted"] == {"users": 1, "bulk-users": 3}
    assert stats["violations"] == 1 and stats["violations_by_rule"] == {"invalid_gender": 1}
    assert stats["users"] == 4
    assert stats["first_request_at"] <= stats["last_request_at"]
    assert client.post("/_sandbox/reset").status_code == 200
    assert client.get("/_sandbox/stats").json()["requests"] == {}


def test_runtime_config_update(client: httpx.Client) -> None:
    updated = client.post("/_sandbox/config", json={"users_rpm": 1, "retry_after": False})
    assert updated.status_code == 200 and updated.json()["users_rpm"] == 1
    assert client.get("/_sandbox/config").json()["retry_after"] is False
    assert post(client, "users", {"userId": "a"}).status_code == 201
    assert post(client, "users", {"userId": "b"}).status_code == 429
    assert client.post("/_sandbox/config", json={"bogus": 1}).status_code == 400
    assert client.post("/_sandbox/config", json={"error_5xx_rate": 2}).status_code == 400
    assert client.get("/_sandbox/health").json() == {"status": "ok"}


def test_sandbox_process_start_stop() -> None:
    with SandboxProcess(SandboxConfig(api_key=KEY)) as process:
        response = httpx.post(
            f"{process.url}/v1/accounts/~99199077/bulk-users",
            json=users(2),
            headers={"Authorization": f"Bearer {KEY}"},
        )
        assert response.status_code == 201
        assert process.stats()["items_accepted"] == {"bulk-users": 2}
        url = process.url
    assert process.returncode == 0  # SIGTERM drains and exits cleanly
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{url}/_sandbox/health", timeout=1.0)
