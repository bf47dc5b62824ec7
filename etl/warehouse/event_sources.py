"""Event sources in the warehouse, as ordered SQLAlchemy statements: a query file of the user's, or the
Segment/RudderStack preset (``tracks`` joined to the per-event tables, ``pages``, ``screens``), each
filtered on the widened window by arrival time. Composed with SQLAlchemy Core: no SQL built from strings."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.errors import ConfigError
from etl.instants import naive_utc
from etl.state.ledger import ACCEPTED, LEDGER
from etl.warehouse.engine import connect_with_retry
from etl.warehouse.presets import SEGMENT_BOOKKEEPING
from etl.warehouse.queries import load_sql, ordered_key

log = logging.getLogger("etl.warehouse")


@dataclass(frozen=True)
class Source:
    """One ordered statement returning event rows, with its bound parameters; ``key`` is its event-id
    column (what it is ordered by)."""

    label: str
    statement: sa.Select[Any]
    params: dict[str, Any]
    key: sa.ColumnElement[Any]
    json_columns: frozenset[str] = frozenset()


_NOT_EVENT_TABLES: Final = frozenset(
    {"tracks", "pages", "screens", "identifies", "users", "groups", "aliases", "accounts"}
)
_OUTPUT_COLUMNS: Final = frozenset(
    {"event_id", "event_name", "event_time", "received_at", "properties", "user_id", "anonymous_id"}
)


def custom_source(query: str, params: Mapping[str, Any], *, read_from: datetime, end: datetime) -> Source:
    """A query file's ordered statement; ``:start``/``:end`` bound to the widened window when it uses them."""
    sql = load_sql(query)
    params = dict(params)
    # Only parameters the query uses: SQLAlchemy rejects unknown ones on some paths.
    for name, value in (("start", naive_utc(read_from)), ("end", naive_utc(end))):
        if f":{name}" in sql:
            params[name] = value
    if ":start" not in sql:
        log.warning("events query %s has no :start parameter: every run reads the whole table", query)
    statement, key = ordered_key(sql, "event_id")
    return Source(query, statement, params, key, frozenset({"properties"}))


def schema_columns(engine: Engine, schema: str) -> dict[str, dict[str, str]]:
    """``table -> {column: data type}`` of a schema, from information_schema (DuckDB and PostgreSQL)."""
    cols = sa.table(
        "columns",
        sa.column("table_schema"),
        sa.column("table_name"),
        sa.column("column_name"),
        sa.column("data_type"),
        sa.column("ordinal_position"),
        schema="information_schema",
    )
    query = (
        sa.select(cols.c.table_name, cols.c.column_name, cols.c.data_type)
        .where(cols.c.table_schema == schema)
        .order_by(cols.c.table_name, cols.c.ordinal_position)
    )
    found: dict[str, dict[str, str]] = {}
    with connect_with_retry(engine) as conn:
        for table, column, data_type in conn.execute(query):
            found.setdefault(str(table), {})[str(column)] = str(data_type).lower()
    return found


def instant_column(table: sa.TableClause, columns: dict[str, str], name: str) -> sa.ColumnElement[Any]:
    """A time column as a UTC timestamp. Some loaders store them as text (ISO 8601, often with an offset):
    parsed in the database (as timestamptz, then UTC), so the window filter compares instants, not strings."""
    if any(t in columns[name] for t in ("char", "text", "string")):
        return sa.func.timezone("UTC", sa.cast(table.c[name], sa.DateTime(timezone=True)))
    return table.c[name]


def arrival_column(table: sa.TableClause, columns: dict[str, str]) -> sa.ColumnElement[Any]:
    # Arrival time catches late rows; Segment always writes received_at, the event time is a fallback.
    if "received_at" in columns:
        return sa.func.coalesce(
            instant_column(table, columns, "received_at"), instant_column(table, columns, "timestamp")
        )
    return instant_column(table, columns, "timestamp")


def _window_filter(table: sa.TableClause, columns: dict[str, str]) -> sa.ColumnElement[bool]:
    arrival = arrival_column(table, columns)
    return sa.and_(
        arrival >= sa.bindparam("start", type_=sa.DateTime), arrival < sa.bindparam("end", type_=sa.DateTime)
    )


def _head(table: sa.TableClause, columns: dict[str, str], name: sa.ColumnElement[Any]) -> list[sa.ColumnElement[Any]]:
    head: list[sa.ColumnElement[Any]] = [table.c.id.label("event_id")]
    head += [table.c[c].label(c) for c in ("user_id", "anonymous_id") if c in columns]
    head += [name.label("event_name"), instant_column(table, columns, "timestamp").label("event_time")]
    if "received_at" in columns:
        head.append(instant_column(table, columns, "received_at").label("received_at"))
    return head


def _require(schema: str, table: str, columns: dict[str, str], needed: tuple[str, ...]) -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        raise ConfigError("source.segment_schema", f"{schema}.{table} has no {', '.join(missing)} column")


def _table(schema: str, name: str, columns: dict[str, str]) -> sa.TableClause:
    return sa.table(name, *(sa.column(c) for c in columns), schema=schema)


def _json_of(columns: dict[str, str], props: Iterable[str]) -> frozenset[str]:
    return frozenset(c for c in props if columns[c] in ("json", "jsonb"))


def _is_property(column: str) -> bool:
    low = column.lower()
    return low not in SEGMENT_BOOKKEEPING and not low.startswith("context_") and column not in _OUTPUT_COLUMNS


