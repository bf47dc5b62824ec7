"""GDPR erasure requests of deleted users (DDL in ``sql/state/030_*``): the journal that makes each erasure
go out exactly once, the removal of an erased user's sync state, and the statuses WebEngage reports.

1. before a request is sent, its exact body is journaled (``journaled``);
2. when WebEngage accepts it, in one transaction: the request becomes ``submitted`` and the user's rows
   in ``we_user_state``, ``we_cohort_members`` and the profile sync's rejects are deleted;
3. every run first replays what is still ``journaled``, with the same ``subject_request_id`` and bytes, so
   a crash between WebEngage's acceptance and step 2 ends in one request, not two. A ``rejected`` request
   (refused, so nothing happened there) is sent again, as it is, only while its user is still deleted.

Reads take the :class:`~etl.state.store.StateStore`; writes take a connection inside its ``transaction()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.state.cohorts import MEMBERS
from etl.state.store import REJECTS, USER_STATE, StateStore

REQUESTS: Final = sa.table(
    "we_erasure_requests",
    sa.column("request_id", sa.String),
    sa.column("user_id", sa.String),
    sa.column("status", sa.String),
    sa.column("body", sa.Text),
    sa.column("detected_by", sa.String),
    sa.column("run_id", sa.String),
    sa.column("created_at", sa.DateTime),
    sa.column("submitted_at", sa.DateTime),
    sa.column("checked_at", sa.DateTime),
    sa.column("finished_at", sa.DateTime),
    sa.column("checks", sa.Integer),
    sa.column("message", sa.String),
)
TABLES: Final = ("we_erasure_requests",)

JOURNALED: Final = "journaled"
REJECTED: Final = "rejected"
SUBMITTED: Final = "submitted"
#: Not accepted yet: journaled (replayed by the next run) or refused (sent again while the user is deleted).
UNSETTLED: Final = (JOURNALED, REJECTED)
#: Accepted by WebEngage and not final there yet: their status is checked on later runs.
OPEN: Final = (SUBMITTED, "pending", "in_progress", "unknown")
#: The pipelines whose rejects are keyed by user id (rows of an erased user are removed with it).
USER_PIPELINES: Final = ("users",)

_IDS = sa.bindparam("ids", type_=sa.ARRAY(sa.String))


@dataclass(frozen=True, kw_only=True)
class Journaled:
    """One erasure request as it was (or is about to be) sent: replaying it sends exactly these bytes."""

    request_id: str
    user_id: str
    body: bytes


# -- reads ----------------------------------------------------------------------------------------
def synced_users(store: StateStore) -> dict[str, datetime]:
    """Every user WebEngage accepted (``we_user_state``) with the time of its accepted version."""
    rows = store.conn.execute(sa.select(USER_STATE.c.user_id, USER_STATE.c.accepted_at)).all()
    store.conn.commit()
    return {str(r[0]): r[1] for r in rows}


def known_request_ids(store: StateStore, request_ids: Sequence[str]) -> set[str]:
    if not request_ids:
        return set()
    query = sa.select(REQUESTS.c.request_id).where(REQUESTS.c.request_id == sa.any_(_IDS))
    found = {str(r) for r in store.conn.execute(query, {"ids": list(request_ids)}).scalars()}
    store.conn.commit()
    return found


def unsettled(store: StateStore, status: str) -> list[Journaled]:
    """Requests of ``status`` (``journaled``: maybe sent, never confirmed; ``rejected``: refused), oldest first."""
    query = (
        sa.select(REQUESTS.c.request_id, REQUESTS.c.user_id, REQUESTS.c.body)
        .where(REQUESTS.c.status == status)
        .order_by(REQUESTS.c.created_at, REQUESTS.c.request_id)
    )
    rows = store.conn.execute(query).all()
    store.conn.commit()
    return [Journaled(request_id=str(r[0]), user_id=str(r[1]), body=str(r[2]).encode("utf-8")) for r in rows]


def to_check(store: StateStore, limit: int, *, submitted_before: datetime) -> list[str]:
    """Request ids whose WebEngage status is not final, least recently checked first (those submitted from
    ``submitted_before`` on, by the current run, are left for the next one)."""
    if limit <= 0:
        return []
    query = (
        sa.select(REQUESTS.c.request_id)
        .where(REQUESTS.c.status.in_(OPEN), REQUESTS.c.submitted_at < submitted_before)
        .order_by(REQUESTS.c.checked_at.asc().nulls_first(), REQUESTS.c.submitted_at, REQUESTS.c.request_id)
        .limit(limit)
    )
    found = [str(r) for r in store.conn.execute(query).scalars()]
    store.conn.commit()
    return found


def status_counts(store: StateStore) -> dict[str, int]:
    """Requests per status, over every run."""
    rows = store.conn.execute(sa.select(REQUESTS.c.status, sa.func.count()).group_by(REQUESTS.c.status)).all()
    store.conn.commit()
    return {str(status): int(n) for status, n in sorted(rows)}


def of_run(store: StateStore, run_id: str, *, limit: int = 50) -> tuple[int, list[dict[str, Any]]]:
    """The requests a run journaled (how many, and the first ``limit`` with their current status)."""
    where = REQUESTS.c.run_id == run_id
    total = int(store.conn.execute(sa.select(sa.func.count()).select_from(REQUESTS).where(where)).scalar_one())
    query = (
        sa.select(
            REQUESTS.c.request_id,
            REQUESTS.c.user_id,
            REQUESTS.c.status,
            REQUESTS.c.submitted_at,
            REQUESTS.c.checked_at,
            REQUESTS.c.message,
        )
        .where(where)
        .order_by(REQUESTS.c.created_at, REQUESTS.c.request_id)
        .limit(limit)
    )
    rows = [dict(r._mapping) for r in store.conn.execute(query)]
    store.conn.commit()
    return total, rows


# -- writes (inside store.transaction()) ------------------------------------------------------------
def journal(
    conn: Connection, entries: Sequence[Journaled], *, detected_by: dict[str, str], run_id: str, now: datetime
) -> None:
    """Write requests about to be sent (each id once: replays are not journaled again)."""
    if not entries:
        return
    conn.execute(
        sa.insert(REQUESTS).values(
            [
                {
                    "request_id": e.request_id,
                    "user_id": e.user_id,
                    "status": JOURNALED,
                    # orjson writes UTF-8 only, so the body round-trips through a portable TEXT column.
                    "body": e.body.decode("utf-8"),
                    "detected_by": detected_by.get(e.user_id, "")[:200],
                    "run_id": run_id,
                    "created_at": now,
                    "checks": 0,
                }
                for e in entries
            ]
        )
    )


def confirm(conn: Connection, *, request_ids: Sequence[str], user_ids: Sequence[str], now: datetime) -> None:
    """WebEngage accepted these requests: mark them submitted and forget the users' sync state (profile
    state, cohort memberships, profile-sync rejects) in the same transaction."""
    if not request_ids:
        return
    conn.execute(
        sa.update(REQUESTS)
        .where(REQUESTS.c.request_id == sa.any_(_IDS))
        .values(status=SUBMITTED, submitted_at=now, message=None),
        {"ids": list(request_ids)},
    )
    users = {"ids": list(user_ids)}
    conn.execute(sa.delete(USER_STATE).where(USER_STATE.c.user_id == sa.any_(_IDS)), users)
    conn.execute(sa.delete(MEMBERS).where(MEMBERS.c.user_id == sa.any_(_IDS)), users)
    conn.execute(
        sa.delete(REJECTS).where(REJECTS.c.pipeline.in_(USER_PIPELINES), REJECTS.c.row_key == sa.any_(_IDS)), users
    )


def mark_rejected(conn: Connection, *, request_id: str, message: str) -> None:
    """WebEngage refused the request (nothing recorded there): sent again by later runs while its user is
    still deleted, until its reject dies."""
    conn.execute(
        sa.update(REQUESTS)
        .where(REQUESTS.c.request_id == request_id, REQUESTS.c.status.in_(UNSETTLED))
        .values(status=REJECTED, message=message[:500])
    )


def record_status(conn: Connection, *, request_id: str, status: str | None, now: datetime) -> None:
    """A status check's result (None: no usable answer: only the time of the check is kept)."""
    values: dict[str, Any] = {"checked_at": now, "checks": REQUESTS.c.checks + 1}
    if status is not None:
        values["status"] = status
        if status in ("completed", "cancelled"):
            values["finished_at"] = now
    conn.execute(sa.update(REQUESTS).where(REQUESTS.c.request_id == request_id).values(**values))
