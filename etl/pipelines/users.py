"""Nightly profile sync: warehouse users -> WebEngage profiles, only what changed, nothing lost.

extract (chunked, ordered by user id) -> screen ids, dedupe -> hash source values -> diff against the
state of what WebEngage accepted -> coerce + build payloads for changed rows -> bulk batches (<= 25,
<= byte cap) -> client (paced, retried) -> checkpoint each accepted batch in one transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.config import Settings
from etl.engine.delivery import Checkpoints, Grouping, Request, Result, batch_of, count_only, counted, deliver, keys_of
from etl.engine.frame import Progress, Run, WallClock, Window, execute, system_now
from etl.engine.rejects import ROW, Reason, RejectRow, Verdict, classify, too_large
from etl.instants import naive_utc
from etl.load.batching import Batch, Item, batch_requests
from etl.mappings.users import AttrType, UserMapping, complete_mapping, load_user_mapping
from etl.report import RunReport
from etl.resources import DEFAULT_USERS_MAPPING, user_file
from etl.state.store import StateStore
from etl.transform import users as tx
from etl.transform.formats import garbage
from etl.warehouse import user_diff
from etl.warehouse.presets import segment_user_fields, segment_users_source, source_columns
from etl.warehouse.queries import load_sql, ordered_by, read_chunks
from etl.webengage.models import SendRequest, deterministic_request_id
from etl.webengage.overflow import OverflowLane

PIPELINE = "users"
#: Rows per chunk of the in-warehouse diff's result (see _sync).
DIFF_CHUNK_ROWS = 10_000
UserKey = tuple[str, int, str, int | None]  # user id, source hash, field mask, warehouse hash (in-warehouse diff)


@dataclass
class _Pushdown:
    """The in-warehouse diff of one run: its statement and what it moved."""

    stmt: sa.Select[Any]
    source_rows: int
    label_rows: Callable[[list[Any]], tuple[int, dict[Any, int]]]  # see user_diff.positions
    moved: int = 0
    losers: int = 0  # duplicate rows resolved in SQL (reported, never moved)
    confirmed: int = 0  # rows moved, found unchanged by the worker, their SQL hash stored
    unhashed: int = 0  # rows the warehouse could not hash: compared here only
    null_ids: int = 0  # rows without an id seen so far (labelled after every row with one)

    def relabel(self, rejects: list[RejectRow], raw_ids: pd.Series) -> list[RejectRow]:
        """Rows without a usable id are keyed by their position in the full read (``row:N``): give them the
        label the full read gives them, so both paths (and every run) key them alike."""
        positional = [r for r in rejects if r.row_key.startswith("row:")]
        if not positional:
            return rejects
        index = [int(r.row_key[4:]) for r in positional]
        raw = raw_ids[index]
        with_ids, before = self.label_rows([v for v in raw.tolist() if not _missing(v)])
        seen: Counter[Any] = Counter()
        labels: dict[str, str] = {}
        for idx, value in zip(index, raw.tolist(), strict=True):
            if _missing(value):
                pos = with_ids + self.null_ids
                self.null_ids += 1
            else:
                pos = before[value] + seen[value]
                seen[value] += 1
            labels[f"row:{idx}"] = f"row:{pos}"
        return [replace(r, row_key=labels[r.row_key]) if r.row_key in labels else r for r in rejects]

    def note(self) -> str:
        text = f"in-warehouse diff: {self.source_rows} rows hashed in the warehouse, {self.moved} moved to the worker"
        if self.confirmed:
            text += f", {self.confirmed} found unchanged here (their warehouse hash stored)"
        if self.unhashed:
            text += f", {self.unhashed} without a warehouse hash: compared here only"
        return text


def load_mapping(settings: Settings) -> UserMapping:
    return load_user_mapping(user_file(settings.users_mapping, DEFAULT_USERS_MAPPING))


def run(
    settings: Settings,
    *,
    mapping: UserMapping | None = None,
    run_id: str | None = None,
    window: Window = (None, None),
    dry_run: bool = False,
    full_refresh: bool = False,
    clock: WallClock = system_now,
    transport: httpx.BaseTransport | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Sync users once; returns the run summary (also stored in the runs table)."""
    mapping = mapping or load_mapping(settings)

    def body(run: Run) -> None:
        _sync(run, mapping, as_of=window[1] or run.started_at, full_refresh=full_refresh)

    return execute(
        settings,
        body,
        pipeline=PIPELINE,
        run_id=run_id,
        window=window,
        dry_run=dry_run,
        clock=clock,
        transport=transport,
        progress=progress,
        renamed=mapping.renamed,
    )


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


