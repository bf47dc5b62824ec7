"""Cohort state: the membership snapshot WebEngage accepted, per-cohort metadata, and the event outbox.

Tables (DDL in ``sql/state/007-009``): ``we_cohort_members``, ``we_cohorts``, ``we_cohort_events``.
Reads take a :class:`StateStore`; writes that must commit with a checkpoint take the connection of
``store.transaction()``. SQLAlchemy Core with bound parameters only; works on DuckDB and PostgreSQL.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from etl.state.store import StateStore

TABLES: Final = ("we_cohort_members", "we_cohorts", "we_cohort_events")
EventStatus = Literal["pending", "sent", "rejected"]

MEMBERS = sa.table(
    "we_cohort_members",
    sa.column("cohort", sa.String),
    sa.column("user_id", sa.String),
    sa.column("member", sa.Boolean),
    sa.column("pending", sa.Boolean),
    sa.column("version", sa.Integer),
    sa.column("changed_at", sa.DateTime),
    sa.column("run_id", sa.String),
)
COHORTS = sa.table(
    "we_cohorts",
    sa.column("cohort", sa.String),
    sa.column("attribute", sa.String),
    sa.column("mode", sa.String),
    sa.column("events", sa.Boolean),
    sa.column("version", sa.Integer),
    sa.column("status", sa.String),
    sa.column("members", sa.Integer),
    sa.column("last_run_id", sa.String),
    sa.column("last_synced_at", sa.DateTime),
    sa.column("retired_at", sa.DateTime),
)
EVENTS = sa.table(
    "we_cohort_events",
    sa.column("cohort", sa.String),
    sa.column("user_id", sa.String),
    sa.column("transition", sa.String),
    sa.column("version", sa.Integer),
    sa.column("status", sa.String),
    sa.column("queued_at", sa.DateTime),
    sa.column("sent_at", sa.DateTime),
    sa.column("run_id", sa.String),
    sa.column("detail", sa.String),
)

_IDS = sa.bindparam("ids", type_=sa.ARRAY(sa.String))
# Array parameters + unnest() instead of multi-row VALUES (as StateStore.checkpoint_users): one cached
# statement per call on DuckDB and PostgreSQL alike. Table and column names are constants.
_WRITE_AHEAD = sa.text(
    "INSERT INTO we_cohort_members (cohort, user_id, member, pending, version, changed_at, run_id) "
    "SELECT :cohort, unnest(:ids), FALSE, TRUE, :version, :now, :run_id "
    "ON CONFLICT (cohort, user_id) DO UPDATE SET pending = TRUE, version = excluded.version, run_id = excluded.run_id"
).bindparams(_IDS)
_ACCEPT_TRUE = sa.text(
    "INSERT INTO we_cohort_members (cohort, user_id, member, pending, version, changed_at, run_id) "
    "SELECT :cohort, unnest(:ids), TRUE, FALSE, :version, :now, :run_id "
    "ON CONFLICT (cohort, user_id) DO UPDATE SET member = TRUE, pending = FALSE, version = excluded.version, "
    "changed_at = excluded.changed_at, run_id = excluded.run_id"
).bindparams(_IDS)
_QUEUE_EVENTS = sa.text(
    "INSERT INTO we_cohort_events (cohort, user_id, transition, version, status, queued_at, run_id) "
    "SELECT :cohort, unnest(:ids), unnest(:transitions), :version, 'pending', :now, :run_id "
    "ON CONFLICT (cohort, user_id, transition, version) DO NOTHING"
).bindparams(_IDS, sa.bindparam("transitions", type_=sa.ARRAY(sa.String)))


@dataclass(frozen=True, kw_only=True)
class CohortState:
    cohort: str
    attribute: str
    mode: str
    events: bool
    version: int
    status: str
    members: int
    last_run_id: str | None
    last_synced_at: datetime | None
    retired_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """Accepted members, and users whose last flip is unconfirmed (their WebEngage value is unknown)."""

    members: list[str]
    in_doubt: list[str]


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    user_id: str
    transition: str
    version: int
    queued_at: datetime


# -- metadata --------------------------------------------------------------------------------------
def get_cohort(store: StateStore, cohort: str) -> CohortState | None:
    row = store.conn.execute(sa.select(COHORTS).where(COHORTS.c.cohort == cohort)).mappings().first()
    store.conn.commit()
    return CohortState(**dict(row)) if row is not None else None


def all_cohorts(store: StateStore) -> list[CohortState]:
    rows = store.conn.execute(sa.select(COHORTS).order_by(COHORTS.c.cohort)).mappings().all()
    store.conn.commit()
    return [CohortState(**dict(r)) for r in rows]


def begin_version(store: StateStore, *, cohort: str, attribute: str, mode: str, events: bool, run_id: str) -> int:
    """Open a new sync version of the cohort (version + 1; created at 1) and return it."""
    values = {
        "cohort": cohort,
        "attribute": attribute,
        "mode": mode,
        "events": events,
        "version": 1,
        "status": "active",
        "members": 0,
        "last_run_id": run_id,
        "last_synced_at": None,
        "retired_at": None,
    }
    stmt = pg_insert(COHORTS).values(values)
    with store.transaction() as conn:
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["cohort"],
                set_={
                    "attribute": stmt.excluded.attribute,
                    "mode": stmt.excluded.mode,
                    "events": stmt.excluded.events,
                    "version": COHORTS.c.version + 1,
                    "status": sa.literal("active"),
                    "retired_at": sa.null(),
                    "last_run_id": stmt.excluded.last_run_id,
                },
            )
        )
        version = conn.execute(sa.select(COHORTS.c.version).where(COHORTS.c.cohort == cohort)).scalar_one()
    return int(version)


def finish_sync(store: StateStore, *, cohort: str, run_id: str, now: datetime) -> int:
    """Record the run and the member count (accepted members only); returns the count."""
    with store.transaction() as conn:
        members = conn.execute(
            sa.select(sa.func.count()).where(MEMBERS.c.cohort == cohort, MEMBERS.c.member.is_(True))
        ).scalar_one()
        conn.execute(
            sa.update(COHORTS)
            .where(COHORTS.c.cohort == cohort)
            .values(members=int(members), last_run_id=run_id, last_synced_at=now)
        )
    return int(members)


def mark_retired(store: StateStore, *, cohort: str, run_id: str, now: datetime) -> None:
    with store.transaction() as conn:
        conn.execute(
            sa.update(COHORTS)
            .where(COHORTS.c.cohort == cohort)
            .values(status="retired", members=0, retired_at=now, last_run_id=run_id, last_synced_at=now)
        )


# -- snapshot --------------------------------------------------------------------------------------
def snapshot(store: StateStore, cohort: str) -> Snapshot:
    rows = store.conn.execute(
        sa.select(MEMBERS.c.user_id, MEMBERS.c.member, MEMBERS.c.pending)
        .where(MEMBERS.c.cohort == cohort)
        .order_by(MEMBERS.c.user_id)
    ).all()
    store.conn.commit()
    return Snapshot(members=[r[0] for r in rows if r[1]], in_doubt=[r[0] for r in rows if r[2]])


def snapshot_counts(store: StateStore, cohort: str) -> tuple[int, int]:
    """``(members, in doubt)`` of a cohort's snapshot, counted by the database."""
    one: sa.ColumnElement[int] = sa.literal(1)
    zero: sa.ColumnElement[int] = sa.literal(0)
    row = store.conn.execute(
        sa.select(
            sa.func.sum(sa.case((MEMBERS.c.member.is_(True), one), else_=zero)),
            sa.func.sum(sa.case((MEMBERS.c.pending.is_(True), one), else_=zero)),
        ).where(MEMBERS.c.cohort == cohort)
    ).one()
    store.conn.commit()
    return int(row[0] or 0), int(row[1] or 0)


