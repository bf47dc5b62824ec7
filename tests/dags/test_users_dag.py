from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.airflow import asset_events
from webengage_dev.demo.warehouse import build_demo_warehouse
from webengage_dev.sandbox import SandboxConfig, SandboxServer

KEY = "dag-test-key-123456"


def test_dagbag_imports_every_dag_without_errors(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    assert "webengage_users_sync" in dagbag.dag_ids
    dag = dagbag.get_dag("webengage_users_sync")
    assert dag.doc_md and "dry_run" in dag.params


@pytest.fixture
def demo_warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "w.duckdb"
    build_demo_warehouse(path, users=300, as_of=datetime(2026, 11, 1, tzinfo=UTC))
    return path


def test_users_dag_runs_against_sandbox_and_returns_summary(
    dagbag: Any,
    dag_runner: Callable[..., Any],
    webengage_connection: Callable[..., None],
    demo_warehouse: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with SandboxServer(SandboxConfig(license_code="~99199077", api_key=KEY, bulk_users_rpm=60_000)) as sandbox:
        webengage_connection(
            url=sandbox.url, license_code="~99199077", api_key=KEY, bulk_users_rpm=60_000, expected_latency_s=0.05
        )
        monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{demo_warehouse}")
        dr = dag_runner(dagbag, "webengage_users_sync")
        assert dr.state == "success"
        [ti] = [t for t in dr.get_task_instances() if t.task_id == "sync_users"]
        summary = ti.xcom_pull(task_ids="sync_users")
        stats = sandbox.stats()
    assert summary["status"] == "success" and summary["accepted"] == stats["users"] == 300
    assert summary["run_id"] == dr.run_id
    assert stats["violations"] == 0


def test_users_dag_dry_run_param_sends_nothing(
    dagbag: Any,
    dag_runner: Callable[..., Any],
    webengage_connection: Callable[..., None],
    demo_warehouse: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with SandboxServer(SandboxConfig(license_code="~99199077", api_key=KEY)) as sandbox:
        webengage_connection(url=sandbox.url, license_code="~99199077", api_key=KEY)
        monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{demo_warehouse}")
        dr = dag_runner(dagbag, "webengage_users_sync", {"dry_run": True})
        assert dr.state == "success"
        summary = dr.get_task_instances()[0].xcom_pull(task_ids="sync_users")
        assert summary["dry_run"] is True and summary["sent"] == 300 and summary["accepted"] == 0
        assert sandbox.stats()["requests"] == {}


def test_users_dag_fails_with_reason_on_wrong_key(
    dagbag: Any,
    dag_runner: Callable[..., Any],
    webengage_connection: Callable[..., None],
    demo_warehouse: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The user's alerting hook (e.g. an Airflow notifier) gets the failed task's context.
    hook_dir = demo_warehouse.parent / "hooks"
    hook_dir.mkdir()
    (hook_dir / "alert_probe.py").write_text(
        "from pathlib import Path\n"
        f"OUT = Path({str(hook_dir / 'alert.txt')!r})\n"
        "def notify(context):\n"
        "    OUT.write_text(f\"{context['ti'].task_id}: {context['exception']}\")\n"
    )
    monkeypatch.syspath_prepend(str(hook_dir))
    monkeypatch.setenv("WEBENGAGE_ON_FAILURE_CALLBACK", "alert_probe:notify")
    with SandboxServer(SandboxConfig(license_code="~99199077", api_key=KEY)) as sandbox:
        webengage_connection(url=sandbox.url, license_code="~99199077", api_key="wrong-key-0000")
        monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{demo_warehouse}")
        dr = dag_runner(dagbag, "webengage_users_sync")
        assert dr.state == "failed"
        assert sum(sandbox.stats()["requests"].values()) == 1
    alert = (hook_dir / "alert.txt").read_text()
    # Under Airflow the fix names what an Airflow user edits: the connection (issue 14).
    assert (
        alert.startswith("sync_users: ") and "401" in alert and "password (API key) of the Airflow connection" in alert
    )
    assert "wrong-key-0000" not in alert and "WEBENGAGE_API_KEY" not in alert


def test_a_permanent_failure_fails_at_once_instead_of_going_up_for_retry(
    dagbag: Any, webengage_connection: Callable[..., None], demo_warehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SandboxServer(SandboxConfig(license_code="~99199077", api_key=KEY)) as sandbox:
        webengage_connection(url=sandbox.url, license_code="~99199077", api_key="revoked-key-0000")
        monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{demo_warehouse}")
        dag = dagbag.get_dag("webengage_users_sync")
        for t in dag.tasks:  # as deployed: retries on (they would wait; a permanent failure must skip them)
            t.retries, t.retry_delay = 2, timedelta(seconds=0)
        dr = dag.test()
        [ti] = [t for t in dr.get_task_instances() if t.task_id == "sync_users"]
        requests = sum(sandbox.stats()["requests"].values())
    assert dr.state == "failed" and ti.state == "failed" and ti.try_number == 1
    assert requests == 1  # one 401, no retry of the task


def test_a_dry_run_publishes_no_asset_event_and_a_real_one_carries_the_counts(
    dagbag: Any,
    dag_runner: Callable[..., Any],
    webengage_connection: Callable[..., None],
    demo_warehouse: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with SandboxServer(SandboxConfig(license_code="~99199077", api_key=KEY, bulk_users_rpm=60_000)) as sandbox:
        webengage_connection(url=sandbox.url, license_code="~99199077", api_key=KEY, bulk_users_rpm=60_000)
        monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{demo_warehouse}")
        with caplog.at_level("INFO", logger="webengage.summary"):
            dry = dag_runner(dagbag, "webengage_users_sync", {"dry_run": True})
        assert dry.state == "success"
        assert asset_events(dry.run_id, "webengage://users/") == []  # DAGs scheduled on it do not run
        block = [r.getMessage() for r in caplog.records if r.name == "webengage.summary"]
        assert block[0].startswith("== DRY RUN == webengage-sync users run") and "no asset event" in block[-1]

        real = dag_runner(dagbag, "webengage_users_sync", {"dry_run": False})  # dag.test keeps the last conf
        [extra] = asset_events(real.run_id, "webengage://users/")
        summary = real.get_task_instances()[0].xcom_pull(task_ids="sync_users")
    assert extra["accepted"] == summary["accepted"] == 300 and extra["dry_run"] is False
    assert extra["run_id"] == real.run_id and "message" not in extra and "notes" not in extra
    # The XCom is flat: one level of scalars (readable in the UI), nested counts as dotted keys.
    assert all(not isinstance(v, dict | list) for v in summary.values())
    assert summary["values_dropped_by_reason.invalid_phone"] > 0


def test_a_nightly_run_with_nothing_to_send_still_fails_on_a_revoked_key(
    dagbag: Any,
    dag_runner: Callable[..., Any],
    webengage_connection: Callable[..., None],
    demo_warehouse: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with SandboxServer(SandboxConfig(license_code="~99199077", api_key=KEY, bulk_users_rpm=60_000)) as sandbox:
        webengage_connection(url=sandbox.url, license_code="~99199077", api_key=KEY, bulk_users_rpm=60_000)
        monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{demo_warehouse}")
        assert dag_runner(dagbag, "webengage_users_sync").state == "success"
        sandbox.update_config(api_key="rotated-key-5555")  # the connection's key is revoked; nothing changed
        from airflow.dag_processing.dagbag import DagBag

        fresh = DagBag(dag_folder=dagbag.dag_folder)
        night = dag_runner(fresh, "webengage_users_sync")
        stats = sandbox.stats()
    assert night.state == "failed"
    assert stats["requests"]["users"] == 1 and stats["violations"] == 0  # the one check, refused


def _erasing_mapping(directory: Path) -> Path:
    from etl.resources import DEFAULT_USERS_MAPPING, packaged

    path = directory / "users.toml"
    text = packaged(DEFAULT_USERS_MAPPING).read_text(encoding="utf-8")
    path.write_text(text.replace("[source]", 'deletions = "erase"\n\n[source]', 1), encoding="utf-8")
    return path


def test_users_dag_erases_deleted_users_after_the_sync_and_guards(
    dagbag: Any,
    dag_runner: Callable[..., Any],
    webengage_connection: Callable[..., None],
    demo_warehouse: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import duckdb

    config = SandboxConfig(license_code="~99199077", api_key=KEY, bulk_users_rpm=60_000, gdpr_rpm=60_000)
    with SandboxServer(config) as sandbox:
        webengage_connection(
            url=sandbox.url, license_code="~99199077", api_key=KEY, bulk_users_rpm=60_000, gdpr_rpm=60_000
        )
        monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{demo_warehouse}")
        monkeypatch.setenv("WEBENGAGE_USERS_MAPPING", str(_erasing_mapping(demo_warehouse.parent)))
        first = dag_runner(dagbag, "webengage_users_sync")
        assert first.state == "success"
        with duckdb.connect(str(demo_warehouse)) as con:
            gone = [r[0] for r in con.execute("SELECT user_id FROM we_user_state ORDER BY user_id LIMIT 6").fetchall()]
            con.execute("DELETE FROM users WHERE user_id IN (SELECT unnest(?))", [gone])

        # 6 of 300 synced users (2 %) is above max_erasure_share: the task fails before sending any erasure
        guarded = dag_runner(dagbag, "webengage_users_sync", logical_date=datetime(2026, 11, 2, tzinfo=UTC))
        tis = {t.task_id: t for t in guarded.get_task_instances()}
        assert tis["sync_users"].state == "success" and tis["erase_deleted_users"].state == "failed"
        assert sandbox.stats()["gdpr_requests"] == 0

        dr = dag_runner(
            dagbag,
            "webengage_users_sync",
            {"override_erasure_guard": True},
            logical_date=datetime(2026, 11, 3, tzinfo=UTC),
        )
        assert dr.state == "success"
        [ti] = [t for t in dr.get_task_instances() if t.task_id == "erase_deleted_users"]
        summary = ti.xcom_pull(task_ids="erase_deleted_users")
        stats = sandbox.stats()
    assert summary["accepted"] == 6 and summary["extracted"] == 6 and summary["run_id"] == dr.run_id
    assert stats["gdpr_requests"] == 6 and stats["erased_users"] == 6
    assert "guard overridden" in summary["notes"]  # the flat XCom joins lists
