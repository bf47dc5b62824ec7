"""Deleted users -> WebEngage GDPR erasure requests, each exactly once (opt-in: ``deletions = "erase"`` in the
users mapping).

replay what the journal still holds (same ``subject_request_id``, same bytes) -> find the users synced
before that the warehouse says are deleted (:mod:`etl.warehouse.deletions`) -> guard: more than
``max_erasure_share`` of the synced users deleted at once stops the run before anything is sent -> one
request per user (``opengdpr_requests``, its own budget of 100/min) journaled before it can be sent -> on
acceptance, in one transaction, the request becomes ``submitted`` and the user's sync state is removed ->
check the status of earlier requests that WebEngage has not finished.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from typing import Any, Final

import httpx
import pandas as pd

from etl.config import Settings
from etl.engine.delivery import Checkpoints, Grouping, Request, Result, batch_of, count_only, counted, deliver
from etl.engine.frame import Progress, Run, WallClock, execute, require_replay_progress, system_now
from etl.engine.rejects import ROW, Reason, RejectKind, RejectRow, classify
from etl.errors import GuardStop
from etl.load.batching import Batch, Item
from etl.mappings.users import UserMapping
from etl.pipelines.users import load_mapping
from etl.plan import effective_rpm
from etl.report import RunReport
from etl.state import erasures as journal
from etl.transform.users import normalise_keys
from etl.warehouse.deletions import UID, find_deleted, list_select, truthy
from etl.warehouse.pushdown import diff_location
from etl.warehouse.queries import read_chunks
from etl.webengage import gdpr
from etl.webengage.models import SendRequest

log = logging.getLogger("etl.pipelines.erasures")

PIPELINE: Final = "erasures"
ENDPOINT: Final = "opengdpr_requests"
#: Requests journaled, and accepted ones confirmed, per state transaction: one. At 100 requests/min a commit
#: per request costs nothing, and a crash then re-sends only the requests in flight (WebEngage's
#: de-duplication of a repeated ``subject_request_id`` is unconfirmed, so none more than that).
STATE_GROUP: Final = 1
#: Reason of users the profile sync leaves out because the deletion rules say they are deleted.
DELETED_USER: Final = "deleted_user"


class ErasureGuardError(GuardStop):
    """Too many synced users look deleted at once (a broken source query?); nothing was sent."""

    def __init__(self, deleted: int, synced: int, max_share: float) -> None:
        self.deleted = deleted
        self.synced = synced
        super().__init__(
            f"erasures: stopped before sending: {deleted:,} of {synced:,} synced users look deleted "
            f"({deleted / max(synced, 1):.1%}), more than max_erasure_share={max_share:g}. Check the users source "
            "and the deletion rules; if the deletions are real, re-run with the guard overridden (CLI "
            "--override-guard, DAG param override_erasure_guard, or raise WEBENGAGE_MAX_ERASURE_SHARE)"
        )


@dataclass
class _Tally:
    """Counts beyond RunReport's (replays are not this run's detections, so they stay out of its invariant)."""

    mode: str = "ignore"
    rules: tuple[str, ...] = ()
    synced_users: int = 0
    detected_by: Counter[str] = field(default_factory=Counter)
    guard: str | None = None
    replayed: int = 0
    replayed_accepted: int = 0
    replay_failed: int = 0
    checked: int = 0
    seen_statuses: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, int] = field(default_factory=dict)


def run(
    settings: Settings,
    *,
    mapping: UserMapping | None = None,
    run_id: str | None = None,
    as_of: datetime | None = None,
    dry_run: bool = False,
    override_guard: bool = False,
    clock: WallClock = system_now,
    transport: httpx.BaseTransport | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Erase the users deleted in the warehouse (when the mapping says ``erase``), replay unconfirmed
    requests and check pending ones; returns the run summary (also stored in the runs table). Raises
    :class:`ErasureGuardError` (nothing sent) when too many users look deleted, unless ``override_guard``."""
    users = mapping or load_mapping(settings)
    tally = _Tally(mode=users.deletions.mode, rules=users.deletions.sources)

    def body(run: Run) -> None:
        sync = _Erasures(run, users, tally, override_guard=override_guard)
        if not run.dry_run:
            sync.replay()
        sync.erase(as_of=as_of or run.started_at)
        if not run.dry_run:
            sync.check_statuses()
        tally.statuses = journal.status_counts(run.store)
        require_replay_progress(
            run.report,
            replayed=tally.replayed,
            accepted=tally.replayed_accepted,
            what="journaled erasure requests",
            kept="they stay journaled",
        )

    return execute(
        settings,
        body,
        pipeline=PIPELINE,
        run_id=run_id,
        dry_run=dry_run,
        clock=clock,
        transport=transport,
        progress=progress,
        summarize=lambda report: _summary(report, tally, settings),
    )


