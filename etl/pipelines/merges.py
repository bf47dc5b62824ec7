"""Anonymous -> known merges: each new (anonymous_id, user_id) pair of the identify data goes to WebEngage
once, as one ``POST /users`` carrying both ids, so WebEngage merges the anonymous profile (attributes and
the events tracked before login) into the known user.

re-send the journal (pairs ``in_flight``: same x-request-id, same body) -> read the pairs (Segment
``identifies`` or a query; ordered by anonymous id) -> screen (ids, shared devices, already merged) ->
journal each pair ``in_flight`` -> send on the /users budget -> on acceptance mark it ``merged``.

The bulk endpoint ignores ``anonymousId`` next to a ``userId``, so merges never go through it. The
``merge_path`` setting switches sending off (``off``: computed and reported only), since how WebEngage's
single call treats both ids is unconfirmed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import orjson

from etl.config import Settings
from etl.engine.delivery import Checkpoints, Grouping, Request, Result, batch_of, count_only, counted, deliver
from etl.engine.frame import Progress, Run, WallClock, execute, require_replay_progress, system_now
from etl.engine.rejects import Reason, RejectKind, RejectRow, classify
from etl.errors import ConfigError
from etl.instants import naive_utc
from etl.load.batching import Batch, Item
from etl.mappings.events import EventMapping, MergeConfig, load_event_mapping
from etl.report import RunReport
from etl.resources import DEFAULT_EVENTS_MAPPING, user_file
from etl.state import merges as state
from etl.transform.formats import garbage
from etl.transform.merges import Candidate, pair_key, payload, screen_pairs
from etl.transform.users import normalise_keys
from etl.warehouse.identify_sources import ORDER_KEY, PairSource, custom_pairs, segment_pairs
from etl.warehouse.queries import read_chunks
from etl.webengage.models import SendRequest, deterministic_request_id

log = logging.getLogger("etl.pipelines.merges")

PIPELINE: Final = "merges"
#: Pairs journaled per transaction, and accepted pairs confirmed per transaction (the journal makes a
#: delayed confirmation safe: a crash before it re-sends those pairs with their ids).
STATE_GROUP: Final = 25
CHECKPOINT_EVERY_S: Final = 0.25


def request_id(anonymous_id: str, user_id: str) -> str:
    """The pair's x-request-id: a hash of both ids (roles included), so a re-send is de-duplicated."""
    return deterministic_request_id((f"anonymous:{anonymous_id}", f"user:{user_id}"))


def load_config(settings: Settings, mapping: EventMapping | None = None) -> MergeConfig:
    events = mapping or load_event_mapping(user_file(settings.events_mapping, DEFAULT_EVENTS_MAPPING))
    return events.merges


def pair_source(config: MergeConfig, run: Run) -> PairSource:
    """The configured source; with a lookback, only identifies that arrived since the run's clock minus it."""
    since = run.started_at - config.lookback if config.lookback is not None else None
    if config.preset == "segment":
        return segment_pairs(run.warehouse(), schema=config.segment_schema, since=since)
    return custom_pairs(config.query, config.params, since=since)


@dataclass
class _Tally:
    """Counts beyond RunReport's (re-sent pairs belong to earlier runs, so they stay out of its invariant)."""

    rows_read: int = 0
    shared_devices: int = 0
    resent: int = 0
    resent_merged: int = 0
    resent_failed: int = 0
    totals: dict[str, int] = field(default_factory=dict)


