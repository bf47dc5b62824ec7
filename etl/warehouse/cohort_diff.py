"""A cohort's membership diff (entered / exited / repairs) run by the warehouse against the snapshot table
``we_cohort_members`` (issue 16), so only the users who change leave it, not every member twice (the query's
and the snapshot's).

The worker-side path (:func:`etl.transform.cohorts.screen_ids` + :func:`~etl.transform.cohorts.diff_members`)
is the reference; this one gives the same result:

- An id SQL can judge is *plain*: its text (``trim(cast(id as varchar))``) is printable ASCII, at most 100
  characters and not a null-like token. Plain ids are screened, de-duplicated and compared in SQL; only
  counts and the changed ids come back.
- NULL ids (anonymous) and blank ones are counted in SQL.
- Every other id (unicode, control characters, tabs, over-long) is read and screened by the worker, by the
  very rules of the other path, then compared with the snapshot by id. Too many of them (the warehouse
  would send most ids anyway) or an id column of floating-point numbers (whose text differs between
  databases and pandas) runs the whole diff in the worker instead, with the reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.state.cohorts import MEMBERS
from etl.transform import cohorts as tx
from etl.transform.cohorts import MembershipDiff
from etl.transform.formats import garbage
from etl.warehouse.engine import connect_with_retry
from etl.warehouse.queries import read_chunks

#: Ids the worker screens itself at most; beyond, the worker-side diff is as cheap and simpler.
MAX_WORKER_SCREENED: Final = 100_000
#: Printable ASCII, no space at either end (SQL's trim strips spaces; Python's strip more: these differ
#: only outside this set, which goes to the worker).
_PLAIN: Final = r"^[!-~]([ -~]*[!-~])?$"
_BACKENDS: Final = frozenset({"duckdb", "postgresql"})
# Arrays bound as one parameter (= ANY), as the state store's statements: both databases take them.
_TOKENS: Final = sa.bindparam("we_tokens", type_=sa.ARRAY(sa.String))


@dataclass(frozen=True, kw_only=True)
class Membership:
    """A cohort query's screened members compared with the accepted snapshot, and the counts of the run."""

    diff: MembershipDiff
    extracted: int
    excluded: Counter[str]
    members: int
    previous: int


@dataclass(frozen=True)
class Fallback:
    """Why this cohort's diff runs in the worker."""

    reason: str


