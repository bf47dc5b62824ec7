"""WebEngage's GDPR requests (``POST …/opengdpr_requests``, OpenGDPR style): the request body, its id, and the
status a check returns. The one place that knows the body's shape, which WebEngage documents only in outline
(**unconfirmed** in detail, see ``webengage-contract.md``): change it here and nowhere else.

One identity per request (``identity_type: cuid`` = the WebEngage userId); WebEngage's default limit is
100 requests/min, on its own budget (endpoint ``opengdpr_requests``).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any, Final, Literal

import orjson

from etl.webengage.models import Fetched

RequestType = Literal["erasure", "restriction", "re-enable", "portability"]
#: Statuses a status check can report (OpenGDPR). ``completed`` and ``cancelled`` are final.
REMOTE_STATUSES: Final = frozenset({"pending", "in_progress", "completed", "cancelled"})
FINAL_STATUSES: Final = frozenset({"completed", "cancelled"})


def subject_request_id(user_id: str, deletion: str) -> str:
    """The request's id: a hash of the user id and the deletion it answers (``deletion``: what identifies this
    deletion of that user, e.g. the version of the profile being erased), so a replay after a crash carries
    the same id and a later, different deletion of a re-created user a new one. UUID-shaped, as OpenGDPR
    asks for."""
    digest = hashlib.sha256(f"erasure\x1f{user_id}\x1f{deletion}".encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def request_body(user_id: str, *, request_id: str, submitted: datetime, request_type: RequestType = "erasure") -> bytes:
    """The exact bytes of one GDPR request for one user (journaled before sending, replayed as they are)."""
    body: dict[str, Any] = {
        "subject_request_id": request_id,
        "subject_request_type": request_type,
        "submitted_time": submitted.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "subject_identities": [{"identity_type": "cuid", "identity_value": user_id, "identity_format": "raw"}],
    }
    return orjson.dumps(body)


def remote_status(answer: Fetched) -> str | None:
    """The request status a status check reported (``request_status``, at the top level or under
    ``response``), lower-cased; ``unknown`` for a 404 (WebEngage has no such request); None when the check
    gave no usable answer (try again on a later run)."""
    if answer.status_code == 404:
        return "unknown"
    if answer.status_code is None or not 200 <= answer.status_code < 300 or answer.data is None:
        return None
    inner = answer.data.get("response")
    value = answer.data.get("request_status")
    if value is None and isinstance(inner, dict):
        value = inner.get("request_status")
    if not isinstance(value, str):
        return None
    status = value.strip().lower().replace("-", "_").replace(" ", "_")
    return status if status in REMOTE_STATUSES else None
