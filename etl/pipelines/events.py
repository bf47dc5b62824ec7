"""Event sync: warehouse events of a time window -> WebEngage, each event exactly once.

replay the outbox (requests journaled but never settled: same x-request-id, same bytes) -> read the window
(widened by the lookback, chunked, ordered by event id) -> skip events already accepted (ledger), awaiting
replay (outbox) or seen earlier in this run -> transform (names, properties, types) -> batches (<= 25,
<= byte cap; or one request per event on /events) -> journal each request in the outbox -> send (paced,
retried) -> on acceptance, ledger rows + outbox delete in one transaction.

Source: a custom ``.sql`` file (``:start``/``:end`` bound to the widened window) or the Segment preset,
which reads ``tracks`` joined to the per-event tables, ``pages`` and ``screens`` of a Segment/RudderStack
schema, one ordered statement per table, composed with SQLAlchemy Core.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.config import Settings
from etl.errors import ConfigError, WebEngageSyncError
from etl.load.batching import Batch, Item, batch_requests, split_request
from etl.pipelines.common import (
    Progress,
    WallClock,
    default_run_id,
    requests_with_splits,
    system_now,
)
from etl.report import RunReport
from etl.resources import DEFAULT_EVENTS_MAPPING, user_file
from etl.state import ledger
from etl.state.store import REJECTS, ROW, RejectRow, StateStore
from etl.transform.events import (
    EventMapping,
    NameCache,
    Transformed,
    TypeRegistry,
    load_event_mapping,
    name_cache,
    transform_events,
)
from etl.transform.users import normalise_keys
from etl.warehouse.engine import connect_with_retry, make_engine
from etl.warehouse.presets import SEGMENT_BOOKKEEPING
from etl.warehouse.queries import load_sql, ordered_by, read_chunks
from etl.webengage.client import WebEngageClient, deterministic_request_id
from etl.webengage.models import Endpoint, SendRequest, SendResult

log = logging.getLogger("etl.pipelines.events")

PIPELINE: Final = "events"
OWNER: Final = "events"
#: Requests journaled per outbox transaction, and accepted requests checkpointed per ledger transaction.
#: Grouping keeps the state database (DuckDB commits cost ~5 ms) off the critical path; the outbox makes
#: a delayed checkpoint safe: a crash before it replays those requests with their ids.
STATE_GROUP: Final = {"bulk-events": 8, "events": 25}
#: Rows transformed at a time (~0.1 s of work), so the requests in flight never drain meanwhile.
TRANSFORM_SLICE: Final = 2_000
#: Longest an accepted request waits for its ledger write when requests trickle in.
CHECKPOINT_EVERY_S: Final = 0.25
#: Rejects that are the configuration's intent, not a data problem: ledger only, not the rejects table.
_INTENDED: Final = frozenset({"unmapped_event"})


def load_mapping(settings: Settings) -> EventMapping:
    return load_event_mapping(user_file(settings.events_mapping, DEFAULT_EVENTS_MAPPING))


# -- window and sources ---------------------------------------------------------------------------
def resolve_window(window: tuple[datetime | None, datetime | None]) -> tuple[datetime, datetime]:
    """``[start, end)`` as aware UTC datetimes (naive ones are read as UTC)."""
    start, end = window
    if start is None or end is None:
        raise ConfigError("window", "the event sync needs a window: --start and --end, or the Airflow data interval")
    start, end = (_utc(v) for v in (start, end))
    if end <= start:
        raise ConfigError("window", "end must be after start")
    return start, end


def _utc(value: datetime) -> datetime:
    """A plain aware-UTC datetime (Airflow hands over pendulum ones, whose arithmetic differs)."""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond,
                    tzinfo=UTC)  # fmt: skip


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Source:
    """One ordered statement returning event rows, with its bound parameters."""

    label: str
    statement: sa.Select[Any]
    params: dict[str, Any]
    json_columns: frozenset[str] = frozenset()


_NOT_EVENT_TABLES: Final = frozenset({"tracks", "pages", "screens", "identifies", "users", "groups", "aliases",
                                      "accounts"})  # fmt: skip
_PAGE_PROPERTIES: Final = ("name", "category", "path", "url", "referrer", "title", "search")
_SCREEN_PROPERTIES: Final = ("name", "category")
_OUTPUT_COLUMNS: Final = frozenset(
    {"event_id", "event_name", "event_time", "received_at", "properties", "user_id", "anonymous_id"}
)


def custom_source(mapping: EventMapping, *, read_from: datetime, end: datetime) -> Source:
    sql = load_sql(mapping.query)
    params = dict(mapping.params)
    # Only parameters the query uses: SQLAlchemy rejects unknown ones on some paths.
    for name, value in (("start", _naive(read_from)), ("end", _naive(end))):
        if f":{name}" in sql:
            params[name] = value
    if ":start" not in sql:
        log.warning("events query %s has no :start parameter: every run reads the whole table", mapping.query)
    return Source(mapping.query, ordered_by(sql, "event_id"), params, frozenset({"properties"}))


def _schema_columns(engine: Engine, schema: str) -> dict[str, dict[str, str]]:
    """``table -> {column: data type}`` of a schema, from information_schema (DuckDB and PostgreSQL)."""
    cols = sa.table("columns", sa.column("table_schema"), sa.column("table_name"), sa.column("column_name"),
                    sa.column("data_type"), sa.column("ordinal_position"), schema="information_schema")  # fmt: skip
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


def _arrival(table: sa.TableClause, columns: dict[str, str]) -> sa.ColumnElement[Any]:
    # Arrival time catches late rows; Segment always writes received_at, the event time is a fallback.
    if "received_at" in columns:
        return sa.func.coalesce(table.c.received_at, table.c.timestamp)
    return table.c.timestamp


def _window_filter(table: sa.TableClause, columns: dict[str, str]) -> sa.ColumnElement[bool]:
    arrival = _arrival(table, columns)
    return sa.and_(
        arrival >= sa.bindparam("start", type_=sa.DateTime), arrival < sa.bindparam("end", type_=sa.DateTime)
    )


def _head(table: sa.TableClause, columns: dict[str, str], name: sa.ColumnElement[Any]) -> list[sa.ColumnElement[Any]]:
    head: list[sa.ColumnElement[Any]] = [table.c.id.label("event_id")]
    head += [table.c[c].label(c) for c in ("user_id", "anonymous_id") if c in columns]
    head += [name.label("event_name"), table.c.timestamp.label("event_time")]
    if "received_at" in columns:
        head.append(table.c.received_at.label("received_at"))
    return head


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
    tables = _schema_columns(engine, schema)
    if not {"tracks", "pages", "screens"} & set(tables):
        raise ConfigError("source.segment_schema", f"no tracks, pages or screens table in schema {schema!r}")
    params = {"start": _naive(read_from), "end": _naive(end)}
    sources: list[Source] = []
    for kind, wanted in (("pages", _PAGE_PROPERTIES), ("screens", _SCREEN_PROPERTIES)):
        if kind not in tables:
            continue
        cols = tables[kind]
        t = _table(schema, kind, cols)
        props = [c for c in wanted if c in cols]
        stmt = (
            sa.select(*_head(t, cols, sa.literal(kind[:-1], sa.String)), *(t.c[c].label(c) for c in props))
            .where(_window_filter(t, cols))
            .order_by(t.c.id)
        )
        sources.append(Source(f"{schema}.{kind}", stmt, params, _json_of(cols, props)))
    if "tracks" not in tables:
        return sources
    cols = tables["tracks"]
    tracks = _table(schema, "tracks", cols)
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
        sources.append(Source(f"{schema}.tracks+{event}", stmt, params, _json_of(pcols, props)))
    # Tracks whose event has no table of its own (or no event at all: rejected for it downstream).
    rest = (
        sa.select(*_head(tracks, cols, name))
        .where(
            sa.or_(tracks.c.event.is_(None), *([sa.and_(*(tracks.c.event != e for e in event_tables))]
                                              if event_tables else [sa.true()])),
            _window_filter(tracks, cols),
        )
        .order_by(tracks.c.id)
    )  # fmt: skip
    sources.append(Source(f"{schema}.tracks", rest, params))
    return sources


def event_sources(mapping: EventMapping, warehouse: Engine, *, read_from: datetime, end: datetime) -> list[Source]:
    if mapping.preset == "segment":
        return segment_sources(warehouse, schema=mapping.segment_schema, read_from=read_from, end=end)
    return [custom_source(mapping, read_from=read_from, end=end)]


# -- run ------------------------------------------------------------------------------------------
@dataclass
class _Tally:
    """Counts beyond RunReport's (replays are not extracted rows, so they stay out of its invariant)."""

    replayed_requests: int = 0
    replayed_events: int = 0
    replay_failed_events: int = 0
    value_drops: Counter[str] = field(default_factory=Counter)  # "source property: reason" -> values


