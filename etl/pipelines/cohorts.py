"""Cohort syncs: a warehouse query's users -> one boolean user attribute in WebEngage.

export: read the cohort's query (``:as_of`` bound) -> keep identified users -> diff against the snapshot
WebEngage accepted (entered -> ``true``, exited -> ``false``, unchanged -> nothing) -> blast-radius guard
-> write-ahead (the flips about to be sent are marked pending) -> bulk batches -> checkpoint each
accepted batch (snapshot + event outbox, one transaction) -> send queued ``Cohort Entered``/``Exited``
events -> mark them sent. A one-time export and a dynamic sync are the same operation; every export
overwrites the previous one. ``retire`` sets ``false`` for every last member and frees the attribute slot.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import httpx
import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.config import Settings
from etl.engine.delivery import Checkpoints, Request, Result, count_only, counted, deliver, keys_of
from etl.engine.frame import Run, WallClock, execute, log, state_engine_for, system_now
from etl.engine.rejects import ROW, Reason, RejectKind, RejectRow, Verdict, classify, too_large
from etl.errors import ConfigError, WebEngageSyncError
from etl.instants import naive_utc
from etl.load.batching import Item, batch_requests
from etl.mappings import cohorts as cfg
from etl.mappings.cohorts import CohortConfig, CohortSpec
from etl.report import RunReport
from etl.report import render as render_summary  # one renderer for every sync (kept name: DAGs use it)
from etl.resources import DEFAULT_USERS_MAPPING, user_file
from etl.state import cohorts as cstate
from etl.state.store import StateStore
from etl.transform import cohorts as tx
from etl.transform.cohorts import GuardError, Transition
from etl.warehouse import cohort_diff
from etl.warehouse.cohort_diff import Membership
from etl.warehouse.engine import connect_with_retry
from etl.warehouse.pushdown import Where, diff_location
from etl.warehouse.queries import load_sql, read_chunks

__all__ = ["GuardError", "export", "list_cohorts", "load_config", "render_summary", "retire", "retire_removed"]

Operation = Literal["export", "retire"]
#: user id, value sent, membership transition (None: a repair of an unconfirmed flip, no event).
FlipKey = tuple[str, bool, Transition | None]
EventKey = tuple[str, str, int]  # user id, transition, version
USERS_SCOPE = "users"


class RetireIncompleteError(WebEngageSyncError):
    """Some last members could not be set to false; the slot stays taken until a retry finishes."""


@dataclass
class _Counts:
    """Cohort-specific counters; :class:`RunReport` keeps the shared ones (accepted, batches, HTTP)."""

    cohort: str
    attribute: str
    mode: str
    operation: Operation
    events_on: bool
    as_of: datetime | None = None
    extracted: int = 0
    excluded: Counter[str] = field(default_factory=Counter)
    members: int = 0
    previous: int = 0
    entered: int = 0
    exited: int = 0
    unchanged: int = 0
    resend_true: int = 0
    resend_false: int = 0
    send_rejected: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    version: int | None = None
    guard: str | None = None
    events_queued: int = 0
    events_sent: int = 0
    events_rejected: int = 0
    events_failed: int = 0
    event_requests: int = 0
    snapshot_members: int | None = None
    slot: str = "kept"
    diff: Where = "python"  # where the membership diff ran (issue 16)


def load_config(settings: Settings) -> CohortConfig:
    return cfg.load_cohort_config(cfg.config_path(settings.cohorts_config))


def _wire_time(value: datetime) -> str:
    return naive_utc(value).strftime("%Y-%m-%dT%H:%M:%S+0000")


# -- public entry points ------------------------------------------------------------------------------


def export(
    settings: Settings,
    *,
    cohort: str,
    run_id: str | None = None,
    as_of: datetime,
    dry_run: bool = False,
    emit_events: bool | None = None,
    override_guard: bool = False,
    clock: WallClock = system_now,
    transport: httpx.BaseTransport | None = None,
    config: CohortConfig | None = None,
) -> dict[str, Any]:
    """Export one cohort now (one-time export or one dynamic sync); returns the run summary.

    ``as_of`` is bound as the query's ``:as_of``. ``emit_events`` None: as configured. Raises
    :class:`GuardError` (nothing sent) when too many members would leave, unless ``override_guard``."""
    config = config or load_config(settings)
    spec = config.get(cohort)
    counts = _Counts(
        cohort=spec.name,
        attribute=spec.attribute,
        mode=spec.mode,
        operation="export",
        events_on=spec.events if emit_events is None else emit_events,
        as_of=as_of,
    )

    def body(run: Run) -> None:
        _export(run, spec, counts, as_of=as_of, override_guard=override_guard)

    return _execute(settings, counts, body, run_id=run_id, dry_run=dry_run, clock=clock, transport=transport)


def retire(
    settings: Settings,
    *,
    cohort: str,
    run_id: str | None = None,
    dry_run: bool = False,
    emit_events: bool | None = None,
    clock: WallClock = system_now,
    transport: httpx.BaseTransport | None = None,
    config: CohortConfig | None = None,
) -> dict[str, Any]:
    """Retire a cohort (configured or removed from the config): ``false`` for every last member, then the
    snapshot is empty and the attribute's registry slot is released. Raises RetireIncompleteError when
    some members could not be updated (run it again)."""
    config = config or load_config(settings)
    spec = config.find(cohort)
    state_engine = state_engine_for(settings)
    with StateStore(state_engine) as store:
        record = cstate.get_cohort(store, cohort)
    state_engine.dispose()
    if record is not None:  # the attribute WebEngage holds, even if the config has changed since
        attribute, mode, events = record.attribute, record.mode, spec.events if spec else record.events
    else:
        spec = config.get(cohort)  # unknown to both the config and the state: raises, naming the configured
        attribute, mode, events = spec.attribute, spec.mode, spec.events
    counts = _Counts(
        cohort=cohort,
        attribute=attribute,
        mode=mode,
        operation="retire",
        events_on=events if emit_events is None else emit_events,
    )

    def body(run: Run) -> None:
        _retire(run, counts, still_configured=spec is not None)

    return _execute(settings, counts, body, run_id=run_id, dry_run=dry_run, clock=clock, transport=transport)


def retire_removed(
    settings: Settings,
    *,
    run_id: str | None = None,
    override_guard: bool = False,
    clock: WallClock = system_now,
    transport: httpx.BaseTransport | None = None,
    config: CohortConfig | None = None,
) -> list[dict[str, Any]]:
    """Retire every active cohort that is no longer in the config. Guarded: a config listing no cohorts
    at all (a truncated file?) would retire everything, so that needs ``override_guard``."""
    config = config or load_config(settings)
    state_engine = state_engine_for(settings)
    with StateStore(state_engine) as store:
        removed = [s.cohort for s in cstate.all_cohorts(store) if s.status == "active" and not config.find(s.cohort)]
    state_engine.dispose()
    if removed and not config.cohorts and not override_guard:
        raise GuardError(
            "(all)",
            f"the cohort config lists no cohorts; retiring all {len(removed)} exported cohorts needs an override",
        )
    return [
        retire(settings, cohort=name, run_id=run_id, clock=clock, transport=transport, config=config)
        for name in removed
    ]


def list_cohorts(settings: Settings, *, store: StateStore | None = None) -> list[dict[str, Any]]:
    """Configured cohorts and cohorts known to the state store, with their sync status (read through
    ``store`` when given, e.g. a reader's that creates no schema)."""
    config = load_config(settings)
    if store is not None:
        return _cohort_rows(config, store)
    state_engine = state_engine_for(settings)
    with StateStore(state_engine) as own:
        rows = _cohort_rows(config, own)
    state_engine.dispose()
    return rows


def _cohort_rows(config: CohortConfig, store: StateStore) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    known = {s.cohort: s for s in cstate.all_cohorts(store)} if store.has_table("we_cohorts") else {}
    for spec in config.cohorts:
        record = known.get(spec.name)
        rows.append(
            {
                "name": spec.name,
                "attribute": spec.attribute,
                "mode": spec.mode,
                "events": spec.events,
                "configured": True,
                "sql": spec.sql,
                "description": spec.description,
                **_state_columns(store, record, configured=True),
            }
        )
    for name in sorted(set(known) - set(config.names)):
        record = known[name]
        rows.append(
            {
                "name": name,
                "attribute": record.attribute,
                "mode": record.mode,
                "events": record.events,
                "configured": False,
                "sql": None,
                "description": "",
                **_state_columns(store, record, configured=False),
            }
        )
    return rows


def _state_columns(store: StateStore, record: cstate.CohortState | None, *, configured: bool) -> dict[str, Any]:
    if record is None:
        return {
            "status": "never exported",
            "members": 0,
            "version": 0,
            "last_synced_at": None,
            "last_run_id": None,
            "events_pending": 0,
        }
    status = record.status if configured or record.status != "active" else "removed from config"
    return {
        "status": status,
        "members": cstate.member_count(store, record.cohort),
        "version": record.version,
        "last_synced_at": record.last_synced_at.isoformat() if record.last_synced_at else None,
        "last_run_id": record.last_run_id,
        "events_pending": cstate.event_counts(store, record.cohort).get("pending", 0),
    }


# -- the run frame (runs table, invariant, summary) ---------------------------------------------------
def _execute(
    settings: Settings,
    counts: _Counts,
    body: Callable[[Run], None],
    *,
    run_id: str | None,
    dry_run: bool,
    clock: WallClock,
    transport: httpx.BaseTransport | None,
) -> dict[str, Any]:
    return execute(
        settings,
        body,
        pipeline=cfg.pipeline_of(counts.cohort),
        run_id=run_id,
        window=(None, counts.as_of),
        dry_run=dry_run,
        clock=clock,
        transport=transport,
        settle=lambda report: _check(report, counts),
        summarize=lambda report: _summary(report, counts),
    )


def _check(report: RunReport, counts: _Counts) -> None:
    """Every decision lands in one bucket. Decisions are the query's rows plus the users only the snapshot
    knows (exits and unconfirmed repairs); buckets are excluded + unchanged + accepted + rejected (+ what a
    dry run would send). RunReport.check enforces it with rows = decisions, rejected = excluded + refused."""
    report.extracted = counts.extracted + counts.exited + counts.resend_false
    report.unchanged = counts.unchanged
    report.rejected = Counter(counts.excluded) + Counter(counts.send_rejected)


def _summary(report: RunReport, counts: _Counts) -> dict[str, Any]:
    summary = report.summary()
    send_rejected = dict(sorted(counts.send_rejected.items()))
    summary.update(
        {
            "cohort": counts.cohort,
            "attribute": counts.attribute,
            "mode": counts.mode,
            "operation": counts.operation,
            "as_of": counts.as_of.isoformat() if counts.as_of else None,
            "version": counts.version,
            "extracted": counts.extracted,
            "excluded": dict(sorted(counts.excluded.items())),
            "excluded_total": sum(counts.excluded.values()),
            "members": counts.members,
            "previous_members": counts.previous,
            "entered": counts.entered,
            "exited": counts.exited,
            "unchanged": counts.unchanged,
            "resent": counts.resend_true + counts.resend_false,
            "resent_true": counts.resend_true,
            "resent_false": counts.resend_false,
            "rejected": sum(send_rejected.values()),
            "rejected_by_reason": send_rejected,
            "requests": counts.requests,
            "guard": counts.guard,
            "snapshot_members": counts.snapshot_members,
            "attribute_slot": counts.slot,
            "diff": counts.diff,
            "events": {
                "enabled": counts.events_on,
                "queued": counts.events_queued,
                "sent": counts.events_sent,
                "rejected": counts.events_rejected,
                "failed": counts.events_failed,
                "requests": counts.event_requests,
            },
        }
    )
    return summary


# -- export -----------------------------------------------------------------------------------------
def _export(run: Run, spec: CohortSpec, counts: _Counts, *, as_of: datetime, override_guard: bool) -> None:
    settings, store, report = run.settings, run.store, run.report
    record = cstate.get_cohort(store, spec.name)
    if record is not None and record.attribute != spec.attribute and any(cstate.snapshot_counts(store, spec.name)):
        raise ConfigError(
            f"cohorts.{spec.name}.attribute",
            f"the cohort was exported as {record.attribute}; retire it first (webengage-sync cohort retire "
            f"{spec.name}) so those users get false and the slot is freed, then export it as {spec.attribute}",
        )
    new_slot = _check_slot(store, spec, _profile_attributes(settings))

    membership = _membership(run, spec, as_of, counts)
    diff = membership.diff
    counts.extracted, counts.excluded = membership.extracted, membership.excluded
    counts.members, counts.previous = membership.members, membership.previous
    if not membership.members:
        empty = f"cohort {spec.name}: the query found no member (as of {as_of:%Y-%m-%d %H:%M} UTC)"
        if run.settings.fail_on_empty_cohort and not report.dry_run:
            raise GuardError(spec.name, f"{empty}; fail_on_empty_cohort is set")
        log.warning("%s", empty)
        report.notes.append(f"{empty}: check the query and its as_of (fail_on_empty_cohort=true makes this fail)")
    counts.entered, counts.exited, counts.unchanged = len(diff.entered), len(diff.exited), diff.unchanged
    counts.resend_true, counts.resend_false = len(diff.resend_true), len(diff.resend_false)

    problem = tx.guard_problem(
        cohort=spec.name,
        previous=counts.previous,
        members=counts.members,
        exited=counts.exited,
        max_exit_share=spec.max_exit_share,
    )
    if problem:
        counts.guard = problem
        if override_guard:
            report.notes.append(f"guard overridden: {problem}")
        elif report.dry_run:
            report.notes.append("a real run would stop here (guard); pass override_guard to let it through")
        else:
            raise GuardError(spec.name, problem)

    flips: list[FlipKey] = [
        *((u, True, "entered") for u in diff.entered),
        *((u, False, "exited") for u in diff.exited),
        *((u, True, None) for u in diff.resend_true),
        *((u, False, None) for u in diff.resend_false),
    ]
    flips = _without_dead(run, counts, flips)
    if report.dry_run:
        count_only(_flip_requests(run, counts, flips, version=0, oversize=[]), report)
        return
    if new_slot:
        store.register_attributes(USERS_SCOPE, {spec.attribute: "boolean"}, owner=spec.owner)
        counts.slot = "registered"
    _send_all(run, counts, flips, mode=spec.mode)


def _membership(run: Run, spec: CohortSpec, as_of: datetime, counts: _Counts) -> Membership:
    """The query's members compared with the accepted snapshot: by the warehouse when the snapshot is in its
    database (only changes leave it), else (or when SQL cannot judge the ids: a note says why) by the worker."""
    sql = load_sql(spec.query)
    params: dict[str, Any] = dict(spec.params)
    if "as_of" in cfg.sql_binds(sql):
        params["as_of"] = naive_utc(as_of)
    warehouse = run.warehouse()
    if diff_location(run.settings, warehouse, state_tables=cstate.TABLES) == "warehouse":
        _require_column(warehouse, sql, params, spec)
        found = cohort_diff.diff_in_warehouse(
            warehouse,
            sql,
            params,
            cohort=spec.name,
            user_id=spec.user_id,
            null_tokens=run.settings.null_tokens,
            label=spec.query,
        )
        if isinstance(found, Membership):
            counts.diff = "warehouse"
            return found
        run.report.notes.append(f"membership diff run by the worker: {found.reason}")
    excluded: Counter[str] = Counter()
    ids, extracted = _read_members(
        warehouse, sql, params, spec, null_tokens=run.settings.null_tokens, excluded=excluded
    )
    current = cstate.snapshot(run.store, spec.name)
    return Membership(
        diff=tx.diff_members(ids, members=current.members, in_doubt=current.in_doubt),
        extracted=extracted,
        excluded=excluded,
        members=len(ids),
        previous=len(current.members),
    )


def _require_column(warehouse: Engine, sql: str, params: dict[str, Any], spec: CohortSpec) -> None:
    """The id column must be in the query's result (checked on the result's shape: no row is read)."""
    shape: sa.Select[Any] = (
        sa.select(sa.literal_column("*"))
        .select_from(sa.text(sql.rstrip().rstrip(";")).columns().subquery("we_shape"))
        .limit(0)
    )
    with connect_with_retry(warehouse) as conn:
        columns = list(conn.execute(shape, params).keys())
    if spec.user_id not in columns:
        raise ConfigError(f"cohorts.{spec.name}.user_id", f"column {spec.user_id!r} is not in the query result")


def _read_members(
    warehouse: Engine,
    sql: str,
    params: dict[str, Any],
    spec: CohortSpec,
    *,
    null_tokens: Sequence[str],
    excluded: Counter[str],
) -> tuple[list[str], int]:
    """The cohort's identified users, deduplicated and sorted, and the rows read; exclusions counted by reason
    in ``excluded``."""
    parts: list[np.ndarray[Any, Any]] = []
    extracted = 0
    for chunk in read_chunks(warehouse, sql, params, label=spec.query):
        if spec.user_id not in chunk:
            raise ConfigError(f"cohorts.{spec.name}.user_id", f"column {spec.user_id!r} is not in the query result")
        extracted += len(chunk)
        ids, why = tx.screen_ids(chunk[spec.user_id], null_tokens=null_tokens)
        excluded.update(why)
        parts.append(ids.to_numpy(dtype=object))
    every = np.concatenate(parts) if parts else np.array([], dtype=object)
    unique = pd.unique(every)
    duplicates = len(every) - len(unique)
    if duplicates:
        excluded["duplicate_user_id"] += duplicates
    return sorted(unique.tolist()), extracted


def _profile_attributes(settings: Settings) -> dict[str, str | None]:
    """Custom attributes of the profile mapping: name -> WebEngage type (None: inferred at its first run)."""
    from etl.mappings.users import WIRE_TYPE, load_user_mapping

    path = user_file(settings.users_mapping, DEFAULT_USERS_MAPPING)
    if not path.is_file():
        return {}
    return {a.name: (WIRE_TYPE[a.type] if a.type else None) for a in load_user_mapping(path).attributes}


def _check_slot(store: StateStore, spec: CohortSpec, profile: dict[str, str | None]) -> bool:
    """Whether the cohort's attribute needs a new slot; raises ConfigError, before anything is sent, on a
    clash or when the account's boolean budget (profile booleans + cohorts) is spent."""
    registry = store.registry(USERS_SCOPE)
    where = f"cohorts.{spec.name}.attribute"
    pinned = registry.get(spec.attribute)
    if pinned is not None:
        data_type, owner = pinned
        if owner != spec.owner or data_type != "boolean":
            raise ConfigError(
                where, f"{spec.attribute} is already a {data_type} attribute of {owner}; choose another name"
            )
        return False
    if spec.attribute in profile:
        raise ConfigError(where, f"{spec.attribute} is also an attribute of the profile mapping; choose another name")
    used = sum(1 for data_type, _ in registry.values() if data_type == "boolean")
    used += sum(1 for name, kind in profile.items() if kind == "boolean" and name not in registry)
    if used + 1 > cfg.MAX_BOOLEANS:
        raise ConfigError(
            f"cohorts.{spec.name}",
            f"cohort {spec.name} needs a new boolean attribute ({spec.attribute}) but {used} of WebEngage's "
            f"{cfg.MAX_BOOLEANS} boolean user attributes are taken (profile mapping and cohorts); retire a cohort "
            "(webengage-sync cohort retire NAME) or drop a boolean from the profile mapping",
        )
    return True


# -- retire -----------------------------------------------------------------------------------------
def _retire(run: Run, counts: _Counts, *, still_configured: bool) -> None:
    store, report = run.store, run.report
    current = cstate.snapshot(store, counts.cohort)
    counts.previous = len(current.members)
    members = set(current.members)
    flips: list[FlipKey] = [(u, False, "exited") for u in current.members]
    flips += [(u, False, None) for u in current.in_doubt if u not in members]
    counts.exited, counts.resend_false = len(current.members), len(flips) - len(current.members)
    if still_configured:
        report.notes.append("the cohort is still in the config: remove it there, or the next export brings it back")
    flips = _without_dead(run, counts, flips)
    if report.dry_run:
        count_only(_flip_requests(run, counts, flips, version=0, oversize=[]), report)
        return
    if cstate.get_cohort(store, counts.cohort) is not None:
        _send_all(run, counts, flips, mode=counts.mode)
    left = cstate.snapshot(store, counts.cohort)
    if left.members or left.in_doubt:
        raise RetireIncompleteError(
            f"cohort {counts.cohort}: {len(left.members) + len(left.in_doubt):,} users could not be set to false; "
            "the attribute slot stays taken; run retire again"
        )
    released = store.release_attributes(USERS_SCOPE, cfg.owner_of(counts.cohort))
    counts.slot = "released" if released else "none held"
    if cstate.get_cohort(store, counts.cohort) is not None:
        cstate.mark_retired(store, cohort=counts.cohort, run_id=report.run_id, now=store.clock())
    counts.snapshot_members = 0


# -- sending ----------------------------------------------------------------------------------------
def _without_dead(run: Run, counts: _Counts, flips: list[FlipKey]) -> list[FlipKey]:
    """Users whose updates were re-driven max_reject_attempts times are skipped (counted), as in every sync,
    until `webengage-sync rejects retry` reopens them."""
    dead = run.store.dead_reject_keys(cfg.pipeline_of(counts.cohort))
    if not dead:
        return flips
    kept = [k for k in flips if k[0] not in dead]
    counts.send_rejected[Reason.DEAD_AFTER_RETRIES.value] += len(flips) - len(kept)
    return kept


def _flip_items(cohort: str, attribute: str, flips: Sequence[FlipKey], *, version: int) -> Iterator[Item[FlipKey]]:
    for key in flips:
        user_id, value, _ = key
        # The version makes each sync's request ids new: an identical batch of an earlier sync (same users,
        # same value) must not be dropped as a duplicate by WebEngage's request-id dedupe.
        yield Item(
            key=key,
            identity=f"{cohort}:{version}:{user_id}:{int(value)}",
            payload=tx.attribute_payload(user_id, attribute, value),
        )


def _flip_requests(
    run: Run, counts: _Counts, flips: Sequence[FlipKey], *, version: int, oversize: list[Item[FlipKey]]
) -> Iterator[Request]:
    return batch_requests(
        _flip_items(counts.cohort, counts.attribute, flips, version=version),
        endpoint="bulk-users",
        batch_size=run.settings.batch_size,
        max_bytes=run.settings.max_batch_bytes,
        oversize=oversize,
    )


def _send_all(run: Run, counts: _Counts, flips: list[FlipKey], *, mode: str) -> None:
    store, report, cohort = run.store, run.report, counts.cohort
    version = cstate.begin_version(
        store, cohort=cohort, attribute=counts.attribute, mode=mode, events=counts.events_on, run_id=report.run_id
    )
    counts.version = version
    pending = cstate.pending_events(store, cohort) if counts.events_on else []
    if flips:
        # Write-ahead: until a batch is accepted these users' WebEngage value is unknown; after a crash the
        # next sync sends their current value again instead of trusting an unconfirmed flip.
        cstate.mark_pending(
            store,
            cohort=cohort,
            user_ids=[k[0] for k in flips],
            version=version,
            run_id=report.run_id,
            now=store.clock(),
        )
        _send_flips(run, counts, flips, version=version)
        counts.requests = run.client().stats.requests
    if counts.events_on and (flips or pending):
        _send_events(run, counts)
        counts.event_requests = run.client().stats.requests - counts.requests
    counts.snapshot_members = cstate.finish_sync(store, cohort=cohort, run_id=report.run_id, now=store.clock())


def _send_flips(run: Run, counts: _Counts, flips: list[FlipKey], *, version: int) -> None:
    store, report = run.store, run.report
    cohort, pipeline = counts.cohort, cfg.pipeline_of(counts.cohort)
    # Only users with an open reject need the rejects table touched when accepted (saves a statement per batch).
    open_rejects = store.open_reject_keys(pipeline)
    oversize: list[Item[FlipKey]] = []
    requests = _flip_requests(run, counts, flips, version=version, oversize=oversize)

    def accepted(done: list[Request]) -> None:
        keys: list[FlipKey] = keys_of(done)
        transitions = [(u, t) for u, _, t in keys if t is not None]
        now = store.clock()
        with store.transaction() as conn:
            cstate.apply_accepted(
                conn,
                cohort=cohort,
                true_ids=[u for u, v, _ in keys if v],
                false_ids=[u for u, v, _ in keys if not v],
                version=version,
                run_id=report.run_id,
                now=now,
            )
            if counts.events_on:
                cstate.queue_events(
                    conn, cohort=cohort, transitions=transitions, version=version, run_id=report.run_id, now=now
                )
            resolved = [k[0] for k in keys if k[0] in open_rejects]
            if resolved:
                store.resolve_rejects(conn, pipeline, resolved, report.run_id)
        report.accepted += len(keys)
        counts.events_queued += len(transitions) if counts.events_on else 0

    def failed(request: Request, result: Result) -> None:
        _record_failed(run, counts, keys_of([request]), classify(result))

    deliver(run.client(), counted(requests, report), Checkpoints(accepted=accepted, failed=failed))
    if oversize:  # a one-attribute payload cannot reach the byte cap unless max_batch_bytes is absurd
        _record_failed(run, counts, [i.key for i in oversize], too_large(run.settings.max_batch_bytes, "update"))


def _record_failed(run: Run, counts: _Counts, keys: list[FlipKey], reject: Verdict) -> None:
    reason, kind, detail = reject
    rejects = [RejectRow(row_key=u, column=ROW, reason=reason, detail=detail, kind=kind) for u, _, _ in keys]
    with run.store.transaction() as conn:
        if kind != RejectKind.TRANSIENT:  # refused or never sent: WebEngage's last accepted state stands
            cstate.clear_pending(conn, cohort=counts.cohort, user_ids=[k[0] for k in keys])
        # transient: the value may or may not have landed; the row stays pending and is re-sent next run
        run.store.record_rejects(conn, cfg.pipeline_of(counts.cohort), rejects, run.run_id)
    counts.send_rejected[reason] += len(keys)


def _send_events(run: Run, counts: _Counts) -> None:
    """Send the outbox: events of flips WebEngage accepted (this run's and any a crash left behind)."""
    store, settings, cohort = run.store, run.settings, counts.cohort
    queued = cstate.pending_events(store, cohort)
    if not queued:
        return

    def items(group: list[cstate.QueuedEvent]) -> Iterator[Item[EventKey]]:
        for e in group:
            transition: Transition = "entered" if e.transition == "entered" else "exited"
            yield Item(
                key=(e.user_id, e.transition, e.version),
                identity=f"{cohort}:{e.transition}:{e.user_id}:{e.version}",
                payload=tx.event_payload(e.user_id, cohort, transition, _wire_time(e.queued_at)),
            )

    # Batches never mix versions: a version's outbox is final before any of it is sent, so a resend after a
    # crash rebuilds the same batches and reuses their request ids (WebEngage can drop the duplicate).
    oversize: list[Item[EventKey]] = []
    requests = itertools.chain.from_iterable(
        batch_requests(
            items(list(group)),
            endpoint="bulk-events",
            batch_size=settings.batch_size,
            max_bytes=settings.max_batch_bytes,
            oversize=oversize,
        )
        for _, group in itertools.groupby(queued, key=lambda e: e.version)
    )

    def mark(keys: list[EventKey], status: Literal["sent", "rejected"], detail: str = "") -> None:
        with store.transaction() as conn:
            cstate.mark_events(conn, cohort=cohort, keys=keys, status=status, now=store.clock(), detail=detail)

    def accepted(done: list[Request]) -> None:
        keys: list[EventKey] = keys_of(done)
        mark(keys, "sent")
        counts.events_sent += len(keys)

    def failed(request: Request, result: Result) -> None:
        keys: list[EventKey] = keys_of([request])
        _, kind, detail = classify(result)
        if kind == RejectKind.TRANSIENT:  # stays pending: the next run sends it
            counts.events_failed += len(keys)
            return
        mark(keys, "rejected", detail)
        counts.events_rejected += len(keys)

    deliver(run.client(), requests, Checkpoints(accepted=accepted, failed=failed))
    if oversize:
        mark([i.key for i in oversize], "rejected", too_large(settings.max_batch_bytes, "event")[2])
        counts.events_rejected += len(oversize)
