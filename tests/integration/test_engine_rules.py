"""One reject rule for every sync (the engine's): what WebEngage never confirmed is re-driven by later runs
up to max_reject_attempts, then dead (skipped, nothing sent) until `rejects retry` reopens it. The profile
sync's version of this is in test_rejects_lifecycle.py; these are the cohort and event syncs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from etl.config import Settings
from etl.engine.rejects import RejectKind, classify, too_large
from etl.pipelines import cohorts, events
from etl.state.store import StateStore
from etl.transform.cohorts import GuardError
from etl.warehouse.engine import make_engine
from etl.webengage.models import SendRequest, SendResult
from tests.helpers.runs import failed_delivery
from tests.helpers.sandbox import data_requests
from webengage_dev.demo.warehouse import build_demo_warehouse
from webengage_dev.sandbox import SandboxConfig, SandboxServer

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
KEY = "engine-rules-key-0123456"


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    config = SandboxConfig(license_code="~99199077", api_key=KEY, bulk_users_rpm=60_000, bulk_events_rpm=60_000)
    with SandboxServer(config) as server:
        yield server


def settings_for(sandbox: SandboxServer, warehouse: str, **extra: Any) -> Settings:
    return Settings.from_mapping(
        {
            "license_code": "~99199077",
            "api_key": KEY,
            "api_url": sandbox.url,
            "warehouse_url": warehouse,
            "bulk_users_rpm": 60_000,
            "bulk_events_rpm": 60_000,
            "expected_latency_s": 0.05,
            "max_retries": 0,
            "max_reject_attempts": 2,
            **extra,
        }
    )


def statuses(url: str, pipeline: str) -> set[str]:
    with StateStore(make_engine(url)) as store:
        return {r["status"] for r in store.open_rejects(pipeline) if r["reason"] == "transient_failure"}


def test_cohort_updates_die_after_max_attempts_and_come_back_when_reopened(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE vip (user_id VARCHAR)"))
        conn.execute(sa.text("INSERT INTO vip VALUES ('u1'), ('u2'), ('u3')"))
    engine.dispose()
    (tmp_path / "vip.sql").write_text("SELECT user_id FROM vip\n")
    config = tmp_path / "cohorts.toml"
    config.write_text(f'[cohorts.vip]\nsql = "{tmp_path / "vip.sql"}"\nmode = "dynamic"\n')
    settings = settings_for(sandbox, url, cohorts_config=str(config))
    pipeline = "cohort:vip"

    sandbox.update_config(error_5xx_rate=1.0)
    for attempt, status in ((1, "open"), (2, "dead")):
        summary = failed_delivery(cohorts.export, settings, cohort="vip", as_of=AS_OF)
        assert summary["rejected_by_reason"] == {"transient_failure": 3}, attempt
        assert statuses(url, pipeline) == {status}, attempt
    before = data_requests(sandbox.stats())
    gave_up = cohorts.export(settings, cohort="vip", as_of=AS_OF)
    assert gave_up["rejected_by_reason"] == {"dead_after_retries": 3} and gave_up["requests"] == 0
    assert data_requests(sandbox.stats()) == before  # dead updates are not sent

    sandbox.update_config(error_5xx_rate=0.0)
    with StateStore(make_engine(url)) as store:
        assert store.reopen_dead(pipeline) == 3
    back = cohorts.export(settings, cohort="vip", as_of=AS_OF)
    assert back["accepted"] == 3 and back["snapshot_members"] == 3


def test_event_replays_die_after_max_attempts_and_come_back_when_reopened(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    path = tmp_path / "w.duckdb"
    build_demo_warehouse(path, users=200, as_of=AS_OF)
    url = f"duckdb:///{path}"
    mapping = tmp_path / "events.toml"
    mapping.write_text('[source]\nquery = "events/events.sql"\nlookback = "0m"\n')
    settings = settings_for(sandbox, url, events_mapping=str(mapping))
    window = (AS_OF - timedelta(hours=2), AS_OF)

    sandbox.update_config(error_5xx_rate=1.0)
    first = failed_delivery(events.run, settings, window=window)
    sent = first["sent"]
    assert sent > 0 and first["rejected_by_reason"] == {"transient_failure": sent}
    assert statuses(url, "events") == {"open"}
    second = failed_delivery(events.run, settings, window=window)  # the outbox is replayed: its second attempt
    assert second["replay_failed_events"] == sent and statuses(url, "events") == {"dead"}
    before = data_requests(sandbox.stats())
    third = events.run(settings, window=window)
    assert third["replayed_requests"] == 0 and third["requests"] == 0  # dead: kept in the outbox, not sent
    assert third["rejected_by_reason"] == {"awaiting_replay": sent}  # never re-batched either
    assert data_requests(sandbox.stats()) == before

    sandbox.update_config(error_5xx_rate=0.0)
    with StateStore(make_engine(url)) as store:
        assert store.reopen_dead("events") == sent
    back = events.run(settings, window=window)
    assert back["replayed_events"] == sent and sandbox.stats()["events"] == sent
    assert sandbox.stats()["duplicate_events"] == 0


def test_the_policy_classifies_the_same_for_every_sync() -> None:
    request = SendRequest("bulk-users", b"{}", "rid", 1)
    transient = SendResult(request, "transient", 503, "unavailable", 1, 0, 0.1)
    refused = SendResult(request, "rejected", 400, "bad user", 1, 0, 0.1)
    assert classify(transient)[:2] == ("transient_failure", RejectKind.TRANSIENT)
    assert classify(refused) == ("api_rejected", RejectKind.API, "HTTP 400: bad user")
    # Too large is the row's data, in every sync (cohorts used to call it an API reject and re-drive it).
    assert too_large(1024, "user")[:2] == ("payload_too_large", RejectKind.DATA)


def test_a_killed_run_is_marked_abandoned_by_the_next_run_with_when_it_was_last_seen(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'state.duckdb'}"
    now = [datetime(2031, 5, 1, 3, 0)]
    with StateStore(make_engine(url), clock=lambda: now[0]) as store:
        store.start_run(run_id="killed", pipeline="users")  # then SIGKILL: no finish_run
        now[0] = datetime(2031, 5, 1, 3, 7)
        store.heartbeat(run_id="killed", pipeline="users")  # its last sign of life
        now[0] = datetime(2031, 5, 2, 3, 0)
        store.start_run(run_id="next", pipeline="users")
        runs = {r["run_id"]: r for r in store.runs(pipeline="users")}
    assert runs["next"]["status"] == "running"
    assert runs["killed"]["status"] == "abandoned" and "2031-05-01 03:07:00" in runs["killed"]["message"]
    assert runs["killed"]["finished_at"] == datetime(2031, 5, 1, 3, 7)


def test_an_empty_cohort_warns_or_fails_when_asked(sandbox: SandboxServer, tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE vip (user_id VARCHAR)"))  # no member at all
    engine.dispose()
    (tmp_path / "vip.sql").write_text("SELECT user_id FROM vip\n")
    config = tmp_path / "cohorts.toml"
    config.write_text(f'[cohorts.vip]\nquery = "{tmp_path / "vip.sql"}"\nmode = "dynamic"\n')
    warned = cohorts.export(settings_for(sandbox, url, cohorts_config=str(config)), cohort="vip", as_of=AS_OF)
    assert warned["status"] == "success" and warned["members"] == 0
    assert any("found no member" in n for n in warned["notes"])
    strict = settings_for(sandbox, url, cohorts_config=str(config), fail_on_empty_cohort=True)
    with pytest.raises(GuardError, match="found no member"):
        cohorts.export(strict, cohort="vip", as_of=AS_OF)
    assert data_requests(sandbox.stats()) == 0
