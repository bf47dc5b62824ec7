"""The sandbox ASGI app: WebEngage's four tracking endpoints, strict checks, 429s, faults and inspection."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webengage_dev.sandbox import gdpr
from webengage_dev.sandbox.config import SandboxConfig
from webengage_dev.sandbox.ratelimit import Decision, SlidingWindowLimiter
from webengage_dev.sandbox.store import SandboxStore
from webengage_dev.sandbox.validation import Violation, has_identity, parse_json

BULK_MAX_ITEMS = 25
ENDPOINTS: tuple[str, ...] = ("users", "events", "bulk-users", "bulk-events")
FaultKind = Literal["error_5xx", "timeout", "error_body_2xx", "throttle_storm", "timeout_after_store"]

_QUEUED = orjson.dumps({"response": {"status": "queued"}})
_NO_ID = "Error: userId and anonymousId cannot be empty."


class SandboxState:
    """What the endpoints share: the live config (swappable at runtime), store, limiter and seeded RNG."""

    def __init__(self, config: SandboxConfig, store: SandboxStore) -> None:
        self.store = store
        self.limiter = SlidingWindowLimiter({})
        self._lock = threading.Lock()
        self.config = config
        self.rng = random.Random(config.seed)
        self._apply_limits()

    def update(self, changes: Mapping[str, Any]) -> SandboxConfig:
        """Apply a partial config; raises ValueError on unknown names or bad values."""
        with self._lock:
            try:
                new = self.config.replace(**changes)
            except TypeError as exc:  # a value of the wrong type failed a range check
                raise ValueError(str(exc)) from exc
            if new.seed != self.config.seed:
                self.rng = random.Random(new.seed)
            self.config = new
            self._apply_limits()
            return new

    def budget_key(self, endpoint: str) -> str:
        if self.config.shared_bulk_budget and endpoint.startswith("bulk-"):
            return "bulk"
        return endpoint

    def _apply_limits(self) -> None:
        limits: dict[str, int | None] = {name: self.config.rpm_for(name) for name in ENDPOINTS}
        limits["bulk"] = self.config.bulk_users_rpm
        limits[gdpr.ENDPOINT] = self.config.gdpr_rpm or None
        self.limiter.set_limits(limits)

    def draw_fault(self) -> FaultKind | None:
        """At most one fault per request, from one uniform draw so the seeded sequence is repeatable."""
        cfg = self.config
        rates: tuple[tuple[FaultKind, float], ...] = (
            ("error_5xx", cfg.error_5xx_rate),
            ("timeout", cfg.timeout_rate),
            ("error_body_2xx", cfg.error_body_2xx_rate),
            ("throttle_storm", cfg.throttle_storm_rate),
            ("timeout_after_store", cfg.timeout_after_store_rate),
        )
        if not any(rate for _, rate in rates):
            return None
        draw = self.rng.random()
        edge = 0.0
        for kind, rate in rates:
            edge += rate
            if draw < edge:
                return kind
        return None

    def latency_s(self) -> float:
        cfg = self.config
        delay = cfg.latency_ms
        if cfg.jitter_ms:
            delay += self.rng.uniform(-cfg.jitter_ms, cfg.jitter_ms)
        return max(delay, 0.0) / 1000.0


def dumps(data: Any) -> bytes:
    try:
        return orjson.dumps(data)
    except TypeError:  # integers past 64 bits: only stdlib can write them
        return json.dumps(data).encode()


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(dumps(data), status_code=status, media_type="application/json", headers=headers)


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return json_response({"response": {"status": "error", "message": message}}, status, headers)


def create_app(config: SandboxConfig, store: SandboxStore | None = None) -> Starlette:
    """The sandbox as a plain Starlette app; pass ``store`` to read it directly from tests."""
    state = SandboxState(config, store if store is not None else SandboxStore())
    routes = [
        Route(f"/v1/accounts/{{license}}/{name}", _ingest_endpoint(state, name), methods=["POST"]) for name in ENDPOINTS
    ]
    routes += gdpr.routes(state)
    routes += _inspection_routes(state)
    app = Starlette(routes=routes)
    app.state.sandbox = state
    return app


def _ingest_endpoint(state: SandboxState, endpoint: str) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        state.store.record_request(endpoint)
        response = await _ingest(state, endpoint, request)
        state.store.record_response(response.status_code)
        return response

    handle.__name__ = f"ingest_{endpoint.replace('-', '_')}"
    return handle


async def _ingest(state: SandboxState, endpoint: str, request: Request) -> Response:
    cfg = state.config
    store = state.store
    refused = check_account(state, request)
    if refused is not None:
        return refused
    body = await _read_body(request, cfg.max_body_bytes)
    if body is None:
        return error_response(413, "Request body too large")
    if endpoint in ("users", "events") and body.strip() == b"{}":
        store.record_credential_check()  # counted whatever the answer (limits and faults apply to it too)

    key = state.budget_key(endpoint)
    throttled, headers = throttle(state, key)
    if throttled is not None:
        return throttled

    delay = state.latency_s()
    if delay:
        await asyncio.sleep(delay)
    fault = state.draw_fault()
    if fault is not None and fault != "timeout_after_store":
        store.record_fault(fault)
        return await _fault_response(state, fault, key, headers)

    request_id = request.headers.get("x-request-id") or None
    dedupe = cfg.dedupe_bulk_request_ids if endpoint.startswith("bulk-") else cfg.dedupe_request_ids
    if request_id is not None and dedupe and store.is_duplicate_request(request_id):
        # Mirrors WebEngage: a retry of an ingested request is acknowledged but not ingested twice.
        return Response(_QUEUED, 200, headers, media_type="application/json")

    try:
        payload = parse_json(body)
    except (ValueError, RecursionError):
        return error_response(400, "Invalid JSON body", headers)
    items = _items(cfg, endpoint, payload, request_id)
    store.record_violations(items.violations)
    if items.error is not None:
        return error_response(400, items.error, headers)
    if endpoint.endswith("users"):
        merge = endpoint == "users" and cfg.merge_on_users  # the bulk endpoint ignores anonymousId
        store.ingest_users(items.batch, endpoint=endpoint, request_id=request_id, merge=merge)
    else:
        store.ingest_events(items.batch, endpoint=endpoint, request_id=request_id)
    if request_id is not None and dedupe:
        store.remember_request(request_id)
    if fault == "timeout_after_store":
        # Stored, but the answer comes too late for the client: an ambiguous delivery.
        store.record_fault(fault)
        await asyncio.sleep(cfg.timeout_sleep_s)
    return Response(_QUEUED, 201, headers, media_type="application/json")


def check_account(state: SandboxState, request: Request) -> Response | None:
    """The answer to a request for another license code (404) or without the right key (401), else None."""
    cfg = state.config
    if request.path_params["license"] != cfg.license_code:
        return error_response(404, "Invalid license code")
    auth = request.headers.get("authorization", "")
    if not secrets.compare_digest(auth.encode(), f"Bearer {cfg.api_key}".encode()):
        return error_response(401, "Unauthorized")
    return None


def throttle(state: SandboxState, key: str) -> tuple[Response | None, dict[str, str]]:
    """Count one request against budget ``key``: (a 429 when over it, else None; the rate-limit headers)."""
    decision = state.limiter.check(key, time.monotonic())
    headers = _limit_headers(decision)
    if not decision.allowed:
        if state.config.retry_after:
            headers["Retry-After"] = str(max(1, math.ceil(decision.retry_after_s)))
        return error_response(429, "Rate limit exceeded", headers), headers
    return None, headers


async def admit(state: SandboxState, request: Request, key: str) -> tuple[Response | None, dict[str, str]]:
    """Account check, then budget ``key``, then the configured latency: (the refusal if any, the headers)."""
    refused = check_account(state, request)
    if refused is not None:
        return refused, {}
    throttled, headers = throttle(state, key)
    if throttled is not None:
        return throttled, headers
    delay = state.latency_s()
    if delay:
        await asyncio.sleep(delay)
    return None, headers


async def parse_body(state: SandboxState, request: Request) -> tuple[Any, tuple[int, str] | None]:
    """The JSON body, or (None, (status, message)) when it is too large or not JSON."""
    body = await _read_body(request, state.config.max_body_bytes)
    if body is None:
        return None, (413, "Request body too large")
    try:
        return parse_json(body), None
    except (ValueError, RecursionError):
        return None, (400, "Invalid JSON body")


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None when it exceeds ``limit`` bytes (stops reading as soon as it does)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            return None
    return bytes(chunks)


def _limit_headers(decision: Decision) -> dict[str, str]:
    if not decision.limit:  # unlimited: there is no budget to advertise
        return {}
    return {"X-RateLimit-Limit": str(decision.limit), "X-RateLimit-Remaining": str(decision.remaining)}


async def _fault_response(state: SandboxState, fault: FaultKind, key: str, headers: dict[str, str]) -> Response:
    if fault == "error_5xx":
        return error_response(503, "Service temporarily unavailable", headers)
    if fault == "timeout":
        await asyncio.sleep(state.config.timeout_sleep_s)
        return error_response(504, "Gateway timeout", headers)
    if fault == "error_body_2xx":
        return error_response(200, "internal error", headers)
    # throttle_storm: a 429 under the limit and without Retry-After; like any 429 it does not count.
    state.limiter.refund(key)
    if "X-RateLimit-Remaining" in headers:
        headers["X-RateLimit-Remaining"] = "0"
    return error_response(429, "Rate limit exceeded", headers)


@dataclass(slots=True)
class _Items:
    """What a body holds: the items to ingest, request-level violations, and the message of a 400 if any."""

    batch: list[tuple[int | None, Any]] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    error: str | None = None


def _items(cfg: SandboxConfig, endpoint: str, payload: Any, request_id: str | None) -> _Items:
    if not isinstance(payload, dict):
        return _Items(error="Request body must be a JSON object")
    if endpoint in ("users", "events"):
        if not payload:
            # An empty object is the client's credential check (it carries no data): WebEngage's answer, no
            # violation (etl.engine.credentials).
            return _Items(error=_NO_ID)
        if not has_identity(payload):
            violation = Violation(endpoint, "missing_id", None, "userId and anonymousId are both empty")
            return _Items(violations=[_with_request(violation, request_id)], error=_NO_ID)
        return _Items(batch=[(None, payload)])
    name = "users" if endpoint == "bulk-users" else "events"
    items = payload.get(name)
    if not isinstance(items, list):
        return _Items(error=f'Request body must be {{"{name}": [...]}}')
    found = _Items()
    for key in payload:
        if key != name:
            found.violations.append(
                Violation(endpoint, "unknown_field", key, f"bulk body holds only {name}", None, request_id)
            )
    if len(items) > BULK_MAX_ITEMS:
        detail = f"{len(items)} items; at most {BULK_MAX_ITEMS} per call"
        found.violations.append(Violation(endpoint, "oversize_bulk", name, detail, None, request_id))
        if cfg.oversize_bulk == "reject":
            found.error = f"Error: at most {BULK_MAX_ITEMS} {name} per call."
            return found
    for index, item in enumerate(items):
        if has_identity(item):
            found.batch.append((index, item))
            continue
        if isinstance(item, dict):
            rule, detail = "missing_id", "userId and anonymousId are both empty"
        else:
            rule, detail = "invalid_item", "item is not a JSON object"
        found.violations.append(Violation(endpoint, rule, None, detail, index, request_id))
        if cfg.bulk_invalid_item == "reject_batch":
            found.error = f"Error: item {index}: userId and anonymousId cannot be empty."
            return found
    return found


def _with_request(violation: Violation, request_id: str | None) -> Violation:
    return dataclasses.replace(violation, request_id=request_id)


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = int(raw)  # ValueError becomes a 400 in the caller
    if value < 0:
        raise ValueError(name)
    return value


def _inspection_routes(state: SandboxState) -> list[Route]:
    store = state.store

    async def health(_: Request) -> Response:
        return json_response({"status": "ok"})

    async def stats(_: Request) -> Response:
        return json_response(store.stats())

    async def user(request: Request) -> Response:
        found = store.get_user(request.path_params["user_id"])
        if found is None:
            return error_response(404, "Unknown user")
        return json_response(found)

    async def users(request: Request) -> Response:
        try:
            limit = _int_param(request, "limit", 100) or 0
            offset = _int_param(request, "offset", 0) or 0
        except ValueError:
            return error_response(400, "limit and offset must be non-negative integers")
        total, page = store.list_users(limit=limit, offset=offset)
        return json_response({"total": total, "users": page})

    async def events(request: Request) -> Response:
        try:
            limit = _int_param(request, "limit", None)
        except ValueError:
            return error_response(400, "limit must be a non-negative integer")
        found = store.events(
            user_id=request.query_params.get("user_id"),
            event_name=request.query_params.get("event_name"),
            limit=limit,
        )
        return json_response({"count": len(found), "events": found})

    async def violations(request: Request) -> Response:
        try:
            limit = _int_param(request, "limit", None)
        except ValueError:
            return error_response(400, "limit must be a non-negative integer")
        found = store.violations(limit=limit, rule=request.query_params.get("rule"))
        return json_response({"count": len(found), "violations": [v.to_dict() for v in found]})

    async def reset(_: Request) -> Response:
        store.reset()
        state.limiter.reset()
        return json_response({"status": "ok"})

    async def config(request: Request) -> Response:
        if request.method == "POST":
            try:
                changes = parse_json(await request.body())
                if not isinstance(changes, dict):
                    raise ValueError("config update must be a JSON object")
                state.update(changes)
            except ValueError as exc:
                return error_response(400, str(exc))
        return json_response(state.config.to_dict())

    return [
        Route("/_sandbox/health", health, methods=["GET"]),
        Route("/_sandbox/stats", stats, methods=["GET"]),
        Route("/_sandbox/users", users, methods=["GET"]),
        Route("/_sandbox/users/{user_id:path}", user, methods=["GET"]),
        Route("/_sandbox/events", events, methods=["GET"]),
        Route("/_sandbox/violations", violations, methods=["GET"]),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/_sandbox/config", config, methods=["GET", "POST"]),
    ]