def _summary(report: RunReport, tally: _Tally, settings: Settings) -> dict[str, Any]:
    summary = report.summary()
    rpm = effective_rpm(settings, ENDPOINT)
    summary.update(
        deletions=tally.mode,
        deletion_rules=list(tally.rules),
        synced_users=tally.synced_users,
        detected_by=dict(tally.detected_by.most_common()),
        max_erasure_share=settings.max_erasure_share,
        guard=tally.guard,
        replayed_requests=tally.replayed,
        replayed_accepted=tally.replayed_accepted,
        replay_failed=tally.replay_failed,
        status_checks=tally.checked,
        statuses_seen=dict(tally.seen_statuses),
        request_statuses=dict(tally.statuses),
        pending=sum(n for s, n in tally.statuses.items() if s in journal.OPEN),
        gdpr_rpm=rpm,
        eta_minutes=round(report.sent / rpm, 2) if rpm else 0.0,
    )
    return summary


class _Erasures:
    """One run's replay, detection, delivery and status checks; every state write on the caller's thread."""

    def __init__(self, run: Run, mapping: UserMapping, tally: _Tally, *, override_guard: bool) -> None:
        self.run = run
        self.settings = run.settings
        self.store = run.store
        self.report = run.report
        self.mapping = mapping
        self.tally = tally
        self.override_guard = override_guard
        self.open_rejects = run.store.open_reject_keys(PIPELINE)
        self.dead = run.store.dead_reject_keys(PIPELINE)
        self.started = run.store.clock()  # requests submitted from now on are checked by the next run

    # -- replay ----------------------------------------------------------------------------------
    def replay(self) -> None:
        """Re-send every journaled (maybe sent, never confirmed) request with its id and bytes, before anything
        new, whatever the source says now: it may already have reached WebEngage."""
        entries = [e for e in journal.unsettled(self.store, journal.JOURNALED) if e.user_id not in self.dead]
        if entries:
            log.info("replaying %d journaled erasure requests with their request ids", len(entries))
            self.tally.replayed += len(entries)
            self._deliver([_request(e) for e in entries], replay=True)

    # -- detection and sending ---------------------------------------------------------------------
    def erase(self, *, as_of: datetime) -> None:
        report, tally = self.report, self.tally
        tally.synced_users = self.store.count_users()
        if not self.mapping.deletions.erase:
            report.notes.append('deletions = "ignore" in the users mapping: no erasure requests are made')
            self.run.sends = False
            return
        warehouse = self.run.warehouse()
        # One rule for where a comparison with the state runs (diff_mode), as the other syncs' diffs.
        where = diff_location(self.settings, warehouse, state_tables=["we_user_state"])
        deleted = find_deleted(
            self.mapping,
            warehouse,
            lambda: journal.synced_users(self.store),
            same_database=where == "warehouse",
            as_of=as_of,
        )
        report.extracted += len(deleted)
        for _, rules in deleted.values():
            for rule in rules.split(","):
                tally.detected_by[rule] += 1
        # Users whose request is journaled are the replay's (never a second request); refused ones are sent
        # again as they were (same id and bytes) while still deleted; dead ones wait for `rejects retry`.
        waiting = {e.user_id for e in journal.unsettled(self.store, journal.JOURNALED)}
        refused = {e.user_id: e for e in journal.unsettled(self.store, journal.REJECTED)}
        fresh: dict[str, tuple[str, str]] = {}
        again: list[journal.Journaled] = []
        for user_id, (accepted_at, rules) in sorted(deleted.items()):
            if user_id in waiting:
                report.unchanged += 1
            elif user_id in self.dead:
                report.rejected[Reason.DEAD_AFTER_RETRIES.value] += 1
            elif user_id in refused:
                again.append(refused[user_id])
            else:
                fresh[user_id] = (gdpr.subject_request_id(user_id, _version(accepted_at)), rules)
        known = journal.known_request_ids(self.store, [rid for rid, _ in fresh.values()])
        report.unchanged += sum(1 for rid, _ in fresh.values() if rid in known)
        fresh = {u: v for u, v in fresh.items() if v[0] not in known}
        self._guard(len(fresh) + len(again))
        requests = chain(
            (_request(e) for e in again), (self._new_request(user_id, rid) for user_id, (rid, _) in fresh.items())
        )
        if self.run.dry_run:
            count_only(requests, report)
            return
        detected = {user_id: rules for user_id, (_, rules) in fresh.items()}
        self._deliver(
            counted(requests, report), replay=False, detected=detected, journaled={e.request_id for e in again}
        )

    def _guard(self, deleting: int) -> None:
        synced = self.tally.synced_users
        share = self.settings.max_erasure_share
        if not deleting or deleting <= share * synced:
            return
        problem = ErasureGuardError(deleting, synced, share)
        self.tally.guard = f"{deleting:,} of {synced:,} synced users deleted, above max_erasure_share={share:g}"
        if self.override_guard:
            self.report.notes.append(f"guard overridden: {self.tally.guard}")
        elif self.run.dry_run:
            self.report.notes.append(f"a real run would stop here (guard): {self.tally.guard}")
        else:
            raise problem

    def _new_request(self, user_id: str, request_id: str) -> Request:
        body = gdpr.request_body(user_id, request_id=request_id, submitted=self.run.started_at)
        item: Item[str] = Item(key=user_id, identity=request_id, payload={})
        return SendRequest(ENDPOINT, body, request_id, 1, Batch((item,)))

    # -- delivery --------------------------------------------------------------------------------
    def _deliver(
        self,
        requests: Iterator[Request] | list[Request],
        *,
        replay: bool,
        detected: dict[str, str] | None = None,
        journaled: set[str] | None = None,
    ) -> None:
        """Journal (new requests only: not replays, not ``journaled`` ids) -> send -> confirm."""
        store, run_id = self.store, self.report.run_id
        known = journaled or set()

        def write_ahead(batch: list[Request]) -> None:
            entries = [
                journal.Journaled(request_id=str(r.request_id), user_id=_user(r), body=r.body)
                for r in batch
                if r.request_id not in known
            ]
            if not entries:
                return
            with store.transaction() as conn:
                journal.journal(conn, entries, detected_by=detected or {}, run_id=run_id, now=store.clock())

        def accepted(done: list[Request]) -> None:
            users = [_user(r) for r in done]
            stale = [u for u in users if u in self.open_rejects]
            with store.transaction() as conn:
                journal.confirm(conn, request_ids=[str(r.request_id) for r in done], user_ids=users, now=store.clock())
                if stale:
                    store.resolve_rejects(conn, PIPELINE, stale, run_id)
            self.open_rejects.difference_update(stale)
            if replay:
                self.tally.replayed_accepted += len(done)
            else:
                self.report.accepted += len(done)
            self.run.tick()

        def failed(request: Request, result: Result) -> None:
            user_id = _user(request)
            reason, kind, detail = classify(result)
            with store.transaction() as conn:
                store.record_rejects(
                    conn,
                    PIPELINE,
                    [RejectRow(row_key=user_id, column=ROW, reason=reason, detail=detail, kind=kind)],
                    run_id,
                )
                if kind == RejectKind.API:  # refused, nothing recorded there; a transient one may have been
                    journal.mark_rejected(conn, request_id=str(request.request_id), message=detail)
            self.open_rejects.add(user_id)
            if replay:
                self.tally.replay_failed += 1
            else:
                self.report.rejected[reason] += 1

        checkpoints = Checkpoints(accepted=accepted, failed=failed, journal=None if replay else write_ahead)
        grouping = Grouping(items=STATE_GROUP, journal=STATE_GROUP, wait_s=0.0)
        deliver(self.run.client(), requests, checkpoints, grouping=grouping, bisect=False)

    # -- status checks -----------------------------------------------------------------------------
    def check_statuses(self) -> None:
        """Ask WebEngage how earlier requests are doing (oldest-checked first, ``erasure_status_checks`` a run)."""
        due = journal.to_check(self.store, self.settings.erasure_status_checks, submitted_before=self.started)
        if not due:
            return
        client = self.run.client()
        for request_id in due:
            status = gdpr.remote_status(client.fetch(ENDPOINT, request_id))
            with self.store.transaction() as conn:
                journal.record_status(conn, request_id=request_id, status=status, now=self.store.clock())
            self.tally.checked += 1
            self.tally.seen_statuses[status or "no_answer"] += 1
            self.run.tick()


