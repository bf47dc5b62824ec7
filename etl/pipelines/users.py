"""Nightly profile sync: warehouse users -> WebEngage profiles, only what changed, nothing lost.

extract (chunked, ordered by user id) -> screen ids, dedupe -> hash source values -> diff against the
state of what WebEngage accepted -> coerce + build payloads for changed rows -> bulk batches (<= 25,
<= byte cap) -> client (paced, retried) -> checkpoint each accepted batch in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.config import Settings
from etl.errors import WebEngageSyncError
from etl.load.batching import Batch, Item, batch_requests
from etl.pipelines.common import (
    Progress,
    WallClock,
    default_run_id,
    log,
    send_and_checkpoint,
    system_now,
)
from etl.report import RunReport
from etl.resources import DEFAULT_USERS_MAPPING, user_file
from etl.state.store import ROW, RejectRow, StateStore
from etl.transform import users as tx
from etl.transform.mapping import AttrType, UserMapping, complete_mapping, load_user_mapping
from etl.warehouse.engine import make_engine
from etl.warehouse.presets import segment_user_fields, segment_users_source, source_columns
from etl.warehouse.queries import load_sql, ordered_by, read_chunks
from etl.webengage.client import WebEngageClient, deterministic_request_id
from etl.webengage.models import SendRequest, SendResult
from etl.webengage.overflow import OverflowLane

PIPELINE = "users"
UserKey = tuple[str, int, str]  # user id, source hash, field mask


@dataclass
class _Prepared:
    items: list[Item[UserKey]] = field(default_factory=list)


def load_mapping(settings: Settings) -> UserMapping:
    return load_user_mapping(user_file(settings.users_mapping, DEFAULT_USERS_MAPPING))


def run(
    settings: Settings,
    *,
    mapping: UserMapping | None = None,
    run_id: str | None = None,
    window: tuple[datetime | None, datetime | None] = (None, None),
    dry_run: bool = False,
    full_refresh: bool = False,
    clock: WallClock = system_now,
    transport: httpx.BaseTransport | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Sync users once; returns the run summary (also stored in the runs table)."""
    started = time.monotonic()
    mapping = mapping or load_mapping(settings)
    now = clock()
    report = RunReport(
        pipeline=PIPELINE,
        run_id=run_id or default_run_id(now),
        dry_run=dry_run,
        window_start=window[0],
        window_end=window[1],
        renamed=dict(mapping.renamed),
    )
    warehouse = make_engine(settings.warehouse_url)
    state_engine = make_engine(settings.effective_state_url, setting="state_url")
    as_of = window[1] or now
    today = as_of.date()

    with StateStore(state_engine, clock=lambda: clock().replace(tzinfo=None)) as store:
        store.start_run(run_id=report.run_id, pipeline=PIPELINE, window=window, dry_run=dry_run)
        try:
            client = None if dry_run else WebEngageClient(settings, transport=transport)
            try:
                _run(settings, mapping, store, client, report, as_of=as_of, today=today,
                     full_refresh=full_refresh, warehouse=warehouse, progress=progress)  # fmt: skip
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
            report.message = (
                f"{exc.__class__.__name__}: {exc}" if isinstance(exc, WebEngageSyncError | Exception) else ""
            )
            store.finish_run(run_id=report.run_id, pipeline=PIPELINE, status="failed",
                             counts=report.summary(), message=report.message)  # fmt: skip
            raise
        summary = report.summary()
        store.finish_run(run_id=report.run_id, pipeline=PIPELINE, status="success", counts=summary)
    warehouse.dispose()
    state_engine.dispose()
    log.info(
        "users run %s: %s; extracted %d, unchanged %d, accepted %d, rejected %d",
        summary["run_id"], summary["status"], summary["extracted"], summary["unchanged"], summary["accepted"],
        summary["rejected"],
    )  # fmt: skip
    return summary


