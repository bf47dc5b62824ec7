"""Token buckets and budgets on the fake clock: pacing, bursts, pauses, server re-sync."""

from __future__ import annotations

from typing import Any

import pytest

from etl.webengage import FakeClock, RateBudgets, TokenBucket
from tests.helpers.requests import bulk_events_request, bulk_users_request

from .fakes import FakeAPI, a_user, make_client, make_settings, reply

MINUTE = 1_800_000_000.0


def bucket(clock: FakeClock, rpm: float = 600, burst_seconds: float = 1.0, headroom: float = 1.0) -> TokenBucket:
    return TokenBucket.from_rpm(name="t", rpm=rpm, headroom=headroom, burst_seconds=burst_seconds, clock=clock)


def test_rate_and_capacity_follow_settings() -> None:
    b = TokenBucket.from_rpm(name="b", rpm=500, headroom=0.98, burst_seconds=1.0, clock=FakeClock())
    assert b.rate_per_s == pytest.approx(500 / 60 * 0.98)
    assert b.capacity == pytest.approx(500 / 60 * 0.98)
    tiny = TokenBucket.from_rpm(name="b", rpm=6, headroom=1.0, burst_seconds=1.0, clock=FakeClock())
    assert tiny.capacity == 1.0  # never below one request


def test_acquire_bursts_capacity_then_paces() -> None:
    clock = FakeClock()
    b = bucket(clock, rpm=600, burst_seconds=0.5)  # 10/s, 5 tokens
    waits = [b.acquire() for _ in range(8)]
    assert waits[:5] == [0, 0, 0, 0, 0]
    assert waits[5:] == pytest.approx([0.1, 0.1, 0.1])
    assert clock.monotonic() == pytest.approx(0.3)


def test_client_pacing_100_requests_at_600_rpm() -> None:
    """10 req/s with a 1 s burst: the first 10 go at once, the other 90 at 0.1 s each ≈ 9 s."""
    clock = FakeClock()
    client = make_client(FakeAPI(reply(201)), clock=clock, users_rpm=600, rate_headroom=1.0, burst_seconds=1)
    results = [client.send(a_user(n)) for n in range(100)]
    assert all(r.accepted for r in results)
    assert 8.9 <= clock.monotonic() <= 10.0
    assert max(clock.sleeps) <= 0.1 + 1e-9  # spread out, never a minute-long burst-then-stall


def test_headroom_slows_the_pace() -> None:
    clock = FakeClock()
    client = make_client(FakeAPI(reply(201)), clock=clock, users_rpm=600, rate_headroom=0.5, burst_seconds=1)
    for n in range(100):
        client.send(a_user(n))
    assert clock.monotonic() == pytest.approx(95 / 5.0, rel=0.01)  # 5 burst, then 95 at 5/s


@pytest.mark.parametrize(("shared", "low", "high"), [(True, 8.9, 10.0), (False, 3.9, 4.5)])
def test_bulk_endpoints_share_a_bucket_iff_configured(shared: bool, low: float, high: float) -> None:
    clock = FakeClock()
    settings: dict[str, Any] = {
        "bulk_users_rpm": 600,
        "bulk_events_rpm": 600,
        "rate_headroom": 1.0,
        "shared_bulk_budget": shared,
    }
    client = make_client(FakeAPI(reply(201)), clock=clock, **settings)
    assert (client.budgets["bulk-users"] is client.budgets["bulk-events"]) is shared
    for n in range(50):
        client.send(bulk_users_request([{"userId": f"u{n}"}], f"u{n}"))
        client.send(bulk_events_request([{"eventName": "E", "userId": f"u{n}"}], f"e{n}"))
    # Shared: 100 requests on one 10/s bucket ≈ 9 s. Separate: 50 on each ≈ 4 s.
    assert low <= clock.monotonic() <= high


def test_shared_budget_uses_the_smaller_rate() -> None:
    budgets = RateBudgets(
        make_settings(bulk_users_rpm=600, bulk_events_rpm=300, shared_bulk_budget=True, rate_headroom=1.0),
        FakeClock(),
    )
    assert budgets.rate_per_s("bulk-events") == pytest.approx(5.0)
    assert budgets["users"] is not budgets["events"]


def test_remaining_zero_pauses_until_the_next_minute_boundary() -> None:
    clock = FakeClock(start=MINUTE + 15)
    b = bucket(clock)
    b.observe(500, 0)
    assert b.acquire() == pytest.approx(45.0)
    assert clock.time() == pytest.approx(MINUTE + 60)
    assert b.acquire() == pytest.approx(0.1)  # paced after the pause, no burst


def test_remaining_zero_on_a_boundary_waits_a_full_minute() -> None:
    clock = FakeClock(start=MINUTE)
    b = bucket(clock)
    b.observe(None, 0, now=clock.time())
    assert b.acquire() == pytest.approx(60.0)


def test_remaining_below_tokens_lowers_them() -> None:
    clock = FakeClock()
    b = bucket(clock)  # 10 tokens
    b.observe(500, 2)
    assert b.tokens == pytest.approx(2)
    assert [b.acquire(), b.acquire()] == [0, 0]
    assert b.acquire() == pytest.approx(0.1)
    b.observe(500, 400)  # a higher remaining never adds tokens
    assert b.tokens == pytest.approx(0)


def test_pause_until_holds_every_caller_and_keeps_the_later_pause() -> None:
    clock = FakeClock()
    b = bucket(clock)
    b.pause_for(7)
    b.pause_for(3)  # shorter: ignored
    assert b.acquire() == pytest.approx(7.0)
    assert b.acquire() == pytest.approx(0.1)
    b.pause_until(clock.monotonic() - 1)  # in the past: ignored
    assert b.acquire() == pytest.approx(0.1)


def test_budget_share_scales_every_bucket() -> None:
    from etl.webengage import FakeClock, RateBudgets

    from .fakes import make_settings

    full = RateBudgets(make_settings(bulk_users_rpm=600, rate_headroom=1.0), FakeClock())
    half = RateBudgets(make_settings(bulk_users_rpm=600, rate_headroom=1.0, budget_share=0.5), FakeClock())
    assert full.rate_per_s("bulk-users") == 10.0
    assert half.rate_per_s("bulk-users") == 5.0
