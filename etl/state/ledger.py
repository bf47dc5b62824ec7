"""The event ledger and the transactional outbox (DDL in ``sql/state/005_*`` and ``006_*``).

Exactly-once delivery of events rests on three rules, all applied by :mod:`etl.pipelines.events`:

1. before a request is sent, its exact body and event ids are journaled in the outbox (``in_flight``);
2. when WebEngage accepts it, its ledger rows (``accepted``) are written and its outbox row deleted in
   one transaction; an event accepted once is never sent again, whatever window is re-run;
3. every run first replays what the outbox still holds, with the same ``x-request-id`` and the same bytes,
   so a crash between acceptance and the ledger write ends in WebEngage's de-duplication, not a duplicate.

Reads take the :class:`~etl.state.store.StateStore` (its one connection); writes take a connection inside
:meth:`StateStore.transaction`. Bulk writes bind whole arrays (``unnest``) so a 25-event checkpoint is
one statement on DuckDB and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from etl.engine.rejects import ROW
from etl.state.store import REJECTS, StateStore

LEDGER: Final = sa.table(
    "we_event_ledger",
    sa.column("event_id", sa.String),
    sa.column("status", sa.String),
    sa.column("reason", sa.String),
    sa.column("request_id", sa.String),
    sa.column("run_id", sa.String),
    sa.column("accepted_at", sa.DateTime),
    sa.column("updated_at", sa.DateTime),
)
OUTBOX: Final = sa.table(
    "we_event_outbox",
    sa.column("request_id", sa.String),
    sa.column("endpoint", sa.String),
    sa.column("status", sa.String),
    sa.column("items", sa.Integer),
    sa.column("event_ids", sa.Text),
    sa.column("body", sa.Text),
    sa.column("run_id", sa.String),
    sa.column("created_at", sa.DateTime),
)
TABLES: Final = ("we_event_ledger", "we_event_outbox")
ACCEPTED: Final = "accepted"
REJECTED: Final = "rejected"
IN_FLIGHT: Final = "in_flight"

_IDS = sa.bindparam("ids", type_=sa.ARRAY(sa.String))
_REASONS = sa.bindparam("reasons", type_=sa.ARRAY(sa.String))
_REQUESTS = sa.bindparam("requests", type_=sa.ARRAY(sa.String))


@dataclass(frozen=True, kw_only=True)
class OutboxEntry:
    """One request as it was (or is about to be) sent: replaying it sends exactly these bytes."""

    request_id: str
    endpoint: str
    event_ids: tuple[str, ...]
    body: bytes


# -- ledger ---------------------------------------------------------------------------------------
def accepted_ids(store: StateStore, event_ids: Sequence[str]) -> set[str]:
    """The ids among ``event_ids`` that WebEngage already accepted."""
    if not event_ids:
        return set()
    query = sa.select(LEDGER.c.event_id).where(LEDGER.c.status == ACCEPTED, LEDGER.c.event_id == sa.any_(_IDS))
    rows = store.conn.execute(query, {"ids": list(event_ids)}).scalars().all()
    store.conn.commit()
    return {str(r) for r in rows}


def record_accepted(
    conn: Connection, *, event_ids: Sequence[str], request_ids: Sequence[str], run_id: str, now: datetime
) -> None:
    """Mark events accepted, ``request_ids[i]`` being the request of ``event_ids[i]`` (call inside a
    transaction, only after WebEngage accepted those requests). Delete + insert rather than an upsert:
    DuckDB's ON CONFLICT costs about twice as much, and accepted always wins."""
    if not event_ids:
        return
    ids = list(event_ids)
    conn.execute(sa.delete(LEDGER).where(LEDGER.c.event_id == sa.any_(_IDS)), {"ids": ids})
    source = sa.select(
        sa.func.unnest(_IDS),
        sa.cast(sa.literal(ACCEPTED), sa.String),
        sa.func.unnest(_REQUESTS),
        sa.cast(sa.literal(run_id), sa.String),
        sa.cast(sa.literal(now), sa.DateTime),
        sa.cast(sa.literal(now), sa.DateTime),
    )
    stmt = sa.insert(LEDGER).from_select(
        ["event_id", "status", "request_id", "run_id", "accepted_at", "updated_at"], source
    )
    conn.execute(stmt, {"ids": ids, "requests": list(request_ids)})


