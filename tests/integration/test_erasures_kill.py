"""Crash safety of erasures: ``kill -9`` the CLI (``python -m etl.cli sync erasures``) while it sends, at three
points (the first request in flight, mid-run, near the end), then re-run to completion.

After the kill, every user whose sync state is gone has an erasure request in the sandbox (state never runs
ahead of an acknowledgement). After the re-run each deleted user has exactly one erasure request there (a request
in flight at the kill is replayed with its ``subject_request_id`` and acknowledged, not recorded twice), their
profiles are gone there and their state here, and every request is submitted.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from etl.pipelines import erasures, users
from etl.resources import DEFAULT_USERS_MAPPING, packaged
from etl.state import erasures as journal
from etl.state.store import StateStore
from etl.warehouse.engine import make_engine
from tests.helpers.kill import kill_at, start_cli
from tests.helpers.sandbox import FAST, profiles, reconfigure, sandbox_process, sandbox_settings
from tests.helpers.warehouse import duck, user_state_ids, warehouse_fixture
from webengage_dev.sandbox import SandboxProcess

KEY = "erasure-kill-key-not-logged-3"
RPM = 1200
DELETED = 60

warehouse = warehouse_fixture(1200)


@pytest.fixture(scope="module")
def sandbox_proc() -> Iterator[SandboxProcess]:
    with sandbox_process(KEY, bulk_users_rpm=FAST, gdpr_rpm=RPM, latency_ms=30) as server:
        yield server


@pytest.fixture
def sandbox(sandbox_proc: SandboxProcess) -> Iterator[SandboxProcess]:
    with httpx.Client(base_url=sandbox_proc.url, timeout=10) as http:
        reconfigure(http, reset=True, gdpr_rpm=RPM, latency_ms=30)
    yield sandbox_proc


def erase_mapping(directory: Path) -> Path:
    path = directory / "users.toml"
    text = packaged(DEFAULT_USERS_MAPPING).read_text(encoding="utf-8")
    path.write_text(text.replace("[source]", 'deletions = "erase"\n\n[source]', 1), encoding="utf-8")
    return path


def gdpr(sandbox: SandboxProcess) -> dict[str, Any]:
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        body: dict[str, Any] = http.get("/_sandbox/gdpr").raise_for_status().json()
    return body


def prepared(sandbox: SandboxProcess, warehouse: Path, mapping: Path) -> list[str]:
    """Every user synced, then DELETED of them removed from the warehouse; returns the deleted ids."""
    settings = sandbox_settings(sandbox, warehouse, KEY, bulk_users_rpm=FAST, users_mapping=str(mapping))
    users.run(settings, run_id="users-1")
    ids = sorted(user_state_ids(warehouse))
    gone = ids[:: len(ids) // DELETED][:DELETED]
    with duckdb.connect(str(warehouse)) as con:
        con.execute("DELETE FROM users WHERE user_id IN (SELECT unnest(?))", [gone])
    return gone


def start(sandbox: SandboxProcess, warehouse: Path, mapping: Path, **env: str) -> subprocess.Popen[bytes]:
    return start_cli(
        ["etl.cli", "sync", "erasures", "--override-guard"],
        sandbox.url,
        warehouse,
        KEY,
        WEBENGAGE_GDPR_RPM=str(RPM),
        WEBENGAGE_USERS_MAPPING=str(mapping),
        **env,
    )


@pytest.mark.parametrize("kill_after", [1, 20, 55])
def test_kill_nine_then_resume_erases_each_deleted_user_exactly_once(
    sandbox: SandboxProcess, warehouse: Path, tmp_path: Path, kill_after: int
) -> None:
    mapping = erase_mapping(tmp_path)
    gone = prepared(sandbox, warehouse, mapping)
    proc = start(sandbox, warehouse, mapping, WEBENGAGE_CONCURRENCY="1")
    kill_at(proc, sandbox, "opengdpr_requests", kill_after)

    # after the kill: the state never runs ahead of WebEngage's acknowledgement
    received = {r["user_id"] for r in gdpr(sandbox)["requests"]}
    forgotten = set(gone) - user_state_ids(warehouse)
    assert forgotten <= received
    assert len(received - forgotten) <= 1  # one request in flight at a time
    with StateStore(make_engine(duck(warehouse))) as store:
        before = journal.status_counts(store)
    assert before.get("submitted", 0) == len(forgotten)
    assert sum(before.values()) < len(gone) or kill_after >= 55

    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        reconfigure(http, gdpr_rpm=FAST, latency_ms=0)
    settings = sandbox_settings(
        sandbox, warehouse, KEY, gdpr_rpm=FAST, users_mapping=str(mapping), max_erasure_share=1.0
    )
    summary = erasures.run(settings, run_id="resume")
    assert summary["status"] == "success"

    seen = gdpr(sandbox)
    per_user: dict[str, int] = {}
    for request in seen["requests"]:
        per_user[request["user_id"]] = per_user.get(request["user_id"], 0) + 1
    assert sorted(per_user) == gone and set(per_user.values()) == {1}  # exactly once
    assert seen["duplicates"] <= 1  # only the request in flight at the kill was replayed
    assert summary["replayed_requests"] <= 1  # journaled one at a time, as it is sent
    assert summary["accepted"] + summary["replayed_accepted"] == len(gone) - len(forgotten)
    assert not set(gone) & set(_profiles(sandbox))
    assert not set(gone) & user_state_ids(warehouse)
    with StateStore(make_engine(duck(warehouse))) as store:
        after = journal.status_counts(store)
    assert sum(after.values()) == len(gone) and set(after) <= {"submitted", "completed"}
    assert sandbox.stats()["violations"] == 0

    again = erasures.run(settings, run_id="again")
    assert again["sent"] == 0 and again["replayed_requests"] == 0 and len(gdpr(sandbox)["requests"]) == len(gone)


def _profiles(sandbox: SandboxProcess) -> dict[str, Any]:
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        return profiles(http)
