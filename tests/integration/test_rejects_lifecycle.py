"""Rejects: fixed in the warehouse -> accepted next run; transient -> re-driven -> dead after N -> reopened."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.config import Settings
from etl.mappings.users import user_mapping_from_dict
from etl.pipelines import users
from etl.state.store import StateStore
from etl.warehouse.engine import make_engine
from tests.helpers.runs import failed_delivery
from tests.helpers.sandbox import data_requests, sandbox_fixture, sandbox_settings
from webengage_dev.sandbox import SandboxServer

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
KEY = "rejects-test-key-1234"
QUERY = Path(__file__).with_name("people.sql")


@pytest.fixture
def warehouse(tmp_path: Path) -> str:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE people (id VARCHAR, email VARCHAR, phone VARCHAR, plan VARCHAR)"))
        conn.execute(
            sa.text(
                "INSERT INTO people VALUES ('a', 'a@x.io', '98765 43210', 'pro'),"
                " ('b', 'not-an-email', NULL, 'free'), ('c', 'c@x.io', 'call me', 'free')"
            )
        )
    engine.dispose()
    return url


sandbox = sandbox_fixture(KEY, bulk_users_rpm=60_000)


def settings_for(sandbox: SandboxServer, url: str, **extra: object) -> Settings:
    return sandbox_settings(sandbox, url, KEY, **({"bulk_users_rpm": 60_000} | extra))


def open_reasons(url: str) -> set[tuple[str, str, str]]:
    with StateStore(make_engine(url)) as store:
        return {(r["row_key"], r["reason"], r["status"]) for r in store.open_rejects("users")}


def run(settings: Settings) -> dict[str, object]:
    mapping = user_mapping_from_dict(
        {
            "source": {"query": str(QUERY), "user_id": "id", "updated_at": "id"},
            "system": {"email": "email", "phone": "phone"},
            "attributes": {"plan": "plan"},
        }
    )
    return users.run(settings, mapping=mapping, clock=lambda: AS_OF)


def test_value_reject_is_resolved_when_fixed_in_the_warehouse(sandbox: SandboxServer, warehouse: str) -> None:
    settings = settings_for(sandbox, warehouse)
    first = run(settings)
    assert first["accepted"] == 3  # bad values are left out, the rows still go
    assert open_reasons(warehouse) == {("b", "invalid_email", "open"), ("c", "invalid_phone", "open")}
    assert run(settings)["requests"] == 0  # unchanged rows: rejects stay open, nothing re-sent
    assert open_reasons(warehouse) == {("b", "invalid_email", "open"), ("c", "invalid_phone", "open")}
    engine = make_engine(warehouse)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE people SET phone = '+14155552671' WHERE id = 'c'"))
    engine.dispose()
    fixed = run(settings)
    assert fixed["accepted"] == 1 and fixed["requests"] == 1
    assert open_reasons(warehouse) == {("b", "invalid_email", "open")}
    profile = sandbox.store.get_profile("c")
    assert profile is not None and profile["phone"] == "+14155552671"


def test_transient_failures_are_redriven_then_dead_then_reopened(sandbox: SandboxServer, warehouse: str) -> None:
    sandbox.update_config(error_5xx_rate=1.0)
    settings = settings_for(sandbox, warehouse, max_retries=0, max_reject_attempts=2)
    for attempt, status in ((1, "open"), (2, "dead")):
        summary = failed_delivery(run, settings)  # nothing accepted: the run is red
        assert summary["rejected_by_reason"] == {"transient_failure": 3}, attempt
        assert {s for _k, r, s in open_reasons(warehouse) if r == "transient_failure"} == {status}
    requests_before = data_requests(sandbox.stats())
    gave_up = run(settings)
    assert gave_up["rejected_by_reason"] == {"dead_after_retries": 3} and gave_up["requests"] == 0
    assert data_requests(sandbox.stats()) == requests_before  # dead rows are not sent
    assert gave_up["extracted"] == gave_up["unchanged"] + gave_up["accepted"] + gave_up["rejected"]

    sandbox.update_config(error_5xx_rate=0.0)
    with StateStore(make_engine(warehouse)) as store:
        assert store.reopen_dead("users") == 3
    back = run(settings)
    assert back["accepted"] == 3
    assert not [r for r in open_reasons(warehouse) if r[1] == "transient_failure"]