def raw_source(mapping: UserMapping) -> sa.Subquery:
    """The user query (of a resolved mapping) as an unordered subquery, for the in-warehouse diff."""
    if mapping.preset == "segment":
        stmt, _key, _updated = segment_users_source(schema=mapping.segment_schema, table=mapping.segment_table)
        return stmt.order_by(None).subquery("we_raw")
    return sa.text(load_sql(mapping.query)).columns(sa.column(mapping.user_id)).subquery("we_raw")


def _plan_pushdown(
    run: Run, mapping: UserMapping, ordered: sa.Select[Any], params: dict[str, Any], *, full_refresh: bool
) -> tuple[_Pushdown | None, dict[str, AttrType] | None, dict[str, str]]:
    """The in-warehouse diff when it can run (else None, with the reason in the report's notes), and the
    attribute types resolved for it (its hash is salted with them) with the registrations they need."""
    settings, report, warehouse = run.settings, run.report, run.warehouse()
    reason = user_diff.check_mode(settings, warehouse)
    if reason is None:
        raw = raw_source(mapping)
        required, optional = user_diff.diff_columns(mapping)
        found = user_diff.probe(warehouse, raw, params, required, optional)
        if isinstance(found, str):
            reason = found
        elif found.empty:
            reason = "the query returned no rows"
    if reason is not None:
        if settings.diff_mode != "python":
            report.notes.append(f"full read, diff in the worker: {reason}")
        return None, None, {}
    assert isinstance(found, user_diff.Probe)
    # Types as the full read resolves them: from its first chunk (when any attribute's type is inferred).
    if all(a.type for a in mapping.attributes):
        sample = pd.DataFrame(columns=found.columns)
    else:
        # Read to the end (one chunk at most): an abandoned reader would close its connection at random later.
        frames = list(read_chunks(warehouse, ordered.limit(mapping.chunk_rows), params))
        sample = frames[0] if frames else pd.DataFrame(columns=found.columns)
    types, new, notes = tx.resolve_types(mapping, sample, run.store.registry("users"))
    report.notes.extend(notes)
    salt = tx.types_salt(mapping, types, null_tokens=garbage.null_tokens(settings.null_tokens))
    source = user_diff.source_of(raw, found.columns)
    stmt = user_diff.diff_select(
        source, mapping, found, salt, dialect=warehouse.dialect.name, full_refresh=full_refresh
    )

    def label_rows(values: list[Any]) -> tuple[int, dict[Any, int]]:
        return user_diff.positions(warehouse, source, params, mapping.user_id, values)

    total = user_diff.source_rows(warehouse, source, params)
    return _Pushdown(stmt=stmt, source_rows=total, label_rows=label_rows), types, new


