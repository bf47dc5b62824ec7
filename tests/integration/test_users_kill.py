"""Crash safety of the profile sync: ``kill -9`` the CLI mid-load, then re-run it to completion.

The sync runs in its own process (``webengage-sync sync users``) against the sandbox in another
process, paced at 1,200 requests/min with 30 ms latency so a kill lands mid-run. After the kill, every
user the state store says WebEngage accepted must be in the sandbox (state never runs ahead of an
acknowledgement); after the re-run the sandbox and the state hold exactly the valid users, and only
the batches that were in flight at the kill went twice.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from etl.config import Settings
from etl.demo.warehouse import build_demo_warehouse
from etl.pipelines import users
from etl.sandbox import SandboxConfig, SandboxProcess
from etl.state.store import USER_STATE, StateStore
from etl.warehouse.engine import make_engine

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / ".venv" / "bin" / "webengage-sync"
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
KEY = "kill-test-key-not-logged-42"
LICENSE = "~99199077"
RPM = 1200
BATCH = 25
POLL_S = 0.005


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kill") / "template.duckdb"
    build_demo_warehouse(path, users=1200, as_of=AS_OF)
    return path


@pytest.fixture
def warehouse(template: Path, tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    path.write_bytes(template.read_bytes())
    return path


@pytest.fixture(scope="module")
def sandbox_process() -> Iterator[SandboxProcess]:
    config = SandboxConfig(license_code=LICENSE, api_key=KEY, bulk_users_rpm=RPM, latency_ms=30)
    with SandboxProcess(config) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_process: SandboxProcess) -> SandboxProcess:
    """The module's sandbox, emptied and paced again (a resume lifts the pacing)."""
    url = sandbox_process.url
    httpx.post(f"{url}/_sandbox/reset", timeout=10).raise_for_status()
    httpx.post(f"{url}/_sandbox/config", json={"bulk_users_rpm": RPM, "latency_ms": 30}, timeout=10).raise_for_status()
    return sandbox_process


def start_sync(sandbox: SandboxProcess, warehouse: Path, **env: str) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "WEBENGAGE_LICENSE_CODE": LICENSE,
        "WEBENGAGE_API_KEY": KEY,
        "WEBENGAGE_API_URL": sandbox.url,
        "WAREHOUSE_URL": f"duckdb:///{warehouse}",
        "WEBENGAGE_BULK_USERS_RPM": str(RPM),
        **env,
    }
    return subprocess.Popen(
        [str(CLI), "sync", "users"], cwd=ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def kill_after(proc: subprocess.Popen[bytes], sandbox: SandboxProcess, requests: int) -> int:
    """SIGKILL the sync once the sandbox has seen ``requests`` bulk calls; returns the count seen then."""
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:  # one connection: cheap polling
        while (seen := int(http.get("/_sandbox/stats").json()["requests"].get("bulk-users", 0))) < requests:
            if proc.poll() is not None:
                stderr = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
                pytest.fail(f"sync exited ({proc.returncode}) before {requests} requests: {stderr}")
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"sandbox saw only {seen} requests in 60 s")
            time.sleep(POLL_S)
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    if proc.stderr is not None:
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return seen


def sandbox_user_ids(sandbox: SandboxProcess) -> set[str]:
    response = httpx.get(f"{sandbox.url}/_sandbox/users", params={"limit": 100_000}, timeout=10)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    ids = {u["id"] for u in body["users"]}
    assert len(ids) == body["total"]
    return ids


def state_user_ids(warehouse: Path) -> set[str]:
    engine = make_engine(f"duckdb:///{warehouse}")
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("we_user_state"):
                return set()
            return {row[0] for row in conn.execute(sa.select(USER_STATE.c.user_id))}
    finally:
        engine.dispose()


def valid_user_ids(warehouse: Path) -> set[str]:
    """What WebEngage should end up with: distinct non-blank ids of at most 100 characters."""
    engine = make_engine(f"duckdb:///{warehouse}")
    with engine.connect() as conn:
        ids = pd.Series([r[0] for r in conn.execute(sa.text("SELECT user_id FROM users"))], dtype="string")
    engine.dispose()
    ids = ids.str.strip()
    return set(ids[ids.notna() & (ids != "") & (ids.str.len() <= 100)].tolist())


