"""Moves landed webhook deliveries into the warehouse: ``webengage_events`` and
``webengage_webhook_quarantine`` (DDL ``sql/webhooks/webhooks.sql``), exactly once, incrementally.

* **Exactly once**: every chunk (≤ ``load_chunk_rows`` lines, ≤ 32 MB) is inserted and its segment's
  checkpoint ``(segment, byte_offset)`` in ``we_webhook_segments`` advanced in *one* transaction. A crash
  before the commit leaves both untouched; after it, the next run starts at the new offset.
* **Idempotent on request id**: ``INSERT ... ON CONFLICT (request_id) DO NOTHING``, so a delivery landed
  twice (a redelivery after the receiver forgot the id, a replay, a line written but not acknowledged
  before a crash) is stored once; the second copy is counted as a duplicate.
* **Incremental**: only bytes past each segment's checkpoint are read, only whole lines (a live writer's
  segment is read up to its last complete line and resumed next run). A closed segment read to its end
  is marked ``closed_at`` and deleted ``retain_hours`` later.
* One loader at a time: DuckDB's file lock (the run holds one connection), PostgreSQL an advisory lock.

Works on DuckDB and PostgreSQL: rows go in as one ``INSERT ... SELECT unnest(:array) ...`` per chunk.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

from sqlalchemy.engine import Connection, Engine

from etl.instants import naive_utc
from etl.warehouse import webhook_tables as tables
from etl.warehouse.engine import make_engine
from etl.webhooks.config import WebhookSettings
from etl.webhooks.landing import LandedRecord, decode, list_segments, recover_orphans, segment_paths, utcnow
from etl.webhooks.shapes import KNOWN_CATEGORIES, ShapeError, dumps, validate

log = logging.getLogger(__name__)

CHUNK_BYTES: Final = 32 * 2**20
_SUMMARY_COUNTS: Final = (
    "lines",
    "events_loaded",
    "duplicates",
    "quarantined",
    "chunks",
    "torn_bytes",
    "orphans_closed",
    "segments_deleted",
)


@dataclass(frozen=True, slots=True)
class _Checkpoint:
    offset: int
    lines: int
    loaded: int
    duplicates: int
    quarantined: int
    closed: bool


@dataclass(slots=True)
class _Chunk:
    """Rows of one chunk, de-duplicated by request id (first landed wins)."""

    events: dict[str, tuple[str | None, ...]]
    quarantine: dict[str, tuple[str | None, ...]]
    duplicates_in_chunk: int = 0


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(sep=" ")


def _json_or_none(value: Any) -> str | None:
    return None if value is None else dumps(value)


def _quarantine_row(rec: LandedRecord, reason: str, body: str, encoding: str) -> tuple[str | None, ...]:
    return (reason, body, encoding, rec.license_code, rec.event_type, _instant(rec.received_at))


def _rows(lines: list[bytes], now: datetime, categories: Counter[str]) -> _Chunk:
    chunk = _Chunk({}, {})
    for line in lines:
        try:
            rec = decode(line)
        except (ValueError, KeyError, TypeError):
            # Never expected (lines are written whole); kept rather than dropped, under a content id.
            rid = "line-" + hashlib.blake2b(line, digest_size=16).hexdigest()
            text = line.decode("utf-8", "replace").replace("\x00", "\ufffd")
            chunk.quarantine.setdefault(rid, ("corrupt_landing_line", text, "utf8", None, None, _instant(now)))
            continue
        if rec.kind == "quarantine":
            if rec.request_id in chunk.quarantine:
                chunk.duplicates_in_chunk += 1
            chunk.quarantine.setdefault(
                rec.request_id, _quarantine_row(rec, rec.reason or "unknown", str(rec.body), rec.encoding or "utf8")
            )
            continue
        try:
            if not isinstance(rec.body, dict):
                raise ShapeError("not_an_object")
            event = validate(rec.body)
        except ShapeError as exc:  # landed before a stricter rule, or replayed: keep it, with the reason
            chunk.quarantine.setdefault(rec.request_id, _quarantine_row(rec, exc.reason, dumps(rec.body), "utf8"))
            continue
        if rec.request_id in chunk.events:
            chunk.duplicates_in_chunk += 1
            continue
        categories[event.category if event.category in KNOWN_CATEGORIES else "other"] += 1
        chunk.events[rec.request_id] = (
            event.event_name,
            _instant(event.event_time),
            event.category,
            event.user_id,
            event.anonymous_id,
            _json_or_none(event.event_data),
            _json_or_none(event.system_data),
            _json_or_none(event.extra),
            # The license the receiver authenticated (query licenseCode + secret), never one the body claims;
            # the body's only for deliveries landed without one (replayed files).
            rec.license_code or event.license_code,
            rec.event_type,
            _instant(rec.received_at),
        )
    return chunk


def _columns(rows: dict[str, tuple[str | None, ...]], names: tuple[str, ...]) -> dict[str, list[str | None]]:
    columns: list[list[str | None]] = [[*rows]]
    columns += [[] for _ in names[1:]]
    for values in rows.values():
        for i, value in enumerate(values, start=1):
            columns[i].append(value)
    return dict(zip(names, columns, strict=True))


def _read_chunk(f: IO[bytes], max_lines: int) -> tuple[list[bytes], int, bool]:
    """Up to ``max_lines`` complete lines; returns (lines, bytes consumed, reached the end)."""
    lines: list[bytes] = []
    consumed = 0
    while len(lines) < max_lines and consumed < CHUNK_BYTES:
        line = f.readline()
        if not line.endswith(b"\n"):  # end of file, or a line still being written
            return lines, consumed, True
        lines.append(line)
        consumed += len(line)
    return lines, consumed, False


@contextmanager
def _open_segment(directory: Path, name: str) -> Iterator[tuple[IO[bytes], bool] | None]:
    """The segment's file and whether it is closed; None if it is gone. The closed name is tried first: a
    file opened under its open name may be closed meanwhile, and is then finished by the next run."""
    closed_path, open_path = segment_paths(directory, name)
    for path, closed in ((closed_path, True), (open_path, False), (closed_path, True)):
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            continue
        try:
            yield f, closed
        finally:
            f.close()
        return
    yield None


class _Loader:
    def __init__(
        self, settings: WebhookSettings, conn: Connection, clock: Callable[[], datetime], chunk_rows: int
    ) -> None:
        self.settings = settings
        self.conn = conn
        self.clock = clock
        self.chunk_rows = chunk_rows
        self.counts: Counter[str] = Counter()
        self.categories: Counter[str] = Counter()

    def checkpoints(self, names: list[str]) -> dict[str, _Checkpoint]:
        if not names:
            return {}
        rows = tables.checkpoints(self.conn, names)
        return {
            r[0]: _Checkpoint(int(r[1]), int(r[2]), int(r[3]), int(r[4]), int(r[5]), r[6] is not None) for r in rows
        }

    def load_segment(self, name: str, cp: _Checkpoint) -> None:
        with _open_segment(self.settings.landing_dir, name) as opened:
            if opened is None:
                return
            f, closed = opened
            size = f.seek(0, 2)
            if cp.offset > size:
                # Only after an OS crash lost bytes that had been read but never acknowledged.
                log.warning("segment %s is shorter than its checkpoint; treating it as read", name)
            f.seek(min(cp.offset, size))
            offset = cp.offset
            while True:
                lines, consumed, at_end = _read_chunk(f, self.chunk_rows)
                finished = closed and at_end
                if finished:
                    torn = size - (offset + consumed)
                    if torn > 0:
                        self.counts["torn_bytes"] += torn
                        log.warning("segment %s ends with %d bytes of a partial line; skipped", name, torn)
                if not lines and not finished:
                    return
                cp = self._commit(name, cp, lines, offset + consumed, finished)
                offset = cp.offset
                if at_end:
                    return

    def _commit(self, name: str, cp: _Checkpoint, lines: list[bytes], offset: int, finished: bool) -> _Checkpoint:
        now = self.clock()
        chunk = _rows(lines, now, self.categories)
        with self.conn.begin():
            inserted = quarantined = 0
            if chunk.events:
                cols = _columns(chunk.events, tables.EVENT_COLUMNS)
                inserted = tables.insert_events(self.conn, cols, now=_instant(now))
            if chunk.quarantine:
                cols = _columns(chunk.quarantine, tables.QUARANTINE_COLUMNS)
                quarantined = tables.insert_quarantine(self.conn, cols, now=_instant(now))
            duplicates = len(chunk.events) - inserted + chunk.duplicates_in_chunk
            new = _Checkpoint(
                offset,
                cp.lines + len(lines),
                cp.loaded + inserted,
                cp.duplicates + duplicates,
                cp.quarantined + quarantined,
                finished,
            )
            naive_now = naive_utc(now)
            values = {
                "segment": name,
                "byte_offset": new.offset,
                "lines": new.lines,
                "loaded": new.loaded,
                "duplicates": new.duplicates,
                "quarantined": new.quarantined,
                "closed_at": naive_now if finished else None,
                "updated_at": naive_now,
            }
            tables.save_checkpoint(self.conn, values)
        self.counts["lines"] += len(lines)
        self.counts["events_loaded"] += inserted
        self.counts["duplicates"] += duplicates
        self.counts["quarantined"] += quarantined
        self.counts["chunks"] += 1
        return new

    def delete_expired(self, now: datetime) -> None:
        """Delete closed, fully loaded segment files older than the retention period."""
        cutoff = naive_utc(now - timedelta(hours=self.settings.retain_hours))
        names = [seg.name for seg in list_segments(self.settings.landing_dir) if seg.closed]
        if not names:
            return
        expired = tables.closed_before(self.conn, names, cutoff)
        for name in expired:
            segment_paths(self.settings.landing_dir, name)[0].unlink(missing_ok=True)
            self.counts["segments_deleted"] += 1


def run(
    settings: WebhookSettings,
    *,
    engine: Engine | None = None,
    clock: Callable[[], datetime] = utcnow,
    chunk_rows: int | None = None,
) -> dict[str, Any]:
    """Load everything landed so far; returns a summary (counts only, no ids or data)."""
    started = time.monotonic()
    own_engine = engine is None
    engine = engine or make_engine(settings.warehouse_url)
    try:
        tables.ensure_tables(engine)
        recovered = recover_orphans(settings.landing_dir)
        segments = list_segments(settings.landing_dir)
        with tables.exclusive(engine) as conn:
            loader = _Loader(settings, conn, clock, chunk_rows or settings.load_chunk_rows)
            loader.counts["orphans_closed"] = recovered.segments
            loader.counts["torn_bytes"] += recovered.torn_bytes
            checkpoints = loader.checkpoints([seg.name for seg in segments])
            for seg in segments:
                cp = checkpoints.get(seg.name, _Checkpoint(0, 0, 0, 0, 0, False))
                if not cp.closed:
                    loader.load_segment(seg.name, cp)
            loader.delete_expired(clock())
    finally:
        if own_engine:
            engine.dispose()
    elapsed = time.monotonic() - started
    counts = loader.counts
    summary: dict[str, Any] = {
        "pipeline": "webhooks",
        "segments": len(segments),
        **{k: counts[k] for k in _SUMMARY_COUNTS},
        "categories": dict(sorted(loader.categories.items())),
        "seconds": round(elapsed, 3),
        "lines_per_s": round(counts["lines"] / elapsed, 1) if elapsed > 0 else 0.0,
    }
    log.info("webhook load: %s", summary)
    return summary


def render(summary: dict[str, Any]) -> str:
    """A short human summary of :func:`run`'s result."""
    return (
        f"webhooks: {summary['lines']:,} landed lines read from {summary['segments']} segment(s): "
        f"{summary['events_loaded']:,} events loaded, {summary['duplicates']:,} duplicates skipped, "
        f"{summary['quarantined']:,} quarantined; {summary['segments_deleted']} old segment(s) deleted "
        f"({summary['seconds']:.1f}s)"
    )