def run(
    settings: Settings,
    *,
    run_id: str | None = None,
    dry_run: bool = False,
    clock: WallClock = system_now,
    transport: httpx.BaseTransport | None = None,
    progress: Progress | None = None,
    mapping: EventMapping | None = None,
) -> dict[str, Any]:
    """Send every new pair once; returns the run summary (also stored in the runs table)."""
    config = load_config(settings, mapping)
    if not config.enabled:
        raise ConfigError(
            "events_mapping [merges].enabled", "merges are off: set enabled = true (and the source) to send them"
        )
    off = settings.merge_path == "off"
    tally = _Tally()

    def body(run: Run) -> None:
        if off:
            run.report.notes.append("merge_path is off: pairs are computed and reported, nothing is sent")
        sync = _Merges(run, config, tally)
        if not run.dry_run:
            sync.resend()
        sync.extract_and_send(pair_source(config, run))
        tally.totals = state.counts(run.store)
        require_replay_progress(
            run.report,
            replayed=tally.resent,
            accepted=tally.resent_merged,
            what="journaled merges",
            kept="they stay journaled",
        )

    return execute(
        settings,
        body,
        pipeline=PIPELINE,
        run_id=run_id,
        dry_run=dry_run or off,
        clock=clock,
        transport=transport,
        progress=progress,
        summarize=lambda report: _summary(report, tally, config, settings),
    )


def _summary(report: RunReport, tally: _Tally, config: MergeConfig, settings: Settings) -> dict[str, Any]:
    summary = report.summary()
    summary.update(
        already_merged=report.unchanged,
        merged=report.accepted,
        rows_read=tally.rows_read,
        shared_devices=tally.shared_devices,
        resent_pairs=tally.resent,
        resent_merged=tally.resent_merged,
        resent_failed=tally.resent_failed,
        merged_total=tally.totals.get(state.MERGED, 0),
        in_flight=tally.totals.get(state.IN_FLIGHT, 0),
        merge_path=settings.merge_path,
        shared_anonymous_id=config.shared_anonymous_id,
    )
    return summary


