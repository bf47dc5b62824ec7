"""End to end: `make airflow`'s stack (Airflow standalone + sandbox + demo warehouse), DAGs triggered
through Airflow's REST API, run summaries read back from XCom. About a minute; marked slow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from webengage_dev.demo.airflow_up import AirflowStack

pytestmark = pytest.mark.slow


def test_dags_parse_without_import_errors(api: httpx.Client) -> None:
    assert api.get("/importErrors").json()["total_entries"] == 0
    dag_ids = {d["dag_id"] for d in api.get("/dags").json()["dags"]}
    assert "webengage_users_sync" in dag_ids


def test_users_dag_triggered_through_rest_api(api: httpx.Client, stack: AirflowStack, trigger_and_wait: Any) -> None:
    summary = trigger_and_wait(api, "webengage_users_sync", {"dry_run": False}, "sync_users")
    assert summary["status"] == "success"
    assert summary["extracted"] == summary["unchanged"] + summary["accepted"] + summary["rejected"]
    stats = httpx.get(f"{stack.sandbox_url}/_sandbox/stats", timeout=10).json()
    assert stats["users"] == 500 and stats["violations"] == 0


def test_cohort_export_triggered_with_params(api: httpx.Client, stack: AirflowStack, trigger_and_wait: Any) -> None:
    conf = {"cohort": "vip_buyers_30d", "dry_run": False, "emit_events": False, "override_guard": False}
    summary = trigger_and_wait(api, "webengage_cohort_export", conf, "export_cohort")
    assert summary["status"] == "success" and summary["cohort"] == "vip_buyers_30d"
    assert summary["accepted"] == summary["entered"] == summary["members"] > 0
    stats = httpx.get(f"{stack.sandbox_url}/_sandbox/stats", timeout=10).json()
    assert stats["violations"] == 0


def test_standalone_log_is_written(stack: AirflowStack) -> None:
    assert Path(stack.home, "standalone.log").stat().st_size > 0


def test_stack_repr_shows_neither_the_password_nor_the_environment(stack: AirflowStack) -> None:
    # pytest prints the stack object in a failing assertion; the admin password and env must not be in it.
    text = repr(stack)
    assert stack.password not in text and "AIRFLOW_CONN_WEBENGAGE_DEFAULT" not in text and "PATH" not in text
