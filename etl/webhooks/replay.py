"""Replay a JSON-lines file of deliveries through the same landing log and loader as the receiver
(back-fills, tests, re-driving fixed quarantined bodies).

One delivery per line, either

* a delivery body as WebEngage posts it: ``{"event_name": ..., "event_time": ..., "category": ..., ...}``
  (its id is then ``body-`` + a hash of the line's bytes, as the receiver derives it for a delivery
  without ``x-request-id``), or
* an envelope: ``{"request_id": "...", "body": {...} | "<raw body text>", "event_type": "...",
  "received_at": "2026-11-24T01:02:03Z"}``; only ``body`` is required (``received_at`` defaults to now,
  ``event_type`` to none, ``request_id`` to the hash of the body's bytes).

An object with a ``body`` key and no ``event_name`` is an envelope. Blank lines are skipped. Lines that are
not deliveries are quarantined with their reason, exactly as the receiver would (no credentials are
checked: whoever can run this can write the warehouse anyway).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from etl.instants import parse_instant
from etl.webhooks.config import WebhookSettings
from etl.webhooks.landing import SegmentWriter, encode_event, encode_quarantine, utcnow
from etl.webhooks.shapes import ShapeError, dumps, loads, parse_body, request_id_for, validate

log = logging.getLogger(__name__)

#: Lines appended (and fsynced) at a time.
GROUP_LINES: Final = 1_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One delivery to land: the raw body bytes and what the receiver would have known about it."""

    request_id: str
    raw_body: bytes
    event_type: str | None
    received_at: datetime


def parse_line(line: bytes, *, now: datetime) -> Delivery:
    """A replay line -> :class:`Delivery` (see the module doc for the two forms)."""
    stripped = line.strip()
    try:
        value = loads(stripped)
    except ShapeError:
        return Delivery(request_id=request_id_for(None, stripped), raw_body=stripped, event_type=None, received_at=now)
    if isinstance(value, dict) and "body" in value and "event_name" not in value:
        body = value["body"]
        raw = body.encode() if isinstance(body, str) else dumps(body).encode()
        header = value.get("request_id")
        event_type = value.get("event_type")
        return Delivery(
            request_id=request_id_for(str(header) if header is not None else None, raw),
            raw_body=raw,
            event_type=str(event_type) if event_type is not None else None,
            received_at=_received_at(value.get("received_at"), now),
        )
    return Delivery(request_id=request_id_for(None, stripped), raw_body=stripped, event_type=None, received_at=now)


def _received_at(value: Any, now: datetime) -> datetime:
    if not isinstance(value, str):
        return now
    try:
        return parse_instant(value.replace("Z", "+00:00"))
    except ValueError:
        return now


def landing_line(delivery: Delivery, *, license_code: str | None) -> tuple[bytes, str | None]:
    """The landing line for a delivery and its quarantine reason (None when it is a valid event)."""
    common: dict[str, Any] = {
        "request_id": delivery.request_id,
        "received_at": delivery.received_at,
        "event_type": delivery.event_type,
        "license_code": license_code,
        "raw_body": delivery.raw_body,
    }
    try:
        validate(parse_body(delivery.raw_body))
    except ShapeError as exc:
        return encode_quarantine(reason=exc.reason, **common), exc.reason
    return encode_event(**common), None


def _lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                yield line


def land_file(path: Path, settings: WebhookSettings, *, clock: Callable[[], datetime] = utcnow) -> dict[str, Any]:
    """Land every delivery of ``path`` durably (fsync per group of lines) in ``settings.landing_dir``."""
    if not path.is_file():
        raise FileNotFoundError(f"replay file not found: {path}")
    writer = SegmentWriter(
        settings.landing_dir, max_bytes=settings.segment_max_bytes, max_age_s=settings.segment_max_age_s, wall=clock
    )
    writer.open()
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    group: list[bytes] = []
    try:
        for raw in _lines(path):
            delivery = parse_line(raw, now=clock())
            line, reason = landing_line(delivery, license_code=settings.license_code or None)
            counts["quarantined" if reason else "events"] += 1
            if reason:
                reasons[reason] += 1
            group.append(line)
            if len(group) >= GROUP_LINES:
                writer.append(group)
                group = []
        writer.append(group)
    finally:
        writer.close()
    summary = {
        "deliveries": counts["events"] + counts["quarantined"],
        "events": counts["events"],
        "quarantined": counts["quarantined"],
        "reasons": dict(sorted(reasons.items())),
    }
    log.info("replay landed %s", summary)
    return summary