def _sync(run: Run, mapping: UserMapping, *, as_of: datetime, full_refresh: bool) -> None:
    settings, store, report = run.settings, run.store, run.report
    stmt, params, mapping = resolve_source(mapping, run.warehouse())
    if "as_of" in params and params["as_of"] is None:
        params["as_of"] = naive_utc(as_of)
    pushdown, types, new_types = _plan_pushdown(run, mapping, stmt, params, full_refresh=full_refresh)
    # order_key: all rows of one user id come in one chunk (so duplicates resolve per chunk), and DuckDB
    # reads the ordered extract in key ranges instead of sorting all of it in this process's memory (the
    # in-warehouse diff's result is small: one ordered query).
    label = f"segment preset ({mapping.segment_schema})" if mapping.preset == "segment" else mapping.query
    # The diff's rows come sorted from the warehouse: smaller chunks cost little there and keep this process's
    # memory at a few thousand rows whatever the share changed (a full refresh keeps the mapping's chunks).
    chunk_rows = mapping.chunk_rows if pushdown is None or full_refresh else min(mapping.chunk_rows, DIFF_CHUNK_ROWS)
    chunks = read_chunks(
        run.warehouse(),
        pushdown.stmt if pushdown else stmt,
        params,
        chunk_rows=chunk_rows,
        order_key=mapping.user_id,
        label=label,
        key_ranges=pushdown is None,
    )
    if mapping.deletions.erase:  # users marked deleted are erased, never upserted (that would re-create them)
        from etl.pipelines.erasures import skip_deleted

        chunks = skip_deleted(chunks, mapping, run.warehouse(), report)
    registry = store.registry("users")
    null_tokens = garbage.null_tokens(settings.null_tokens)
    salt = tx.types_salt(mapping, types, null_tokens=null_tokens) if types is not None else ""
    # Rejects of rows about to be sent wait for their batch's outcome: an acceptance resolves the
    # user's older rejects, so recording this run's before it would resolve them at once.
    held: dict[str, list[RejectRow]] = {}
    # Keys with open rejects (only their acceptance touches the rejects table) and dead ones (retried
    # max_reject_attempts times; skipped until `webengage-sync rejects retry`).
    open_keys = store.open_reject_keys(PIPELINE)
    dead = store.dead_reject_keys(PIPELINE)
    # Types of attributes sent for the first time: registered with the first accepted batch, so a run that
    # WebEngage refuses (wrong key, host) leaves the state untouched.
    unregistered: dict[str, str] = dict(new_types)

    def items() -> Iterator[Item[UserKey]]:
        nonlocal types, salt
        for chunk in chunks:
            if types is None:
                types, new, notes = tx.resolve_types(mapping, chunk, registry)
                report.notes.extend(notes)
                unregistered.update(new)
                salt = tx.types_salt(mapping, types, null_tokens=null_tokens)
            yield from _prepare(
                chunk,
                mapping,
                types,
                salt,
                store,
                report,
                held,
                dead,
                today=as_of.date(),
                full_refresh=full_refresh,
                null_tokens=null_tokens,
                pushdown=pushdown,
            )
            run.tick()

    oversize: list[Item[UserKey]] = []
    requests = batch_requests(
        items(),
        endpoint="bulk-users",
        batch_size=settings.batch_size,
        max_bytes=settings.max_batch_bytes,
        oversize=oversize,
    )
    if run.dry_run:  # count what would go, send nothing, write no state
        count_only(requests, report)
    else:

        def accepted(done: list[Request]) -> None:
            if unregistered:
                store.register_attributes("users", unregistered, owner="users")
                unregistered.clear()
            keys: list[UserKey] = keys_of(done)
            ids = [k[0] for k in keys]
            found = _release(held, ids)
            stale = [i for i in ids if i in open_keys]
            with store.transaction() as conn:
                store.checkpoint_users(conn, [k[:3] for k in keys], report.run_id, [k[3] for k in keys])
                if stale:
                    store.resolve_rejects(conn, PIPELINE, stale, report.run_id)
                if found:
                    store.record_rejects(conn, PIPELINE, found, report.run_id)
            report.accepted += len(keys)
            run.tick()

        def failed(request: Request, result: Result) -> None:
            _reject(run, held, [i.key[0] for i in batch_of(request).items], classify(result))

        lane = OverflowLane(run.client(), split=_singles) if settings.overflow_lane else None
        deliver(
            run.client(),
            counted(requests, report),
            Checkpoints(accepted=accepted, failed=failed),
            # Single-lane users are checkpointed in groups of a batch: a commit per user would cost more
            # than its request. A kill leaves at most batch_size - 1 accepted users to re-send.
            grouping=Grouping(items=settings.batch_size) if lane else Grouping(),
            dispatch=lane.dispatch if lane else None,
        )
        if lane:
            report.notes.append(
                f"overflow lane: {lane.single_items} users sent one per request through /users "
                f"({lane.split_requests} batches), {lane.bulk_requests} batches through /bulk-users"
            )
    if oversize:
        _reject(run, held, [i.key[0] for i in oversize], too_large(settings.max_batch_bytes, "user"))
    if pushdown is not None:
        # Rows that stayed in the warehouse are unchanged (their hash matched the accepted one).
        stayed = max(0, pushdown.source_rows - pushdown.moved - pushdown.losers)
        report.extracted += pushdown.losers + stayed
        report.unchanged += stayed
        report.notes.append(pushdown.note())


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def _reject(run: Run, held: dict[str, list[RejectRow]], user_ids: list[str], reject: Verdict) -> None:
    """Whole users that did not go through: counted, and recorded with the value rejects held for them."""
    reason, kind, detail = reject
    run.report.rejected[reason] += len(user_ids)
    found = _release(held, user_ids)
    if run.dry_run:
        return
    rejects = [RejectRow(row_key=u, column=ROW, reason=reason, detail=detail, kind=kind) for u in user_ids]
    with run.store.transaction() as conn:
        run.store.record_rejects(conn, PIPELINE, rejects + found, run.run_id)


# -- overflow lane ---------------------------------------------------------------------------------
def _singles(request: Request) -> list[Request]:
    """A bulk batch as /users requests, one per user; each id derives from its user id and row hash
    (so a re-send after a crash carries the same x-request-id, which /users de-duplicates)."""
    return [
        SendRequest("users", orjson.dumps(i.payload), deterministic_request_id([i.identity]), 1, Batch((i,)))
        for i in batch_of(request).items
    ]


