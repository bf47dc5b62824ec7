"""One rate budget shared by 4 worker processes through PostgreSQL (``shared_budget_url``).

Four processes send single ``/events`` calls for DURATION_S seconds, each configured with the account's full
limit, against one sandbox process that allows N requests per sliding minute. Per-process pacing would
send 4 × 0.98 N per minute (past N after 15.3 s); the shared budget must keep all of them together at the
limit: the sandbox answers no 429, no window of the timeline holds more than the budget allows, every slot
the budget grants carries one accepted request and none goes before its slot, and while the workers wait
on it the budget grants at least 0.95 of N per minute. That rate is read off the slots the budget hands
out (the wait each reservation returns), not off the wall clock: a busy machine makes the workers ask
later, it cannot make the budget grant less.

Run as a script, this file is one worker (``python test_shared_budget.py worker …``).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
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


class RecordingStore:
    """The worker's PostgreSQL budget store, noting each reservation: (epoch before the call, after it, the
    wait it returned). The slot the budget granted opens at (database time of the reservation) + wait, and
    that database time lies between ``before`` and ``after`` (same machine, same clock)."""

    def __init__(self, url: str) -> None:
        from etl.state.budget import PostgresBudgetStore

        self._store = PostgresBudgetStore(url)
        self._lock = threading.Lock()
        self.reservations: list[tuple[float, float, float]] = []
        self.holds = 0

    def reserve(self, budget: str, *, interval_s: float, burst: float) -> float:
        before = time.time()
        wait = self._store.reserve(budget, interval_s=interval_s, burst=burst)
        after = time.time()
        with self._lock:
            self.reservations.append((before, after, wait))
        return wait

    def hold(self, budget: str, *, seconds: float, interval_s: float, burst: float) -> None:
        with self._lock:
            self.holds += 1
        self._store.hold(budget, seconds=seconds, interval_s=interval_s, burst=burst)

    def close(self) -> None:
        self._store.close()


def worker(sandbox_url: str, budget_url: str, name: str, start_at: float, duration_s: float) -> None:
    """Send one event per request from ``start_at`` (epoch) for ``duration_s``; print counts and the
    reservations as JSON."""
    from etl.config import Settings
    from etl.webengage import WebEngageClient
    from tests.helpers.requests import event_request

    settings = Settings.from_mapping(
        {
            "license_code": LICENSE,
            "api_key": KEY,
            "api_url": sandbox_url,
            "events_rpm": N,
            "shared_budget_url": budget_url,
            "rate_headroom": HEADROOM,
            "burst_seconds": BURST_S,
            "concurrency": 4,
            "max_throttle_wait_s": 0,
        }
    )
    store = RecordingStore(budget_url)  # the store the settings name, watched
    with WebEngageClient(settings, budget_store=store) as client:  # connects to the budget table first
        time.sleep(max(0.0, start_at - time.time()))

        def requests() -> Iterator[Any]:
            n = 0
            while time.time() < start_at + duration_s:
                n += 1
                yield event_request({"userId": f"{name}-{n}", "eventName": "ping"}, f"{name}-{n:06d}")

        accepted = sum(r.accepted for r in client.send_many(requests()))
        stats = client.stats.snapshot()
    print(
        json.dumps(
            {
                "name": name,
                "accepted": accepted,
                "requests": stats["requests"],
                "throttled": stats["throttled"],
                "reservations": store.reservations,
                "holds": store.holds,
            }
        )
    )


def granted_rate(reservations: list[tuple[float, float, float]]) -> tuple[float, int]:
    """Slots per second the budget granted while it was the bottleneck, and over how many steps.

    A reservation that had to wait (wait > 0) found the budget's ``tat`` ahead of the clock, so GCRA moved it by
    exactly one interval: consecutive waited-for slots are one interval apart, whatever the machine's load.
    A lapse (every worker busy elsewhere, so the budget fell idle) restarts the sequence with slots that need
    no wait (the burst), so only steps between two consecutive waited-for slots are counted. Slots are
    estimated at the middle of the reservation call + its wait; the estimates' jitter cancels along a run.
    """
    slots = sorted(((before + after) / 2 + wait, wait > 0) for before, after, wait in reservations)
    steps = [b[0] - a[0] for a, b in itertools.pairwise(slots) if a[1] and b[1]]
    return (len(steps) / sum(steps) if steps else 0.0), len(steps)


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
    from etl.state.budget import BUDGETS
    from webengage_dev.sandbox import SandboxConfig, SandboxProcess

    config = SandboxConfig(license_code=LICENSE, api_key=KEY, events_rpm=N, retry_after=True)
    with SandboxProcess(config) as sandbox:
        start_at = time.time() + 2.0  # every worker imported and connected by then
        procs = [
            subprocess.Popen(  # this file, fixed arguments
                [sys.executable, __file__, "worker", sandbox.url, pg_db, f"w{i}", str(start_at), str(DURATION_S)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(WORKERS)
        ]
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
    # Every slot the budget granted carried exactly one request, and it was accepted: no slot taken twice or
    # wasted, no request sent without one ...
    reservations = [tuple(r) for report in reports for r in report["reservations"]]
    assert len(reservations) == sum(r["requests"] for r in reports) == len(events)
    # ... and none before its slot: the k-th request to arrive came no earlier than the k-th slot opened (the
    # client sleeps the wait after the reservation returns; 1 ms for the clocks' resolution).
    opened = sorted(after + wait for _, after, wait in reservations)
    early = [(slot, t) for slot, t in zip(opened, times, strict=True) if t < slot - 0.001]
    assert not early, early[:5]
    # Together they use the budget: while they wait on it, it grants >= 0.95 N per minute (per its own
    # arithmetic: a busy machine delays requests, it does not change the slots granted); and it was the
    # bottleneck for most of the run, so that rate is the run's.
    rate_granted, steps = granted_rate(reservations)
    share = rate_granted / (N / 60)
    assert steps >= len(reservations) // 2, (steps, len(reservations))
    assert share >= 0.95, (share, steps)
    assert sum(r["holds"] for r in reports) == 0  # no pause: nothing answered 429 or Remaining 0
    total_share = sum(t < times[0] + DURATION_S for t in times) / (N / 60 * DURATION_S)  # wall clock: a figure
    assert len(per_worker) == WORKERS and min(per_worker.values()) > 0.1 * len(events)
    engine = sa.create_engine(pg_db)
    with engine.connect() as conn:
        assert conn.execute(sa.select(BUDGETS.c.name)).scalars().all() == [f"{LICENSE}/events"]
    engine.dispose()
    print(
        f"FIGURES shared budget N={N}/min, {WORKERS} processes, {DURATION_S:.0f}s: {len(events)} requests, "
        f"granted share {share:.3f} over {steps} steps (wall-clock share {total_share:.3f}); "
        f"max per 1/5/10 s {windows[1.0]}/{windows[5.0]}/{windows[10.0]} "
        f"vs budget {rate + burst:.1f}/{rate * 5 + burst:.1f}/{rate * 10 + burst:.1f}; "
        f"per worker {dict(sorted(per_worker.items()))}; sandbox 429s {stats['throttled']}"
    )


@pytest.mark.postgres
def test_postgres_store_reserves_and_holds_like_the_reference(pg_db: str) -> None:
    from etl.state.budget import PostgresBudgetStore

    store = PostgresBudgetStore(pg_db)
    again = PostgresBudgetStore(pg_db)  # a second worker: the table exists, the budget is the same row
    try:
        started = time.monotonic()
        waits = [(store if i % 2 else again).reserve("t/users", interval_s=0.05, burst=2) for i in range(6)]
        elapsed = time.monotonic() - started
        expected = [0, 0, 0.05, 0.1, 0.15, 0.2]
        assert all(e - elapsed - 0.005 <= w <= e + 0.005 for w, e in zip(waits, expected, strict=True)), waits
        started = time.monotonic()
        store.hold("t/users", seconds=2.0, interval_s=0.05, burst=2)
        wait = again.reserve("t/users", interval_s=0.05, burst=2)
        elapsed = time.monotonic() - started  # 2 s less the time between the two statements, however long
        assert 2.0 - elapsed - 0.005 <= wait <= 2.06, (wait, elapsed)  # one slot at the end, no burst
        assert store.reserve("t/other", interval_s=0.05, burst=2) == 0.0
    finally:
        store.close()
        again.close()


if __name__ == "__main__" and len(sys.argv) == 7 and sys.argv[1] == "worker":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    worker(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), float(sys.argv[6]))