def run(
    settings: Settings,
    *,
    window: tuple[datetime | None, datetime | None],
    run_id: str | None = None,
    dry_run: bool = False,
    clock: WallClock = system_now,
    transport: httpx.BaseTransport | None = None,
    progress: Progress | None = None,
    mapping: EventMapping | None = None,
) -> dict[str, Any]:
    """Sync the events of ``window`` (``[start, end)``, widened by the mapping's lookback); returns the
    run summary (also stored in the runs table)."""
    started = time.monotonic()
    mapping = mapping or load_mapping(settings)
    start, end = resolve_window(window)
    read_from = start - mapping.lookback
    report = RunReport(pipeline=PIPELINE, run_id=run_id or default_run_id(clock()), dry_run=dry_run,
                       window_start=start, window_end=end)  # fmt: skip
    tally = _Tally()
    if mapping.endpoint == "bulk-events" and not settings.request_id_on_bulk:
        report.notes.append(
            "request_id_on_bulk is off: a request replayed after a crash cannot be de-duplicated by WebEngage; "
            'use endpoint = "events" or turn it on'
        )
    warehouse = make_engine(settings.warehouse_url)
    state_engine = make_engine(settings.effective_state_url, setting="state_url")
    with StateStore(state_engine, clock=lambda: clock().astimezone(UTC).replace(tzinfo=None)) as store:
        store.start_run(run_id=report.run_id, pipeline=PIPELINE, window=(start, end), dry_run=dry_run)
        try:
            client = None if dry_run else WebEngageClient(settings, transport=transport)
            try:
                sync = _Sync(settings, mapping, store, client, report, tally, warehouse=warehouse, progress=progress)
                if client is not None:
                    sync.replay()
                sync.extract_and_send(event_sources(mapping, warehouse, read_from=read_from, end=end))
            finally:
                if client is not None:
                    report.http = client.stats.snapshot()
                    client.close()
            report.status = "success"
            report.duration_s = time.monotonic() - started
            report.check()
        except BaseException as exc:
            report.status = "failed"
            report.duration_s = time.monotonic() - started
            report.message = f"{exc.__class__.__name__}: {exc}" if isinstance(exc, Exception) else ""
            store.finish_run(run_id=report.run_id, pipeline=PIPELINE, status="failed",
                             counts=_summary(report, tally, mapping, read_from), message=report.message)  # fmt: skip
            raise
        summary = _summary(report, tally, mapping, read_from)
        store.finish_run(run_id=report.run_id, pipeline=PIPELINE, status="success", counts=summary)
    warehouse.dispose()
    state_engine.dispose()
    log.info(
        "events run %s: %s; extracted %d, already sent %d, accepted %d, rejected %d, replayed %d",
        summary["run_id"], summary["status"], summary["extracted"], summary["already_sent"], summary["accepted"],
        summary["rejected"], summary["replayed_events"],
    )  # fmt: skip
    return summary


