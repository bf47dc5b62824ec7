"""One `make airflow` stack (Airflow standalone + sandbox + demo warehouse) for every e2e test: booting it
costs about half a minute, so the REST tests and the browser test share it."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from webengage_dev.demo.airflow_up import AirflowStack, airflow_stack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    # Built as of the clock the stack runs on (as `make airflow` does), whatever date that is: the export
    # below uses the default as_of (the trigger time) and must find members.
    now = datetime.now(UTC)
    started = time.monotonic()
    with airflow_stack(directory=tmp_path_factory.mktemp("af"), port=free_port(), users=500, now=now) as running:
        print(f"\nmake airflow stack up in {time.monotonic() - started:.1f}s")
        yield running


@pytest.fixture(scope="package")
def api(stack: AirflowStack) -> Iterator[httpx.Client]:
    token = httpx.post(
        f"{stack.url}/auth/token", json={"username": stack.username, "password": stack.password}, timeout=30
    ).json()["access_token"]
    with httpx.Client(base_url=f"{stack.url}/api/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        yield c


def trigger(api: httpx.Client, dag_id: str, conf: dict[str, Any], task_id: str) -> tuple[str, Any]:
    """Trigger a DAG through the REST API, wait for its run; return (run id, the task's XCom return value)."""
    run = api.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})
    assert run.status_code == 200, run.text
    run_id = run.json()["dag_run_id"]
    api.patch(f"/dags/{dag_id}", json={"is_paused": False}).raise_for_status()
    deadline = time.monotonic() + 180
    state = ""
    while time.monotonic() < deadline:
        state = api.get(f"/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
        if state in ("success", "failed"):
            break
        time.sleep(1)
    assert state == "success", f"{dag_id} run {run_id} ended {state}"
    xcom = api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
    assert xcom.status_code == 200, xcom.text
    return run_id, xcom.json()["value"]


@pytest.fixture(scope="package")
def trigger_and_wait() -> Any:
    """``trigger_and_wait(api, dag_id, conf, task_id)`` -> the task's XCom return value."""
    return lambda *args: trigger(*args)[1]
