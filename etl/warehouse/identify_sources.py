"""Where anonymous -> known pairs come from: a query file of the user's, or the Segment/RudderStack preset
(``identifies`` rows carrying both ``anonymous_id`` and ``user_id``). Each is one statement ordered by the
anonymous id (all pairs of one anonymous id in one chunk), returning ``anonymous_id``, ``user_id`` and
``identified_at`` (the first identify of that pair: which user came first decides shared devices).
Composed with SQLAlchemy Core: no SQL built from strings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.errors import ConfigError
from etl.instants import naive_utc
from etl.warehouse.event_sources import arrival_column, instant_column, schema_columns
from etl.warehouse.queries import load_sql, ordered_by

#: The columns a pair source returns (a custom query may leave out identified_at).
PAIR_COLUMNS: Final = ("anonymous_id", "user_id", "identified_at")
ORDER_KEY: Final = "anonymous_id"


@dataclass(frozen=True)
class PairSource:
    """One statement returning pairs, ordered by anonymous id, with its bound parameters."""

    label: str
    statement: sa.Select[Any]
    params: dict[str, Any]


#: ``:since`` when the mapping sets no lookback: the whole history.
EPOCH: Final = datetime(1970, 1, 1)


def custom_pairs(query: str, params: Mapping[str, Any], *, since: datetime | None = None) -> PairSource:
    """A query file returning ``anonymous_id``, ``user_id`` and optionally ``identified_at``, one row per
    pair or per identify (duplicates of a pair are folded downstream); ``:since`` is bound to the start of
    the lookback when the query uses it."""
    sql = load_sql(query)
    bound = dict(params)
    if ":since" in sql:
        bound["since"] = naive_utc(since) if since is not None else EPOCH
    return PairSource(query, ordered_by(sql, ORDER_KEY), bound)


def segment_pairs(engine: Engine, *, schema: str, since: datetime | None = None) -> PairSource:
    """Distinct (anonymous_id, user_id) pairs of ``<schema>.identifies`` with the first time each was seen
    (timestamps stored as text by some loaders are read as instants); with ``since``, only identifies that
    arrived from then on."""
    tables = schema_columns(engine, schema)
    columns = tables.get("identifies")
    if columns is None:
        raise ConfigError("[merges].segment_schema", f"no identifies table in schema {schema!r}")
    missing = [c for c in ("anonymous_id", "user_id", "timestamp") if c not in columns]
    if missing:
        raise ConfigError("[merges].segment_schema", f"{schema}.identifies has no {', '.join(missing)} column")
    t = sa.table("identifies", *(sa.column(c) for c in columns), schema=schema)
    anonymous, user = t.c.anonymous_id, t.c.user_id
    window: list[sa.ColumnElement[bool]] = []
    params: dict[str, Any] = {}
    if since is not None:
        window.append(arrival_column(t, columns) >= sa.bindparam("since", type_=sa.DateTime))
        params["since"] = naive_utc(since)
    stmt = (
        sa.select(
            anonymous.label("anonymous_id"),
            user.label("user_id"),
            sa.func.min(instant_column(t, columns, "timestamp")).label("identified_at"),
        )
        .where(anonymous.is_not(None), user.is_not(None), *window)
        .group_by(anonymous, user)
        .order_by(anonymous)
    )
    return PairSource(f"{schema}.identifies", stmt, params)
