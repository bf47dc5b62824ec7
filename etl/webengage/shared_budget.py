"""A rate budget shared by every worker process of an account, kept in PostgreSQL.

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
from collections.abc import Callable
from typing import Final, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine

from etl.errors import WebEngageSyncError
from etl.webengage.clock import Clock, seconds_to_next_minute

BUDGETS: Final = sa.Table(
    "we_rate_budget",
    sa.MetaData(),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("tat", sa.Float(53), nullable=False),
)
# Serialises the first CREATE TABLE of concurrent workers (PostgreSQL's IF NOT EXISTS still races).
_DDL_LOCK_KEY: Final = 0x57E_B0D6
_FIX: Final = "check shared_budget_url (WEBENGAGE_SHARED_BUDGET_URL): the PostgreSQL server must accept connections"


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
            self._tat[budget] = held_tat(self._tat.get(budget, 0.0), now, seconds=seconds, interval_s=interval_s,
                                         burst=burst)  # fmt: skip

    def close(self) -> None:
        pass


class PostgresBudgetStore:
    """Budgets in a PostgreSQL table; each reservation is one autocommitted upsert on the server clock."""

    def __init__(self, url: str, *, engine_factory: Callable[[str], Engine] | None = None) -> None:
        try:
            engine = (engine_factory or _engine)(url)
            with engine.begin() as conn:  # one transaction: the advisory lock lasts until the table exists
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_DDL_LOCK_KEY)))
                conn.execute(sa.schema.CreateTable(BUDGETS, if_not_exists=True))
            self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        except (sa.exc.SQLAlchemyError, ImportError) as exc:  # ImportError: the URL names a missing driver
            raise SharedBudgetError(f"shared rate budget unavailable ({type(exc).__name__}). Fix: {_FIX}") from None

    def reserve(self, budget: str, *, interval_s: float, burst: float) -> float:
        now = _db_now()
        interval = sa.bindparam("interval", type_=sa.Float(53))
        # A new budget starts idle (tat in the past): its first reservation is now + interval.
        stmt = (
            pg_insert(BUDGETS)
            .values(name=sa.bindparam("budget"), tat=now + interval)
            .on_conflict_do_update(index_elements=[BUDGETS.c.name], set_={"tat": sa.func.greatest(BUDGETS.c.tat,
                                                                                                   now) + interval})
            # RETURNING sees the new tat: wait = new_tat - burst × interval - now.
            .returning(BUDGETS.c.tat - sa.bindparam("window", type_=sa.Float(53)) - now)
        )  # fmt: skip
        wait = self._run(stmt, {"budget": budget, "interval": interval_s, "window": burst * interval_s})
        return max(0.0, wait)

    def hold(self, budget: str, *, seconds: float, interval_s: float, burst: float) -> None:
        until = _db_now() + sa.bindparam("delay", type_=sa.Float(53))
        stmt = (
            pg_insert(BUDGETS)
            .values(name=sa.bindparam("budget"), tat=until)
            .on_conflict_do_update(index_elements=[BUDGETS.c.name], set_={"tat": sa.func.greatest(BUDGETS.c.tat,
                                                                                                   until)})
            .returning(BUDGETS.c.tat)
        )  # fmt: skip
        self._run(stmt, {"budget": budget, "delay": seconds + (burst - 1.0) * interval_s})

    def _run(self, stmt: sa.Executable, params: dict[str, object]) -> float:
        try:
            with self._engine.connect() as conn:
                value = conn.execute(stmt, params).scalar_one()
        except sa.exc.SQLAlchemyError as exc:
            raise SharedBudgetError(f"shared rate budget failed ({type(exc).__name__}). Fix: {_FIX}") from None
        return float(value)

    def close(self) -> None:
        self._engine.dispose()

    def __repr__(self) -> str:
        url = self._engine.url
        return f"PostgresBudgetStore(host={url.host!r}, database={url.database!r})"  # never the password


def _db_now() -> sa.ColumnElement[float]:
    # The server's clock, not the workers': every process reserves on one timeline.
    return sa.func.extract("epoch", sa.func.clock_timestamp()).cast(sa.Float(53))


def _engine(url: str) -> Engine:
    # Reservations are short: a few connections serve every sender thread of the process.
    return sa.create_engine(url, pool_size=2, max_overflow=6, pool_pre_ping=True, pool_timeout=60)


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
