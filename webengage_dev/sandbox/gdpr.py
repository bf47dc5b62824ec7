"""The sandbox's GDPR endpoint: ``POST …/opengdpr_requests`` (OpenGDPR style) and its status check
``GET …/opengdpr_requests/{subject_request_id}``, strict where WebEngage's documentation is vague.

* one identity per request (``identity_type`` ``cuid``, a userId of at most 100 characters, format ``raw``),
  every required field present and typed, ``subject_request_type`` one of WebEngage's four;
* its own budget (``gdpr_rpm``, default 100/min; 429 past it, status checks included);
* a repeated ``subject_request_id`` for the same identity is acknowledged again, not recorded twice (counted
  as a duplicate); for another identity it is refused;
* an erasure removes the profile (and the events) the sandbox stores for that user at once; its status is
  ``pending`` until ``gdpr_completion_s`` has passed, then ``completed``.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from webengage_dev.sandbox.server import SandboxState

ENDPOINT: Final = "opengdpr_requests"
REQUEST_TYPES: Final = frozenset({"erasure", "restriction", "re-enable", "portability"})
REQUIRED: Final = ("subject_request_id", "subject_request_type", "submitted_time", "subject_identities")
IDENTITY_FIELDS: Final = frozenset({"identity_type", "identity_value", "identity_format"})
ID_MAX: Final = 100
_REQUEST_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})")


@dataclass(frozen=True, slots=True)
class GdprRequest:
    request_id: str
    request_type: str
    user_id: str
    received_at: float  # wall clock
    complete_at: float  # monotonic

    def to_dict(self, status: str) -> dict[str, Any]:
        return {
            "subject_request_id": self.request_id,
            "subject_request_type": self.request_type,
            "user_id": self.user_id,
            "received_time": _iso(self.received_at),
            "request_status": status,
        }


class GdprRequests:
    """Requests received, by ``subject_request_id`` (thread-safe; reset with the store)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._requests: dict[str, GdprRequest] = {}
        self.duplicates = 0

    def record(self, request_id: str, request_type: str, user_id: str, completion_s: float) -> tuple[GdprRequest, bool]:
        """The request (new, or the earlier one with this id) and whether it is new; raises ValueError when
        the id was used for another identity or type."""
        with self._lock:
            known = self._requests.get(request_id)
            if known is not None:
                if (known.user_id, known.request_type) != (user_id, request_type):
                    raise ValueError("subject_request_id already used for another request")
                self.duplicates += 1
                return known, False
            found = GdprRequest(request_id, request_type, user_id, time.time(), self._clock() + completion_s)
            self._requests[request_id] = found
            return found, True

    def status(self, request_id: str) -> tuple[GdprRequest, str] | None:
        with self._lock:
            found = self._requests.get(request_id)
            if found is None:
                return None
            return found, "completed" if self._clock() >= found.complete_at else "pending"

    def all(self) -> list[dict[str, Any]]:
        now = self._clock()
        with self._lock:
            return [r.to_dict("completed" if now >= r.complete_at else "pending") for r in self._requests.values()]

    def __len__(self) -> int:
        with self._lock:
            return len(self._requests)


def problems(payload: Any) -> list[tuple[str, str | None, str]]:
    """Every way ``payload`` breaks the contract, as (rule, field, detail); empty when it is valid."""
    if not isinstance(payload, dict):
        return [("invalid_body", None, "body must be a JSON object")]
    found: list[tuple[str, str | None, str]] = []
    for name in REQUIRED:
        if name not in payload:
            found.append(("missing_field", name, "required"))
    for name in payload:
        if name not in (*REQUIRED, "api_version", "status_callback_urls"):
            found.append(("unknown_field", name, "not an OpenGDPR request field"))
    rid = payload.get("subject_request_id")
    if "subject_request_id" in payload and not (isinstance(rid, str) and _REQUEST_ID.fullmatch(rid)):
        found.append(("invalid_field", "subject_request_id", "1-64 letters, digits or dashes (a UUID)"))
    kind = payload.get("subject_request_type")
    if "subject_request_type" in payload and kind not in REQUEST_TYPES:
        found.append(("invalid_field", "subject_request_type", "erasure, restriction, re-enable or portability"))
    submitted = payload.get("submitted_time")
    if "submitted_time" in payload and not (isinstance(submitted, str) and _TIME.fullmatch(submitted)):
        found.append(("invalid_field", "submitted_time", "an RFC 3339 date-time"))
    identities = payload.get("subject_identities")
    if "subject_identities" in payload:
        if not isinstance(identities, list) or len(identities) != 1:
            found.append(("one_identity", "subject_identities", "exactly one identity per request"))
        else:
            found.extend(_identity_problems(identities[0]))
    return found


