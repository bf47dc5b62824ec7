"""End to end: `make airflow`'s stack (Airflow standalone + sandbox + demo warehouse), DAGs triggered
through Airflow's REST API, run summaries read back from XCom. About a minute; marked slow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import free_port, trigger
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


def test_the_connection_is_listed_with_the_webengage_form(api: httpx.Client, stack: AirflowStack) -> None:
    """Stored in Airflow (so the UI lists and edits it), typed webengage; the form metadata the UI reads
    (GET /ui/connections/hook_meta) has the WebEngage fields."""
    conn = api.get("/connections/webengage_default")
    assert conn.status_code == 200, conn.text
    assert conn.json()["conn_type"] == "webengage" and conn.json()["login"]
    ui = httpx.get(f"{stack.url}/ui/connections/hook_meta", headers=api.headers, timeout=30)
    assert ui.status_code == 200, ui.text
    meta = next(m for m in ui.json() if m["connection_type"] == "webengage")
    assert meta["hook_name"] == "WebEngage"
    assert meta["standard_fields"]["login"]["title"] == "License code"
    assert meta["standard_fields"]["password"]["title"] == "API key"
    assert meta["standard_fields"]["host"]["hidden"] is True
    assert meta["extra_fields"]["data_center"]["schema"]["enum"] == ["global", "in", "ksa"]
    assert meta["extra_fields"]["api_url"]["schema"]["title"] == "API URL (optional)"


def test_the_test_button_checks_the_connection_without_sending_data(api: httpx.Client, stack: AirflowStack) -> None:
    """POST /api/v2/connections/test (the form's Test button) runs WebEngageHook.test_connection in the API
    server: true against the sandbox; false, with the reason, for a host nobody listens on."""
    before = httpx.get(f"{stack.sandbox_url}/_sandbox/stats", timeout=10).json()
    key = stack.connection["password"]
    body = {
        "connection_id": "webengage_check",
        "conn_type": "webengage",
        "login": stack.connection["login"],
        "password": key,
        "extra": json.dumps({"data_center": "global", "api_url": stack.sandbox_url}),
    }
    good = api.post("/connections/test", json=body)
    assert good.status_code == 200, good.text
    assert good.json()["status"] is True, good.json()["message"]
    assert "nothing was ingested" in good.json()["message"] and key not in good.json()["message"]
    after = httpx.get(f"{stack.sandbox_url}/_sandbox/stats", timeout=10).json()
    assert after["credential_checks"] == before["credential_checks"] + 1 and after["users"] == before["users"]

    bad = api.post(
        "/connections/test", json=body | {"extra": json.dumps({"api_url": f"http://127.0.0.1:{free_port()}"})}
    )
    assert bad.status_code == 200 and bad.json()["status"] is False
    assert "cannot reach the WebEngage API" in bad.json()["message"]


def test_a_dry_run_shows_its_summary_in_the_task_log_and_publishes_no_asset_event(api: httpx.Client) -> None:
    """The summary block is logged inside the task's execution (before Airflow's collapsed "Post Execute"
    group) and opens with DRY RUN; the XCom is flat; no Asset event, so asset-scheduled DAGs do not fire."""
    run_id, summary = trigger(api, "webengage_users_sync", {"dry_run": True}, "sync_users")
    assert summary["dry_run"] is True and all(not isinstance(v, dict | list) for v in summary.values())
    logs = api.get(
        f"/dags/webengage_users_sync/dagRuns/{run_id}/taskInstances/sync_users/logs/1",
        params={"full_content": True},
        headers={"Accept": "application/json"},
    )
    assert logs.status_code == 200, logs.text
    lines = [str(e.get("event", "")) if isinstance(e, dict) else str(e) for e in logs.json()["content"]]
    block = next(i for i, line in enumerate(lines) if "webengage-sync users run" in line)
    post = next(i for i, line in enumerate(lines) if "::group::Post Execute" in line)
    assert lines[block].startswith("== DRY RUN ==") and block < post, lines[max(0, block - 3) : post + 2]
    events = api.get("/assets/events", params={"source_dag_id": "webengage_users_sync", "source_run_id": run_id})
    assert events.status_code == 200 and events.json()["total_entries"] == 0, events.text