def resolve_source(mapping: UserMapping, warehouse: Engine) -> tuple[sa.Select[Any], dict[str, Any], UserMapping]:
    """The ordered extract statement, its parameters, and the mapping completed for a preset."""
    if mapping.preset == "segment":
        stmt, key, updated = segment_users_source(schema=mapping.segment_schema, table=mapping.segment_table)
        system, attributes = segment_user_fields(source_columns(warehouse, stmt), key)
        mapping = complete_mapping(mapping, user_id=key, updated_at=updated, system=system, attributes=attributes)
        return stmt, dict(mapping.params), mapping  # the preset orders by its key itself
    sql = load_sql(mapping.query)
    params = dict(mapping.params)
    if ":as_of" in sql:
        params.setdefault("as_of", None)
    return ordered_by(sql, mapping.user_id), params, mapping


def _run(
    settings: Settings,
    mapping: UserMapping,
    store: StateStore,
    client: WebEngageClient | None,
    report: RunReport,
    *,
    as_of: datetime,
    today: Any,
    full_refresh: bool,
    warehouse: Any,
    progress: Progress | None,
) -> None:
    stmt, params, mapping = resolve_source(mapping, warehouse)
    if "as_of" in params and params["as_of"] is None:
        params["as_of"] = as_of.replace(tzinfo=None)
    # order_key: all rows of one user id come in one chunk (so duplicates resolve per chunk), and DuckDB
    # reads the ordered extract in key ranges instead of sorting all of it in this process's memory.
    chunks = read_chunks(warehouse, stmt, params, chunk_rows=mapping.chunk_rows, order_key=mapping.user_id)
    registry = store.registry("users")
    types: dict[str, AttrType] | None = None
    salt = ""
    # Rejects of rows about to be sent wait for their batch's outcome: an acceptance resolves the
    # user's older rejects, so recording this run's before it would resolve them at once.
    held: dict[str, list[RejectRow]] = {}
    # Keys with open rejects (only their acceptance touches the rejects table) and dead ones (retried
    # max_reject_attempts times; skipped until `webengage-sync rejects retry`).
    open_keys = store.open_reject_keys(PIPELINE)
    dead = store.dead_reject_keys(PIPELINE)
    # Types of attributes sent for the first time: registered with the first accepted batch, so a run that
    # WebEngage refuses (wrong key, host) leaves the state untouched.
    unregistered: dict[str, str] = {}

    def items() -> Iterator[Item[UserKey]]:
        nonlocal types, salt
        for chunk in chunks:
            if types is None:
                types, new, notes = tx.resolve_types(mapping, chunk, registry)
                report.notes.extend(notes)
                unregistered.update(new)
                salt = tx.types_salt(mapping, types)
            yield from _prepare(chunk, mapping, types, salt, store, report, held, dead, today=today,
                                full_refresh=full_refresh)  # fmt: skip
            if progress is not None:
                progress(report)

    oversize: list[Item[UserKey]] = []
    requests = batch_requests(items(), endpoint="bulk-users", batch_size=settings.batch_size,
                              max_bytes=settings.max_batch_bytes, oversize=oversize)  # fmt: skip

    if client is None:  # dry run: count what would go, send nothing, write no state
        for request in requests:
            report.batches += 1
            report.sent += request.items
    else:
        counted = _counting(requests, report)

        def accepted(batch: Batch[UserKey]) -> None:
            if unregistered:
                store.register_attributes("users", unregistered, owner="users")
                unregistered.clear()
            keys = [i.key for i in batch.items]
            ids = [k[0] for k in keys]
            found = _release(held, ids)
            stale = [i for i in ids if i in open_keys]
            with store.transaction() as conn:
                store.checkpoint_users(conn, keys, report.run_id)
                if stale:
                    store.resolve_rejects(conn, PIPELINE, stale, report.run_id)
                if found:
                    store.record_rejects(conn, PIPELINE, found, report.run_id)
            report.accepted += len(keys)
            if progress is not None:
                progress(report)

        def failed(batch: Batch[UserKey], result: SendResult) -> None:
            kind = "transient" if result.outcome == "transient" else "api"
            reason = "transient_failure" if kind == "transient" else "api_rejected"
            detail = f"HTTP {result.status_code}: {result.message or ''}"[:500]
            rejects = [RejectRow(row_key=i.key[0], column=ROW, reason=reason, detail=detail, kind=kind)
                       for i in batch.items]  # fmt: skip
            found = _release(held, [i.key[0] for i in batch.items])
            with store.transaction() as conn:
                store.record_rejects(conn, PIPELINE, rejects + found, report.run_id,
                                     max_attempts=settings.max_reject_attempts)  # fmt: skip
            report.rejected[reason] += len(rejects)

        if settings.overflow_lane:
            _send_with_overflow(client, counted, report, accepted=accepted, failed=failed, group=settings.batch_size)
        else:
            send_and_checkpoint(client, counted, on_accepted=accepted, on_failed=failed)

    if oversize:
        rejects = [RejectRow(row_key=i.key[0], column=ROW, reason="payload_too_large",
                             detail=f"one user is over max_batch_bytes={settings.max_batch_bytes}")
                   for i in oversize]  # fmt: skip
        report.rejected["payload_too_large"] += len(rejects)
        found = _release(held, [i.key[0] for i in oversize])
        if client is not None:
            with store.transaction() as conn:
                store.record_rejects(conn, PIPELINE, rejects + found, report.run_id)


