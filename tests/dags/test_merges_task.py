"""The ``merge_users`` task of ``webengage_events_sync``: merges run beside the event sync with their counts
in the task's summary, and the task is skipped (not failed) while ``[merges]`` is off."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from webengage_dev.demo.warehouse import build_demo_warehouse
from webengage_dev.sandbox import SandboxConfig, SandboxServer

KEY = "dag-merges-key-123456"
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
LOGICAL_DATE = datetime(2026, 10, 31, 22, tzinfo=UTC)
PAIRS = (
    "SELECT count(DISTINCT anonymous_id) FROM segment.identifies WHERE anonymous_id IS NOT NULL "
    "AND user_id IS NOT NULL AND length(user_id) <= 100"
)


@pytest.fixture
def warehouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "w.duckdb"
    build_demo_warehouse(path, users=200, as_of=AS_OF)
    monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{path}")
    return path


def mapping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, merges: str) -> None:
    path = tmp_path / "events.toml"
    path.write_text(f'[source]\nquery = "events/events.sql"\n\n[merges]\n{merges}\n')
    monkeypatch.setenv("WEBENGAGE_EVENTS_MAPPING", str(path))


def run_once(dagbag: Any, sandbox: SandboxServer, webengage_connection: Callable[..., None]) -> Any:
    webengage_connection(
        url=sandbox.url, license_code="~99199077", api_key=KEY, users_rpm=60_000, bulk_events_rpm=60_000
    )
    dag = dagbag.get_dag("webengage_events_sync")
    for t in dag.tasks:
        t.retries = 0
    return dag.test(logical_date=LOGICAL_DATE)


def test_merge_task_sends_new_pairs_with_counts_in_its_summary(
    dagbag: Any,
    webengage_connection: Callable[..., None],
    warehouse: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mapping(tmp_path, monkeypatch, 'enabled = true\npreset = "segment"')
    with duckdb.connect(str(warehouse), read_only=True) as con:
        row = con.execute(PAIRS).fetchone()
    assert row is not None
    expected = int(row[0])
    with SandboxServer(SandboxConfig(license_code="~99199077", api_key=KEY, users_rpm=60_000)) as sandbox:
        dr = run_once(dagbag, sandbox, webengage_connection)
        assert dr.state == "success"
        states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
        summary = dr.get_task_instances()[0].xcom_pull(task_ids="merge_users")
        stats = sandbox.stats()
    assert states == {"sync_events": "success", "merge_users": "success"}
    assert summary["pipeline"] == "merges" and summary["run_id"] == dr.run_id
    assert summary["merged"] == expected == stats["merges"] == stats["requests"]["users"] > 0
    assert stats["violations"] == 0


def test_merge_task_is_skipped_while_merges_are_off(
    dagbag: Any,
    webengage_connection: Callable[..., None],
    warehouse: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mapping(tmp_path, monkeypatch, "enabled = false")
    with SandboxServer(SandboxConfig(license_code="~99199077", api_key=KEY)) as sandbox:
        dr = run_once(dagbag, sandbox, webengage_connection)
        states = {ti.task_id: ti.state for ti in dr.get_task_instances()}
        assert "users" not in sandbox.stats()["requests"]
    assert states == {"sync_events": "success", "merge_users": "skipped"}


def test_merge_task_runs_after_the_event_sync_whatever_its_outcome(dagbag: Any) -> None:
    dag = dagbag.get_dag("webengage_events_sync")
    merge = dag.get_task("merge_users")
    assert merge.upstream_task_ids == {"sync_events"} and merge.trigger_rule == "all_done"
    assert "anonymous_id" in (merge.doc_md or "")