def member_count(store: StateStore, cohort: str) -> int:
    n = store.conn.execute(
        sa.select(sa.func.count()).where(MEMBERS.c.cohort == cohort, MEMBERS.c.member.is_(True))
    ).scalar_one()
    store.conn.commit()
    return int(n)


def mark_pending(
    store: StateStore, *, cohort: str, user_ids: Sequence[str], version: int, run_id: str, now: datetime
) -> None:
    """Write-ahead, before anything is sent: these users' WebEngage value is unknown until a batch is
    accepted. New rows are non-members; existing members stay members until their false is accepted."""
    if not user_ids:
        return
    with store.transaction() as conn:
        conn.execute(
            _WRITE_AHEAD, {"cohort": cohort, "ids": list(user_ids), "version": version, "now": now, "run_id": run_id}
        )


def apply_accepted(
    conn: Connection,
    *,
    cohort: str,
    true_ids: Sequence[str],
    false_ids: Sequence[str],
    version: int,
    run_id: str,
    now: datetime,
) -> None:
    """WebEngage accepted these values: ``true`` users are members, ``false`` ones leave the snapshot.
    Call inside ``store.transaction()``."""
    if true_ids:
        conn.execute(
            _ACCEPT_TRUE, {"cohort": cohort, "ids": list(true_ids), "version": version, "now": now, "run_id": run_id}
        )
    if false_ids:
        conn.execute(
            sa.delete(MEMBERS).where(MEMBERS.c.cohort == cohort, MEMBERS.c.user_id == sa.any_(_IDS)),
            {"ids": list(false_ids)},
        )


