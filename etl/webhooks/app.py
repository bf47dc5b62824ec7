"""The webhook receiver: an ASGI app (Starlette) that answers 200 only once a delivery is durable.

``POST /webhooks`` (also ``/`` and ``/webhooks/<anything>``, so one receiver can serve every webhook kind
under its own URL) with WebEngage's query parameters ``licenseCode``, ``secret``, ``eventType`` and the
``x-request-id`` header:

| answer | when | stored |
|---|---|---|
| 200 ``{"status":"ok"}`` | landed durably (group commit, fdatasync) | once |
| 200 ``{"status":"ok","duplicate":true}`` | this request id was landed before | nothing more |
| 401 ``unauthorized`` | ``licenseCode``/``secret`` missing or wrong | nothing |
| 413 ``body_too_large`` | over ``WEBENGAGE_WEBHOOK_MAX_BODY`` | nothing |
| 400 ``malformed_json`` / 422 ``missing_event_time``... | not a webhook shape | raw body, quarantined once |
| 503 ``landing_unavailable`` | the disk write failed or the queue is full | nothing acknowledged; retry |

``GET /healthz`` gives counters only. Nothing here logs a query string, a secret, a body or a user id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Final, Literal

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from etl.webhooks.auth import WebhookAuth
from etl.webhooks.config import WebhookSettings
from etl.webhooks.landing import (
    GroupCommitter,
    Kind,
    LandingError,
    SeenIds,
    SegmentWriter,
    encode_event,
    encode_quarantine,
    rebuild_seen,
    seen_key,
    utcnow,
)
from etl.webhooks.shapes import ShapeError, parse_body, request_id_for, validate

log = logging.getLogger(__name__)

_JSON: Final = "application/json"
_OK: Final = orjson.dumps({"status": "ok"})
_DUPLICATE: Final = orjson.dumps({"status": "ok", "duplicate": True})
COUNTERS: Final = (
    "accepted",
    "duplicates",
    "quarantined",
    "rejected_again",
    "unauthorized",
    "too_large",
    "unavailable",
)


def _error(status: int, reason: str) -> Response:
    return Response(orjson.dumps({"status": "error", "reason": reason}), status_code=status, media_type=_JSON)


class ReceiverState:
    """What the endpoint shares: credentials check, landing writer, the seen-id set and counters."""

    def __init__(
        self,
        settings: WebhookSettings,
        *,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        settings.require_auth()
        self.settings = settings
        self.auth = WebhookAuth(license_code=settings.license_code, secret_key=settings.secret_key)
        self.clock = clock
        self.writer = SegmentWriter(
            settings.landing_dir,
            max_bytes=settings.segment_max_bytes,
            max_age_s=settings.segment_max_age_s,
            monotonic=monotonic,
            wall=clock,
        )
        self.committer = GroupCommitter(self.writer, max_pending=settings.max_pending)
        self.seen = SeenIds(settings.seen_ids_max)
        #: key -> future resolved True (landed) / False (failed) while that delivery is being written.
        self.inflight: dict[str, asyncio.Future[bool]] = {}
        self.counts: Counter[str] = Counter()

    def open(self) -> None:
        """Recover orphaned segments, start a fresh one, and remember the ids already on disk."""
        report = self.writer.open()
        self.seen = rebuild_seen(self.settings.landing_dir, self.settings.seen_ids_max)
        log.info(
            "webhook landing ready: %d request ids remembered, %d orphan segment(s) closed",
            len(self.seen),
            report.segments,
        )

    def stats(self) -> dict[str, Any]:
        return {
            "status": "ok",
            **{k: self.counts[k] for k in COUNTERS},
            "pending": self.committer.pending,
            "remembered_ids": len(self.seen),
            "records_written": self.writer.records,
            "bytes_written": self.writer.bytes,
            "group_commits": self.committer.groups,
            "segment": self.writer.segment,
        }


async def _read_capped(request: Request, cap: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``cap`` (never buffering more than that)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def _land(state: ReceiverState, key: str, line: bytes) -> Literal["landed", "duplicate", "failed"]:
    """Write one line durably, unless the same key is being written right now: then wait for that write
    and answer as a duplicate (or as failed, so WebEngage retries)."""
    running = state.inflight.get(key)
    if running is not None:
        return "duplicate" if await asyncio.shield(running) else "failed"
    future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    state.inflight[key] = future
    try:
        await state.committer.commit(line)
        landed = True
    except LandingError:
        landed = False
    except BaseException:  # cancelled: whoever waits on this key must not wait forever
        future.set_result(False)
        raise
    finally:
        state.inflight.pop(key, None)
    if landed:
        state.seen.add(key)
    future.set_result(landed)
    return "landed" if landed else "failed"


async def receive(request: Request) -> Response:
    state: ReceiverState = request.app.state.receiver
    counts = state.counts
    query = request.query_params
    if not state.auth.verify(license_code=query.get("licenseCode"), secret=query.get("secret")):
        counts["unauthorized"] += 1
        return _error(401, "unauthorized")
    body = await _read_capped(request, state.settings.max_body_bytes)
    if body is None:
        counts["too_large"] += 1
        return _error(413, "body_too_large")
    rid = request_id_for(request.headers.get("x-request-id"), body)
    if rid in state.seen:
        counts["duplicates"] += 1
        return Response(_DUPLICATE, media_type=_JSON)
    kind: Kind = "event"
    problem: ShapeError | None = None
    try:
        validate(parse_body(body))
    except ShapeError as exc:
        kind, problem = "quarantine", exc
    key = seen_key(kind, rid)
    if problem is not None and key in state.seen:
        counts["rejected_again"] += 1  # already quarantined; answer the same, store nothing more
        return _error(problem.status, problem.reason)
    common: dict[str, Any] = {
        "request_id": rid,
        "received_at": state.clock(),
        "event_type": query.get("eventType"),
        "license_code": query.get("licenseCode"),
        "raw_body": body,
    }
    line = encode_event(**common) if problem is None else encode_quarantine(reason=problem.reason, **common)
    outcome = await _land(state, key, line)
    if outcome == "failed":
        counts["unavailable"] += 1
        return _error(503, "landing_unavailable")
    if problem is not None:
        if outcome == "duplicate":
            counts["rejected_again"] += 1
            return _error(problem.status, problem.reason)
        counts["quarantined"] += 1
        log.info("delivery %s quarantined: %s", rid, problem.reason)
        return _error(problem.status, problem.reason)
    if outcome == "duplicate":
        counts["duplicates"] += 1
        return Response(_DUPLICATE, media_type=_JSON)
    counts["accepted"] += 1
    return Response(_OK, media_type=_JSON)


async def health(request: Request) -> Response:
    state: ReceiverState = request.app.state.receiver
    return Response(orjson.dumps(state.stats()), media_type=_JSON)


def create_app(settings: WebhookSettings, *, clock: Callable[[], datetime] = utcnow) -> Starlette:
    """The receiver; its lifespan opens the landing log at start-up and drains it at shutdown (run it with
    ``lifespan="on"``)."""
    state = ReceiverState(settings, clock=clock)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(state.open)
        state.committer.start()
        try:
            yield
        finally:
            # uvicorn has finished (or timed out) the in-flight requests: write what is queued, close.
            await state.committer.stop()
            log.info("webhook receiver stopped: %s", {k: v for k, v in state.stats().items() if k != "segment"})

    routes = [
        Route("/", receive, methods=["POST"]),
        Route("/webhooks", receive, methods=["POST"]),
        Route("/webhooks/{hook:path}", receive, methods=["POST"]),
        Route("/healthz", health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.receiver = state
    return app


__all__ = ["ReceiverState", "SeenIds", "create_app"]
