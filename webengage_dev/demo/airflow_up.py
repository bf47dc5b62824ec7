"""``make airflow``: Airflow standalone on this repository's ``dags/`` with the demo warehouse, a running
sandbox and the ``webengage_default`` connection pointing at it. Prints the URL and the admin password;
Ctrl-C stops everything.

Airflow is started as a subprocess (``etl`` never imports Airflow).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from etl.serving import wait_healthy
from webengage_dev.demo.run import DEMO_LICENSE_CODE
from webengage_dev.demo.warehouse import build_demo_warehouse, demo_as_of
from webengage_dev.sandbox import SandboxConfig, SandboxProcess

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class AirflowStack:
    url: str
    username: str
    # Out of the repr: a failing test prints the stack object, and neither may reach a log.
    password: str = field(repr=False)
    sandbox_url: str
    home: Path
    env: dict[str, str] = field(repr=False)


def _password(home: Path, timeout_s: float = 30) -> str:
    path = home / "simple_auth_manager_passwords.json.generated"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            data = json.loads(path.read_text() or "{}")
            if "admin" in data:
                return str(data["admin"])
        time.sleep(0.5)
    raise TimeoutError(f"no admin password in {path}")


@contextmanager
def airflow_stack(
    *,
    directory: Path,
    now: datetime,
    port: int = 8080,
    users: int = 50_000,
    sandbox_rpm: int = 12_000,
    timeout_s: float = 180,
) -> Iterator[AirflowStack]:
    """Start the sandbox and Airflow standalone; yield how to reach them; stop both on exit.

    The demo warehouse is rebuilt as of `now` (so cohorts and event windows hold data on any date) and the
    state starts empty, like the sandbox it pairs with (a state of profiles "already sent" to a previous
    sandbox would make the first sync send nothing)."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    warehouse = directory / "warehouse.duckdb"
    build_demo_warehouse(warehouse, users=users, as_of=demo_as_of(now))
    state = directory / "state.duckdb"
    for stale in (state, state.with_name(state.name + ".wal")):
        stale.unlink(missing_ok=True)
    home = directory / "airflow"
    home.mkdir(exist_ok=True)
    key = secrets.token_urlsafe(24)
    config = SandboxConfig(
        license_code=DEMO_LICENSE_CODE, api_key=key, bulk_users_rpm=sandbox_rpm, bulk_events_rpm=sandbox_rpm
    )
    with SandboxProcess(config) as sandbox:
        conn = {
            "conn_type": "http",
            "host": sandbox.url,
            "login": DEMO_LICENSE_CODE,
            "password": key,
            "extra": {"bulk_users_rpm": sandbox_rpm, "bulk_events_rpm": sandbox_rpm},
        }
        env = {
            # The caller's own Airflow settings (e.g. a test run's unit-test mode) must not leak in.
            **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            # The WebEngage page (plugins/webengage.py; an installed package brings it by its entry point).
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__API__PORT": str(port),
            # Task processes reach the API server here; it must follow the port.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
            # 5 s (the default) is too short when a 2-core machine is also running the sync itself.
            "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "30",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW_CONN_WEBENGAGE_DEFAULT": json.dumps(conn),
            "WAREHOUSE_URL": f"duckdb:///{warehouse}",
            "STATE_URL": f"duckdb:///{state}",
            # The WebEngage tasks share the pool created below (one slot at a time: DuckDB state has one writer).
            "WEBENGAGE_AIRFLOW_POOL": "webengage_api",
        }
        airflow = str(Path(sys.executable).parent / "airflow")  # the venv's, whatever PATH says
        log = (home / "standalone.log").open("wb")
        # Its own process group, so one signal stops the scheduler, API server and workers together.
        proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [airflow, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            url = f"http://localhost:{port}"
            wait_healthy(
                f"{url}/api/v2/monitor/health",
                proc,
                deadline=time.monotonic() + timeout_s,
                name="airflow standalone",
                every_s=1.0,
            )
            subprocess.run(  # noqa: S603 - fixed argv, no shell
                [airflow, "pools", "set", "webengage_api", "1", "Shares the WebEngage API budget"],
                env=env,
                check=False,
                capture_output=True,
            )
            yield AirflowStack(
                url=url, username="admin", password=_password(home), sandbox_url=sandbox.url, home=home, env=env
            )
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            log.close()


def main() -> None:
    directory = Path(os.environ.get("WEBENGAGE_DEMO_DIR", ".demo"))
    port = int(os.environ.get("AIRFLOW_PORT", "8080"))
    print(
        "building the demo warehouse as of now, starting the sandbox and Airflow standalone (about 45 s)...", flush=True
    )
    with airflow_stack(directory=directory, port=port, now=datetime.now(UTC)) as stack:
        print(f"\nAirflow UI: {stack.url}   user: {stack.username}   password: {stack.password}")
        print(f"WebEngage sandbox: {stack.sandbox_url}/_sandbox/stats")
        print("DAGs start paused: unpause one, or use Trigger (with the params form). Ctrl-C stops everything.")
        print(f"logs: {stack.home / 'standalone.log'}", flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            print("\nstopping...", flush=True)


if __name__ == "__main__":
    main()
