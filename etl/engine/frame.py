"""The run frame every sync runs in: one ``we_runs`` row (started, then finished with its counts), the
report and its invariant, the state store, the WebEngage client (created when first needed, never in a
dry run), the warehouse engine, and one log line at the end."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.engine import Engine

from etl.config import Settings
from etl.errors import DeliveryError
from etl.instants import naive_utc
from etl.report import RunReport
from etl.state.store import StateStore
from etl.warehouse.engine import make_engine
from etl.webengage.client import WebEngageClient
from etl.webengage.options import ClientOptions

log = logging.getLogger("etl.pipelines")

Progress = Callable[[RunReport], None]
WallClock = Callable[[], datetime]
Window = tuple[datetime | None, datetime | None]
#: Seconds between "still alive" marks in the runs table (one small update; shown for abandoned runs).
HEARTBEAT_S = 30.0


def system_now() -> datetime:
    """The default wall clock of a run (its timestamps and default run id; never a query's as-of)."""
    return datetime.now(UTC)


def default_run_id(now: datetime, prefix: str = "manual") -> str:
    return f"{prefix}__{now.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')}"


def state_engine_for(settings: Settings) -> Engine:
    """The state database's engine (the warehouse's unless ``state_url`` is set)."""
    return make_engine(
        settings.effective_state_url,
        setting="state_url",
        lock_timeout_s=settings.lock_timeout_s,
        memory_limit=settings.duckdb_memory_limit,
    )


def warehouse_engine_for(settings: Settings) -> Engine:
    return make_engine(
        settings.warehouse_url, lock_timeout_s=settings.lock_timeout_s, memory_limit=settings.duckdb_memory_limit
    )


def client_for(settings: Settings, *, transport: httpx.BaseTransport | None = None, **kwargs: Any) -> WebEngageClient:
    """A client for the settings' account, with the shared rate budget when ``shared_budget_url`` names one
    (connected here, so an unreachable budget database stops the run before anything is sent)."""
    from etl.state.budget import PostgresBudgetStore  # only deployments with a shared budget need it

    store = PostgresBudgetStore(settings.shared_budget_url) if settings.shared_budget_url else None
    try:
        return WebEngageClient(client_options(settings), transport=transport, budget_store=store, **kwargs)
    except BaseException:
        if store is not None:
            store.close()
        raise


def require_replay_progress(report: RunReport, *, replayed: int, accepted: int, what: str, kept: str) -> None:
    """A run whose only deliveries were replays of journaled requests (the outbox) and that got none of them
    accepted delivered nothing: it is red, and the requests stay where ``kept`` says."""
    if replayed and not accepted and not report.sent:
        raise DeliveryError(f"delivered nothing: {replayed:,} {what} were replayed, none accepted ({kept})")


def delivery_failure(report: RunReport, max_share: float) -> str | None:
    """Why a finished run counts as failed, or None: it sent rows and WebEngage accepted none of them, or the
    share it did not accept (refused, or failed after retries) is above ``max_share``."""
    if report.dry_run or report.sent == 0:
        return None
    missed = report.sent - report.accepted
    if missed <= 0:
        return None
    why = ", ".join(f"{r} {n:,}" for r, n in report.rejected.most_common(3) if n)
    if report.accepted == 0:
        return f"delivered nothing: {report.sent:,} rows sent, none accepted ({why})"
    if missed / report.sent > max_share:
        return (
            f"{missed:,} of {report.sent:,} rows sent were not accepted ({why}): above max_reject_share={max_share:g}"
        )
    return None


def client_options(settings: Settings) -> ClientOptions:
    """The client's options from the application's settings (same names), checked for credentials first."""
    settings.require_credentials()  # settings for read-only commands may lack them; sending may not
    names = {f.name for f in dataclasses.fields(ClientOptions)} - {"base_url"}
    return ClientOptions(base_url=settings.base_url, **{name: getattr(settings, name) for name in names})


class Run:
    """What a sync's body gets: settings, report, state store, and the client and warehouse on demand."""

    def __init__(
        self,
        settings: Settings,
        report: RunReport,
        store: StateStore,
        *,
        started_at: datetime,
        transport: httpx.BaseTransport | None,
        progress: Progress | None,
    ) -> None:
        self.settings = settings
        self.report = report
        self.store = store
        self.started_at = started_at
        self.progress = progress
        self._transport = transport
        self._client: WebEngageClient | None = None
        self._warehouse: Engine | None = None
        self._last_beat = time.monotonic()
        #: False when the run had nothing it could ever send (e.g. a sync switched off in its mapping): no
        #: credential check then, since the run never needed the key.
        self.sends = True

    @property
    def dry_run(self) -> bool:
        return self.report.dry_run

    @property
    def run_id(self) -> str:
        return self.report.run_id

    def client(self) -> WebEngageClient:
        """The run's client, created on first use (a run with nothing to send makes no connection)."""
        if self.dry_run:
            raise RuntimeError("a dry run sends nothing")
        if self._client is None:
            self._client = client_for(self.settings, transport=self._transport)
        return self._client

    @property
    def has_client(self) -> bool:
        return self._client is not None

    def warehouse(self) -> Engine:
        if self._warehouse is None:
            self._warehouse = warehouse_engine_for(self.settings)
        return self._warehouse

    def tick(self) -> None:
        """Progress: report it, and now and then record in the runs table that the run is alive."""
        if self.progress is not None:
            self.progress(self.report)
        now = time.monotonic()
        if now - self._last_beat >= HEARTBEAT_S:
            self._last_beat = now
            self.store.heartbeat(run_id=self.run_id, pipeline=self.report.pipeline)

    def verify_credentials(self) -> None:
        """A sending run that made no request checks the key with one call carrying no data (see
        :mod:`etl.engine.credentials`), so a revoked key fails the run even when nothing changed."""
        from etl.engine.credentials import verify_credentials

        if self.dry_run or not self.sends or not self.settings.verify_credentials:
            return
        if self._client is not None and self._client.stats.requests:
            return
        self.report.notes.append(verify_credentials(self.client()))

    def close(self) -> None:
        if self._client is not None:
            self.report.http = self._client.stats.snapshot()
            self._client.close()
        if self._warehouse is not None:
            self._warehouse.dispose()


def execute(
    settings: Settings,
    body: Callable[[Run], None],
    *,
    pipeline: str,
    run_id: str | None = None,
    window: Window = (None, None),
    dry_run: bool = False,
    clock: WallClock = system_now,
    transport: httpx.BaseTransport | None = None,
    progress: Progress | None = None,
    summarize: Callable[[RunReport], dict[str, Any]] = RunReport.summary,
    settle: Callable[[RunReport], None] | None = None,
    renamed: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``body`` inside the frame and return the summary (also stored in ``we_runs``).

    ``settle`` fills the report's invariant buckets before :meth:`RunReport.check` (a sync whose rows are
    counted elsewhere); ``summarize`` turns the report into the stored summary. A failure, including a
    broken invariant, is recorded as a failed run and re-raised."""
    started = time.monotonic()
    now = clock()
    report = RunReport(
        pipeline=pipeline,
        run_id=run_id or default_run_id(now),
        dry_run=dry_run,
        window_start=window[0],
        window_end=window[1],
        renamed=dict(renamed or {}),
    )
    state_engine = state_engine_for(settings)
    store_clock = lambda: naive_utc(clock())  # noqa: E731 - the store's timestamps follow the run's clock
    with StateStore(state_engine, clock=store_clock, max_reject_attempts=settings.max_reject_attempts) as store:
        store.start_run(run_id=report.run_id, pipeline=pipeline, window=window, dry_run=dry_run)
        run = Run(settings, report, store, started_at=now, transport=transport, progress=progress)
        try:
            try:
                body(run)
                run.verify_credentials()
            finally:
                run.close()
            report.status = "success"
            report.duration_s = time.monotonic() - started
            if settle is not None:
                settle(report)
            report.check()
            failure = delivery_failure(report, settings.max_reject_share)
            if failure:
                raise DeliveryError(failure)
        except BaseException as exc:
            report.status = "failed"
            report.duration_s = time.monotonic() - started
            report.message = f"{exc.__class__.__name__}: {exc}" if isinstance(exc, Exception) else ""
            counts = summarize(report)
            store.finish_run(
                run_id=report.run_id, pipeline=pipeline, status="failed", counts=counts, message=report.message
            )
            if isinstance(exc, DeliveryError):
                exc.summary = counts
            raise
        summary = summarize(report)
        store.finish_run(run_id=report.run_id, pipeline=pipeline, status="success", counts=summary)
    state_engine.dispose()
    log.info(
        "%s run %s: %s%s; extracted %d, unchanged %d, accepted %d, rejected %d, requests %d",
        pipeline,
        report.run_id,
        report.status,
        " (dry run: nothing sent)" if report.dry_run else "",
        report.extracted,
        report.unchanged,
        report.accepted,
        report.rejected_rows,
        report.http.get("requests", 0),
    )
    return summary
