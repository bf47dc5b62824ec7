"""The cohort DAGs run with dag.test() against the sandbox and a demo warehouse: the Params trigger form of
the one-time export, and the mapped dynamic sync where one cohort fails and the other still syncs."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from etl.config import Settings
from etl.pipelines import cohorts
from etl.state.store import StateStore
from etl.warehouse.engine import make_engine
from tests.helpers.airflow import asset_events
from webengage_dev.demo.warehouse import build_demo_warehouse
from webengage_dev.sandbox import SandboxConfig, SandboxServer

KEY = "dag-cohort-key-123456"
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "w.duckdb"
    build_demo_warehouse(path, users=300, as_of=AS_OF)
    with duckdb.connect(str(path)) as con:
        # Two hand-controlled cohorts: the test decides exactly who is in them.
        for table in ("dag_cohort_a", "dag_cohort_b"):
            con.execute(f"CREATE TABLE {table} (user_id VARCHAR)")
        con.execute("INSERT INTO dag_cohort_a SELECT printf('usr_%07d', i) FROM range(1, 41) t(i)")
        con.execute("INSERT INTO dag_cohort_b SELECT printf('usr_%07d', i) FROM range(101, 131) t(i)")
    return path


@pytest.fixture
def cohort_config(tmp_path: Path, warehouse: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = Path(__file__).resolve().parents[2]
    for table in ("dag_cohort_a", "dag_cohort_b"):
        (tmp_path / f"{table}.sql").write_text(f"SELECT user_id FROM {table}\n")
    config = tmp_path / "cohorts.toml"
    config.write_text(
        f"""
[cohorts.vip_buyers_30d]
sql = "{root / "etl/defaults/sql/cohorts/vip_buyers_30d.sql"}"
mode = "one_time"
params = {{ days = 30, min_revenue_usd = 300 }}

[cohorts.dag_a]
sql = "{tmp_path / "dag_cohort_a.sql"}"
mode = "dynamic"
description = "Forty test users"

