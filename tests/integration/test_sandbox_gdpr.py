"""The sandbox's GDPR endpoint over real HTTP: strict bodies (one identity, required fields), its own 100/min
budget, idempotent request ids, the erased profile, and the status check."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from etl.webengage import gdpr as client_gdpr
from etl.webengage.models import Fetched
from tests.helpers.sandbox import shared_sandbox_fixtures
from webengage_dev.sandbox import SandboxConfig, SandboxServer

KEY = "gdpr-test-key"
LICENSE = "in~58adcc11"
DEFAULTS = SandboxConfig(license_code=LICENSE, api_key=KEY)
PATH = f"/v1/accounts/{LICENSE}/opengdpr_requests"


server, sandbox, client = shared_sandbox_fixtures(DEFAULTS)


def body(user_id: str = "u-1", request_id: str | None = None, **changes: Any) -> dict[str, Any]:
    rid = request_id or client_gdpr.subject_request_id(user_id, "v1")
    raw = client_gdpr.request_body(user_id, request_id=rid, submitted=datetime(2026, 12, 1, tzinfo=UTC))
    doc: dict[str, Any] = orjson.loads(raw)
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not None}


def test_an_erasure_removes_the_profile_and_reports_its_status(client: httpx.Client, sandbox: SandboxServer) -> None:
    client.post(f"/v1/accounts/{LICENSE}/users", json={"userId": "u-1", "firstName": "Ada"}).raise_for_status()
    client.post(f"/v1/accounts/{LICENSE}/events", json={"userId": "u-1", "eventName": "Seen"}).raise_for_status()
    sent = body("u-1")
    answer = client.post(PATH, json=sent)
    assert answer.status_code == 201
    ack = answer.json()
    assert ack["subject_request_id"] == sent["subject_request_id"] and ack["controller_id"] == LICENSE
    assert sandbox.store.get_user("u-1") is None and sandbox.store.events(user_id="u-1") == []
    assert sandbox.stats()["erased_users"] == 1 and sandbox.stats()["violations"] == 0

    status = client.get(f"{PATH}/{sent['subject_request_id']}")
    assert status.status_code == 200 and status.json()["request_status"] == "completed"
    parsed = client_gdpr.remote_status(Fetched(status.status_code, status.json()))
    assert parsed == "completed"
    missing = client.get(f"{PATH}/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404
    assert client_gdpr.remote_status(Fetched(404, missing.json())) == "unknown"


def test_a_repeated_request_id_is_acknowledged_not_recorded_twice(client: httpx.Client, sandbox: SandboxServer) -> None:
    sent = body("u-2")
    assert client.post(PATH, json=sent).status_code == 201
    assert client.post(PATH, json=sent).status_code == 201
    stats = sandbox.stats()
    assert stats["gdpr_requests"] == 1 and stats["gdpr_duplicates"] == 1
    other = body("u-3", request_id=sent["subject_request_id"])
    refused = client.post(PATH, json=other)
    assert refused.status_code == 400 and "already used" in refused.json()["response"]["message"]


def test_pending_until_completion(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.update_config(gdpr_completion_s=3600)
    sent = body("u-4")
    client.post(PATH, json=sent).raise_for_status()
    assert client.get(f"{PATH}/{sent['subject_request_id']}").json()["request_status"] == "pending"


@pytest.mark.parametrize(
    ("changes", "rule"),
    [
        ({"subject_identities": []}, "one_identity"),
        (
            {
                "subject_identities": [
                    {"identity_type": "cuid", "identity_value": "a", "identity_format": "raw"},
                    {"identity_type": "cuid", "identity_value": "b", "identity_format": "raw"},
                ]
            },
            "one_identity",
        ),
        ({"subject_request_type": "delete"}, "invalid_field"),
        ({"subject_request_id": None}, "missing_field"),
        ({"submitted_time": "yesterday"}, "invalid_field"),
        (
            {"subject_identities": [{"identity_type": "email", "identity_value": "a@b.c", "identity_format": "raw"}]},
            "invalid_field",
        ),
        (
            {"subject_identities": [{"identity_type": "cuid", "identity_value": "x" * 101, "identity_format": "raw"}]},
            "invalid_field",
        ),
        ({"subject_identities": [{"identity_type": "cuid", "identity_value": "a"}]}, "missing_field"),
        ({"userId": "a"}, "unknown_field"),
    ],
)
def test_strict_bodies_are_refused_with_a_violation(
    client: httpx.Client, sandbox: SandboxServer, changes: dict[str, Any], rule: str
) -> None:
    answer = client.post(PATH, json=body("u-5", **changes))
    assert answer.status_code == 400
    assert rule in sandbox.stats()["violations_by_rule"]
    assert sandbox.stats()["gdpr_requests"] == 0


def test_its_own_budget_answers_429_past_100_a_minute(client: httpx.Client, sandbox: SandboxServer) -> None:
    sandbox.update_config(gdpr_rpm=3)
    codes = [client.post(PATH, json=body(f"u-{i}")).status_code for i in range(4)]
    assert codes == [201, 201, 201, 429]
    # the status check counts against the same budget; the bulk endpoints do not
    assert client.get(f"{PATH}/{body('u-0')['subject_request_id']}").status_code == 429
    bulk = client.post(f"/v1/accounts/{LICENSE}/bulk-users", json={"users": [{"userId": "x"}]})
    assert bulk.status_code == 201
    assert SandboxConfig().gdpr_rpm == 100


def test_wrong_key_and_license(sandbox: SandboxServer) -> None:
    with httpx.Client(base_url=sandbox.url, headers={"Authorization": "Bearer nope"}) as http:
        assert http.post(PATH, json=body()).status_code == 401
        assert http.post("/v1/accounts/~1/opengdpr_requests", json=body()).status_code == 404