def diff_in_warehouse(
    engine: Engine,
    sql: str,
    params: dict[str, Any],
    *,
    cohort: str,
    user_id: str,
    null_tokens: Iterable[str],
    label: str,
) -> Membership | Fallback:
    """The membership diff computed by the warehouse (see the module doc), or why it cannot be. The cohort's
    query runs three times in the warehouse (totals, ids only the worker can screen, the changes)."""
    backend = engine.url.get_backend_name()
    if backend not in _BACKENDS:
        return Fallback(f"the membership diff in SQL supports DuckDB and PostgreSQL, not {backend}")
    tokens = sorted(garbage.null_tokens(null_tokens))
    # Wrapped as a subquery: a statement-ending semicolon would end it early.
    src = sa.text(sql.rstrip().rstrip(";")).columns(sa.column(user_id)).subquery("we_cohort_src")
    raw = src.c[user_id]
    key = sa.func.trim(sa.cast(raw, sa.String))
    plain = sa.and_(
        raw.is_not(None),
        key.regexp_match(_PLAIN),
        sa.func.length(key) <= tx.MAX_ID_LENGTH,
        *([sa.not_(sa.func.lower(key) == sa.any_(_TOKENS))] if tokens else []),
    )
    keyed = sa.select(raw.label("raw"), key.label("k"), plain.label("plain")).select_from(src).subquery("we_keyed")
    binds = {**params, "we_cohort": cohort, **({"we_tokens": tokens} if tokens else {})}

    one: sa.ColumnElement[int] = sa.literal(1)
    zero: sa.ColumnElement[int] = sa.literal(0)
    blank = sa.and_(keyed.c.raw.is_not(None), keyed.c.k == "")
    odd = sa.and_(keyed.c.raw.is_not(None), keyed.c.k != "", sa.not_(keyed.c.plain))
    totals = sa.select(
        sa.func.count(),
        sa.func.sum(sa.case((keyed.c.raw.is_(None), one), else_=zero)),
        sa.func.sum(sa.case((blank, one), else_=zero)),
        sa.func.sum(sa.case((keyed.c.plain, one), else_=zero)),
        sa.func.sum(sa.case((odd, one), else_=zero)),
        sa.func.count(sa.distinct(sa.case((keyed.c.plain, keyed.c.k)))),
        sa.func.max(keyed.c.raw),  # a sample of the id column's type
    )
    with connect_with_retry(engine) as conn:
        *sums, sample = conn.execute(totals, binds).one()
    if isinstance(sample, float):
        return Fallback("the user id column holds floating-point numbers (their text differs by database)")
    rows, anonymous, blank_rows, plain_rows, odd_rows, plain_ids = (int(v or 0) for v in sums)
    if odd_rows > MAX_WORKER_SCREENED:
        return Fallback(f"{odd_rows:,} user ids need the worker's screening (unicode, control characters, length)")

    excluded: Counter[str] = Counter()
    if anonymous:
        excluded["anonymous"] = anonymous
    if blank_rows:
        excluded["empty_user_id"] = blank_rows
    # Ids SQL cannot judge: screened by the worker, by the worker path's own rules.
    odd_kept: list[str] = []
    if odd_rows:
        for chunk in read_chunks(engine, sa.select(keyed.c.raw).where(odd), binds, label=label):
            screened, why = tx.screen_ids(chunk["raw"], null_tokens=tokens)
            excluded.update(why)
            odd_kept.extend(screened.tolist())

    # The changes: plain members of the query joined (full) with the snapshot; only rows that change leave.
    current = sa.select(keyed.c.k).where(keyed.c.plain).distinct().subquery("we_now")
    snap = (
        sa.select(MEMBERS.c.user_id, MEMBERS.c.member, MEMBERS.c.pending)
        .where(MEMBERS.c.cohort == sa.bindparam("we_cohort"))
        .subquery("we_snap")
    )
    now = current.c.k.is_not(None)
    was = sa.func.coalesce(snap.c.member, sa.false())
    doubt = sa.func.coalesce(snap.c.pending, sa.false())
    changes = (
        sa.select(
            sa.func.coalesce(current.c.k, snap.c.user_id).label("user_id"),
            now.label("now"),
            was.label("was"),
            doubt.label("doubt"),
        )
        .select_from(current.outerjoin(snap, current.c.k == snap.c.user_id, full=True))
        .where(sa.or_(sa.and_(now, sa.not_(was)), sa.and_(sa.not_(now), sa.or_(was, doubt)), sa.and_(now, was, doubt)))
    )
    entered: list[str] = []
    exited: set[str] = set()
    resend_true: list[str] = []
    resend_false: set[str] = set()
    for chunk in read_chunks(engine, changes, binds, label=label):
        ids = chunk["user_id"].astype(str)
        is_now, is_was, is_doubt = (chunk[c].astype(bool) for c in ("now", "was", "doubt"))
        entered += ids[is_now & ~is_was].tolist()
        exited.update(ids[~is_now & is_was].tolist())
        resend_true += ids[is_now & is_was & is_doubt].tolist()
        resend_false.update(ids[~is_now & ~is_was & is_doubt].tolist())
    stay = plain_ids - len(entered)
    previous_q = sa.select(sa.func.count()).where(MEMBERS.c.cohort == cohort, MEMBERS.c.member.is_(True))
    with connect_with_retry(engine) as conn:
        previous = int(conn.execute(previous_q).scalar_one())

    # Worker-screened ids not already among the plain ones: compared with their snapshot rows by id.
    extra = sorted(set(odd_kept) - set(_plain_among(engine, keyed, binds, set(odd_kept), label)))
    state = _snapshot_rows(engine, cohort, extra)
    for uid in extra:
        was_member, in_doubt = state.get(uid, (False, False))
        exited.discard(uid)
        resend_false.discard(uid)
        if not was_member:
            entered.append(uid)
            continue
        stay += 1
        if in_doubt:
            resend_true.append(uid)
    members = plain_ids + len(extra)
    duplicates = plain_rows + len(odd_kept) - members
    if duplicates:
        excluded["duplicate_user_id"] += duplicates
    diff = MembershipDiff(
        entered=sorted(entered),
        exited=sorted(exited),
        unchanged=stay - len(resend_true),
        resend_true=sorted(resend_true),
        resend_false=sorted(resend_false),
    )
    return Membership(diff=diff, extracted=rows, excluded=excluded, members=members, previous=previous)


def _plain_among(
    engine: Engine, keyed: sa.Subquery, binds: dict[str, Any], candidates: set[str], label: str
) -> list[str]:
    """Which ``candidates`` are also plain ids of the query (e.g. ``"\\tabc"`` screened to ``"abc"``)."""
    if not candidates:
        return []
    stmt = (
        sa.select(keyed.c.k)
        .where(keyed.c.plain, keyed.c.k == sa.any_(sa.bindparam("we_candidates", type_=sa.ARRAY(sa.String))))
        .distinct()
    )
    found = read_chunks(engine, stmt, {**binds, "we_candidates": sorted(candidates)}, label=label)
    return [str(v) for chunk in found for v in chunk.iloc[:, 0].tolist()]


def _snapshot_rows(engine: Engine, cohort: str, user_ids: Sequence[str]) -> dict[str, tuple[bool, bool]]:
    """``user_id -> (member, pending)`` of the snapshot rows of ``user_ids``."""
    if not user_ids:
        return {}
    stmt = sa.select(MEMBERS.c.user_id, MEMBERS.c.member, MEMBERS.c.pending).where(
        MEMBERS.c.cohort == cohort, MEMBERS.c.user_id.in_(sa.bindparam("we_ids", expanding=True))
    )
    with connect_with_retry(engine) as conn:
        return {str(u): (bool(m), bool(p)) for u, m, p in conn.execute(stmt, {"we_ids": list(user_ids)})}
