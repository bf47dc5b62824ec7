"""The warehouse tables the webhook loader writes (``webengage_events``, ``webengage_webhook_quarantine``,
``we_webhook_segments``) and every statement it runs on them: the loader itself holds no SQL."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine

from etl.resources import packaged
from etl.warehouse.engine import connect_with_retry, is_duckdb
from etl.warehouse.queries import load_sql, split_statements

#: The DDL files, in order: the tables, then ``webengage_opt_outs`` (a view on ``webengage_events``).
WEBHOOK_DDL: Final = ("webhooks.sql", "opt_outs.sql")
#: Arbitrary constant naming the loader's PostgreSQL advisory lock.
_PG_LOCK_KEY: Final = 0x5745_4248_4F4F_4B53 & 0x7FFF_FFFF_FFFF_FFFF

SEGMENTS = sa.table(
    "we_webhook_segments",
    sa.column("segment", sa.String),
    sa.column("byte_offset", sa.BigInteger),
    sa.column("lines", sa.BigInteger),
    sa.column("loaded", sa.BigInteger),
    sa.column("duplicates", sa.BigInteger),
    sa.column("quarantined", sa.BigInteger),
    sa.column("closed_at", sa.DateTime),
    sa.column("updated_at", sa.DateTime),
)


def _arrays(*names: str) -> list[sa.BindParameter[Any]]:
    return [sa.bindparam(n, type_=sa.ARRAY(sa.String)) for n in names]


EVENT_COLUMNS: Final = (
    "rid",
    "name",
    "time",
    "category",
    "user_id",
    "anon_id",
    "event_data",
    "system_data",
    "extra",
    "license",
    "event_type",
    "received",
)
# unnest() over equal-length arrays zips them on DuckDB and PostgreSQL; text in, cast once in SQL.
_EVENTS = sa.text(
    "INSERT INTO webengage_events (request_id, event_name, event_time, category, user_id, anonymous_id, "
    "event_data, system_data, extra, license_code, event_type, received_at, loaded_at) "
    "SELECT unnest(:rid), unnest(:name), CAST(unnest(:time) AS TIMESTAMPTZ), unnest(:category), "
    "unnest(:user_id), unnest(:anon_id), CAST(unnest(:event_data) AS JSON), CAST(unnest(:system_data) AS JSON), "
    "CAST(unnest(:extra) AS JSON), unnest(:license), unnest(:event_type), CAST(unnest(:received) AS TIMESTAMPTZ), "
    "CAST(:now AS TIMESTAMPTZ) "
    "ON CONFLICT (request_id) DO NOTHING"
).bindparams(*_arrays(*EVENT_COLUMNS))
QUARANTINE_COLUMNS: Final = ("rid", "reason", "body", "encoding", "license", "event_type", "received")
_QUARANTINE = sa.text(
    "INSERT INTO webengage_webhook_quarantine (request_id, reason, body, body_encoding, license_code, "
    "event_type, received_at, loaded_at) "
    "SELECT unnest(:rid), unnest(:reason), unnest(:body), unnest(:encoding), unnest(:license), "
    "unnest(:event_type), CAST(unnest(:received) AS TIMESTAMPTZ), CAST(:now AS TIMESTAMPTZ) "
    "ON CONFLICT (request_id) DO NOTHING"
).bindparams(*_arrays(*QUARANTINE_COLUMNS))


def ensure_tables(engine: Engine) -> None:
    """Create the webhook tables if missing, and the opt-outs view over them (idempotent; DDL packaged in
    ``sql/webhooks``)."""
    with connect_with_retry(engine, begin=True) as conn:
        for name in WEBHOOK_DDL:
            for stmt in split_statements(load_sql(packaged(f"sql/webhooks/{name}"))):
                conn.execute(sa.text(stmt))


def insert_events(conn: Connection, columns: Mapping[str, Any], *, now: str) -> int:
    """Insert a chunk of events (arrays by column); returns how many were new (request ids de-duplicate)."""
    return int(conn.execute(_EVENTS, {**columns, "now": now}).rowcount or 0)


def insert_quarantine(conn: Connection, columns: Mapping[str, Any], *, now: str) -> int:
    return int(conn.execute(_QUARANTINE, {**columns, "now": now}).rowcount or 0)


def checkpoints(conn: Connection, names: Sequence[str]) -> list[tuple[Any, ...]]:
    """(segment, byte_offset, lines, loaded, duplicates, quarantined, closed_at) of the named segments."""
    s = SEGMENTS.c
    query = sa.select(s.segment, s.byte_offset, s.lines, s.loaded, s.duplicates, s.quarantined, s.closed_at).where(
        s.segment.in_(list(names))
    )
    rows = [tuple(r) for r in conn.execute(query).all()]
    conn.commit()
    return rows


def save_checkpoint(conn: Connection, values: Mapping[str, Any]) -> None:
    """Upsert one segment's checkpoint; call in the transaction that inserted its rows."""
    stmt = pg_insert(SEGMENTS).values(dict(values))
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["segment"], set_={k: stmt.excluded[k] for k in values if k != "segment"}
        )
    )


def closed_before(conn: Connection, names: Sequence[str], cutoff: datetime) -> list[str]:
    """The named segments closed (fully loaded) before ``cutoff`` (naive UTC)."""
    s = SEGMENTS.c
    query = sa.select(s.segment).where(s.segment.in_(list(names)), s.closed_at.is_not(None), s.closed_at <= cutoff)
    expired = [str(r[0]) for r in conn.execute(query).all()]
    conn.commit()
    return expired


@contextmanager
def exclusive(engine: Engine) -> Iterator[Connection]:
    """One connection for the run, and the loader's lock (DuckDB: the file lock the connection holds)."""
    with connect_with_retry(engine) as conn:
        if is_duckdb(engine) or conn.dialect.name != "postgresql":
            yield conn
            return
        conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
        conn.commit()
        try:
            yield conn
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
            conn.commit()