def _summary(report: RunReport, tally: _Tally, mapping: EventMapping, read_from: datetime) -> dict[str, Any]:
    summary = report.summary()
    summary.update(
        already_sent=report.unchanged,
        replayed_requests=tally.replayed_requests,
        replayed_events=tally.replayed_events,
        replay_failed_events=tally.replay_failed_events,
        endpoint=mapping.endpoint,
        read_from=read_from.isoformat(),
        values_dropped_by_property=dict(tally.value_drops.most_common(20)),
    )
    return summary


class _Sync:
    """One run's extraction and delivery; every state write happens on the caller's thread."""

    def __init__(
        self,
        settings: Settings,
        mapping: EventMapping,
        store: StateStore,
        client: WebEngageClient | None,
        report: RunReport,
        tally: _Tally,
        *,
        warehouse: Engine,
        progress: Progress | None,
    ) -> None:
        self.settings = settings
        self.warehouse = warehouse
        self.mapping = mapping
        self.store = store
        self.client = client
        self.report = report
        self.tally = tally
        self.progress = progress
        self.dry_run = client is None
        self.registry = TypeRegistry(store.registry)
        self.names: NameCache = name_cache(mapping)
        self.seen: set[str] = set()
        self.awaiting: set[str] = set()
        self.open_rejects = _open_row_rejects(store)

    @property
    def run_id(self) -> str:
        return self.report.run_id

    # -- replay --------------------------------------------------------------------------------
    def replay(self) -> None:
        """Re-send every request the outbox still holds, with its id and bytes, before anything new."""
        assert self.client is not None
        entries = ledger.pending(self.store)
        if entries:
            log.info("replaying %d journaled requests (%d events) with their request ids", len(entries),
                     sum(len(e.event_ids) for e in entries))  # fmt: skip
            self.tally.replayed_requests += len(entries)
            delivery = _Delivery(self, replay=True, journaled={e.request_id for e in entries})
            delivery.send(_request_of(e) for e in entries)

    # -- extraction ----------------------------------------------------------------------------
    def extract_and_send(self, sources: list[Source]) -> None:
        self.awaiting = ledger.pending_event_ids(self.store)
        oversize: list[Item[str]] = []
        requests = self._requests(self._items(sources), oversize)
        if self.client is None:
            for request in requests:
                self.report.batches += 1
                self.report.sent += request.items
        else:
            _Delivery(self, replay=False).send(self._counting(requests))
        if oversize:
            detail = f"one event is over max_batch_bytes={self.settings.max_batch_bytes}"
            self._reject_rows([(i.key, "payload_too_large", detail) for i in oversize], kind="data")

    def _items(self, sources: list[Source]) -> Iterator[Item[str]]:
        for source in sources:
            log.debug("reading %s", source.label)
            chunks = read_chunks(self.warehouse, source.statement, source.params, chunk_rows=self.mapping.chunk_rows)
            for chunk in chunks:
                yield from self._prepare(chunk, source)
                if self.progress is not None:
                    self.progress(self.report)

    def _prepare(self, chunk: pd.DataFrame, source: Source) -> Iterator[Item[str]]:
        report = self.report
        report.extracted += len(chunk)
        if "event_id" not in chunk:
            raise ConfigError("events source", "the query must return a column named event_id")
        ids = normalise_keys(chunk, "event_id")
        id_list: list[str | None] = ids.astype(object).where(ids.notna(), None).tolist()
        present = [i for i in id_list if i is not None]
        accepted = ledger.accepted_ids(self.store, list(dict.fromkeys(present)))
        first = ~ids.duplicated(keep="first").to_numpy(dtype=bool) | ids.isna().to_numpy(dtype=bool)
        already = np.fromiter((i in accepted for i in id_list), dtype=bool, count=len(id_list))
        awaiting = np.fromiter((i in self.awaiting for i in id_list), dtype=bool, count=len(id_list)) & ~already
        seen = np.fromiter((i in self.seen for i in id_list), dtype=bool, count=len(id_list))
        duplicate = ids.notna().to_numpy(dtype=bool) & (~first | seen) & ~already & ~awaiting
        report.unchanged += int(already.sum())
        if awaiting.any():  # their request is still journaled: replayed next run, never re-batched
            report.rejected["awaiting_replay"] += int(awaiting.sum())
        rows: list[tuple[str | None, str, str]] = [
            (id_list[i], "duplicate_event_id", "another row with this event id was read first")
            for i in np.flatnonzero(duplicate).tolist()
        ]
        self._reject_rows(rows, kind="data")
        keep = ~(already | awaiting | duplicate)
        self.seen.update(i for i, k in zip(id_list, keep.tolist(), strict=True) if k and i is not None)
        kept = chunk[keep]
        # Transformed in slices: this thread also feeds the client, and a long pause here would let the
        # requests in flight drain and waste rate budget.
        for begin in range(0, len(kept), TRANSFORM_SLICE):
            out = transform_events(kept.iloc[begin : begin + TRANSFORM_SLICE], self.mapping, self.registry,
                                   json_columns=source.json_columns, names=self.names)  # fmt: skip
            self._reject_rows([(r.event_id, r.reason, r.detail) for r in out.rejects], kind="data")
            self._account(out)
            pending = self.registry.take_pending()
            if pending and not self.dry_run:
                for scope, types in pending.items():
                    self.store.register_attributes(scope, types, owner=OWNER)
            for event_id, payload in zip(out.event_ids, out.payloads, strict=True):
                yield Item(key=event_id, identity=event_id, payload=payload)

    def _account(self, out: Transformed) -> None:
        report = self.report
        report.trimmed += out.trimmed
        report.coerced += out.coerced
        report.renamed.update(out.renamed)
        for drop in out.drops:
            report.values_dropped[drop.reason] += 1
            self.tally.value_drops[f"{drop.column}: {drop.reason}"] += 1

    def _reject_rows(self, rows: list[tuple[str | None, str, str]], *, kind: str) -> None:
        """Count whole-event rejects; record them (ledger by event id, rejects table) unless a dry run."""
        for _event_id, reason, _detail in rows:
            self.report.rejected[reason] += 1
        if self.dry_run or not rows:
            return
        now = self.store.clock()
        keyed = [(e, r) for e, r, _d in rows if e is not None and r != "duplicate_event_id"]
        rejects = [
            RejectRow(row_key=e if e is not None else "(no event id)", column=ROW, reason=r, detail=d, kind=kind)
            for e, r, d in rows
            if r not in _INTENDED
        ]
        with self.store.transaction() as conn:
            ledger.record_rejected(conn, keyed, run_id=self.run_id, now=now)
            if rejects:
                self.store.record_rejects(conn, PIPELINE, rejects, self.run_id)
        self.open_rejects.update(r.row_key for r in rejects)

    # -- requests ------------------------------------------------------------------------------
    def _requests(self, items: Iterator[Item[str]], oversize: list[Item[str]]) -> Iterator[SendRequest]:
        if self.mapping.endpoint == "bulk-events":
            yield from batch_requests(items, endpoint="bulk-events", batch_size=self.settings.batch_size,
                                      max_bytes=self.settings.max_batch_bytes, oversize=oversize)  # fmt: skip
            return
        for item in items:  # /events: one request per event, its id as x-request-id (documented de-dupe)
            body = orjson.dumps(item.payload)
            if len(body) > self.settings.max_batch_bytes:
                oversize.append(item)
                continue
            yield SendRequest("events", body, deterministic_request_id([item.identity]), 1, Batch((item,)))

    def _counting(self, requests: Iterator[SendRequest]) -> Iterator[SendRequest]:
        for request in requests:
            self.report.batches += 1
            self.report.sent += request.items
            yield request