def _request(entry: journal.Journaled) -> Request:
    """A journaled request rebuilt for replay: its stored bytes and id."""
    item: Item[str] = Item(key=entry.user_id, identity=entry.request_id, payload={})
    return SendRequest(ENDPOINT, entry.body, entry.request_id, 1, Batch((item,)))


def _user(request: Request) -> str:
    return str(batch_of(request).items[0].key)


def _version(accepted_at: datetime | None) -> str:
    """What identifies one deletion of a user: the version of the profile WebEngage holds (when it was
    accepted), so a user re-created and deleted again gets a new request id."""
    return accepted_at.isoformat() if accepted_at is not None else ""


# -- the profile sync's side -----------------------------------------------------------------------
def skip_deleted(
    chunks: Iterator[pd.DataFrame], mapping: UserMapping, warehouse: Any, report: RunReport
) -> Iterator[pd.DataFrame]:
    """With ``deletions = "erase"``, rows the deletion column or list marks deleted are not sent by the
    profile sync (an upsert would re-create the profile being erased); counted as ``deleted_user``."""
    rules = mapping.deletions
    listed: set[str] = set()
    found = list_select(mapping)
    if found is not None:
        stmt, params, label = found
        for chunk in read_chunks(warehouse, stmt, params, label=label):
            listed.update(normalise_keys(chunk, UID).dropna().tolist())
    for chunk in chunks:
        drop = pd.Series(False, index=chunk.index)
        if rules.column and rules.column in chunk:
            drop |= truthy(chunk[rules.column])
        if listed:
            drop |= normalise_keys(chunk, mapping.user_id).isin(listed).fillna(False).astype(bool)
        n = int(drop.sum())
        if n:
            report.extracted += n
            report.rejected[DELETED_USER] += n
            chunk = chunk[~drop]
        yield chunk
