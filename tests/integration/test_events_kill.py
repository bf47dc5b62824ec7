"""Exactly-once event delivery under ``kill -9``: the CLI is killed at 5 points of a window's sync (some
mid-send, some while it replays the outbox left by the previous kill), then re-run to completion.

The sandbox runs in its own process, paced (6,000 requests/min, 20 ms latency) so kills land mid-run.
After every kill the ledger is never ahead of the sandbox; at the end the sandbox holds exactly the events
an uninterrupted transform of the window produces (same multiset of full payloads), with 0 duplicates.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson
import pytest
import sqlalchemy as sa

from etl.config import Settings
from etl.demo.warehouse import build_demo_warehouse
from etl.mappings.events import EventMapping
from etl.pipelines import events
from etl.sandbox import SandboxConfig, SandboxProcess
from etl.state import ledger
from etl.state.store import StateStore
from etl.transform.events import TypeRegistry, transform_events
from etl.warehouse.engine import make_engine

ROOT = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
WINDOW = (AS_OF - timedelta(days=31), AS_OF)
KEY = "events-kill-key-not-logged"
LICENSE = "~99199077"
RPM = 6000
POLL_S = 0.003
#: Requests the sandbox must have seen since the previous kill before the next one. The small steps land
#: right after a restart, while the run replays what the killed one left in the outbox.
KILL_STEPS = (3, 1, 30, 2, 40)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    config = SandboxConfig(license_code=LICENSE, api_key=KEY, bulk_events_rpm=RPM, latency_ms=20)
    with SandboxProcess(config) as server:
        yield server


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    path = tmp_path / "warehouse.duckdb"
    build_demo_warehouse(path, users=500, as_of=AS_OF)
    return path


def start_sync(sandbox: SandboxProcess, warehouse: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "WEBENGAGE_LICENSE_CODE": LICENSE,
        "WEBENGAGE_API_KEY": KEY,
        "WEBENGAGE_API_URL": sandbox.url,
        "WAREHOUSE_URL": f"duckdb:///{warehouse}",
        "WEBENGAGE_BULK_EVENTS_RPM": str(RPM),
        "WEBENGAGE_EXPECTED_LATENCY_S": "0.05",
    }
    argv = [sys.executable, "-m", "etl.cli_events", "--start", WINDOW[0].isoformat(), "--end", WINDOW[1].isoformat()]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def requests_seen(http: httpx.Client) -> int:
    return int(http.get("/_sandbox/stats").json()["requests"].get("bulk-events", 0))


def kill_at(proc: subprocess.Popen[bytes], http: httpx.Client, target: int) -> int:
    """SIGKILL the sync once the sandbox has seen ``target`` requests in all; returns the count then."""
    deadline = time.monotonic() + 60
    while (seen := requests_seen(http)) < target:
        if proc.poll() is not None:
            stderr = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            pytest.fail(f"sync exited ({proc.returncode}) before request {target}: {stderr}")
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


def sandbox_events(http: httpx.Client) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = http.get("/_sandbox/events").json()["events"]
    return found


def ledger_request_ids(warehouse: Path) -> set[str]:
    engine = make_engine(f"duckdb:///{warehouse}")
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("we_event_ledger"):
                return set()
            rows = conn.execute(sa.select(ledger.LEDGER.c.request_id).where(ledger.LEDGER.c.status == "accepted"))
            return {str(r[0]) for r in rows}
    finally:
        engine.dispose()


def reference_payloads(warehouse: Path) -> Counter[bytes]:
    """What one uninterrupted run must deliver: the transform of the window's rows, first row per id."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute("SET TimeZone='UTC'")
        df = (
            con.sql(
                "SELECT * FROM main.events WHERE event_time >= ? AND event_time < ? ORDER BY event_id",
                params=[WINDOW[0] - timedelta(hours=2), WINDOW[1]],
            )
            .to_arrow_table()
            .to_pandas()
        )
    finally:
        con.close()
    df = df[~df["event_id"].duplicated()].reset_index(drop=True)
    out = transform_events(df, EventMapping(), TypeRegistry(lambda _scope: {}))
    return canonical(out.payloads)


def canonical(payloads: list[dict[str, Any]]) -> Counter[bytes]:
    return Counter(orjson.dumps(p, option=orjson.OPT_SORT_KEYS) for p in payloads)


def test_kill_nine_at_five_points_then_resume_delivers_each_event_once(
    sandbox: SandboxProcess, warehouse: Path
) -> None:
    expected = reference_payloads(warehouse)
    kills: list[int] = []
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        http.post("/_sandbox/reset").raise_for_status()
        http.post("/_sandbox/config", json={"bulk_events_rpm": RPM, "latency_ms": 20}).raise_for_status()
        for step in KILL_STEPS:
            proc = start_sync(sandbox, warehouse)
            kills.append(kill_at(proc, http, requests_seen(http) + step))
            # The ledger never runs ahead of WebEngage: every request it records was ingested.
            ingested = {str(e["request_id"]) for e in sandbox_events(http)}
            assert ledger_request_ids(warehouse) <= ingested
        assert sandbox.stats()["events"] < sum(expected.values()), "the kills came too late to interrupt the sync"

        http.post("/_sandbox/config", json={"bulk_events_rpm": 60_000, "latency_ms": 0}).raise_for_status()
        settings = Settings.from_mapping(
            {"license_code": LICENSE, "api_key": KEY, "api_url": sandbox.url,
             "warehouse_url": f"duckdb:///{warehouse}", "bulk_events_rpm": 60_000, "expected_latency_s": 0.05}
        )  # fmt: skip
        summary = events.run(settings, window=WINDOW, run_id="resume")
        delivered = [e["event"] for e in sandbox_events(http)]
        stats = sandbox.stats()

    assert summary["status"] == "success"
    assert stats["duplicate_events"] == 0 and stats["violations"] == 0, stats["violations_by_rule"]
    assert len(delivered) == sum(expected.values())  # nothing missing, nothing twice
    assert canonical(delivered) == expected
    with StateStore(make_engine(f"duckdb:///{warehouse}")) as store:
        assert ledger.ledger_counts(store)["accepted"] == len(delivered)
        assert ledger.pending(store) == []
    print(
        f"FIGURES kills_at={kills} events={len(delivered)} requests={stats['requests']['bulk-events']} "
        f"deduplicated={stats['deduplicated_requests']} resume_replayed={summary['replayed_events']}"
    )
