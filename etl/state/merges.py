"""Merged anonymous -> known pairs (DDL in ``sql/state/035_merged_pairs.sql``): the journal and the record
of every merge, one row per anonymous id.

The rules, applied by :mod:`etl.pipelines.merges`:

1. a pair is written ``in_flight`` (with its deterministic ``x-request-id``) before its request is sent;
2. when WebEngage accepts it, the row becomes ``merged`` (its rejects resolved in the same transaction);
3. a run first re-sends every ``in_flight`` row with the same id and body, so a crash between acceptance
   and the checkpoint ends in WebEngage's de-duplication rather than a second merge call.

A row refused by WebEngage (HTTP 400) is deleted: nothing was merged, and the pair is evaluated again
(and re-driven under the reject policy) by the next run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.state.store import StateStore

PAIRS: Final = sa.table(
    "we_merged_pairs",
    sa.column("anonymous_id", sa.String),
    sa.column("user_id", sa.String),
    sa.column("status", sa.String),
    sa.column("request_id", sa.String),
    sa.column("identified_at", sa.DateTime),
    sa.column("journaled_at", sa.DateTime),
    sa.column("merged_at", sa.DateTime),
    sa.column("run_id", sa.String),
)
IN_FLIGHT: Final = "in_flight"
MERGED: Final = "merged"

_IDS = sa.bindparam("ids", type_=sa.ARRAY(sa.String))


@dataclass(frozen=True, kw_only=True)
class Pair:
    """One anonymous id and the user it is (to be) merged into; ``request_id`` is its x-request-id."""

    anonymous_id: str
    user_id: str
    request_id: str
    identified_at: datetime | None = None


def known(store: StateStore, anonymous_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """``anonymous_id -> (user_id, status)`` for the ids merged or journaled before."""
    if not anonymous_ids:
        return {}
    query = sa.select(PAIRS.c.anonymous_id, PAIRS.c.user_id, PAIRS.c.status).where(
        PAIRS.c.anonymous_id == sa.any_(_IDS)
    )
    rows = store.conn.execute(query, {"ids": list(anonymous_ids)}).all()
    store.conn.commit()
    return {str(r[0]): (str(r[1]), str(r[2])) for r in rows}


def in_flight(store: StateStore) -> list[Pair]:
    """Pairs journaled but not confirmed, oldest first (re-sent before anything new)."""
    query = (
        sa.select(PAIRS.c.anonymous_id, PAIRS.c.user_id, PAIRS.c.request_id, PAIRS.c.identified_at)
        .where(PAIRS.c.status == IN_FLIGHT)
        .order_by(PAIRS.c.journaled_at, PAIRS.c.anonymous_id)
    )
    rows = store.conn.execute(query).all()
    store.conn.commit()
    return [Pair(anonymous_id=str(r[0]), user_id=str(r[1]), request_id=str(r[2]), identified_at=r[3]) for r in rows]


def journal(conn: Connection, pairs: Sequence[Pair], *, run_id: str, now: datetime) -> None:
    """Write pairs about to be sent as ``in_flight`` (call in a transaction, before sending them)."""
    if not pairs:
        return
    values = [
        {
            "anonymous_id": p.anonymous_id,
            "user_id": p.user_id,
            "status": IN_FLIGHT,
            "request_id": p.request_id,
            "identified_at": p.identified_at,
            "journaled_at": now,
            "merged_at": None,
            "run_id": run_id,
        }
        for p in pairs
    ]
    conn.execute(sa.insert(PAIRS).values(values))


def confirm(conn: Connection, anonymous_ids: Sequence[str], *, run_id: str, now: datetime) -> None:
    """Mark journaled pairs merged (call only after WebEngage accepted their requests)."""
    if anonymous_ids:
        conn.execute(
            sa.update(PAIRS)
            .where(PAIRS.c.anonymous_id == sa.any_(_IDS))
            .values(status=MERGED, merged_at=now, run_id=run_id),
            {"ids": list(anonymous_ids)},
        )


def forget(conn: Connection, anonymous_ids: Sequence[str]) -> None:
    """Drop journaled pairs WebEngage refused (nothing merged: evaluated again next run)."""
    if anonymous_ids:
        conn.execute(
            sa.delete(PAIRS).where(PAIRS.c.anonymous_id == sa.any_(_IDS), PAIRS.c.status == IN_FLIGHT),
            {"ids": list(anonymous_ids)},
        )


def counts(store: StateStore) -> dict[str, int]:
    """Pairs per status."""
    rows = store.conn.execute(sa.select(PAIRS.c.status, sa.func.count()).group_by(PAIRS.c.status)).all()
    store.conn.commit()
    return {str(status): int(n) for status, n in rows}
