"""The pieces of erasures that need no server: the GDPR body and request id, status parsing, the OpenGDPR
acknowledgement, the ``[deletions]`` mapping table and the new settings."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from etl.config import Settings
from etl.errors import ConfigError
from etl.mappings.users import user_mapping_from_dict
from etl.webengage import gdpr
from etl.webengage.models import Fetched
from etl.webengage.options import ClientOptions
from etl.webengage.retry import RetryPolicy


def test_request_id_is_stable_per_user_and_deletion() -> None:
    first = gdpr.subject_request_id("u-1", "2026-11-01T00:00:00")
    assert first == gdpr.subject_request_id("u-1", "2026-11-01T00:00:00")
    assert first != gdpr.subject_request_id("u-1", "2026-11-02T00:00:00")  # re-created, deleted again
    assert first != gdpr.subject_request_id("u-2", "2026-11-01T00:00:00")
    assert [len(p) for p in first.split("-")] == [8, 4, 4, 4, 12]


def test_body_is_one_identity_of_type_cuid() -> None:
    submitted = datetime(2026, 12, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    body = orjson.loads(gdpr.request_body("u-1", request_id="r-1", submitted=submitted))
    assert body == {
        "subject_request_id": "r-1",
        "subject_request_type": "erasure",
        "submitted_time": "2026-12-01T00:00:00Z",
        "subject_identities": [{"identity_type": "cuid", "identity_value": "u-1", "identity_format": "raw"}],
    }


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (Fetched(200, {"request_status": "Completed"}), "completed"),
        (Fetched(200, {"response": {"request_status": "in-progress"}}), "in_progress"),
        (Fetched(200, {"request_status": "weird"}), None),
        (Fetched(404, None), "unknown"),
        (Fetched(503, None), None),
        (Fetched(None, None), None),
        (Fetched(200, None), None),
    ],
)
def test_remote_status(answer: Fetched, expected: str | None) -> None:
    assert gdpr.remote_status(answer) == expected


class _Key:
    def reveal(self) -> str:
        return "k"


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ({"subject_request_id": "r-1", "controller_id": "x"}, "accepted"),
        ({"response": {"subject_request_id": "r-1"}}, "accepted"),
        ({"response": {"status": "queued"}}, "accepted"),
        ({"response": {"status": "error", "subject_request_id": "r-1"}}, "transient"),
        ({"subject_request_id": ""}, "transient"),
    ],
)
def test_an_opengdpr_acknowledgement_counts_as_accepted(body: dict[str, Any], kind: str) -> None:
    policy = RetryPolicy(ClientOptions(license_code="~1", api_key=_Key()))
    assert policy.classify(201, orjson.dumps(body)).kind == kind


def _mapping(deletions: Any) -> Any:
    return user_mapping_from_dict({"source": {"query": "users/users.sql"}, "deletions": deletions}).deletions


def test_deletions_default_shorthand_and_table() -> None:
    assert user_mapping_from_dict({}).deletions.mode == "ignore"
    assert not user_mapping_from_dict({}).deletions.erase
    short = _mapping("erase")
    assert short.erase and short.absent and short.sources == ("absent",)
    listed = _mapping({"mode": "erase", "table": "gdpr.deleted_users", "column": "is_deleted"})
    assert not listed.absent and listed.sources == ("column:is_deleted", "table:gdpr.deleted_users")
    both = _mapping({"mode": "erase", "query": "users/deleted.sql", "absent": True})
    assert both.absent and both.sources == ("absent", "query:users/deleted.sql")


@pytest.mark.parametrize(
    ("deletions", "message"),
    [
        ("delete", "expected ignore or erase"),
        ({"mode": "erase", "table": "a;drop table x"}, "table name"),
        ({"mode": "erase", "table": "t", "query": "q.sql"}, "not both"),
        ({"mode": "erase", "colum": "x"}, "unknown keys: colum"),
    ],
)
def test_bad_deletions_fail_fast(deletions: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _mapping(deletions)


def test_erasure_settings() -> None:
    s = Settings.from_mapping({}, credentials=False)
    assert (s.gdpr_rpm, s.gdpr_path, s.max_erasure_share, s.erasure_status_checks) == (
        100,
        "opengdpr_requests",
        0.01,
        100,
    )
    for bad in ({"max_erasure_share": 1.5}, {"gdpr_path": "../x"}, {"gdpr_rpm": 0}, {"erasure_status_checks": -1}):
        with pytest.raises(ConfigError):
            Settings.from_mapping(bad, credentials=False)
    assert Settings.from_env({"WEBENGAGE_MAX_ERASURE_SHARE": "0.05"}, credentials=False).max_erasure_share == 0.05


def test_the_gdpr_endpoint_has_its_own_budget_and_a_configurable_path() -> None:
    from etl.webengage.client import WebEngageClient

    options = ClientOptions(license_code="~1", api_key=_Key(), gdpr_rpm=100, gdpr_path="/gdpr/v2/")
    with WebEngageClient(options) as client:
        assert client.budgets.rate_per_s("opengdpr_requests") == pytest.approx(100 / 60 * 0.98)
        assert client.budgets["opengdpr_requests"] is not client.budgets["users"]
        assert client.path_of("opengdpr_requests") == "gdpr/v2" and client.path_of("users") == "users"