def _release(held: dict[str, list[RejectRow]], user_ids: list[str]) -> list[RejectRow]:
    return [r for user_id in user_ids for r in held.pop(user_id, ())]


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
    null_tokens: frozenset[str] = tx.DEFAULT_NULL_TOKENS,
    pushdown: _Pushdown | None = None,
) -> Iterator[Item[UserKey]]:
    # Label rows by their position in the run's extract, not in the chunk: rejects of rows without a
    # usable id are keyed by that label, and chunk-local labels repeat (the carried-over tail restarts at 0).
    chunk = chunk.set_axis(pd.RangeIndex(report.extracted, report.extracted + len(chunk)))
    report.extracted += len(chunk)
    sql_hashes: pd.Series | None = None
    if pushdown is not None:
        pushdown.moved += len(chunk)
        raw_hashes = chunk.pop(user_diff.HASH_COLUMN).tolist()
        sql_hashes = pd.Series([None if _missing(h) else int(h) for h in raw_hashes], index=chunk.index, dtype=object)
        id_rows = chunk.pop(user_diff.ROWS_COLUMN)
        pushdown.unhashed += int(sql_hashes.isna().sum())
    keys = tx.normalise_keys(chunk, mapping.user_id)
    usable, rejects = tx.screen_keys(chunk, keys, mapping, null_tokens=null_tokens)
    if pushdown is not None:
        rejects = pushdown.relabel(rejects, chunk[mapping.user_id])
    chunk, keys = chunk[usable], keys[usable]
    hashes = tx.row_hashes(chunk, mapping, salt)
    moved_rows = Counter(keys.tolist()) if pushdown is not None else None
    keep, dup_rejects = tx.dedupe(chunk, keys, hashes, mapping)
    rejects += dup_rejects
    chunk, keys, hashes = chunk[keep], keys[keep], hashes[keep]
    if pushdown is not None and moved_rows is not None:
        # Rows of a duplicated id that SQL resolved stayed there: report them as the full read would.
        for user_id, total in zip(keys.tolist(), id_rows[keys.index].tolist(), strict=True):
            stayed = max(0, int(total) - moved_rows[user_id])
            pushdown.losers += stayed
            rejects += [tx.duplicate_reject(user_id, mapping)] * stayed

    key_list = keys.tolist()
    known = store.user_state(key_list)
    # Exact int64 compare in numpy: mapping a mix of known and new ids through pandas yields a float
    # column (lossy above 2**53, and pyarrow refuses to compare it with the int64 hashes).
    seen = np.fromiter((k in known for k in key_list), dtype=bool, count=len(key_list))
    previous = np.fromiter((known[k][0] if k in known else 0 for k in key_list), dtype=np.int64, count=len(key_list))
    differs = ~seen | (previous != hashes.to_numpy(dtype=np.int64))
    changed = pd.Series(True if full_refresh else differs, index=chunk.index, dtype=bool)
    unchanged = ~changed
    report.unchanged += int(unchanged.sum())
    if dead:
        gave_up = changed & keys.isin(dead)
        report.rejected[Reason.DEAD_AFTER_RETRIES.value] += int(gave_up.sum())
        changed &= ~gave_up
    for reject in rejects:
        report.rejected[reject.reason] += 1

    if sql_hashes is not None and pushdown is not None:
        # Moved but unchanged (the migration from the full read, a text change that cannot change the
        # payload, a duplicate id's winner): store the warehouse hash so the row stays there next time.
        same = sql_hashes[unchanged[unchanged].index]
        confirm = [(k, h) for k, h in zip(keys[same.index].tolist(), same.tolist(), strict=True) if h is not None]
        if confirm and not report.dry_run:
            with store.transaction() as conn:
                store.confirm_source_hashes(conn, confirm)
        pushdown.confirmed += len(confirm)
    chunk, keys, hashes = chunk[changed], keys[changed], hashes[changed]
    built = tx.build_payloads(
        chunk,
        keys,
        mapping,
        types,
        [known.get(k, (0, None))[1] for k in keys.tolist()],
        today=today,
        null_tokens=null_tokens,
    )
    report.trimmed += sum(built.stats.trimmed.values())
    report.coerced += sum(built.stats.coerced.values())
    report.cleared += built.stats.cleared
    report.cleaned += built.stats.cleaned
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
    sent_sql = sql_hashes[keys.index].tolist() if sql_hashes is not None else [None] * len(keys)
    for user_id, row_hash, mask, payload, sql_hash in zip(
        keys.tolist(), hashes.tolist(), built.masks, built.payloads, sent_sql, strict=True
    ):
        yield Item(key=(user_id, int(row_hash), mask, sql_hash), identity=f"{user_id}:{row_hash}", payload=payload)