[cohorts.dag_b]
sql = "{tmp_path / "dag_cohort_b.sql"}"
mode = "dynamic"
"""
    )
    # Read by the DAG files at parse time (the cohort list) and by the tasks' settings.
    monkeypatch.setenv("WEBENGAGE_COHORTS_CONFIG", str(config))
    monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{warehouse}")
    return config


def fresh_dagbag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])


def test_default_config_parses_into_both_dags(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    export = dagbag.get_dag("webengage_cohort_export")
    assert export.schedule is None
    assert set(export.params) == {"cohort", "dry_run", "emit_events", "override_guard", "as_of"}
    enum = export.params.get_param("cohort").schema["enum"]
    assert enum == cohorts.cfg.configured_names() and len(enum) >= 3
    shown = export.params.get_param("cohort").schema["values_display"]
    assert shown["vip_buyers_30d"].startswith("vip_buyers_30d — Completed orders")
    sync = dagbag.get_dag("webengage_cohorts_sync")
    assert {t.task_id for t in sync.tasks} == {"sync_cohort", "retire_removed_cohorts"}


def test_export_dag_params_form_exports_the_chosen_cohort(
    airflow_db: None,
    cohort_config: Path,
    dag_runner: Callable[..., Any],
    webengage_connection: Callable[..., None],
    warehouse: Path,
) -> None:
    dagbag = fresh_dagbag()
    assert dagbag.import_errors == {}
    dag = dagbag.get_dag("webengage_cohort_export")
    assert dag.params.get_param("cohort").schema["enum"] == ["vip_buyers_30d", "dag_a", "dag_b"]
    # The drop-down shows each cohort with its description from the cohorts file.
    assert dag.params.get_param("cohort").schema["values_display"] == {
        "vip_buyers_30d": "vip_buyers_30d",
        "dag_a": "dag_a — Forty test users",
        "dag_b": "dag_b",
    }
    with SandboxServer(SandboxConfig(license_code="~99199077", api_key=KEY, bulk_users_rpm=60_000)) as sandbox:
        webengage_connection(
            url=sandbox.url,
            license_code="~99199077",
            api_key=KEY,
            bulk_users_rpm=60_000,
            bulk_events_rpm=60_000,
            expected_latency_s=0.05,
        )
        # as_of: the cohort is "the 30 days before as_of" of a warehouse built at AS_OF, whatever today is.
        conf = {"cohort": "vip_buyers_30d", "emit_events": True, "as_of": AS_OF.isoformat()}
        dr = dag_runner(dagbag, "webengage_cohort_export", conf)
        assert dr.state == "success"
        summary = dr.get_task_instances()[0].xcom_pull(task_ids="export_cohort")
        stats = sandbox.stats()
        events = sandbox.store.events(event_name="Cohort Entered")
    assert summary["cohort"] == "vip_buyers_30d" and summary["run_id"] == dr.run_id
    assert summary["as_of"] == AS_OF.isoformat()
    assert summary["members"] > 0 and summary["accepted"] == summary["entered"] == summary["members"]
    assert stats["requests"]["bulk-users"] == summary["requests"] == math.ceil(summary["members"] / 25)
    assert len(events) == summary["members"] == summary["events.sent"]
    assert stats["violations"] == 0, stats["violations_by_rule"]
    # Both assets carry the export's counts in the event's extra.
    for uri in ("webengage://cohorts/", "webengage://cohorts/vip_buyers_30d"):
        [extra] = asset_events(dr.run_id, uri)
        assert (extra["cohort"], extra["members"], extra["entered"], extra["exited"]) == (
            "vip_buyers_30d",
            summary["members"],
            summary["entered"],
            0,
        )
        assert extra["accepted"] == summary["accepted"] and extra["rejected"] == 0 and extra["events.sent"] > 0


def test_export_dag_dry_run_param_sends_nothing(
    airflow_db: None,
    cohort_config: Path,
    dag_runner: Callable[..., Any],
    webengage_connection: Callable[..., None],
) -> None:
    with SandboxServer(SandboxConfig(license_code="~99199077", api_key=KEY)) as sandbox:
        webengage_connection(url=sandbox.url, license_code="~99199077", api_key=KEY)
        dr = dag_runner(fresh_dagbag(), "webengage_cohort_export", {"cohort": "dag_b", "dry_run": True})
        assert dr.state == "success"
        summary = dr.get_task_instances()[0].xcom_pull(task_ids="export_cohort")
        assert summary["dry_run"] is True and summary["entered"] == 30 and summary["sent"] == 30
        assert sandbox.stats()["requests"] == {}
    assert asset_events(dr.run_id, "webengage://cohorts/") == asset_events(dr.run_id, "webengage://cohorts/dag_b") == []


def test_sync_dag_maps_one_task_per_dynamic_cohort_and_one_failure_does_not_block_the_other(
    airflow_db: None,
    cohort_config: Path,
    dag_runner: Callable[..., Any],
    webengage_connection: Callable[..., None],
    warehouse: Path,
) -> None:
    with SandboxServer(SandboxConfig(license_code="~99199077", api_key=KEY, bulk_users_rpm=60_000)) as sandbox:
        settings = Settings.from_mapping(
            {
                "license_code": "~99199077",
                "api_key": KEY,
                "api_url": sandbox.url,
                "warehouse_url": f"duckdb:///{warehouse}",
                "cohorts_config": str(cohort_config),
                "bulk_users_rpm": 60_000,
            }
        )
        for name in ("dag_a", "dag_b"):
            cohorts.export(settings, cohort=name, as_of=AS_OF, run_id="seed")
        with duckdb.connect(str(warehouse)) as con:
            # dag_a loses 30 of its 40 members (75% > 50%: the guard stops it); dag_b gains 10, loses 5.
            con.execute("DELETE FROM dag_cohort_a WHERE user_id > 'usr_0000010'")
            con.execute("DELETE FROM dag_cohort_b WHERE user_id > 'usr_0000125'")
            con.execute("INSERT INTO dag_cohort_b SELECT printf('usr_%07d', i) FROM range(201, 211) t(i)")
        before = sandbox.stats()["requests"]["bulk-users"]

        webengage_connection(
            url=sandbox.url, license_code="~99199077", api_key=KEY, bulk_users_rpm=60_000, expected_latency_s=0.05
        )
        dagbag = fresh_dagbag()
        dr = dag_runner(dagbag, "webengage_cohorts_sync")
        tis = {(ti.task_id, ti.map_index): ti for ti in dr.get_task_instances()}
        after = sandbox.stats()["requests"]["bulk-users"]
        b_user = sandbox.store.get_profile("usr_0000205")
        left_b = sandbox.store.get_profile("usr_0000130")
        kept_a = sandbox.store.get_profile("usr_0000040")

    assert dr.state == "failed"  # the run shows the failed cohort...
    assert tis[("sync_cohort", 0)].state == "failed"
    assert tis[("sync_cohort", 1)].state == "success"  # ...but the other cohort synced
    assert tis[("retire_removed_cohorts", -1)].state == "success"
    assert [tis[("sync_cohort", i)].rendered_map_index for i in (0, 1)] == ["dag_a", "dag_b"]
    with StateStore(make_engine(f"duckdb:///{warehouse}")) as store:
        [failed] = [r for r in store.runs(pipeline="cohort:dag_a") if r["run_id"] == dr.run_id]
    assert failed["status"] == "failed" and failed["message"].startswith("GuardError")
    summary = tis[("sync_cohort", 1)].xcom_pull(task_ids="sync_cohort", map_indexes=1)
    assert summary["cohort"] == "dag_b"
    assert (summary["entered"], summary["exited"], summary["unchanged"], summary["rejected"]) == (10, 5, 25, 0)
    assert after - before == summary["requests"] == 1  # ceil(15 / 25); dag_a sent nothing
    assert b_user is not None and b_user["attributes"]["cohort_dag_b"] is True
    assert left_b is not None and left_b["attributes"]["cohort_dag_b"] is False
    assert kept_a is not None and kept_a["attributes"]["cohort_dag_a"] is True  # guard: not flipped