# -- overflow lane ---------------------------------------------------------------------------------
#: Longest an accepted single-lane user waits for its checkpoint when results trickle in.
GROUP_WAIT_S = 0.25


def _send_with_overflow(
    client: WebEngageClient,
    requests: Iterator[SendRequest],
    report: RunReport,
    *,
    accepted: Callable[[Batch[UserKey]], None],
    failed: Callable[[Batch[UserKey], SendResult], None],
    group: int,
) -> None:
    """Send through /bulk-users and, while it is saturated, one user per request through /users.

    Crash semantics: accepted users are checkpointed in groups of ``group`` (a bulk batch at once; single-lane
    users once ``group`` have accumulated or after GROUP_WAIT_S), so a kill leaves at most ``group - 1``
    accepted users plus the requests in flight without a checkpoint. The next run re-sends them unchanged,
    with the same x-request-id (``/users`` de-duplicates it for 4 hours; a profile upsert is idempotent).
    """
    lane = OverflowLane(client, split=_singles)
    grouped = _Grouped(accepted, size=group)
    ok = False
    try:
        send_and_checkpoint(client, lane.dispatch(requests), on_accepted=grouped.add, on_failed=failed)
        ok = True
    finally:
        try:
            grouped.flush()  # what WebEngage accepted is checkpointed even when the run stops
        except Exception:
            if ok:
                raise
            log.exception("could not checkpoint accepted users; the next run re-sends them")
        report.notes.append(
            f"overflow lane: {lane.single_items} users sent one per request through /users "
            f"({lane.split_requests} batches), {lane.bulk_requests} batches through /bulk-users"
        )


def _singles(request: SendRequest) -> list[SendRequest]:
    """A bulk batch as /users requests, one per user; each id derives from its user id and row hash."""
    batch = request.key
    assert isinstance(batch, Batch)
    return [SendRequest("users", orjson.dumps(i.payload), deterministic_request_id([i.identity]), 1, Batch((i,)))
            for i in batch.items]  # fmt: skip


class _Grouped:
    """Accepted batches checkpointed together once ``size`` users or GROUP_WAIT_S have accumulated: the
    single lane answers one user at a time, and a state commit per user would cost more than its request."""

    def __init__(self, checkpoint: Callable[[Batch[UserKey]], None], *, size: int) -> None:
        self._checkpoint = checkpoint
        self._size = size
        self._items: list[Item[UserKey]] = []
        self._since = 0.0

    def add(self, batch: Batch[UserKey]) -> None:
        if not self._items:
            self._since = time.monotonic()
        self._items.extend(batch.items)
        if len(self._items) >= self._size or time.monotonic() - self._since >= GROUP_WAIT_S:
            self.flush()

    def flush(self) -> None:
        if self._items:
            items, self._items = self._items, []
            self._checkpoint(Batch(tuple(items)))