def clear_pending(conn: Connection, *, cohort: str, user_ids: Sequence[str]) -> None:
    """WebEngage refused these flips (nothing changed there): back to the last accepted state."""
    if not user_ids:
        return
    params = {"ids": list(user_ids)}
    where = (MEMBERS.c.cohort == cohort, MEMBERS.c.user_id == sa.any_(_IDS))
    conn.execute(sa.delete(MEMBERS).where(*where, MEMBERS.c.member.is_(False)), params)
    conn.execute(sa.update(MEMBERS).where(*where).values(pending=False), params)


def clear_snapshot(conn: Connection, *, cohort: str) -> int:
    result = conn.execute(sa.delete(MEMBERS).where(MEMBERS.c.cohort == cohort))
    return int(result.rowcount or 0)


# -- event outbox ----------------------------------------------------------------------------------
def queue_events(
    conn: Connection,
    *,
    cohort: str,
    transitions: Sequence[tuple[str, str]],
    version: int,
    run_id: str,
    now: datetime,
) -> None:
    """Queue ``(user_id, "entered"|"exited")`` events; call in the transaction that records the flips."""
    if not transitions:
        return
    ids, kinds = (list(col) for col in zip(*transitions, strict=True))
    conn.execute(
        _QUEUE_EVENTS,
        {"cohort": cohort, "ids": ids, "transitions": kinds, "version": version, "now": now, "run_id": run_id},
    )


def pending_events(store: StateStore, cohort: str) -> list[QueuedEvent]:
    """Queued events not yet accepted, in a fixed order (so a resend rebuilds the same batches)."""
    rows = store.conn.execute(
        sa.select(EVENTS.c.user_id, EVENTS.c.transition, EVENTS.c.version, EVENTS.c.queued_at)
        .where(EVENTS.c.cohort == cohort, EVENTS.c.status == "pending")
        .order_by(EVENTS.c.version, EVENTS.c.user_id, EVENTS.c.transition)
    ).all()
    store.conn.commit()
    return [QueuedEvent(r[0], r[1], int(r[2]), r[3]) for r in rows]


def mark_events(
    conn: Connection,
    *,
    cohort: str,
    keys: Iterable[tuple[str, str, int]],
    status: EventStatus,
    now: datetime,
    detail: str | None = None,
) -> None:
    """Set the status of events given as ``(user_id, transition, version)``."""
    groups: dict[tuple[str, int], list[str]] = defaultdict(list)
    for user_id, transition, version in keys:
        groups[(transition, version)].append(user_id)
    for (transition, version), ids in groups.items():
        conn.execute(
            sa.update(EVENTS)
            .where(
                EVENTS.c.cohort == cohort,
                EVENTS.c.transition == transition,
                EVENTS.c.version == version,
                EVENTS.c.user_id == sa.any_(_IDS),
            )
            .values(status=status, sent_at=now if status == "sent" else None, detail=detail),
            {"ids": ids},
        )


def event_counts(store: StateStore, cohort: str) -> dict[str, int]:
    rows = store.conn.execute(
        sa.select(EVENTS.c.status, sa.func.count()).where(EVENTS.c.cohort == cohort).group_by(EVENTS.c.status)
    ).all()
    store.conn.commit()
    return {str(r[0]): int(r[1]) for r in rows}
