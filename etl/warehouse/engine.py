"""SQLAlchemy engines for the warehouse and the state database.

DuckDB allows one writing process per file, and Airflow runs every task in its own process. So DuckDB
engines use ``NullPool`` (the file lock is held only while a connection is open) and
:func:`connect_with_retry` waits out a lock held by another process instead of failing the task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from etl.errors import ConfigError

log = logging.getLogger(__name__)
T = TypeVar("T")

_LOCK_MARKERS = ("could not set lock", "conflicting lock", "database is locked")


def is_duckdb(engine_or_url: Engine | str) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else sa.make_url(engine_or_url)
    return url.get_backend_name() == "duckdb"


def make_engine(url: str, *, setting: str = "warehouse_url") -> Engine:
    """An engine for ``url``; DuckDB files get their directory created and sessions pinned to UTC."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(setting, "not a valid SQLAlchemy URL") from None
    backend = parsed.get_backend_name()
    if backend == "duckdb":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, poolclass=NullPool)

        @event.listens_for(engine, "connect")
        def _utc(dbapi_conn: Any, _record: Any) -> None:
            # connect_args TimeZone fails (icu autoload); a SET after connect works.
            dbapi_conn.execute("SET TimeZone='UTC'")

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
    timeout_s: float = 120.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``fn``; while another process holds the DuckDB file lock, wait and try again."""
    deadline = monotonic() + timeout_s
    delay = 0.05
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_lock_error(exc) or monotonic() >= deadline:
                raise
            log.info("database file is locked by another process; retrying in %.2fs", delay)
            sleep(delay)
            delay = min(delay * 2, 2.0)


@contextmanager
def connect_with_retry(engine: Engine, *, begin: bool = False, timeout_s: float = 120.0) -> Iterator[Connection]:
    """A connection (optionally in a transaction) that waits out another process's DuckDB lock."""
    conn = retry_on_lock(engine.connect, timeout_s=timeout_s)
    try:
        if begin:
            with conn.begin():
                yield conn
        else:
            yield conn
    finally:
        conn.close()
