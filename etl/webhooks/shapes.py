"""The JSON shapes WebEngage's webhooks post (seed 003): events, global system events, global application
events and journey webhooks all share one envelope::

    {"event_name": "push_notification_accepted", "event_time": "2016-06-01T15:53:59+0000",
     "category": "system" | "application" | "account", "license_code": "...", "user_id": "...",
     "anonymous_id": "...", "event_data": {...}, "system_data": {...}}

Journey webhooks add top-level keys (``resource``, ``version``) and carry no ``system_data``; any key
beyond the envelope is kept in ``extra`` so nothing is lost. ``event_name``, ``event_time`` and
``category`` are required; a category outside the three known ones is accepted (WebEngage may add
channels) and counted by the loader's summary.

Numbers are parsed exactly: orjson turns integers beyond 64 bits into floats, so a body with a 19+ digit
run goes through the standard library parser instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import orjson

from etl.instants import parse_instant

Category = Literal["system", "application", "account"]
KNOWN_CATEGORIES: Final[frozenset[str]] = frozenset({"system", "application", "account"})

ENVELOPE_KEYS: Final = (
    "event_name",
    "event_time",
    "category",
    "license_code",
    "user_id",
    "anonymous_id",
    "event_data",
    "system_data",
)
#: Longest ``x-request-id`` kept as sent; longer or unprintable ones are replaced by a hash of themselves.
MAX_REQUEST_ID: Final = 128

_LONG_DIGITS: Final = re.compile(rb"[0-9]{19}")


class ShapeError(ValueError):
    """A delivery that is not one of the webhook shapes. ``reason`` is a short code, safe to log and to
    answer with (it never quotes the body); ``status`` is the HTTP status to answer."""

    def __init__(self, reason: str, *, status: int = 422) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookEvent:
    """One validated delivery, typed for the ``webengage_events`` table."""

    event_name: str
    event_time: datetime  # aware, UTC
    category: str
    user_id: str | None
    anonymous_id: str | None
    license_code: str | None
    event_data: dict[str, Any] | None
    system_data: dict[str, Any] | None
    extra: dict[str, Any] | None


def loads(raw: bytes | str) -> Any:
    """Parse JSON exactly (big integers stay integers); raises ``ShapeError("malformed_json", 400)``."""
    data = raw.encode() if isinstance(raw, str) else raw
    try:
        if _LONG_DIGITS.search(data):
            return json.loads(data, parse_constant=_no_constants)
        return orjson.loads(data)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise ShapeError("malformed_json", status=400) from None


def dumps(value: Any) -> str:
    """Compact JSON text; exact for integers of any size."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer beyond 64 bits
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_body(raw: bytes) -> dict[str, Any]:
    """Parse a delivery body into its JSON object (the shape is checked by :func:`validate`)."""
    value = loads(raw)
    if not isinstance(value, dict):
        raise ShapeError("not_an_object")
    return value


def validate(body: Mapping[str, Any]) -> WebhookEvent:
    """Check a parsed body against the webhook envelope; raises :class:`ShapeError` with the first problem."""
    for key in ("event_name", "event_time", "category"):
        if body.get(key) in (None, ""):
            raise ShapeError(f"missing_{key}")
    name = _text(body, "event_name", required=True)
    category = _text(body, "category", required=True)
    assert name is not None and category is not None
    extra = {k: v for k, v in body.items() if k not in ENVELOPE_KEYS}
    return WebhookEvent(
        event_name=name,
        event_time=parse_event_time(body["event_time"]),
        category=category,
        user_id=_id(body, "user_id"),
        anonymous_id=_id(body, "anonymous_id"),
        license_code=_text(body, "license_code"),
        event_data=_object(body, "event_data"),
        system_data=_object(body, "system_data"),
        extra=extra or None,
    )


def parse_event_time(value: Any) -> datetime:
    """WebEngage's ``2016-06-01T15:53:59+0000`` (any ISO 8601 date-time) -> aware UTC datetime.

    Without an offset the time is taken as UTC, WebEngage's documented zone for every timestamp."""
    if not isinstance(value, str) or len(value) < 19:  # a date alone is not an event time
        raise ShapeError("bad_event_time")
    try:
        return parse_instant(value)
    except ValueError:
        raise ShapeError("bad_event_time") from None


def _text(body: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ShapeError(f"bad_{key}")
    if "\x00" in value:  # PostgreSQL text cannot hold NUL
        raise ShapeError(f"bad_{key}")
    return value


def _id(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # numeric ids are still ids
    text = _text(body, key)
    return text or None


def _object(body: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ShapeError(f"bad_{key}")
    return value


def request_id_for(header: str | None, body: bytes) -> str:
    """The delivery's id: its ``x-request-id`` as sent, or, without one, ``body-`` + a 128-bit BLAKE2b of
    the raw body, so a redelivery of the same bytes gets the same id. An id over 128 characters or with
    characters that are not printable ASCII becomes ``hdr-`` + the hash of the header itself."""
    if header is not None and header.strip():
        rid = header.strip()
        if len(rid) <= MAX_REQUEST_ID and rid.isascii() and rid.isprintable():
            return rid
        return "hdr-" + hashlib.blake2b(rid.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
    return "body-" + hashlib.blake2b(body, digest_size=16).hexdigest()
