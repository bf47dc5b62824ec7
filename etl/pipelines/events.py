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
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import numpy as np
import orjson
import pandas as pd
from sqlalchemy.engine import Engine

from etl.config import Settings
from etl.engine.delivery import Checkpoints, Grouping, Request, Result, batch_of, count_only, counted, deliver
from etl.engine.frame import Progress, Run, WallClock, Window, execute, require_replay_progress, system_now
from etl.engine.rejects import ROW, Reason, RejectKind, RejectRow, classify, too_large
from etl.errors import ConfigError, WebEngageSyncError
from etl.instants import as_utc
from etl.load.batching import Batch, Item, batch_requests
from etl.mappings.events import EventMapping, load_event_mapping
from etl.report import RunReport
from etl.resources import DEFAULT_EVENTS_MAPPING, user_file
from etl.state import ledger
from etl.transform.events import NameCache, Transformed, TypeRegistry, name_cache, transform_events
from etl.transform.formats import garbage
from etl.transform.users import normalise_keys
from etl.warehouse.event_sources import Source, accepted_count, custom_source, segment_sources, unsent
from etl.warehouse.pushdown import Where, diff_location
from etl.warehouse.queries import read_chunks
from etl.webengage.models import Endpoint, SendRequest, deterministic_request_id

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
    value = as_utc(value)
    return datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond, tzinfo=UTC
    )


def event_sources(mapping: EventMapping, warehouse: Engine, *, read_from: datetime, end: datetime) -> list[Source]:
    if mapping.preset == "segment":
        return segment_sources(warehouse, schema=mapping.segment_schema, read_from=read_from, end=end)
    return [custom_source(mapping.query, mapping.params, read_from=read_from, end=end)]


# -- run ------------------------------------------------------------------------------------------
@dataclass
class _Tally:
    """Counts beyond RunReport's (replays are not extracted rows, so they stay out of its invariant)."""

    replayed_requests: int = 0
    replayed_events: int = 0
    replay_failed_events: int = 0
    value_drops: Counter[str] = field(default_factory=Counter)  # "source property: reason" -> values
    diff: Where = "python"  # where the ledger is joined: "warehouse" (anti-join in SQL) or "python"


def run(
    settings: Settings,
    *,
    window: Window,
    run_id: str | None = None,
    dry_run: bool = False,
    clock: WallClock = system_now,
    transport: httpx.BaseTransport | None = None,
    progress: Progress | None = None,
    mapping: EventMapping | None = None,
) -> dict[str, Any]:
    """Sync the events of ``window`` (``[start, end)``, widened by the mapping's lookback); returns the
    run summary (also stored in the runs table)."""
    events = mapping or load_mapping(settings)
    start, end = resolve_window(window)
    try:
        read_from = start - events.lookback
    except OverflowError:
        raise ConfigError("window", f"start {start.date().isoformat()} minus the lookback is before year 1") from None
    tally = _Tally()

    def body(run: Run) -> None:
        if events.endpoint == "bulk-events" and not settings.request_id_on_bulk:
            run.report.notes.append(
                "request_id_on_bulk is off: a request replayed after a crash cannot be de-duplicated by WebEngage; "
                'use endpoint = "events" or turn it on'
            )
        sync = _Sync(run, events, tally)
        tally.diff = diff_location(settings, run.warehouse(), state_tables=ledger.TABLES)
        if not run.dry_run:
            sync.replay()
        sync.extract_and_send(event_sources(events, run.warehouse(), read_from=read_from, end=end))
        if tally.replayed_requests:
            require_replay_progress(
                run.report,
                replayed=tally.replay_failed_events,
                accepted=tally.replayed_events,
                what="journaled events",
                kept="they stay in the outbox",
            )

    return execute(
        settings,
        body,
        pipeline=PIPELINE,
        run_id=run_id,
        window=(start, end),
        dry_run=dry_run,
        clock=clock,
        transport=transport,
        progress=progress,
        summarize=lambda report: _summary(report, tally, events, read_from),
    )


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
        diff=tally.diff,
    )
    return summary