def resume(sandbox: SandboxProcess, warehouse: Path, **extra: Any) -> dict[str, Any]:
    """Re-run in-process to completion; the pacing is lifted (it is not what this test is about)."""
    lifted = {"bulk_users_rpm": 60_000, "latency_ms": 0}
    httpx.post(f"{sandbox.url}/_sandbox/config", json=lifted, timeout=10).raise_for_status()
    settings = Settings.from_mapping(
        {"license_code": LICENSE, "api_key": KEY, "api_url": sandbox.url, "warehouse_url": f"duckdb:///{warehouse}",
         "bulk_users_rpm": 60_000, **extra}
    )  # fmt: skip
    return users.run(settings, run_id="resume")


def check_after_kill(sandbox: SandboxProcess, warehouse: Path, *, in_flight: int) -> tuple[set[str], set[str]]:
    """State never ahead of the sandbox; at most ``in_flight`` batches accepted but not checkpointed."""
    in_sandbox = sandbox_user_ids(sandbox)
    in_state = state_user_ids(warehouse)
    assert in_state <= in_sandbox, f"{len(in_state - in_sandbox)} users checkpointed but never accepted"
    assert len(in_sandbox - in_state) <= in_flight * BATCH
    return in_sandbox, in_state


def check_resumed(
    sandbox: SandboxProcess, warehouse: Path, summary: dict[str, Any], *, checkpointed: int, max_resent: int
) -> int:
    """Exactly the valid users in the sandbox and the state, 0 violations, few re-sent batches."""
    valid = valid_user_ids(warehouse)
    stats = sandbox.stats()
    assert stats["violations"] == 0, stats["violations_by_rule"]
    assert sandbox_user_ids(sandbox) == valid
    assert state_user_ids(warehouse) == valid
    assert summary["status"] == "success" and summary["accepted"] == len(valid) - checkpointed
    assert summary["extracted"] == summary["unchanged"] + summary["accepted"] + summary["rejected"]
    batches = math.ceil(len(valid) / BATCH)
    total = int(stats["requests"]["bulk-users"])
    resent = total - batches
    assert 0 <= resent <= max_resent, f"{total} requests for {batches} batches"
    # A re-sent batch reuses its deterministic request id: the sandbox acknowledges it without ingesting.
    assert stats["deduplicated_requests"] <= resent
    with StateStore(make_engine(f"duckdb:///{warehouse}")) as store:
        assert next(r for r in store.runs(pipeline="users") if r["run_id"] == "resume")["status"] == "success"
    return resent


@pytest.mark.parametrize("kill_at", [5, 20, 40])
def test_kill_nine_mid_load_then_resume_with_one_request_in_flight(
    sandbox: SandboxProcess, warehouse: Path, kill_at: int
) -> None:
    proc = start_sync(sandbox, warehouse, WEBENGAGE_CONCURRENCY="1")
    seen = kill_after(proc, sandbox, kill_at)
    in_sandbox, in_state = check_after_kill(sandbox, warehouse, in_flight=1)
    # One request at a time, each checkpointed before the next is sent: the batches before the
    # one the sandbox had just received are in the state, and the run had not finished.
    assert len(in_state) >= (seen - 1) * BATCH
    assert len(in_sandbox) < len(valid_user_ids(warehouse))

    summary = resume(sandbox, warehouse, concurrency=1)
    check_resumed(sandbox, warehouse, summary, checkpointed=len(in_state), max_resent=1)


def test_kill_nine_with_auto_concurrency_resends_at_most_the_batches_in_flight(
    sandbox: SandboxProcess, warehouse: Path
) -> None:
    # Auto width: ceil(19.6/s x 0.1 s x 1.5) + 1 = 4 requests in flight.
    width = 4
    proc = start_sync(sandbox, warehouse, WEBENGAGE_EXPECTED_LATENCY_S="0.1")
    kill_after(proc, sandbox, 30)
    in_sandbox, in_state = check_after_kill(sandbox, warehouse, in_flight=width)
    assert len(in_state) > 0 and len(in_sandbox) < len(valid_user_ids(warehouse))

    summary = resume(sandbox, warehouse, expected_latency_s=0.1)
    check_resumed(sandbox, warehouse, summary, checkpointed=len(in_state), max_resent=width)
