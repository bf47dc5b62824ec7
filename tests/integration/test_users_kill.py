"""Crash safety of the profile sync: ``kill -9`` the CLI mid-load, then re-run it to completion.

The sync runs in its own process (``python -m etl.cli sync users``: ``webengage-sync``) against the sandbox in another
process, paced at 1,200 requests/min with 30 ms latency so a kill lands mid-run. After the kill, every
user the state store says WebEngage accepted must be in the sandbox (state never runs ahead of an
acknowledgement); after the re-run the sandbox and the state hold exactly the valid users, and only
the batches that were in flight at the kill went twice.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from etl.pipelines import users
from etl.state.store import StateStore
from etl.warehouse.engine import make_engine
from tests.helpers.kill import kill_at, start_cli
from tests.helpers.sandbox import profiles, reconfigure, sandbox_process, sandbox_settings
from tests.helpers.warehouse import duck, user_state_ids, valid_user_ids, warehouse_fixture
from webengage_dev.sandbox import SandboxProcess

KEY = "kill-test-key-not-logged-42"
RPM = 1200
BATCH = 25
POLL_S = 0.005


warehouse = warehouse_fixture(1200)


@pytest.fixture(scope="module")
def sandbox_proc() -> Iterator[SandboxProcess]:
    with sandbox_process(KEY, bulk_users_rpm=RPM, latency_ms=30) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_proc: SandboxProcess) -> Iterator[SandboxProcess]:
    """The module's sandbox, emptied and paced again (a resume lifts the pacing)."""
    with httpx.Client(base_url=sandbox_proc.url, timeout=10) as http:
        reconfigure(http, reset=True, bulk_users_rpm=RPM, latency_ms=30)
    yield sandbox_proc


def start_sync(sandbox: SandboxProcess, warehouse: Path, **env: str) -> subprocess.Popen[bytes]:
    return start_cli(
        ["etl.cli", "sync", "users"], sandbox.url, warehouse, KEY, WEBENGAGE_BULK_USERS_RPM=str(RPM), **env
    )


def kill_after(proc: subprocess.Popen[bytes], sandbox: SandboxProcess, requests: int) -> int:
    """SIGKILL the sync once the sandbox has seen ``requests`` bulk calls; returns the count seen then."""
    return kill_at(proc, sandbox, "bulk-users", requests, poll_s=POLL_S)


def sandbox_user_ids(sandbox: SandboxProcess) -> set[str]:
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        return set(profiles(http))


def resume(sandbox: SandboxProcess, warehouse: Path, **extra: Any) -> dict[str, Any]:
    """Re-run in-process to completion; the pacing is lifted (it is not what this test is about)."""
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        reconfigure(http, bulk_users_rpm=60_000, latency_ms=0)
    return users.run(sandbox_settings(sandbox, warehouse, KEY, bulk_users_rpm=60_000, **extra), run_id="resume")


def check_after_kill(sandbox: SandboxProcess, warehouse: Path, *, in_flight: int) -> tuple[set[str], set[str]]:
    """State never ahead of the sandbox; at most ``in_flight`` batches accepted but not checkpointed."""
    in_sandbox = sandbox_user_ids(sandbox)
    in_state = user_state_ids(warehouse)
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
    assert user_state_ids(warehouse) == valid
    assert summary["status"] == "success" and summary["accepted"] == len(valid) - checkpointed
    assert summary["extracted"] == summary["unchanged"] + summary["accepted"] + summary["rejected"]
    batches = math.ceil(len(valid) / BATCH)
    total = int(stats["requests"]["bulk-users"])
    resent = total - batches
    assert 0 <= resent <= max_resent, f"{total} requests for {batches} batches"
    # A re-sent batch reuses its deterministic request id: the sandbox acknowledges it without ingesting.
    assert stats["deduplicated_requests"] <= resent
    with StateStore(make_engine(duck(warehouse))) as store:
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