class _Sync:
    """One run's extraction and delivery; every state write happens on the caller's thread."""

    def __init__(self, run: Run, mapping: EventMapping, tally: _Tally) -> None:
        self.run = run
        self.settings = run.settings
        self.mapping = mapping
        self.store = run.store
        self.report = run.report
        self.tally = tally
        self.dry_run = run.dry_run
        self.registry = TypeRegistry(run.store.registry)
        self.names: NameCache = name_cache(mapping)
        self.null_tokens = garbage.null_tokens(run.settings.null_tokens)
        self.seen: set[str] = set()
        self.awaiting: set[str] = set()
        self.open_rejects = run.store.open_reject_keys(PIPELINE, column=ROW)  # whole-event rejects
        # Re-driven max_reject_attempts times: skipped, as in every sync, until `rejects retry`.
        self.dead = run.store.dead_reject_keys(PIPELINE)

    @property
    def run_id(self) -> str:
        return self.report.run_id

    # -- replay --------------------------------------------------------------------------------
    def replay(self) -> None:
        """Re-send every request the outbox still holds, with its id and bytes, before anything new."""
        entries = ledger.pending(self.store)
        if self.dead:  # kept in the outbox (nothing is lost), not replayed until reopened
            entries = [e for e in entries if not set(e.event_ids) <= self.dead]
        if entries:
            log.info(
                "replaying %d journaled requests (%d events) with their request ids",
                len(entries),
                sum(len(e.event_ids) for e in entries),
            )
            self.tally.replayed_requests += len(entries)
            self.deliver([_request_of(e) for e in entries], replay=True, journaled={e.request_id for e in entries})

    # -- extraction ----------------------------------------------------------------------------
    def extract_and_send(self, sources: list[Source]) -> None:
        self.awaiting = ledger.pending_event_ids(self.store)
        oversize: list[Item[str]] = []
        requests = self._requests(self._items(sources), oversize)
        if self.dry_run:
            count_only(requests, self.report)
        else:
            self.deliver(counted(requests, self.report), replay=False)
        if oversize:
            reason, kind, detail = too_large(self.settings.max_batch_bytes, "event")
            self._reject_rows([(i.key, reason, detail) for i in oversize], kind=kind)

    def _items(self, sources: list[Source]) -> Iterator[Item[str]]:
        for source in sources:
            log.debug("reading %s", source.label)
            if self.tally.diff == "warehouse":
                # Events accepted by earlier runs stay in the warehouse; counted there, reported as before.
                sent = accepted_count(self.run.warehouse(), source, run_id=self.run_id)
                self.report.extracted += sent
                self.report.unchanged += sent
                source = unsent(source, run_id=self.run_id)
            chunks = read_chunks(
                self.run.warehouse(),
                source.statement,
                source.params,
                chunk_rows=self.mapping.chunk_rows,
                label=source.label,
            )
            for chunk in chunks:
                yield from self._prepare(chunk, source)
                self.run.tick()

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
        dead = np.zeros(len(id_list), dtype=bool)
        if self.dead:
            dead = np.fromiter((i in self.dead for i in id_list), dtype=bool, count=len(id_list))
            dead &= ~(already | awaiting | duplicate)
            report.rejected[Reason.DEAD_AFTER_RETRIES.value] += int(dead.sum())
        report.unchanged += int(already.sum())
        if awaiting.any():  # their request is still journaled: replayed next run, never re-batched
            report.rejected["awaiting_replay"] += int(awaiting.sum())
        rows: list[tuple[str | None, str, str]] = [
            (id_list[i], "duplicate_event_id", "another row with this event id was read first")
            for i in np.flatnonzero(duplicate).tolist()
        ]
        self._reject_rows(rows, kind="data")
        keep = ~(already | awaiting | duplicate | dead)
        self.seen.update(i for i, k in zip(id_list, keep.tolist(), strict=True) if k and i is not None)
        kept = chunk[keep]
        # Transformed in slices: this thread also feeds the client, and a long pause here would let the
        # requests in flight drain and waste rate budget.
        for begin in range(0, len(kept), TRANSFORM_SLICE):
            out = transform_events(
                kept.iloc[begin : begin + TRANSFORM_SLICE],
                self.mapping,
                self.registry,
                json_columns=source.json_columns,
                names=self.names,
                null_tokens=self.null_tokens,
                now=self.run.started_at,
                future_tolerance_s=self.settings.event_future_tolerance_s,
            )
            self._reject_rows([(r.event_id, r.reason, r.detail) for r in out.rejects], kind="data")
            self._account(out)
            self._reject_values(out)
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
        report.cleaned += out.cleaned
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

    def _reject_values(self, out: Transformed) -> None:
        """Record the values left out of events that still go (keyed by event id and column, kind data), so
        ``webengage-sync rejects --pipeline events`` shows them as the profile sync's; unless a dry run."""
        if self.dry_run or not out.drops:
            return
        rejects = [
            RejectRow(row_key=d.event_id, column=d.column, reason=d.reason, detail=d.detail, kind=RejectKind.DATA.value)
            for d in out.drops
        ]
        with self.store.transaction() as conn:
            self.store.record_rejects(conn, PIPELINE, rejects, self.run_id)

    # -- requests ------------------------------------------------------------------------------
    def _requests(self, items: Iterator[Item[str]], oversize: list[Item[str]]) -> Iterator[Request]:
        if self.mapping.endpoint == "bulk-events":
            yield from batch_requests(
                items,
                endpoint="bulk-events",
                batch_size=self.settings.batch_size,
                max_bytes=self.settings.max_batch_bytes,
                oversize=oversize,
            )
            return
        for item in items:  # /events: one request per event, its id as x-request-id (documented de-dupe)
            body = orjson.dumps(item.payload)
            if len(body) > self.settings.max_batch_bytes:
                oversize.append(item)
                continue
            yield SendRequest("events", body, deterministic_request_id([item.identity]), 1, Batch((item,)))

    # -- delivery ------------------------------------------------------------------------------
    def deliver(self, requests: Iterable[Request], *, replay: bool, journaled: set[str] | None = None) -> None:
        """Journal -> send -> settle, for fresh or replayed requests (``journaled``: ids already in the
        outbox). Replays count in the tally, not in the report: they are not this window's rows."""
        group = STATE_GROUP.get(self.mapping.endpoint, 8)
        per_request = self.settings.batch_size if self.mapping.endpoint == "bulk-events" else 1
        store, run_id = self.store, self.run.run_id
        known = journaled or set()

        def journal(requests: list[Request]) -> None:
            entries = [
                ledger.OutboxEntry(
                    request_id=str(r.request_id), endpoint=r.endpoint, event_ids=_event_ids(r), body=r.body
                )
                for r in requests
                if r.request_id not in known
            ]
            if entries:
                with store.transaction() as conn:
                    ledger.journal(conn, entries, run_id=run_id, now=store.clock())

        def split(request: Request) -> None:  # its halves are new requests, journaled before they go
            with store.transaction() as conn:
                ledger.complete(conn, [str(request.request_id)])

        def accepted(done: list[Request]) -> None:
            event_ids = [e for r in done for e in _event_ids(r)]
            request_ids = [str(r.request_id) for r in done for _ in _event_ids(r)]
            resolve = [e for e in event_ids if e in self.open_rejects]
            now = store.clock()
            with store.transaction() as conn:
                ledger.record_accepted(conn, event_ids=event_ids, request_ids=request_ids, run_id=run_id, now=now)
                ledger.complete(conn, [str(r.request_id) for r in done])
                ledger.resolve_row_rejects(conn, pipeline=PIPELINE, event_ids=resolve, run_id=run_id, now=now)
            self.open_rejects.difference_update(resolve)
            if replay:
                self.tally.replayed_events += len(event_ids)
            else:
                self.report.accepted += len(event_ids)
            self.run.tick()

        def failed(request: Request, result: Result) -> None:
            ids = list(_event_ids(request))
            reason, kind, detail = classify(result)
            rejects = [RejectRow(row_key=e, column=ROW, reason=reason, detail=detail, kind=kind) for e in ids]
            now = store.clock()
            with store.transaction() as conn:
                store.record_rejects(conn, PIPELINE, rejects, run_id)
                if kind == RejectKind.API:  # refused, nothing ingested: settled
                    ledger.record_rejected(conn, [(e, reason) for e in ids], run_id=run_id, now=now)
                    ledger.complete(conn, [str(request.request_id)])
                # transient: it may have been ingested; the outbox keeps it and the next run replays it
            self.open_rejects.update(ids)
            if replay:
                self.tally.replay_failed_events += len(ids)
            else:
                self.report.rejected[reason] += len(ids)

        checkpoints = Checkpoints(accepted=accepted, failed=failed, journal=journal, split=split)
        grouping = Grouping(items=group * per_request, journal=group, wait_s=CHECKPOINT_EVERY_S)
        deliver(self.run.client(), requests, checkpoints, grouping=grouping)


def _request_of(entry: ledger.OutboxEntry) -> Request:
    """A journaled request rebuilt for replay: the stored bytes and id; payloads parsed for bisection."""
    doc = orjson.loads(entry.body)
    payloads = doc["events"] if entry.endpoint == "bulk-events" else [doc]
    if len(payloads) != len(entry.event_ids):
        raise WebEngageSyncError(f"outbox request {entry.request_id} is inconsistent; inspect we_event_outbox")
    items = tuple(Item(key=e, identity=e, payload=p) for e, p in zip(entry.event_ids, payloads, strict=True))
    endpoint: Endpoint = "bulk-events" if entry.endpoint == "bulk-events" else "events"
    return SendRequest(endpoint, entry.body, entry.request_id, len(items), Batch(items))


def _event_ids(request: Request) -> tuple[str, ...]:
    return tuple(str(i.key) for i in batch_of(request).items)