class _Merges:
    """One run's extraction and delivery; every state write happens on the caller's thread."""

    def __init__(self, run: Run, config: MergeConfig, tally: _Tally) -> None:
        self.run = run
        self.config = config
        self.tally = tally
        self.store = run.store
        self.report = run.report
        self.null_tokens = garbage.null_tokens(run.settings.null_tokens)
        self.chosen: dict[str, str] = {}  # this run's anonymous id -> user id (journaled or about to be)
        self.open_rejects = run.store.open_reject_keys(PIPELINE)
        self.dead = run.store.dead_reject_keys(PIPELINE)

    # -- re-send --------------------------------------------------------------------------------
    def resend(self) -> None:
        """Send every journaled pair again, with its id and body, before anything new."""
        pairs = state.in_flight(self.store)
        # Given up on after max_reject_attempts (transient each time): kept journaled, not re-sent until reopened.
        pairs = [p for p in pairs if pair_key(p.anonymous_id, p.user_id) not in self.dead]
        if pairs:
            log.info("re-sending %d journaled merges with their request ids", len(pairs))
            self.tally.resent += len(pairs)
            self.deliver((_request(p) for p in pairs), resend=True)

    # -- extraction -----------------------------------------------------------------------------
    def extract_and_send(self, source: PairSource) -> None:
        requests = (_request(p) for p in self._pairs(source))
        if self.run.dry_run:
            count_only(requests, self.report)
        else:
            self.deliver(counted(requests, self.report), resend=False)

    def _pairs(self, source: PairSource) -> Iterator[state.Pair]:
        chunks = read_chunks(
            self.run.warehouse(),
            source.statement,
            source.params,
            chunk_rows=self.config.chunk_rows,
            order_key=ORDER_KEY,
            label=source.label,
        )
        for chunk in chunks:
            self.tally.rows_read += len(chunk)
            if "anonymous_id" not in chunk:
                raise ConfigError("merges source", "the query must return a column named anonymous_id")
            anonymous = normalise_keys(chunk, "anonymous_id").dropna().unique().tolist()
            merged = {a: u for a, (u, _status) in state.known(self.store, anonymous).items()}
            merged.update({a: self.chosen[a] for a in anonymous if a in self.chosen})
            out = screen_pairs(
                chunk, merged=merged, policy=self.config.shared_anonymous_id, null_tokens=self.null_tokens
            )
            self.report.extracted += out.pairs
            self.report.unchanged += out.unchanged
            self.tally.shared_devices += out.shared_devices
            self._reject(out.rejects)
            for candidate in out.send:
                key = pair_key(candidate.anonymous_id, candidate.user_id)
                if key in self.dead:  # re-driven max_reject_attempts times: skipped until `rejects retry`
                    self.report.rejected[Reason.DEAD_AFTER_RETRIES.value] += 1
                    continue
                self.chosen[candidate.anonymous_id] = candidate.user_id
                yield _pair(candidate)
            self.run.tick()

    def _reject(self, rejects: list[RejectRow]) -> None:
        for r in rejects:
            self.report.rejected[r.reason] += 1
        if rejects and not self.run.dry_run:
            with self.store.transaction() as conn:
                self.store.record_rejects(conn, PIPELINE, rejects, self.run.run_id)

    # -- delivery -------------------------------------------------------------------------------
    def deliver(self, requests: Iterable[Request], *, resend: bool) -> None:
        """Journal -> send -> settle. Re-sent pairs are already journaled and count in the tally."""
        store, run_id = self.store, self.run.run_id

        def journal(requests: list[Request]) -> None:
            if not resend:
                with store.transaction() as conn:
                    state.journal(conn, [_pair_of(r) for r in requests], run_id=run_id, now=store.clock())

        def accepted(done: list[Request]) -> None:
            pairs = [_pair_of(r) for r in done]
            keys = [pair_key(p.anonymous_id, p.user_id) for p in pairs]
            resolve = [k for k in keys if k in self.open_rejects]
            with store.transaction() as conn:
                state.confirm(conn, [p.anonymous_id for p in pairs], run_id=run_id, now=store.clock())
                store.resolve_rejects(conn, PIPELINE, resolve, run_id)
            self.open_rejects.difference_update(resolve)
            if resend:
                self.tally.resent_merged += len(pairs)
            else:
                self.report.accepted += len(pairs)
            self.run.tick()

        def failed(request: Request, result: Result) -> None:
            pair = _pair_of(request)
            reason, kind, detail = classify(result)
            key = pair_key(pair.anonymous_id, pair.user_id)
            with store.transaction() as conn:
                store.record_rejects(
                    conn,
                    PIPELINE,
                    [RejectRow(row_key=key, column="*", reason=reason, detail=detail, kind=kind)],
                    run_id,
                )
                if kind == RejectKind.API:  # refused, nothing merged: the pair is evaluated again next run
                    state.forget(conn, [pair.anonymous_id])
                # transient: it may have been merged; the journal keeps it and the next run re-sends it
            self.open_rejects.add(key)
            if resend:
                self.tally.resent_failed += 1
            else:
                self.report.rejected[reason] += 1

        checkpoints = Checkpoints(accepted=accepted, failed=failed, journal=journal)
        grouping = Grouping(items=STATE_GROUP, journal=STATE_GROUP, wait_s=CHECKPOINT_EVERY_S)
        deliver(self.run.client(), requests, checkpoints, grouping=grouping, bisect=False)


def _pair(candidate: Candidate) -> state.Pair:
    return state.Pair(
        anonymous_id=candidate.anonymous_id,
        user_id=candidate.user_id,
        request_id=request_id(candidate.anonymous_id, candidate.user_id),
        identified_at=naive_utc(candidate.identified_at) if candidate.identified_at is not None else None,
    )


def _request(pair: state.Pair) -> Request:
    """One /users call carrying both ids; the body is rebuilt byte for byte from the pair on a re-send."""
    body = payload(Candidate(anonymous_id=pair.anonymous_id, user_id=pair.user_id, identified_at=None))
    item = Item(key=pair, identity=pair.anonymous_id, payload=body)
    return SendRequest("users", orjson.dumps(body), pair.request_id, 1, Batch((item,)))


def _pair_of(request: Request) -> state.Pair:
    pair = batch_of(request).items[0].key
    assert isinstance(pair, state.Pair)
    return pair