def _identity_problems(identity: Any) -> list[tuple[str, str | None, str]]:
    field = "subject_identities[0]"
    if not isinstance(identity, dict):
        return [("invalid_field", field, "an object")]
    found: list[tuple[str, str | None, str]] = []
    for name in sorted(IDENTITY_FIELDS - identity.keys()):
        found.append(("missing_field", f"{field}.{name}", "required"))
    for name in sorted(identity.keys() - IDENTITY_FIELDS):
        found.append(("unknown_field", f"{field}.{name}", "not an identity field"))
    if "identity_type" in identity and identity["identity_type"] != "cuid":
        found.append(("invalid_field", f"{field}.identity_type", "cuid (the userId)"))
    if "identity_format" in identity and identity["identity_format"] != "raw":
        found.append(("invalid_field", f"{field}.identity_format", "raw"))
    value = identity.get("identity_value")
    if "identity_value" in identity and not (isinstance(value, str) and value.strip() and len(value) <= ID_MAX):
        found.append(("invalid_field", f"{field}.identity_value", f"a non-empty userId of at most {ID_MAX} characters"))
    return found


def acknowledgement(license_code: str, request: GdprRequest) -> dict[str, Any]:
    """The OpenGDPR answer to an accepted request."""
    return {
        "controller_id": license_code,
        "expected_completion_time": _iso(request.received_at + 30 * 86_400),
        "received_time": _iso(request.received_at),
        "subject_request_id": request.request_id,
    }


def status_answer(license_code: str, request: GdprRequest, status: str) -> dict[str, Any]:
    return {
        "controller_id": license_code,
        "expected_completion_time": _iso(request.received_at + 30 * 86_400),
        "subject_request_id": request.request_id,
        "request_status": status,
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def routes(state: SandboxState) -> list[Any]:
    """The endpoint's routes on the sandbox app (``state``: the app's shared state)."""
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from webengage_dev.sandbox.server import admit, check_account, error_response, json_response, parse_body, throttle
    from webengage_dev.sandbox.validation import Violation

    store = state.store

    async def submit(request: Request) -> Response:
        store.record_request(ENDPOINT)
        response = await _submit(request)
        store.record_response(response.status_code)
        return response

    async def _submit(request: Request) -> Response:
        # As the tracking endpoints: account, body, budget, then the latency (a client killed meanwhile
        # has sent its whole body, and the request counts as received).
        refused = check_account(state, request)
        if refused is not None:
            return refused
        payload, error = await parse_body(state, request)
        if error is not None:
            return error_response(*error)
        throttled, headers = throttle(state, ENDPOINT)
        if throttled is not None:
            return throttled
        delay = state.latency_s()
        if delay:
            await asyncio.sleep(delay)
        found = problems(payload)
        if found:
            rid = payload.get("subject_request_id") if isinstance(payload, dict) else None
            store.record_violations(
                Violation(ENDPOINT, rule, name, detail, None, rid if isinstance(rid, str) else None)
                for rule, name, detail in found
            )
            _, name, detail = found[0]
            return error_response(400, f"Error: {name or 'body'}: {detail}", headers)
        identity = payload["subject_identities"][0]["identity_value"]
        try:
            recorded, new = store.gdpr.record(
                payload["subject_request_id"], payload["subject_request_type"], identity, state.config.gdpr_completion_s
            )
        except ValueError as exc:
            return error_response(400, f"Error: {exc}", headers)
        if new and recorded.request_type == "erasure":
            store.erase_user(identity)
        return json_response(acknowledgement(state.config.license_code, recorded), 201, headers)

    async def status(request: Request) -> Response:
        store.record_request(f"{ENDPOINT}/status")
        refused, headers = await admit(state, request, ENDPOINT)
        if refused is None:
            found = store.gdpr.status(request.path_params["request_id"])
            if found is None:
                refused = error_response(404, "Unknown subject_request_id", headers)
            else:
                refused = json_response(status_answer(state.config.license_code, *found), 200, headers)
        store.record_response(refused.status_code)
        return refused

    async def inspect(_: Request) -> Response:
        return json_response(
            {"count": len(store.gdpr), "duplicates": store.gdpr.duplicates, "requests": store.gdpr.all()}
        )

    prefix = f"/v1/accounts/{{license}}/{ENDPOINT}"
    return [
        Route(prefix, submit, methods=["POST"]),
        Route(prefix + "/{request_id}", status, methods=["GET"]),
        Route("/_sandbox/gdpr", inspect, methods=["GET"]),
    ]
