"""SQLAlchemy engines for the warehouse and the state database.

DuckDB allows one writing process per file, and Airflow runs every task in its own process. So DuckDB
engines use ``NullPool`` (the file lock is held only while a connection is open) and
:func:`connect_with_retry` waits out a lock held by another process instead of failing the task.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from etl.errors import ConfigError, WebEngageSyncError

log = logging.getLogger(__name__)
T = TypeVar("T")

_LOCK_MARKERS = ("could not set lock", "conflicting lock", "database is locked")
DEFAULT_LOCK_TIMEOUT_S = 120.0
#: DuckDB's buffer pool keeps every block it reads (5M rows: 1.25 GB RSS; DuckDB's own default cap is 80% of
#: RAM). A bounded pool costs little (128 MB: 696 MB peak, 1.09x the time; notes-databases.md) and keeps an
#: Airflow worker's memory flat. Sorts, joins and aggregates beyond it spill to disk.
DEFAULT_DUCKDB_MEMORY_LIMIT = "256MB"
#: Each engine's lock timeout (the ``lock_timeout_s`` setting it was made with).
_LOCK_TIMEOUTS: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()


class DatabaseLockedError(WebEngageSyncError):
    """Another process held the database file's lock for longer than ``lock_timeout_s``."""

    def __init__(self, waited_s: float, message: str) -> None:
        first = message.strip().splitlines()[0][:300] if message.strip() else "locked"
        super().__init__(
            f"the database file is locked by another process (waited {waited_s:.0f}s): {first}. Fix: wait for the "
            "other sync to finish, raise lock_timeout_s (WEBENGAGE_LOCK_TIMEOUT_S), or keep the state in "
            "PostgreSQL (STATE_URL) so that several processes can write it"
        )


def is_duckdb(engine_or_url: Engine | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else sa.make_url(engine_or_url)
    return url.get_backend_name() == "duckdb"


def make_engine(
    url: str,
    *,
    setting: str = "warehouse_url",
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT,
) -> Engine:
    """An engine for ``url``; DuckDB files get their directory created, sessions pinned to UTC and a bounded
    buffer pool (``memory_limit``, unless the URL gives its own ``?memory_limit=``; empty: DuckDB's default);
    connecting waits up to ``lock_timeout_s`` for another process's file lock."""
    engine = _make_engine(url, setting, memory_limit)
    _LOCK_TIMEOUTS[engine] = lock_timeout_s
    return engine


def lock_timeout(engine: Engine) -> float:
    return _LOCK_TIMEOUTS.get(engine, DEFAULT_LOCK_TIMEOUT_S)


def duckdb_memory_limit(url: sa.URL, default: str) -> str | None:
    """The ``memory_limit`` to SET on a DuckDB engine's connections: None when the URL sets its own (passed
    to DuckDB as connect config), or for an in-memory database (its data lives in the pool: a cap would
    bound the database itself), or when ``default`` is empty."""
    if "memory_limit" in url.query or not default.strip():
        return None
    if not url.database or url.database == ":memory:" or url.database.startswith(":memory:"):
        return None
    return default.strip()


def _make_engine(url: str, setting: str, memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT) -> Engine:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(setting, "not a valid SQLAlchemy URL") from None
    backend = parsed.get_backend_name()
    if backend == "duckdb":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, poolclass=NullPool)
        limit = duckdb_memory_limit(parsed, memory_limit)

        @event.listens_for(engine, "connect")
        def _utc(dbapi_conn: Any, _record: Any) -> None:
            # connect_args TimeZone fails (icu autoload); a SET after connect works.
            dbapi_conn.execute("SET TimeZone='UTC'")
            if limit is not None:
                # A SET (bound value), not connect config: config must match across every connection to one
                # file in a process (the state store's and the warehouse's), a SET applies to the instance.
                try:
                    dbapi_conn.execute("SET memory_limit = ?", [limit])
                except Exception as exc:  # DuckDB refused the value: a configuration error, named
                    raise ConfigError("duckdb_memory_limit", f"DuckDB refused memory_limit: {exc}") from None

        return engine
    if backend == "postgresql":
        engine = sa.create_engine(parsed, pool_pre_ping=True, pool_size=2, max_overflow=2)

        @event.listens_for(engine, "connect")
        def _pg_utc(dbapi_conn: Any, _record: Any) -> None:
            with dbapi_conn.cursor() as cur:
                cur.execute("SET TIME ZONE 'UTC'")
            dbapi_conn.commit()

        return engine
    try:
        return sa.create_engine(parsed, pool_pre_ping=True)
    except Exception as exc:  # missing driver etc.
        raise ConfigError(setting, f"cannot create engine: {exc.__class__.__name__}") from None


def is_lock_error(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _LOCK_MARKERS)


def retry_on_lock(
    fn: Callable[[], T],
    *,
    timeout_s: float = DEFAULT_LOCK_TIMEOUT_S,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``fn``; while another process holds the DuckDB file lock, wait and try again."""
    started = monotonic()
    deadline = started + timeout_s
    delay = 0.05
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_lock_error(exc):
                raise
            if monotonic() >= deadline:
                raise DatabaseLockedError(monotonic() - started, str(exc)) from None
            log.info("database file is locked by another process; retrying in %.2fs", delay)
            sleep(delay)
            delay = min(delay * 2, 2.0)


@contextmanager
def connect_with_retry(engine: Engine, *, begin: bool = False) -> Iterator[Connection]:
    """A connection (optionally in a transaction) that waits out another process's DuckDB lock."""
    conn = retry_on_lock(engine.connect, timeout_s=lock_timeout(engine))
    try:
        if begin:
            with conn.begin():
                yield conn
        else:
            yield conn
    finally:
        conn.close()