def _release(held: dict[str, list[RejectRow]], user_ids: list[str]) -> list[RejectRow]:
    return [r for user_id in user_ids for r in held.pop(user_id, ())]


def _counting(requests: Iterator[Any], report: RunReport) -> Iterator[Any]:
    for request in requests:
        report.batches += 1
        report.sent += request.items
        yield request


def _prepare(
    chunk: pd.DataFrame,
    mapping: UserMapping,
    types: dict[str, AttrType],
    salt: str,
    store: StateStore,
    report: RunReport,
    held: dict[str, list[RejectRow]],
    dead: set[str],
    *,
    today: Any,
    full_refresh: bool,
) -> Iterator[Item[UserKey]]:
    # Label rows by their position in the run's extract, not in the chunk: rejects of rows without a
    # usable id are keyed by that label, and chunk-local labels repeat (the carried-over tail restarts at 0).
    chunk = chunk.set_axis(pd.RangeIndex(report.extracted, report.extracted + len(chunk)))
    report.extracted += len(chunk)
    keys = tx.normalise_keys(chunk, mapping.user_id)
    usable, rejects = tx.screen_keys(chunk, keys, mapping)
    chunk, keys = chunk[usable], keys[usable]
    hashes = tx.row_hashes(chunk, mapping, salt)
    keep, dup_rejects = tx.dedupe(chunk, keys, hashes, mapping)
    rejects += dup_rejects
    chunk, keys, hashes = chunk[keep], keys[keep], hashes[keep]

    key_list = keys.tolist()
    known = store.user_state(key_list)
    # Exact int64 compare in numpy: mapping a mix of known and new ids through pandas yields a float
    # column (lossy above 2**53, and pyarrow refuses to compare it with the int64 hashes).
    seen = np.fromiter((k in known for k in key_list), dtype=bool, count=len(key_list))
    previous = np.fromiter((known[k][0] if k in known else 0 for k in key_list), dtype=np.int64, count=len(key_list))
    differs = ~seen | (previous != hashes.to_numpy(dtype=np.int64))
    changed = pd.Series(True if full_refresh else differs, index=chunk.index, dtype=bool)
    report.unchanged += int((~changed).sum())
    if dead:
        gave_up = changed & keys.isin(dead)
        report.rejected["dead_after_retries"] += int(gave_up.sum())
        changed &= ~gave_up
    for reject in rejects:
        report.rejected[reject.reason] += 1

    chunk, keys, hashes = chunk[changed], keys[changed], hashes[changed]
    built = tx.build_payloads(
        chunk, keys, mapping, types, [known.get(k, (0, None))[1] for k in keys.tolist()], today=today
    )
    report.trimmed += sum(built.stats.trimmed.values())
    report.coerced += sum(built.stats.coerced.values())
    report.cleared += built.stats.cleared
    report.values_dropped.update(built.stats.dropped)
    if not report.dry_run:
        sending = set(keys.tolist())
        final: list[RejectRow] = []
        for reject in rejects + built.rejects:
            if reject.row_key in sending:
                held.setdefault(reject.row_key, []).append(reject)
            else:
                final.append(reject)
        if final:
            with store.transaction() as conn:
                store.record_rejects(conn, PIPELINE, final, report.run_id)
    for user_id, row_hash, mask, payload in zip(keys.tolist(), hashes.tolist(), built.masks, built.payloads,
                                                 strict=True):  # fmt: skip
        yield Item(key=(user_id, int(row_hash), mask), identity=f"{user_id}:{row_hash}", payload=payload)
