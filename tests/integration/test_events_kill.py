"""Exactly-once event delivery under ``kill -9``: the CLI is killed at 5 points of a window's sync (some
mid-send, some while it replays the outbox left by the previous kill), then re-run to completion.

The sandbox runs in its own process, paced (6,000 requests/min, 20 ms latency) so kills land mid-run.
After every kill the ledger is never ahead of the sandbox; at the end the sandbox holds exactly the events
an uninterrupted transform of the window produces (same multiset of full payloads), with 0 duplicates.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from etl.pipelines import events
from etl.state import ledger
from etl.state.store import StateStore
from etl.warehouse.engine import make_engine
from tests.helpers.events import WINDOW, canonical, ledger_request_ids, reference_events
from tests.helpers.kill import kill_at, requests_to, start_cli
from tests.helpers.sandbox import reconfigure, sandbox_process, sandbox_settings
from tests.helpers.warehouse import duck, warehouse_fixture
from webengage_dev.sandbox import SandboxProcess

KEY = "events-kill-key-not-logged"
RPM = 6000
#: Requests the sandbox must have seen since the previous kill before the next one. The small steps land
#: right after a restart, while the run replays what the killed one left in the outbox.
KILL_STEPS = (3, 1, 30, 2, 40)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with sandbox_process(KEY, bulk_events_rpm=RPM, latency_ms=20) as server:
        yield server


warehouse = warehouse_fixture(500)


def start_sync(sandbox: SandboxProcess, warehouse: Path) -> subprocess.Popen[bytes]:
    argv = ["etl.cli_events", "--start", WINDOW[0].isoformat(), "--end", WINDOW[1].isoformat()]
    return start_cli(
        argv, sandbox.url, warehouse, KEY, WEBENGAGE_BULK_EVENTS_RPM=str(RPM), WEBENGAGE_EXPECTED_LATENCY_S="0.05"
    )


def requests_seen(http: httpx.Client) -> int:
    return requests_to(http, "bulk-events")


def sandbox_events(http: httpx.Client) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = http.get("/_sandbox/events").json()["events"]
    return found


def test_kill_nine_at_five_points_then_resume_delivers_each_event_once(
    sandbox: SandboxProcess, warehouse: Path
) -> None:
    expected = reference_events(warehouse, WINDOW)
    kills: list[int] = []
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:
        reconfigure(http, reset=True, bulk_events_rpm=RPM, latency_ms=20)
        for step in KILL_STEPS:
            proc = start_sync(sandbox, warehouse)
            kills.append(kill_at(proc, http, "bulk-events", requests_seen(http) + step))
            # The ledger never runs ahead of WebEngage: every request it records was ingested.
            ingested = {str(e["request_id"]) for e in sandbox_events(http)}
            assert ledger_request_ids(warehouse) <= ingested
        assert sandbox.stats()["events"] < sum(expected.values()), "the kills came too late to interrupt the sync"

        reconfigure(http, bulk_events_rpm=60_000, latency_ms=0)
        settings = sandbox_settings(sandbox, warehouse, KEY, bulk_events_rpm=60_000, expected_latency_s=0.05)
        summary = events.run(settings, window=WINDOW, run_id="resume")
        delivered = [e["event"] for e in sandbox_events(http)]
        stats = sandbox.stats()

    assert summary["status"] == "success"
    assert stats["duplicate_events"] == 0 and stats["violations"] == 0, stats["violations_by_rule"]
    assert len(delivered) == sum(expected.values())  # nothing missing, nothing twice
    assert canonical(delivered) == expected
    with StateStore(make_engine(duck(warehouse))) as store:
        assert ledger.ledger_counts(store)["accepted"] == len(delivered)
        assert ledger.pending(store) == []
    print(
        f"FIGURES kills_at={kills} events={len(delivered)} requests={stats['requests']['bulk-events']} "
        f"deduplicated={stats['deduplicated_requests']} resume_replayed={summary['replayed_events']}"
    )
