"""One rate budget shared by 4 worker processes through PostgreSQL (``shared_budget_url``).

Four processes send single ``/events`` calls for DURATION_S seconds, each configured with the account's full
limit, against one sandbox process that allows N requests per sliding minute. Per-process pacing would
send 4 × 0.98 N per minute (past N after 15.3 s); the shared budget must keep all of them together at the
limit: the sandbox answers no 429, no window of the timeline holds more than the budget allows, and
together they reach at least 0.95 of N per minute.

Run as a script, this file is one worker (``python test_shared_budget.py worker …``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

N = 1200  # requests per minute: the account limit, in the sandbox and in every worker's settings
WORKERS = 4
DURATION_S = 16.0
HEADROOM = 0.98
BURST_S = 1.0
KEY = "shared-budget-key-not-logged"
LICENSE = "~99199077"


def worker(sandbox_url: str, budget_url: str, name: str, start_at: float, duration_s: float) -> None:
    """Send one event per request from ``start_at`` (epoch) for ``duration_s``; print counts as JSON."""
    from etl.config import Settings
    from etl.webengage import WebEngageClient, event_request

    settings = Settings.from_mapping(
        {"license_code": LICENSE, "api_key": KEY, "api_url": sandbox_url, "events_rpm": N,
         "shared_budget_url": budget_url, "rate_headroom": HEADROOM, "burst_seconds": BURST_S,
         "concurrency": 4, "max_throttle_wait_s": 0}
    )  # fmt: skip
    with WebEngageClient(settings) as client:  # connects to the budget table before the start line
        time.sleep(max(0.0, start_at - time.time()))

        def requests() -> Iterator[Any]:
            n = 0
            while time.time() < start_at + duration_s:
                n += 1
                yield event_request({"userId": f"{name}-{n}", "eventName": "ping"}, f"{name}-{n:06d}")

        accepted = sum(r.accepted for r in client.send_many(requests()))
        stats = client.stats.snapshot()
    print(json.dumps({"name": name, "accepted": accepted, "requests": stats["requests"],
                      "throttled": stats["throttled"]}))  # fmt: skip


def most_in_window(times: list[float], window: float) -> int:
    """The largest number of ``times`` (sorted) inside any half-open window of length ``window``."""
    most, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        most = max(most, i - j + 1)
    return most


@pytest.mark.postgres
def test_four_processes_share_one_budget(pg_db: str) -> None:
    from etl.sandbox import SandboxConfig, SandboxProcess
    from etl.webengage.shared_budget import BUDGETS

    config = SandboxConfig(license_code=LICENSE, api_key=KEY, events_rpm=N, retry_after=True)
    with SandboxProcess(config) as sandbox:
        start_at = time.time() + 2.0  # every worker imported and connected by then
        procs = [
            subprocess.Popen(  # this file, fixed arguments
                [sys.executable, __file__, "worker", sandbox.url, pg_db, f"w{i}", str(start_at), str(DURATION_S)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for i in range(WORKERS)
        ]  # fmt: skip
        reports = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err[-2000:]
            reports.append(json.loads(out.strip().splitlines()[-1]))
        stats = sandbox.stats()
        events = httpx.get(f"{sandbox.url}/_sandbox/events", timeout=30).json()["events"]

    times = sorted(float(e["received_at"]) for e in events)
    per_worker = Counter(str(e["event"]["userId"]).split("-")[0] for e in events)
    rate = N / 60 * HEADROOM
    burst = rate * BURST_S
    # Never over the limit: the sandbox's sliding minute never refused a request ...
    assert stats["throttled"] == 0 and sum(r["throttled"] for r in reports) == 0
    assert stats["violations"] == 0 and len(events) == sum(r["accepted"] for r in reports)
    # ... and no stretch of the timeline holds more than the shared budget allows (2 requests of slack for
    # the jitter between a reserved slot and the server's clock).
    windows = {w: most_in_window(times, w) for w in (1.0, 5.0, 10.0)}
    for window, most in windows.items():
        assert most <= rate * window + burst + 2, (window, most)
    # Together they use the budget: >= 0.95 N per minute over the run, and in steady state (after the burst).
    span = DURATION_S
    total_share = sum(t < times[0] + span for t in times) / (N / 60 * span)
    steady = [t for t in times if times[0] + BURST_S <= t < times[0] + span]
    steady_share = len(steady) / (N / 60 * (span - BURST_S))
    assert total_share >= 0.95 and steady_share >= 0.95, (total_share, steady_share)
    assert len(per_worker) == WORKERS and min(per_worker.values()) > 0.1 * len(events)
    engine = sa.create_engine(pg_db)
    with engine.connect() as conn:
        assert conn.execute(sa.select(BUDGETS.c.name)).scalars().all() == [f"{LICENSE}/events"]
    engine.dispose()
    print(
        f"FIGURES shared budget N={N}/min, {WORKERS} processes, {DURATION_S:.0f}s: {len(events)} requests, "
        f"share {total_share:.3f} (steady {steady_share:.3f}); max per 1/5/10 s {windows[1.0]}/{windows[5.0]}/"
        f"{windows[10.0]} vs budget {rate + burst:.1f}/{rate * 5 + burst:.1f}/{rate * 10 + burst:.1f}; "
        f"per worker {dict(sorted(per_worker.items()))}; sandbox 429s {stats['throttled']}"
    )


@pytest.mark.postgres
def test_postgres_store_reserves_and_holds_like_the_reference(pg_db: str) -> None:
    from etl.webengage.shared_budget import PostgresBudgetStore

    store = PostgresBudgetStore(pg_db)
    again = PostgresBudgetStore(pg_db)  # a second worker: the table exists, the budget is the same row
    try:
        started = time.monotonic()
        waits = [(store if i % 2 else again).reserve("t/users", interval_s=0.05, burst=2) for i in range(6)]
        elapsed = time.monotonic() - started
        expected = [0, 0, 0.05, 0.1, 0.15, 0.2]
        assert all(e - elapsed - 0.005 <= w <= e + 0.005 for w, e in zip(waits, expected, strict=True)), waits
        store.hold("t/users", seconds=2.0, interval_s=0.05, burst=2)
        assert 1.98 <= again.reserve("t/users", interval_s=0.05, burst=2) <= 2.06  # one slot at the end, no burst
        assert store.reserve("t/other", interval_s=0.05, burst=2) == 0.0
    finally:
        store.close()
        again.close()


if __name__ == "__main__" and len(sys.argv) == 7 and sys.argv[1] == "worker":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    worker(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), float(sys.argv[6]))
