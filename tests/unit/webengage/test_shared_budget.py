"""Shared rate budgets (GCRA reservations) on the fake clock: arithmetic, buckets, budgets and clients.

The PostgreSQL store runs the same arithmetic in one statement; tests/integration/test_shared_budget.py
checks it with real processes.
"""

from __future__ import annotations

import random
import socket
from typing import Any

import httpx
import pytest

from etl.errors import ConfigError
from etl.state.budget import PostgresBudgetStore
from etl.webengage import (
    BudgetStore,
    FakeClock,
    MemoryBudgetStore,
    RateBudgets,
    SharedBudgetError,
    SharedTokenBucket,
    TokenBucket,
    WebEngageClient,
)
from etl.webengage.shared_budget import held_tat, reserve

from .fakes import FakeAPI, a_user, make_client, make_settings, reply


def shared_client(api: FakeAPI, *, clock: FakeClock, store: BudgetStore | None, **overrides: Any) -> WebEngageClient:
    return WebEngageClient(
        make_settings(**overrides),
        transport=httpx.MockTransport(api),
        clock=clock,
        rng=random.Random(1),
        budget_store=store,
    )


MINUTE = 1_800_000_000.0


def test_reserve_bursts_then_spaces_requests() -> None:
    tat, now, waits = 0.0, 100.0, []
    for _ in range(6):
        tat, wait = reserve(tat, now, interval_s=0.1, burst=3)
        waits.append(wait)
    assert waits == pytest.approx([0, 0, 0, 0.1, 0.2, 0.3])
    assert tat == pytest.approx(100.6)


def test_idle_time_does_not_bank_more_than_the_burst() -> None:
    tat, _ = reserve(0.0, 100.0, interval_s=0.1, burst=2)
    waits = []
    for _ in range(4):  # an hour later: still only two at once
        tat, wait = reserve(tat, 3700.0, interval_s=0.1, burst=2)
        waits.append(wait)
    assert waits == pytest.approx([0, 0, 0.1, 0.2])


def test_hold_opens_one_slot_at_its_end_and_no_burst_follows() -> None:
    tat = held_tat(0.0, 100.0, seconds=5.0, interval_s=0.1, burst=4)
    waits = []
    for _ in range(3):
        tat, wait = reserve(tat, 100.0, interval_s=0.1, burst=4)
        waits.append(wait)
    assert waits == pytest.approx([5.0, 5.1, 5.2])
    assert held_tat(200.0, 100.0, seconds=5.0, interval_s=0.1, burst=4) == 200.0  # never shortens a wait


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_window_ever_holds_more_than_burst_plus_rate(seed: int) -> None:
    """Random arrivals from many workers: start times obey count(window W) <= burst + W / interval."""
    rng = random.Random(seed)
    interval, burst = 0.05, 5.0
    tat, starts, now = 0.0, [], 0.0
    for _ in range(2000):
        now += rng.expovariate(40.0)  # arrivals at ~2x the rate, in clumps
        tat, wait = reserve(tat, now, interval_s=interval, burst=burst)
        starts.append(now + wait)
    starts.sort()
    for window in (0.01, 0.5, 1.0, 7.0, 60.0):
        j = 0
        most = 0
        for i, t in enumerate(starts):
            while starts[j] <= t - window:
                j += 1
            most = max(most, i - j + 1)
        assert most <= burst + window / interval + 1e-9, (window, most)
    # and the rate is used: the last start is where back-to-back slots would put it
    assert starts[-1] == pytest.approx((len(starts) - burst) * interval, rel=0.05)


def test_shared_bucket_sleeps_on_the_injected_clock() -> None:
    clock = FakeClock()
    store = MemoryBudgetStore(clock)
    a = SharedTokenBucket(name="lic/users", rate_per_s=10, capacity=2, store=store, clock=clock)
    b = SharedTokenBucket(name="lic/users", rate_per_s=10, capacity=2, store=store, clock=clock)
    other = SharedTokenBucket(name="lic/events", rate_per_s=10, capacity=2, store=store, clock=clock)
    assert [a.acquire(), b.acquire(), a.acquire(), b.acquire()] == pytest.approx([0, 0, 0.1, 0.1])
    assert clock.monotonic() == pytest.approx(0.2)  # two buckets, one budget: 10/s together
    assert other.acquire() == 0  # another budget is untouched


