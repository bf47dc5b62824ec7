"""Client-side pacing: one token bucket per WebEngage rate budget.

Written by hand rather than with pyrate-limiter because the bucket must (a) run on the injected
:class:`~etl.webengage.clock.Clock`, so tests pace in fake time, and (b) be re-synced from the server's
``X-RateLimit-Remaining`` and paused by a 429's ``Retry-After`` for every thread at once; pyrate-limiter
offers neither. The bucket refills continuously at ``rpm / 60 × rate_headroom`` tokens per second and
holds at most ``rate × burst_seconds`` tokens, so a 500/min budget is spread over the minute instead of
bursting all 500 requests in its first second. Budgets shared by several processes are in
:mod:`etl.webengage.shared_budget`.
"""

from __future__ import annotations

import math
import threading
from typing import Protocol

from etl.webengage.clock import Clock, seconds_to_next_minute
from etl.webengage.models import Endpoint
from etl.webengage.options import ClientOptions
from etl.webengage.shared_budget import BudgetStore, SharedTokenBucket

# Float slack so a sleep of exactly the computed wait is never followed by a sub-nanosecond re-sleep.
_EPSILON = 1e-9


class TokenBucket:
    """A thread-safe token bucket on an injected clock (monotonic seconds)."""

    def __init__(self, *, name: str, rate_per_s: float, capacity: float, clock: Clock) -> None:
        if rate_per_s <= 0 or capacity < 1:
            raise ValueError("rate_per_s must be > 0 and capacity >= 1")
        self.name = name
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = capacity  # start full: one burst is within budget by construction
        self._last = clock.monotonic()
        self._paused_until = -math.inf
        #: Last ``X-RateLimit-Limit`` the server reported (diagnostics only: its window is unconfirmed).
        self.last_limit: float | None = None

    @classmethod
    def from_rpm(cls, *, name: str, rpm: float, headroom: float, burst_seconds: float, clock: Clock) -> TokenBucket:
        rate = rpm / 60.0 * headroom
        return cls(name=name, rate_per_s=rate, capacity=max(1.0, rate * burst_seconds), clock=clock)

    def acquire(self) -> float:
        """Take one token, sleeping on the clock until one is available. Returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock.monotonic()
                if now < self._paused_until - _EPSILON:
                    wait = self._paused_until - now
                else:
                    self._refill(now)
                    if self._tokens >= 1.0 - _EPSILON:
                        self._tokens = max(0.0, self._tokens - 1.0)
                        return waited
                    wait = (1.0 - self._tokens) / self.rate_per_s
            # Sleep outside the lock so other threads can observe()/pause meanwhile; re-check on waking.
            self._clock.sleep(wait)
            waited += wait

    def pause_until(self, until: float) -> None:
        """Issue nothing before monotonic time ``until`` (all threads of this budget), then resume paced.

        Used after a 429: the whole budget waits, not only the thread that was throttled. After the
        pause one token is available and the rest refill at the steady rate, so no burst follows.
        """
        with self._lock:
            if until <= self._paused_until or until <= self._clock.monotonic():
                return
            self._paused_until = until
            self._tokens = 1.0
            self._last = until  # no refill accrues during the pause

    def pause_for(self, seconds: float) -> None:
        self.pause_until(self._clock.monotonic() + seconds)

    def observe(self, limit: float | None, remaining: float | None, now: float | None = None) -> None:
        """Re-sync from ``X-RateLimit-Limit``/``X-RateLimit-Remaining`` (``now``: wall epoch seconds).

        Remaining 0 stops the budget until the next minute boundary (conservative: the server's window
        is unconfirmed); a remaining below our token count lowers the tokens to it.
        """
        if limit is not None:
            self.last_limit = limit
        if remaining is None:
            return
        if remaining <= 0:
            wall = self._clock.time() if now is None else now
            self.pause_for(seconds_to_next_minute(wall))
            return
        with self._lock:
            self._refill(self._clock.monotonic())
            self._tokens = min(self._tokens, remaining)

    @property
    def tokens(self) -> float:
        with self._lock:
            self._refill(self._clock.monotonic())
            return self._tokens

    def _refill(self, now: float) -> None:
        if now > self._last:
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate_per_s)
            self._last = now

    def __repr__(self) -> str:
        return f"TokenBucket({self.name!r}, rate_per_s={self.rate_per_s:.3f}, capacity={self.capacity:.1f})"


class Bucket(Protocol):
    """What the client needs of a budget: a local :class:`TokenBucket` or a shared one."""

    name: str
    rate_per_s: float
    capacity: float

    def acquire(self) -> float: ...

    def pause_for(self, seconds: float) -> None: ...

    def pause_until(self, until: float) -> None: ...

    def observe(self, limit: float | None, remaining: float | None, now: float | None = None) -> None: ...


class RateBudgets:
    """Endpoint → bucket. The two bulk endpoints share one bucket when ``settings.shared_bulk_budget``.

    With a shared ``store`` (e.g. :class:`etl.state.budget.PostgresBudgetStore`) the buckets pace every worker
    of the account together (``budget_share`` is then 1); otherwise each process paces on its own.
    ``store`` injects a :class:`~etl.webengage.shared_budget.BudgetStore` (tests).
    """

    def __init__(self, settings: ClientOptions, clock: Clock, *, store: BudgetStore | None = None) -> None:
        self._store = store

        def bucket(name: str, rpm: float) -> Bucket:
            if store is not None:
                rate = rpm / 60.0 * settings.rate_headroom
                # Named per license code: limits are per account (per key is unconfirmed).
                return SharedTokenBucket(
                    name=f"{settings.license_code}/{name}",
                    rate_per_s=rate,
                    capacity=max(1.0, rate * settings.burst_seconds),
                    store=store,
                    clock=clock,
                )
            return TokenBucket.from_rpm(
                name=name,
                # budget_share: this process's part of an account budget shared by concurrent tasks.
                rpm=rpm * settings.budget_share,
                headroom=settings.rate_headroom,
                burst_seconds=settings.burst_seconds,
                clock=clock,
            )

        if settings.shared_bulk_budget:
            # One budget for both: pace at the smaller of the two configured rates.
            bulk_users = bulk_events = bucket("bulk", min(settings.bulk_users_rpm, settings.bulk_events_rpm))
        else:
            bulk_users = bucket("bulk-users", settings.bulk_users_rpm)
            bulk_events = bucket("bulk-events", settings.bulk_events_rpm)
        self._buckets: dict[Endpoint, Bucket] = {
            "users": bucket("users", settings.users_rpm),
            "events": bucket("events", settings.events_rpm),
            "bulk-users": bulk_users,
            "bulk-events": bulk_events,
            "opengdpr_requests": bucket("opengdpr_requests", settings.gdpr_rpm),
        }

    @property
    def shared(self) -> bool:
        return self._store is not None

    def __getitem__(self, endpoint: Endpoint) -> Bucket:
        return self._buckets[endpoint]

    def rate_per_s(self, endpoint: Endpoint) -> float:
        return self._buckets[endpoint].rate_per_s

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def __repr__(self) -> str:
        return f"RateBudgets({list(self._buckets.values())!r})"
