"""A rate budget shared by every worker process of an account: the GCRA arithmetic, the store protocol and
the bucket. The PostgreSQL store (one row per budget) lives with the other state tables,
:mod:`etl.state.budget`; the engine hands it to the client.

Under a distributed Airflow executor several tasks send at once; per-process buckets would then add up
to a multiple of WebEngage's limit. Each budget is one row of ``we_rate_budget`` holding a GCRA
"theoretical arrival time" (``tat``, epoch seconds on the database clock). Taking a token is one atomic
``INSERT … ON CONFLICT DO UPDATE … RETURNING`` that reserves the next free slot and answers how long to wait
for it:

    new_tat = max(tat, now) + interval          wait = max(0, new_tat - burst × interval - now)

so at most ``burst + window / interval`` requests start in any window, across all processes, in arrival
order. Written here rather than with pyrate-limiter's ``PostgresBucket``: that bucket logs every
acquisition, polls while blocked and takes ``LOCK TABLE … NOWAIT`` (measured: uneven shares and 0.95 of the
rate with 4 processes); a reservation needs one row, one statement and no polling, and a 429 pause is a
single ``tat`` move that every worker honours.
"""

from __future__ import annotations

import math
import threading
from typing import Protocol

from etl.errors import WebEngageSyncError
from etl.webengage.clock import Clock, seconds_to_next_minute


class SharedBudgetError(WebEngageSyncError):
    """The shared budget database failed; the run stops rather than send unpaced."""


def reserve(tat: float, now: float, *, interval_s: float, burst: float) -> tuple[float, float]:
    """One GCRA reservation: ``(new_tat, seconds to wait from now)``. ``burst`` ≥ 1 slots may go at once."""
    new_tat = max(tat, now) + interval_s
    return new_tat, max(0.0, new_tat - burst * interval_s - now)


def held_tat(tat: float, now: float, *, seconds: float, interval_s: float, burst: float) -> float:
    """``tat`` after a pause of ``seconds``: the next slot opens then, and no burst follows it."""
    return max(tat, now + seconds + (burst - 1.0) * interval_s)


class BudgetStore(Protocol):
    """Where shared budgets live: the reservation arithmetic of :func:`reserve`, applied atomically."""

    def reserve(self, budget: str, *, interval_s: float, burst: float) -> float:
        """Reserve the next slot of ``budget``; the seconds to wait before using it."""
        ...

    def hold(self, budget: str, *, seconds: float, interval_s: float, burst: float) -> None:
        """No slot of ``budget`` opens for ``seconds`` (a 429, or Remaining 0), for every worker."""
        ...

    def close(self) -> None: ...


class MemoryBudgetStore:
    """The same budgets in this process only (tests, and a reference for the SQL), on an injected clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}  # on the clock's monotonic timeline

    def reserve(self, budget: str, *, interval_s: float, burst: float) -> float:
        with self._lock:
            self._tat[budget], wait = reserve(
                self._tat.get(budget, 0.0), self._clock.monotonic(), interval_s=interval_s, burst=burst
            )
            return wait

    def hold(self, budget: str, *, seconds: float, interval_s: float, burst: float) -> None:
        with self._lock:
            now = self._clock.monotonic()
            self._tat[budget] = held_tat(
                self._tat.get(budget, 0.0), now, seconds=seconds, interval_s=interval_s, burst=burst
            )

    def close(self) -> None:
        pass


class SharedTokenBucket:
    """A :class:`~etl.webengage.ratelimit.TokenBucket` look-alike drawing from a :class:`BudgetStore`.

    ``rate_per_s`` and ``capacity`` mean what they mean for the local bucket, but for every worker together.
    Sleeps happen on the injected clock, waits are computed by the store.
    """

    def __init__(self, *, name: str, rate_per_s: float, capacity: float, store: BudgetStore, clock: Clock) -> None:
        if rate_per_s <= 0 or capacity < 1:
            raise ValueError("rate_per_s must be > 0 and capacity >= 1")
        self.name = name
        self.rate_per_s = rate_per_s
        self.capacity = capacity
        self._store = store
        self._clock = clock
        self.last_limit: float | None = None

    @property
    def interval_s(self) -> float:
        return 1.0 / self.rate_per_s

    def acquire(self) -> float:
        """Reserve the next shared slot and sleep until it; returns the seconds waited."""
        wait = self._store.reserve(self.name, interval_s=self.interval_s, burst=self.capacity)
        self._clock.sleep(wait)
        return wait

    def pause_for(self, seconds: float) -> None:
        if seconds > 0 and math.isfinite(seconds):
            self._store.hold(self.name, seconds=seconds, interval_s=self.interval_s, burst=self.capacity)

    def pause_until(self, until: float) -> None:
        """``until`` in this process's monotonic time, as for the local bucket."""
        self.pause_for(until - self._clock.monotonic())

    def observe(self, limit: float | None, remaining: float | None, now: float | None = None) -> None:
        """Remaining 0 holds every worker to the next minute boundary; other values need no action,
        since the shared reservations already count every worker's requests."""
        if limit is not None:
            self.last_limit = limit
        if remaining is not None and remaining <= 0:
            self.pause_for(seconds_to_next_minute(self._clock.time() if now is None else now))

    def __repr__(self) -> str:
        return f"SharedTokenBucket({self.name!r}, rate_per_s={self.rate_per_s:.3f}, capacity={self.capacity:.1f})"