def segment_sources(engine: Engine, *, schema: str, read_from: datetime, end: datetime) -> list[Source]:
    """Statements over a Segment/RudderStack schema: pages (as ``page``), screens (as ``screen``), tracks
    joined to their per-event table (named by the track's ``event``), and tracks without one."""
    tables = schema_columns(engine, schema)
    if not {"tracks", "pages", "screens"} & set(tables):
        raise ConfigError("source.segment_schema", f"no tracks, pages or screens table in schema {schema!r}")
    params = {"start": naive_utc(read_from), "end": naive_utc(end)}
    sources: list[Source] = []
    for kind in ("pages", "screens"):
        if kind not in tables:
            continue
        cols = tables[kind]
        _require(schema, kind, cols, ("id", "timestamp"))
        t = _table(schema, kind, cols)
        # Every property column, as for tracks: tracking plans put order ids, totals, product ids on pages too.
        props = [c for c in cols if _is_property(c)]
        stmt = (
            sa.select(*_head(t, cols, sa.literal(kind[:-1], sa.String)), *(t.c[c].label(c) for c in props))
            .where(_window_filter(t, cols))
            .order_by(t.c.id)
        )
        sources.append(Source(f"{schema}.{kind}", stmt, params, t.c.id, _json_of(cols, props)))
    if "tracks" not in tables:
        return sources
    cols = tables["tracks"]
    _require(schema, "tracks", cols, ("id", "timestamp"))
    tracks = _table(schema, "tracks", cols)
    if "event" not in cols:
        if "event_text" not in cols:
            raise ConfigError(
                "source.segment_schema",
                f"{schema}.tracks has neither an event nor an event_text "
                "column: it is not a Segment/RudderStack tracks table",
            )
        # Names only (no snake_case event column to find per-event tables by): tracks without properties.
        rest = sa.select(*_head(tracks, cols, tracks.c.event_text)).where(_window_filter(tracks, cols))
        sources.append(Source(f"{schema}.tracks", rest.order_by(tracks.c.id), params, tracks.c.id))
        return sources
    name = sa.func.coalesce(tracks.c.event_text, tracks.c.event) if "event_text" in cols else tracks.c.event
    event_tables = sorted(t for t, c in tables.items() if t not in _NOT_EVENT_TABLES and "id" in c)
    with connect_with_retry(engine) as conn:
        present = conn.execute(
            sa.select(tracks.c.event).distinct().where(_window_filter(tracks, cols), tracks.c.event.is_not(None)),
            params,
        ).scalars()
        in_window = {str(e) for e in present}
    for event in event_tables:
        if event not in in_window:
            continue
        pcols = tables[event]
        per = _table(schema, event, pcols)
        props = [c for c in pcols if _is_property(c)]
        stmt = (
            sa.select(*_head(tracks, cols, name), *(per.c[c].label(c) for c in props))
            .select_from(tracks.outerjoin(per, per.c.id == tracks.c.id))
            .where(tracks.c.event == event, _window_filter(tracks, cols))
            .order_by(tracks.c.id)
        )
        sources.append(Source(f"{schema}.tracks+{event}", stmt, params, tracks.c.id, _json_of(pcols, props)))
    # Tracks whose event has no table of its own (or no event at all: rejected for it downstream).
    rest = (
        sa.select(*_head(tracks, cols, name))
        .where(
            sa.or_(
                tracks.c.event.is_(None),
                *([sa.and_(*(tracks.c.event != e for e in event_tables))] if event_tables else [sa.true()]),
            ),
            _window_filter(tracks, cols),
        )
        .order_by(tracks.c.id)
    )
    sources.append(Source(f"{schema}.tracks", rest, params, tracks.c.id))
    return sources


# -- the ledger anti-join (issue 16) --------------------------------------------------------------------
def _accepted_earlier(source: Source) -> sa.Exists:
    """``EXISTS`` an accepted ledger row of this event from an earlier run (correlated on the source's key,
    compared as text: the ledger holds ids as text)."""
    return (
        sa.exists()
        .where(
            LEDGER.c.event_id == sa.cast(source.key, sa.String),
            LEDGER.c.status == ACCEPTED,
            LEDGER.c.run_id != sa.bindparam("we_ledger_run_id", type_=sa.String),
        )
        .correlate_except(LEDGER)
    )


def unsent(source: Source, *, run_id: str) -> Source:
    """``source`` without the events WebEngage accepted in earlier runs: an anti-join (``NOT EXISTS``) with
    the ledger, run by the warehouse, so those rows never leave it. Needs the ledger in the warehouse's
    database. Only a filter: the worker still checks every row it reads against the ledger (ids the
    database renders differently, e.g. ``' 42'``, are caught there), and events this run accepts itself
    (replays) are left to that check, so the count from :func:`accepted_count` stays fixed for the run."""
    return replace(
        source,
        statement=source.statement.where(~_accepted_earlier(source)),
        params={**source.params, "we_ledger_run_id": run_id},
    )


def accepted_count(engine: Engine, source: Source, *, run_id: str) -> int:
    """How many rows of ``source`` :func:`unsent` leaves in the warehouse (counted there: they are reported
    as already sent, as the worker-side filter would)."""
    rows = source.statement.order_by(None).where(_accepted_earlier(source)).subquery("we_sent")
    query = sa.select(sa.func.count()).select_from(rows)
    with connect_with_retry(engine) as conn:
        n = conn.execute(query, {**source.params, "we_ledger_run_id": run_id}).scalar_one()
    return int(n)