def _open_row_rejects(store: StateStore) -> set[str]:
    """Event ids with an open whole-event reject (resolved when the event goes through)."""
    query = sa.select(REJECTS.c.row_key).where(
        REJECTS.c.pipeline == PIPELINE, REJECTS.c.status == "open", REJECTS.c.column_name == ROW
    )
    rows = store.conn.execute(query).scalars().all()
    store.conn.commit()
    return {str(r) for r in rows}


def _request_of(entry: ledger.OutboxEntry) -> SendRequest:
    """A journaled request rebuilt for replay: the stored bytes and id; payloads parsed for bisection."""
    doc = orjson.loads(entry.body)
    payloads = doc["events"] if entry.endpoint == "bulk-events" else [doc]
    if len(payloads) != len(entry.event_ids):
        raise WebEngageSyncError(f"outbox request {entry.request_id} is inconsistent; inspect we_event_outbox")
    items = tuple(Item(key=e, identity=e, payload=p) for e, p in zip(entry.event_ids, payloads, strict=True))
    endpoint: Endpoint = "bulk-events" if entry.endpoint == "bulk-events" else "events"
    return SendRequest(endpoint, entry.body, entry.request_id, len(items), Batch(items))


class _Delivery:
    """Journal -> send -> settle, for fresh or replayed requests."""

    def __init__(self, sync: _Sync, *, replay: bool, journaled: set[str] | None = None) -> None:
        assert sync.client is not None
        self.sync = sync
        self.client = sync.client
        self.store = sync.store
        self.replay = replay
        self.journaled = journaled or set()  # request ids already in the outbox (replays)
        self.group = STATE_GROUP.get(sync.mapping.endpoint, 8)
        self.accepted: list[SendRequest] = []
        self.first_accepted_at = 0.0

    def send(self, requests: Iterable[SendRequest]) -> None:
        pending: Iterable[SendRequest] = requests
        failed = True
        try:
            while True:
                splits: deque[SendRequest] = deque()
                for result in self.client.send_many(self._journaled(requests_with_splits(pending, splits))):
                    self._settle(result, splits)
                if not splits:
                    break
                pending = list(splits)  # halves queued after the source ran dry: another round
            failed = False
        finally:
            try:
                self.flush()  # what WebEngage accepted is checkpointed even when the run stops
            except Exception:
                if not failed:
                    raise
                log.exception("could not checkpoint accepted requests; the next run replays them")

    def _journaled(self, requests: Iterator[SendRequest]) -> Iterator[SendRequest]:
        """Write each request's composition and bytes to the outbox before it can be sent."""
        buffer: list[SendRequest] = []
        for request in requests:
            buffer.append(request)
            if len(buffer) >= self.group:
                self._journal(buffer)
                yield from buffer
                buffer = []
        if buffer:
            self._journal(buffer)
            yield from buffer

    def _journal(self, requests: list[SendRequest]) -> None:
        entries = [
            ledger.OutboxEntry(request_id=str(r.request_id), endpoint=r.endpoint, event_ids=_event_ids(r), body=r.body)
            for r in requests
            if r.request_id not in self.journaled
        ]
        if not entries:
            return
        with self.store.transaction() as conn:
            ledger.journal(conn, entries, run_id=self.sync.run_id, now=self.store.clock())

    def _settle(self, result: SendResult, splits: deque[SendRequest]) -> None:
        request = result.request
        batch = request.key
        assert isinstance(batch, Batch)
        if result.outcome == "accepted":
            if not self.accepted:
                self.first_accepted_at = time.monotonic()
            self.accepted.append(request)
            if len(self.accepted) >= self.group or time.monotonic() - self.first_accepted_at > CHECKPOINT_EVERY_S:
                self.flush()
            return
        if result.outcome == "rejected" and request.endpoint == "bulk-events" and len(batch.items) > 1:
            # WebEngage refused the whole call (not ingested): halves go out as new requests.
            log.info("batch %s rejected (%s); splitting %d events", request.request_id, result.status_code,
                     len(batch.items))  # fmt: skip
            with self.store.transaction() as conn:
                ledger.complete(conn, [str(request.request_id)])
            splits.extend(split_request(request))
            return
        ids = list(_event_ids(request))
        detail = f"HTTP {result.status_code}: {result.message or ''}"[:500]
        if result.outcome == "rejected":
            reason, kind = "api_rejected", "api"
        else:
            # Ambiguous (it may have been ingested): the outbox keeps it, the next run replays it.
            reason, kind = "transient_failure", "transient"
        rejects = [RejectRow(row_key=e, column=ROW, reason=reason, detail=detail, kind=kind) for e in ids]
        now = self.store.clock()
        with self.store.transaction() as conn:
            self.store.record_rejects(conn, PIPELINE, rejects, self.sync.run_id)
            if result.outcome == "rejected":
                ledger.record_rejected(conn, [(e, reason) for e in ids], run_id=self.sync.run_id, now=now)
                ledger.complete(conn, [str(request.request_id)])
        self.sync.open_rejects.update(ids)
        if self.replay:
            self.sync.tally.replay_failed_events += len(ids)
        else:
            self.sync.report.rejected[reason] += len(ids)

    def flush(self) -> None:
        if not self.accepted:
            return
        accepted, self.accepted = self.accepted, []
        event_ids: list[str] = []
        request_ids: list[str] = []
        for request in accepted:
            ids = _event_ids(request)
            event_ids += ids
            request_ids += [str(request.request_id)] * len(ids)
        resolve = [e for e in event_ids if e in self.sync.open_rejects]
        now = self.store.clock()
        with self.store.transaction() as conn:
            ledger.record_accepted(conn, event_ids=event_ids, request_ids=request_ids, run_id=self.sync.run_id, now=now)
            ledger.complete(conn, [str(r.request_id) for r in accepted])
            ledger.resolve_row_rejects(conn, pipeline=PIPELINE, event_ids=resolve, run_id=self.sync.run_id, now=now)
        self.sync.open_rejects.difference_update(resolve)
        if self.replay:
            self.sync.tally.replayed_events += len(event_ids)
        else:
            self.sync.report.accepted += len(event_ids)
        if self.sync.progress is not None:
            self.sync.progress(self.sync.report)


def _event_ids(request: SendRequest) -> tuple[str, ...]:
    batch = request.key
    assert isinstance(batch, Batch)
    return tuple(str(i.key) for i in batch.items)