def test_pause_and_remaining_zero_hold_every_worker() -> None:
    clock = FakeClock(start=MINUTE + 15)
    store = MemoryBudgetStore(clock)
    a, b = (SharedTokenBucket(name="lic/users", rate_per_s=10, capacity=1, store=store, clock=clock) for _ in "ab")
    a.pause_for(3.0)  # a 429 seen by worker a
    assert b.acquire() == pytest.approx(3.0)
    b.observe(5000, 0)  # Remaining 0: nobody sends before the next minute boundary
    assert a.acquire() == pytest.approx(60 - 18)
    a.observe(5000, 17)  # a positive Remaining changes nothing: the reservations count every worker
    assert a.last_limit == 5000
    assert b.acquire() == pytest.approx(0.1)


def test_budgets_use_the_store_with_account_rates() -> None:
    clock = FakeClock()
    settings = make_settings(bulk_users_rpm=600, users_rpm=1200, rate_headroom=0.9, shared_bulk_budget=True)
    budgets = RateBudgets(settings, clock, store=MemoryBudgetStore(clock))
    assert budgets.shared
    bulk = budgets["bulk-users"]
    assert isinstance(bulk, SharedTokenBucket) and bulk is budgets["bulk-events"]
    assert bulk.name == "~2024bb40/bulk" and bulk.rate_per_s == pytest.approx(min(600, 60_000) / 60 * 0.9)
    assert budgets["users"].name == "~2024bb40/users" and budgets["users"].rate_per_s == pytest.approx(18.0)
    assert budgets["users"].capacity == pytest.approx(18.0)  # burst_seconds = 1
    local = RateBudgets(make_settings(), clock)
    assert not local.shared and isinstance(local["users"], TokenBucket)


def test_two_clients_with_one_store_pace_together() -> None:
    """Two workers, 600 requests/min each configured: with the shared store they take twice as long."""

    def elapsed(shared: bool) -> float:
        clock = FakeClock()
        store = MemoryBudgetStore(clock) if shared else None
        clients = [
            shared_client(
                FakeAPI(reply(201)), clock=clock, store=store, users_rpm=600, rate_headroom=1.0, burst_seconds=1
            )
            for _ in range(2)
        ]
        for n in range(50):
            for client in clients:
                client.send(a_user(n))
        return clock.monotonic()

    # Shared: 100 requests at 10/s with a burst of 10 -> 9 s. Per process: each bucket sleeps its own
    # 0.1 s on the one fake clock too, but every bucket also refills while the other sleeps: 4 s.
    assert elapsed(shared=True) == pytest.approx(9.0, abs=1e-3)
    assert elapsed(shared=False) == pytest.approx(4.0, abs=0.2)


def test_a_429_at_one_client_pauses_the_other() -> None:
    clock = FakeClock(start=MINUTE)
    store = MemoryBudgetStore(clock)
    throttled = shared_client(FakeAPI(reply(429, headers={"Retry-After": "7"}), reply(201)), clock=clock, store=store)
    other = shared_client(FakeAPI(reply(201)), clock=clock, store=store)
    assert throttled.send(a_user(1)).throttled == 1
    before = clock.monotonic()
    assert other.send(a_user(2)).accepted
    assert clock.monotonic() - before < 0.01  # the retry above already waited out the pause
    store2 = MemoryBudgetStore(clock)
    first = shared_client(
        FakeAPI(reply(429, headers={"Retry-After": "7"})), clock=clock, store=store2, max_throttle_wait_s=0
    )
    second = shared_client(FakeAPI(reply(201)), clock=clock, store=store2)
    assert first.send(a_user(3)).outcome == "transient"  # gives up at once, but the pause stays
    start = clock.monotonic()
    assert second.send(a_user(4)).accepted
    assert clock.monotonic() - start == pytest.approx(7.0, abs=0.01)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_store_fails_fast_without_the_password() -> None:
    url = f"postgresql+psycopg://budget:pw-SECRET-77@127.0.0.1:{_closed_port()}/db?connect_timeout=2"
    with pytest.raises(SharedBudgetError) as info:
        PostgresBudgetStore(url)
    assert "shared_budget_url" in str(info.value) and "pw-SECRET-77" not in str(info.value)
    with pytest.raises(SharedBudgetError):
        make_client(FakeAPI(reply(201)), shared_budget_url=url)


@pytest.mark.parametrize(
    ("extra", "setting"),
    [
        ({"shared_budget_url": "duckdb:///state.duckdb"}, "shared_budget_url"),
        ({"shared_budget_url": "postgresql+psycopg://h/db", "budget_share": 0.5}, "budget_share"),
    ],
)
def test_settings_validation(extra: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings(**extra)
    assert info.value.setting == setting