def record_rejected(conn: Connection, rows: Iterable[tuple[str, str]], *, run_id: str, now: datetime) -> int:
    """Mark ``(event_id, reason)`` rows rejected; an accepted event stays accepted. Returns rows given."""
    merged = dict(rows)
    if not merged:
        return 0
    source = sa.select(
        sa.func.unnest(_IDS),
        sa.func.unnest(_REASONS),
        sa.cast(sa.literal(REJECTED), sa.String),
        sa.cast(sa.literal(run_id), sa.String),
        sa.cast(sa.literal(now), sa.DateTime),
    )
    stmt = pg_insert(LEDGER).from_select(["event_id", "reason", "status", "run_id", "updated_at"], source)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["event_id"],
            set_={c: stmt.excluded[c] for c in ("status", "reason", "run_id", "updated_at")},
            where=LEDGER.c.status != ACCEPTED,
        ),
        {"ids": list(merged), "reasons": [r[:120] for r in merged.values()]},
    )
    return len(merged)


def ledger_counts(store: StateStore) -> dict[str, int]:
    """Events per ledger status."""
    rows = store.conn.execute(sa.select(LEDGER.c.status, sa.func.count()).group_by(LEDGER.c.status)).all()
    store.conn.commit()
    return {str(status): int(n) for status, n in rows}


def resolve_row_rejects(
    conn: Connection, *, pipeline: str, event_ids: Sequence[str], run_id: str, now: datetime
) -> None:
    """Whole-event rejects of events that went through are resolved (value-level ones stay open)."""
    if not event_ids:
        return
    conn.execute(
        sa.update(REJECTS)
        .where(
            REJECTS.c.pipeline == pipeline,
            REJECTS.c.status == "open",
            REJECTS.c.column_name == ROW,
            REJECTS.c.row_key == sa.any_(_IDS),
        )
        .values(status="resolved", last_seen=now, run_id=run_id),
        {"ids": list(event_ids)},
    )


# -- outbox ---------------------------------------------------------------------------------------
def journal(conn: Connection, entries: Sequence[OutboxEntry], *, run_id: str, now: datetime) -> None:
    """Write requests about to be sent as ``in_flight`` (each request id once: replays are not re-journaled)."""
    if not entries:
        return
    values = [
        {
            "request_id": e.request_id,
            "endpoint": e.endpoint,
            "status": IN_FLIGHT,
            "items": len(e.event_ids),
            "event_ids": orjson.dumps(list(e.event_ids)).decode(),
            # orjson emits UTF-8 only, so the body round-trips through a portable TEXT column.
            "body": e.body.decode("utf-8"),
            "run_id": run_id,
            "created_at": now,
        }
        for e in entries
    ]
    # A plain insert: DuckDB's ON CONFLICT costs several times more, and the caller never repeats an id.
    conn.execute(sa.insert(OUTBOX).values(values))


def complete(conn: Connection, request_ids: Sequence[str]) -> None:
    """Remove requests that reached an outcome (call in the transaction that records it)."""
    if request_ids:
        conn.execute(sa.delete(OUTBOX).where(OUTBOX.c.request_id == sa.any_(_IDS)), {"ids": list(request_ids)})


def pending(store: StateStore) -> list[OutboxEntry]:
    """Requests journaled but not settled, oldest first (replayed before anything new is sent)."""
    query = sa.select(OUTBOX.c.request_id, OUTBOX.c.endpoint, OUTBOX.c.event_ids, OUTBOX.c.body).order_by(
        OUTBOX.c.created_at, OUTBOX.c.request_id
    )
    rows = store.conn.execute(query).all()
    store.conn.commit()
    return [
        OutboxEntry(request_id=str(r[0]), endpoint=str(r[1]), event_ids=tuple(orjson.loads(r[2])), body=_bytes(r[3]))
        for r in rows
    ]


def pending_event_ids(store: StateStore) -> set[str]:
    rows = store.conn.execute(sa.select(OUTBOX.c.event_ids)).scalars().all()
    store.conn.commit()
    return {str(e) for r in rows for e in orjson.loads(r)}


def _bytes(value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)
