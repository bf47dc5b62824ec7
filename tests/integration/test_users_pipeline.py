"""The profile sync end to end: demo warehouse (DuckDB file) -> real sandbox server on loopback."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from etl.config import Settings
from etl.errors import TerminalAPIError
from etl.pipelines import users
from etl.state.store import StateStore
from etl.warehouse.engine import make_engine
from tests.helpers.runs import failed_delivery
from tests.helpers.sandbox import sandbox_fixture, sandbox_settings
from tests.helpers.warehouse import AS_OF, warehouse_fixture
from webengage_dev.demo.mutate import change_users
from webengage_dev.sandbox import SandboxServer

KEY = "test-key-do-not-log-123"


warehouse = warehouse_fixture(1500)


sandbox = sandbox_fixture(KEY, bulk_users_rpm=60_000)


def settings_for(sandbox: SandboxServer, warehouse: Path, **extra: Any) -> Settings:
    return sandbox_settings(sandbox, warehouse, KEY, **({"bulk_users_rpm": 60_000, "expected_latency_s": 0.05} | extra))


def valid_user_count(warehouse: Path) -> int:
    engine = make_engine(f"duckdb:///{warehouse}")
    with engine.connect() as conn:
        n = conn.execute(
            sa.text("SELECT count(DISTINCT user_id) FROM users WHERE user_id IS NOT NULL AND length(user_id) <= 100")
        ).scalar_one()
    engine.dispose()
    return int(n)


def state_count(warehouse: Path) -> int:
    with StateStore(make_engine(f"duckdb:///{warehouse}")) as store:
        return store.count_users()


def test_first_run_sends_every_valid_user_with_no_violation(sandbox: SandboxServer, warehouse: Path) -> None:
    summary = users.run(settings_for(sandbox, warehouse), run_id="r1", clock=lambda: AS_OF)
    stats = sandbox.stats()
    expected = valid_user_count(warehouse)
    assert summary["accepted"] == expected == stats["users"] == state_count(warehouse)
    assert stats["violations"] == 0, stats["violations_by_rule"]
    assert summary["requests"] == math.ceil(expected / 25)
    assert summary["extracted"] == summary["unchanged"] + summary["accepted"] + summary["rejected"]
    assert set(summary["rejected_by_reason"]) == {"duplicate_user_id", "missing_user_id", "user_id_too_long"}
    assert summary["values_dropped_by_reason"]["invalid_phone"] > 0
    assert summary["trimmed"] > 0


def test_unchanged_then_one_percent_changed(sandbox: SandboxServer, warehouse: Path) -> None:
    settings = settings_for(sandbox, warehouse)
    users.run(settings, run_id="r1", clock=lambda: AS_OF)
    second = users.run(settings, run_id="r2", clock=lambda: AS_OF)
    assert second["requests"] == 0 and second["sent"] == 0 and second["accepted"] == 0
    changed = change_users(warehouse, share=0.01, seed=3, as_of=AS_OF)
    assert changed > 0
    before = sandbox.stats()["requests"]["bulk-users"]
    third = users.run(settings, run_id="r3", clock=lambda: AS_OF)
    assert third["accepted"] == changed
    assert third["requests"] == math.ceil(changed / 25)
    assert sandbox.stats()["requests"]["bulk-users"] - before == math.ceil(changed / 25)


def test_dry_run_sends_nothing_and_writes_no_state(sandbox: SandboxServer, warehouse: Path) -> None:
    summary = users.run(settings_for(sandbox, warehouse), run_id="dry", dry_run=True, clock=lambda: AS_OF)
    assert summary["sent"] == valid_user_count(warehouse) and summary["accepted"] == 0
    assert summary["batches"] == math.ceil(summary["sent"] / 25)
    assert sandbox.stats()["requests"] == {}
    assert state_count(warehouse) == 0


def test_full_refresh_resends_everything(sandbox: SandboxServer, warehouse: Path) -> None:
    settings = settings_for(sandbox, warehouse)
    first = users.run(settings, run_id="r1", clock=lambda: AS_OF)
    again = users.run(settings, run_id="r2", full_refresh=True, clock=lambda: AS_OF)
    assert again["accepted"] == first["accepted"] and again["unchanged"] == 0


def test_wrong_key_stops_after_one_request_with_state_untouched(sandbox: SandboxServer, warehouse: Path) -> None:
    settings = settings_for(sandbox, warehouse, api_key="wrong-key-000")
    with pytest.raises(TerminalAPIError) as err:
        users.run(settings, run_id="bad", clock=lambda: AS_OF)
    assert "wrong-key-000" not in str(err.value) and "401" in str(err.value)
    assert sum(sandbox.stats()["requests"].values()) == 1
    assert state_count(warehouse) == 0
    with StateStore(make_engine(f"duckdb:///{warehouse}")) as store:
        assert store.registry("users") == {}  # no attribute type fixed by a run WebEngage refused


def test_transient_failures_are_kept_and_redriven(sandbox: SandboxServer, warehouse: Path) -> None:
    sandbox.update_config(error_5xx_rate=1.0)
    settings = settings_for(sandbox, warehouse, max_retries=1, backoff_base_s=0.001, backoff_max_s=0.002)
    failed = failed_delivery(users.run, settings, run_id="f1", clock=lambda: AS_OF)  # nothing delivered: red
    assert failed["accepted"] == 0 and failed["rejected_by_reason"]["transient_failure"] == failed["sent"]
    assert state_count(warehouse) == 0
    sandbox.update_config(error_5xx_rate=0.0)
    ok = users.run(settings, run_id="f2", clock=lambda: AS_OF)
    assert ok["accepted"] == failed["sent"]
    with StateStore(make_engine(f"duckdb:///{warehouse}")) as store:
        assert not [r for r in store.open_rejects("users") if r["reason"] == "transient_failure"]


def test_rejected_item_is_isolated_by_bisection(warehouse: Path) -> None:
    """A bulk call WebEngage refuses (400) is split until the one bad user is found; the rest go."""
    poisoned = "usr_0000007"
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)["users"]
        seen.append(len(body))
        if any(u["userId"] == poisoned for u in body):
            return httpx.Response(400, json={"response": {"status": "error", "message": "bad user"}})
        return httpx.Response(201, json={"response": {"status": "queued"}})

    settings = sandbox_settings("http://we.test", warehouse, KEY, bulk_users_rpm=600_000)
    summary = users.run(settings, run_id="b1", clock=lambda: AS_OF, transport=httpx.MockTransport(handler))
    assert summary["rejected_by_reason"].get("api_rejected") == 1
    assert summary["accepted"] == valid_user_count(warehouse) - 1
    assert 1 in seen  # bisected down to the single bad item
    with StateStore(make_engine(f"duckdb:///{warehouse}")) as store:
        [reject] = [r for r in store.open_rejects("users") if r["reason"] == "api_rejected"]
    assert reject["row_key"] == poisoned and reject["kind"] == "api"
