"""Which users synced before are deleted now, by the rules of the users mapping's ``[deletions]``:

* ``absent``: in ``we_user_state`` and no longer returned by the users source (query or Segment preset);
* ``column``: returned by the users source with a true deletion column (``is_deleted``);
* ``table`` / ``query``: listed in a deletions table or query of the warehouse.

Independent of how the profile sync computes its diff: it compares the state with the source itself. When
the state lives in the warehouse's database, one SQL statement per rule does it there (``NOT EXISTS`` /
``EXISTS`` against the source as a derived table); otherwise the source's ids are streamed and compared
here. Either way only users present in the state (synced before) can be deleted, and identifiers are
quoted by SQLAlchemy, never spliced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Final

import duckdb
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.errors import QueryError
from etl.instants import naive_utc
from etl.mappings.users import UserMapping
from etl.state.store import USER_STATE
from etl.transform.users import normalise_keys
from etl.warehouse.engine import connect_with_retry
from etl.warehouse.presets import segment_users_source
from etl.warehouse.queries import load_sql, read_chunks

#: Labels of the derived columns (never a user's column name).
UID: Final = "we_uid"
FLAG: Final = "we_flag"
#: Deleted user id -> (accepted_at of the version WebEngage holds, the rules that found it).
Deleted = dict[str, tuple[datetime, str]]
_TRUE: Final = frozenset({"true", "t", "1", "yes", "y"})


def source_select(mapping: UserMapping) -> tuple[sa.Select[Any], dict[str, Any], str]:
    """``SELECT <user id> AS we_uid [, <deletion column> AS we_flag]`` over the users source, its bound
    params, and a label for errors."""
    rules = mapping.deletions
    params: dict[str, Any] = dict(mapping.params)
    if mapping.preset == "segment":
        stmt, key, _ = segment_users_source(schema=mapping.segment_schema, table=mapping.segment_table)
        base: Any = stmt.order_by(None)
        label = f"segment preset ({mapping.segment_schema})"
    else:
        sql = load_sql(mapping.query)
        key = mapping.user_id
        named = [key, *([rules.column] if rules.column else [])]
        base = sa.text(sql).columns(*(sa.column(c) for c in named))
        if ":as_of" in sql:
            params.setdefault("as_of", None)
        label = mapping.query
    columns: list[sa.ColumnElement[Any]] = [sa.column(key).label(UID)]
    if rules.column:
        columns.append(sa.column(rules.column).label(FLAG))
    # A derived table, so a column the source lacks is an error, never a reference to an outer query.
    return sa.select(*columns).select_from(base.subquery("we_base")), params, label


def list_select(mapping: UserMapping) -> tuple[sa.Select[Any], dict[str, Any], str] | None:
    """``SELECT <id> AS we_uid`` over the deletions table or query, or None when neither is configured."""
    rules = mapping.deletions
    if rules.table:
        schema, _, name = rules.table.rpartition(".")
        listing = sa.table(name, sa.column(rules.user_id), schema=schema or None)
        base: Any = sa.select(listing.c[rules.user_id])
        label = f"deletions table {rules.table}"
        params: dict[str, Any] = {}
    elif rules.query:
        sql = load_sql(rules.query)
        base = sa.text(sql).columns(sa.column(rules.user_id))
        params = dict(mapping.params) if ":" in sql else {}
        label = rules.query
    else:
        return None
    stmt: sa.Select[Any] = sa.select(sa.column(rules.user_id).label(UID)).select_from(base.subquery("we_list"))
    return stmt, params, label


def find_deleted(
    mapping: UserMapping,
    warehouse: Engine,
    synced: Callable[[], dict[str, datetime]],
    *,
    same_database: bool,
    as_of: datetime | None,
) -> Deleted:
    """Users synced before that the rules say are deleted. ``synced`` loads the state's users (id -> accepted
    at) for the comparison outside the database; ``same_database``: the warehouse holds ``we_user_state``."""
    rules = mapping.deletions
    source, params, label = source_select(mapping)
    if "as_of" in params and params["as_of"] is None:
        # Bound as the profile sync binds it (naive UTC): both must read the same users.
        params["as_of"] = naive_utc(as_of) if as_of is not None else None
    listed = list_select(mapping)
    found: dict[str, set[str]] = {}
    accepted: dict[str, datetime] = {}

    def add(rule: str, rows: Iterable[tuple[str, datetime]]) -> None:
        for user_id, at in rows:
            found.setdefault(user_id, set()).add(rule)
            accepted[user_id] = at

    if same_database:
        for rule, stmt, stmt_params, stmt_label in _sql_rules(mapping, source, params, label, listed):
            add(rule, _fetch(warehouse, stmt, stmt_params, stmt_label))
    else:
        state = synced()
        if rules.absent or rules.column:
            present: set[str] = set()
            flagged: set[str] = set()
            for chunk in read_chunks(warehouse, source, params, label=label):
                ids = normalise_keys(chunk, UID)
                present.update(ids.dropna().tolist())
                if rules.column:
                    flagged.update(ids[truthy(chunk[FLAG]) & ids.notna()].tolist())
            if rules.absent:
                add("absent", ((u, state[u]) for u in state.keys() - present))
            if rules.column:
                add(f"column:{rules.column}", ((u, state[u]) for u in flagged & state.keys()))
        if listed is not None:
            stmt, list_params, list_label = listed
            listed_ids: set[str] = set()
            for chunk in read_chunks(warehouse, stmt, list_params, label=list_label):
                listed_ids.update(normalise_keys(chunk, UID).dropna().tolist())
            add(_list_rule(mapping), ((u, state[u]) for u in listed_ids & state.keys()))
    return {u: (accepted[u], ",".join(sorted(rules_found))) for u, rules_found in found.items()}


def _list_rule(mapping: UserMapping) -> str:
    rules = mapping.deletions
    return f"table:{rules.table}" if rules.table else f"query:{rules.query}"


def _sql_rules(
    mapping: UserMapping,
    source: sa.Select[Any],
    params: dict[str, Any],
    label: str,
    listed: tuple[sa.Select[Any], dict[str, Any], str] | None,
) -> Iterable[tuple[str, sa.Select[Any], dict[str, Any], str]]:
    """One statement per rule, each returning (user id, accepted_at) rows of ``we_user_state``."""
    rules = mapping.deletions
    state = USER_STATE.alias("we_state")
    picked = sa.select(state.c.user_id, state.c.accepted_at)
    src = source.subquery("we_src")
    same = sa.func.trim(sa.cast(src.c[UID], sa.String)) == state.c.user_id
    if rules.absent:
        yield "absent", picked.where(~sa.exists().where(same)), params, label
    if rules.column:
        flag = sa.cast(src.c[FLAG], sa.Boolean).is_(True)
        yield f"column:{rules.column}", picked.where(sa.exists().where(same, flag)), params, label
    if listed is not None:
        stmt, list_params, list_label = listed
        lst = stmt.subquery("we_lst")
        match = sa.func.trim(sa.cast(lst.c[UID], sa.String)) == state.c.user_id
        yield _list_rule(mapping), picked.where(sa.exists().where(match)), list_params, list_label


def _fetch(engine: Engine, stmt: sa.Select[Any], params: dict[str, Any], label: str) -> list[tuple[str, datetime]]:
    try:
        with connect_with_retry(engine) as conn:
            rows = conn.execute(stmt, params).all()
            conn.commit()
    except (sa.exc.ProgrammingError, sa.exc.DataError, duckdb.ProgrammingError, duckdb.DataError) as exc:
        # The query's own fault (names, types); connection and lock errors keep their own handling.
        raise QueryError(label, str(getattr(exc, "orig", None) or exc)) from None
    return [(str(r[0]), r[1]) for r in rows]


def truthy(values: pd.Series) -> pd.Series:
    """Deletion flags as booleans: true, non-zero numbers, and "true"/"t"/"1"/"yes"/"y" (any case)."""
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.fillna(False).astype(bool)
    if pd.api.types.is_numeric_dtype(values.dtype):
        return values.fillna(0).astype(float) != 0
    text = values.astype("string").str.strip().str.lower()
    return text.isin(_TRUE).fillna(False).astype(bool)
