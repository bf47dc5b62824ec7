"""The retry policy, declared once: how every answer is classified, how long to back off, how to read 429s.

Hand-written rather than tenacity: a 429 is not an attempt but a shared-budget pause with its own time
cap, the first connection error is terminal while later ones retry, and each answer must also feed the
rate budget. Expressed as tenacity stop/wait/retry callbacks this would be spread over several closures
sharing state; one loop in the client, driven by this policy, reads straight through.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final, Literal

import httpx
import orjson

from etl.webengage.clock import seconds_to_next_minute
from etl.webengage.options import ClientOptions

Classification = Literal["accepted", "rejected", "transient", "terminal", "throttled"]

AUTH_HINT: Final = (
    "check WEBENGAGE_API_KEY: it must belong to an admin with Account Management + Update Data "
    "permissions, and the data centre host must match your dashboard"
)
NOT_FOUND_HINT: Final = (
    "check WEBENGAGE_LICENSE_CODE and the data centre host (WEBENGAGE_DATA_CENTER/WEBENGAGE_API_URL)"
)
HOST_HINT: Final = (
    "check the API host (WEBENGAGE_DATA_CENTER/WEBENGAGE_API_URL): it must resolve and accept "
    "connections from this machine"
)
NOT_WEBENGAGE_HINT: Final = (
    "the host answered, but not as WebEngage's API does (an HTML page from a captive portal, proxy or wrong "
    "host?); check WEBENGAGE_DATA_CENTER/WEBENGAGE_API_URL and any proxy between this machine and WebEngage"
)
REDIRECT_HINT: Final = (
    "the API answered with a redirect; set WEBENGAGE_API_URL to the exact https:// host of your data centre"
)

#: Data problems: WebEngage refused the content, so resending it unchanged cannot help.
REJECTED_STATUSES: Final = frozenset({400, 413, 422})
#: Retryable 4xx (request timeout, too early).
TRANSIENT_4XX: Final = frozenset({408, 425})
# Server messages go into results and reports, never logs; keep them short.
_MAX_MESSAGE = 300


@dataclass(frozen=True, slots=True)
class Verdict:
    """The classification of one HTTP answer (or transport failure)."""

    kind: Classification
    message: str | None = None
    hint: str = ""


class RetryPolicy:
    """Classification, backoff and 429 waits from :class:`~etl.webengage.options.ClientOptions`.

    ``max_retries`` counts retries after the first attempt, so a request is attempted at most
    ``max_retries + 1`` times; 429 answers are never attempts.
    """

    def __init__(self, settings: ClientOptions, rng: random.Random | None = None) -> None:
        self.max_retries = settings.max_retries
        self.backoff_base_s = settings.backoff_base_s
        self.backoff_max_s = settings.backoff_max_s
        self.max_throttle_wait_s = settings.max_throttle_wait_s
        self._accepted = frozenset(s.lower() for s in settings.accepted_statuses)
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()  # one Random shared by worker threads; keep draws reproducible

    def classify(self, status_code: int, body: bytes, *, verified: bool = True) -> Verdict:
        """Classify an HTTP answer. Only a 2xx whose ``response.status`` is accepted counts as accepted.

        ``verified``: the API has already judged a request of this run. Until it has, a 2xx that is not
        WebEngage's JSON is terminal: it is somebody else answering (retrying it only repeats the request)."""
        if 200 <= status_code < 300:
            status = _response_field(body, "status")
            if status is not None and status.lower() in self._accepted:
                return Verdict("accepted")
            if _opengdpr_ack(body):
                return Verdict("accepted")
            if not verified and not _is_webengage(body):
                return Verdict(
                    "terminal", f"HTTP {status_code} with a body that is not WebEngage's", NOT_WEBENGAGE_HINT
                )
            # A 2xx that does not say queued/success may not have been ingested: retry it.
            detail = _error_message(body)
            shown = "none" if status is None else repr(status[:40])
            message = f"2xx without an accepted status (response.status={shown})"
            return Verdict("transient", f"{message}: {detail}" if detail else message)
        if status_code == 429:
            return Verdict("throttled", "throttled (429)")
        if status_code in (401, 403):
            return Verdict("terminal", _error_message(body) or f"HTTP {status_code}", AUTH_HINT)
        if status_code == 404:
            return Verdict("terminal", _error_message(body) or "HTTP 404", NOT_FOUND_HINT)
        if status_code >= 500 or status_code in TRANSIENT_4XX:
            return Verdict("transient", _error_message(body) or f"HTTP {status_code}")
        if 300 <= status_code < 400:
            return Verdict("terminal", f"HTTP {status_code}", REDIRECT_HINT)
        message = _error_message(body) or f"HTTP {status_code}"
        if status_code == 400 and "licen" in message.lower():
            # A wrong license code sometimes answers 400 instead of 404 (contract): stop, don't skip data.
            return Verdict("terminal", message, NOT_FOUND_HINT)
        # 400/413/422 and any other 4xx: the content was refused; skip and report it, never retry.
        return Verdict("rejected", message)

    def classify_error(self, exc: httpx.TransportError, *, first_contact: bool, verified: bool = True) -> Verdict:
        """Classify a transport failure. Before any answer from the host, DNS failures and refused
        connections mean a wrong host, and before the API's first verdict a connect timeout means a host that
        never answers (blackholed): terminal, so a bad setting causes no retry storm."""
        message = f"{type(exc).__name__}: {exc}"[:_MAX_MESSAGE]
        if isinstance(exc, httpx.UnsupportedProtocol) or (first_contact and isinstance(exc, httpx.ConnectError)):
            return Verdict("terminal", message, HOST_HINT)
        if not verified and isinstance(exc, httpx.ConnectTimeout):
            return Verdict("terminal", message, HOST_HINT)
        return Verdict("transient", message)

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` 0-based): full jitter."""
        cap = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** max(0, attempt))
        with self._rng_lock:
            return cap * self._rng.random()

    def throttle_delay(self, retry_after: str | None, now: float) -> float:
        """Seconds to wait after a 429 (``now``: wall epoch seconds).

        ``Retry-After`` (seconds or HTTP date) is honoured when present; otherwise wait to the next minute
        boundary, capped by ``backoff_max_s`` (the contract: "at most to the next minute boundary").
        """
        parsed = parse_retry_after(retry_after, now)
        if parsed is not None:
            return parsed
        return min(self.backoff_max_s, seconds_to_next_minute(now))


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now`` (wall epoch seconds); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, when.timestamp() - now)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


def _response_field(body: bytes, name: str) -> str | None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    response = data.get("response") if isinstance(data, dict) else None
    value = response.get(name) if isinstance(response, dict) else None
    return value if isinstance(value, str) else None


def _opengdpr_ack(body: bytes) -> bool:
    """An OpenGDPR acknowledgement (``opengdpr_requests`` answers with the request it recorded, carrying its
    ``subject_request_id``, at the top level or under ``response``; which of the two is unconfirmed)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(data, dict):
        return False
    inner = data.get("response")
    found = data.get("subject_request_id") or (inner.get("subject_request_id") if isinstance(inner, dict) else None)
    return isinstance(found, str) and bool(found) and not (isinstance(inner, dict) and inner.get("status") == "error")


def _is_webengage(body: bytes) -> bool:
    """WebEngage answers JSON with a ``response`` object; anything else is not its API."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and isinstance(data.get("response"), dict)


def _error_message(body: bytes) -> str | None:
    """``response.message`` of a JSON error body, truncated; never a raw (possibly personal) body."""
    message = _response_field(body, "message")
    return message[:_MAX_MESSAGE] if message else None
