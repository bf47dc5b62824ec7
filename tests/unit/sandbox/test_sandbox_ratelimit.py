"""Sliding 60-second windows of the sandbox limiter."""

from __future__ import annotations

import pytest

from webengage_dev.sandbox.ratelimit import SlidingWindowLimiter


def test_admits_up_to_limit_then_refuses_until_oldest_leaves() -> None:
    limiter = SlidingWindowLimiter({"users": 3})
    assert [limiter.check("users", t).remaining for t in (0.0, 10.0, 20.0)] == [2, 1, 0]
    refused = limiter.check("users", 30.0)
    assert refused.allowed is False and refused.limit == 3 and refused.remaining == 0
    assert refused.retry_after_s == pytest.approx(30.0)
    assert limiter.check("users", 60.0).allowed  # the request at t=0 has left the window


def test_refused_requests_do_not_count() -> None:
    limiter = SlidingWindowLimiter({"k": 1})
    assert limiter.check("k", 0.0).allowed
    for t in range(1, 59):
        assert not limiter.check("k", float(t)).allowed
    assert limiter.check("k", 60.0).allowed


def test_unlimited_and_independent_keys() -> None:
    limiter = SlidingWindowLimiter({"a": 1, "b": 0, "c": None})
    assert limiter.check("a", 0.0).allowed and not limiter.check("a", 0.0).allowed
    assert all(limiter.check("b", 0.0).allowed for _ in range(1000))
    assert limiter.check("c", 0.0) == (True, 0, 0, 0.0)


def test_refund_and_runtime_limits() -> None:
    limiter = SlidingWindowLimiter({"k": 1})
    limiter.check("k", 0.0)
    limiter.refund("k")
    assert limiter.check("k", 1.0).allowed
    limiter.set_limits({"k": 2})
    assert limiter.check("k", 2.0).allowed
    assert not limiter.check("k", 3.0).allowed
