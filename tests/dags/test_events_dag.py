from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from webengage_dev.demo.warehouse import build_demo_warehouse
from webengage_dev.sandbox import SandboxConfig, SandboxServer

KEY = "dag-events-key-123456"
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
LOGICAL_DATE = datetime(2026, 10, 31, 22, tzinfo=UTC)


def test_events_dag_is_hourly_over_data_intervals_one_run_at_a_time(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    dag = dagbag.get_dag("webengage_events_sync")
    assert dag is not None and dag.max_active_runs == 1 and "dry_run" in dag.params
    assert "webengage_users_sync" in (dag.doc_md or "") and "exactly once" in (dag.doc_md or "")
    # A data-interval timetable: each run covers [previous hour, this hour), never an empty interval.
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable" and dag.timetable.expression == "0 * * * *"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    warehouse = tmp_path / "w.duckdb"
    build_demo_warehouse(warehouse, users=300, as_of=AS_OF)
    mapping = tmp_path / "events.toml"
    mapping.write_text('[source]\nquery = "events/events.sql"\nlookback = "3d"\n')
    monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{warehouse}")
    monkeypatch.setenv("WEBENGAGE_EVENTS_MAPPING", str(mapping))
    return warehouse


def test_events_dag_sends_the_data_interval_once(
    dagbag: Any, dag_runner: Callable[..., Any], webengage_connection: Callable[..., None], env: Path
) -> None:
    with SandboxServer(SandboxConfig(license_code="~99199077", api_key=KEY, bulk_events_rpm=60_000)) as sandbox:
        webengage_connection(
            url=sandbox.url, license_code="~99199077", api_key=KEY, bulk_events_rpm=60_000, expected_latency_s=0.05
        )
        dag = dagbag.get_dag("webengage_events_sync")
        for t in dag.tasks:
            t.retries = 0
        dr = dag.test(logical_date=LOGICAL_DATE)
        assert dr.state == "success"
        summary = dr.get_task_instances()[0].xcom_pull(task_ids="sync_events")
        stats = sandbox.stats()
    assert (summary["window_start"], summary["window_end"]) == (
        f"{dr.data_interval_start:%Y-%m-%dT%H:%M:%S}+00:00",
        f"{dr.data_interval_end:%Y-%m-%dT%H:%M:%S}+00:00",
    )
    assert dr.data_interval_end - dr.data_interval_start == timedelta(hours=1)
    assert summary["read_from"] == f"{dr.data_interval_start - timedelta(days=3):%Y-%m-%dT%H:%M:%S}+00:00"
    assert summary["status"] == "success" and summary["accepted"] == stats["events"] > 0
    assert summary["run_id"] == dr.run_id and stats["violations"] == 0


def test_events_dag_dry_run_sends_nothing(
    dagbag: Any, dag_runner: Callable[..., Any], webengage_connection: Callable[..., None], env: Path
) -> None:
    with SandboxServer(SandboxConfig(license_code="~99199077", api_key=KEY)) as sandbox:
        webengage_connection(url=sandbox.url, license_code="~99199077", api_key=KEY)
        # A data interval the fixed demo warehouse has events in: the dry run must find work and send none of it.
        dr = dag_runner(dagbag, "webengage_events_sync", {"dry_run": True}, logical_date=LOGICAL_DATE)
        assert dr.state == "success"
        summary = dr.get_task_instances()[0].xcom_pull(task_ids="sync_events")
        assert summary["dry_run"] is True and summary["accepted"] == 0
        assert summary["extracted"] > 0 and summary["sent"] > 0
        assert sandbox.stats()["requests"] == {}
