"""Durable, append-only landing of webhook deliveries: JSON-lines segment files, group-committed.

Why files and not a table: the receiver must answer WebEngage within its timeout at ~1,000 deliveries/s
on 2 cores, and DuckDB allows one writing process per file (the loader and the syncs write it too), where
a commit per request costs 5-20 ms. An append + one ``fdatasync`` per *group* of requests costs ~2 ms
whatever the group size, never blocks on the warehouse, and keeps receiving while the warehouse is down.

Layout of the landing directory::

    20261124T010203123456Z-4242-9f3a1c.open    being written (flock held by its writer)
    20261124T005203123456Z-4242-77aa02.jsonl   closed: never written again

One line per delivery, the request id first (so a restart can rebuild its de-duplication set without
parsing bodies) and the raw body last, spliced in byte for byte (JSON has no raw newlines inside
strings, so replacing CR/LF by spaces only touches whitespace)::

    {"rid":"…","kind":"e","at":"2026-11-24T01:02:03.123456Z","et":"…","lic":"…","body":{…}}
    {"rid":"…","kind":"q","at":"…","et":"…","lic":"…","reason":"malformed_json","enc":"utf8","body":"…"}

Crash safety: a segment is created under a hidden name, locked (``flock``) and only then renamed to
``.open``, so nobody mistakes a live segment for an orphan. A writer that dies (``kill -9``) leaves its
``.open`` segment unlocked; the next writer or loader to start truncates its torn last line (it was
never acknowledged) and renames it ``.jsonl``. Lines are appended only whole and acknowledged only
after ``fdatasync``; a complete line that was written but not acknowledged (crash or fsync error between
write and answer) is redelivered by WebEngage and absorbed by the loader's unique request id.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import logging
import os
import re
import secrets
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from etl.errors import WebEngageSyncError
from etl.webhooks.shapes import loads

log = logging.getLogger(__name__)

Kind = Literal["event", "quarantine"]
OPEN_SUFFIX: Final = ".open"
CLOSED_SUFFIX: Final = ".jsonl"
_NEW_PREFIX: Final = "."
_NEW_SUFFIX: Final = ".new"
_KIND_CODE: Final[dict[Kind, str]] = {"event": "e", "quarantine": "q"}
_CODE_KIND: Final[dict[str, Kind]] = {"e": "event", "q": "quarantine"}
_PREFIX_RE: Final = re.compile(rb'^\{"rid":("(?:[^"\\]|\\.)*"),"kind":"([eq])"')
_TAIL_BLOCK: Final = 64 * 1024
_NEW_GRACE_S: Final = 60.0


class LandingError(WebEngageSyncError):
    """The landing log could not be written durably (disk full, I/O error, writer stopped)."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_instant(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%f}Z"


# -- records ---------------------------------------------------------------------------------------
def _envelope(
    *, request_id: str, kind: Kind, received_at: datetime, event_type: str | None, license_code: str | None
) -> bytes:
    head = {
        "rid": request_id,
        "kind": _KIND_CODE[kind],
        "at": format_instant(received_at),
        "et": event_type,
        "lic": license_code,
    }
    return orjson.dumps(head)[:-1]  # without the closing brace: the body follows


def encode_event(
    *, request_id: str, received_at: datetime, event_type: str | None, license_code: str | None, raw_body: bytes
) -> bytes:
    """A landing line for a validated delivery; ``raw_body`` must be valid JSON (it is spliced in)."""
    head = _envelope(
        request_id=request_id, kind="event", received_at=received_at, event_type=event_type, license_code=license_code
    )
    flat = raw_body.strip().replace(b"\n", b" ").replace(b"\r", b" ")
    return b"".join((head, b',"body":', flat, b"}\n"))


def encode_quarantine(
    *,
    request_id: str,
    received_at: datetime,
    event_type: str | None,
    license_code: str | None,
    reason: str,
    raw_body: bytes,
) -> bytes:
    """A landing line keeping an unparseable delivery's raw body: as text when it is UTF-8 without NUL
    (PostgreSQL text cannot hold NUL), else base64."""
    head = _envelope(
        request_id=request_id,
        kind="quarantine",
        received_at=received_at,
        event_type=event_type,
        license_code=license_code,
    )
    try:
        text, encoding = raw_body.decode("utf-8"), "utf8"
        if "\x00" in text:
            raise ValueError("NUL")
    except ValueError:
        text, encoding = base64.b64encode(raw_body).decode("ascii"), "base64"
    tail = orjson.dumps({"reason": reason, "enc": encoding, "body": text})
    return b"".join((head, b",", tail[1:], b"\n"))


@dataclass(frozen=True, slots=True, kw_only=True)
class LandedRecord:
    """One decoded landing line. ``body`` is the parsed JSON object for events, the raw text (or base64)
    for quarantined deliveries."""

    request_id: str
    kind: Kind
    received_at: datetime
    event_type: str | None
    license_code: str | None
    body: Any
    reason: str | None = None
    encoding: str | None = None


def decode(line: bytes) -> LandedRecord:
    """Parse one landing line; raises ValueError when it is not one."""
    value = loads(line)
    if not isinstance(value, dict) or value.get("kind") not in _CODE_KIND or not isinstance(value.get("rid"), str):
        raise ValueError("not a landing record")
    received = datetime.fromisoformat(str(value["at"]).replace("Z", "+00:00"))
    return LandedRecord(
        request_id=value["rid"],
        kind=_CODE_KIND[value["kind"]],
        received_at=received,
        event_type=value.get("et"),
        license_code=value.get("lic"),
        body=value.get("body"),
        reason=value.get("reason"),
        encoding=value.get("enc"),
    )


def seen_key(kind: Kind, request_id: str) -> str:
    """De-duplication key: a quarantined id does not shadow a later valid delivery with the same id."""
    return request_id if kind == "event" else "q:" + request_id


# -- segments --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SegmentFile:
    name: str
    path: Path
    closed: bool


def list_segments(directory: Path) -> list[SegmentFile]:
    """Segments in name (= creation time) order; a closed name wins over an open one (mid-rename)."""
    found: dict[str, SegmentFile] = {}
    if not directory.is_dir():
        return []
    for entry in os.scandir(directory):
        name = entry.name
        if name.startswith(_NEW_PREFIX):
            continue
        if name.endswith(CLOSED_SUFFIX):
            stem = name[: -len(CLOSED_SUFFIX)]
            found[stem] = SegmentFile(stem, Path(entry.path), True)
        elif name.endswith(OPEN_SUFFIX):
            stem = name[: -len(OPEN_SUFFIX)]
            found.setdefault(stem, SegmentFile(stem, Path(entry.path), False))
    return [found[k] for k in sorted(found)]


def segment_paths(directory: Path, name: str) -> tuple[Path, Path]:
    """``(closed path, open path)`` of a segment."""
    return directory / f"{name}{CLOSED_SUFFIX}", directory / f"{name}{OPEN_SUFFIX}"


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _complete_length(fd: int, size: int) -> int:
    """Length of the file up to and including its last newline."""
    end = size
    while end > 0:
        start = max(0, end - _TAIL_BLOCK)
        block = os.pread(fd, end - start, start)
        cut = block.rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        end = start
    return 0


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    segments: int
    torn_bytes: int


def _fs_now(directory: Path) -> float:
    """ "Now" as the file system stamps it: the mtime of a file created this instant. Ages of files are
    measured against it rather than the process clock, which may differ (a network mount's server clock,
    or a shifted clock in tests)."""
    with tempfile.TemporaryFile(dir=directory) as probe:
        return os.fstat(probe.fileno()).st_mtime


def recover_orphans(directory: Path) -> RecoveryReport:
    """Close the ``.open`` segments no live writer holds: drop the torn tail of the line being written when
    the writer died (never acknowledged), fsync, rename to ``.jsonl``. Safe to run from several processes."""
    recovered = torn = 0
    if not directory.is_dir():
        return RecoveryReport(0, 0)
    fs_now: float | None = None  # the file system's clock, read only when a .new file needs an age
    for entry in list(os.scandir(directory)):
        path = Path(entry.path)
        is_new = entry.name.startswith(_NEW_PREFIX) and entry.name.endswith(_NEW_SUFFIX)
        if not (entry.name.endswith(OPEN_SUFFIX) or is_new):
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer's segment
            try:
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    continue  # renamed or replaced since we listed it
            except FileNotFoundError:
                continue
            if is_new:
                # Created but never published, so nothing was written to it. Only old ones: a young one
                # may belong to a writer between its create and its flock.
                if fs_now is None:
                    fs_now = _fs_now(directory)
                if fs_now - os.fstat(fd).st_mtime > _NEW_GRACE_S:
                    path.unlink(missing_ok=True)
                continue
            size = os.fstat(fd).st_size
            keep = _complete_length(fd, size)
            if keep < size:
                os.ftruncate(fd, keep)
                torn += size - keep
            os.fsync(fd)
            with contextlib.suppress(FileNotFoundError):
                os.rename(path, path.with_suffix(CLOSED_SUFFIX))
                recovered += 1
        finally:
            os.close(fd)
    if recovered:
        _fsync_dir(directory)
        log.warning("closed %d segment(s) left open by a stopped writer (%d torn bytes dropped)", recovered, torn)
    return RecoveryReport(recovered, torn)


class SegmentWriter:
    """Appends whole lines to the current segment and makes them durable; rolls by size and age.

    Not thread-safe: one caller at a time (the group committer's writer task, or replay)."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 64 * 2**20,
        max_age_s: float = 600.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = utcnow,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._monotonic = monotonic
        self._wall = wall
        self._fd: int | None = None
        self._name = ""
        self._size = 0
        self._opened_at = 0.0
        self.records = 0
        self.bytes = 0
        self.segments = 0

    @property
    def segment(self) -> str:
        return self._name

    def open(self) -> RecoveryReport:
        """Create the directory, close orphans of dead writers, start a fresh segment."""
        self.directory.mkdir(parents=True, exist_ok=True)
        report = recover_orphans(self.directory)
        self._start_segment()
        return report

    def _start_segment(self) -> None:
        now = self._wall()
        name = f"{now:%Y%m%dT%H%M%S%f}Z-{os.getpid()}-{secrets.token_hex(3)}"
        hidden = self.directory / f"{_NEW_PREFIX}{name}{_NEW_SUFFIX}"
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(hidden, self.directory / f"{name}{OPEN_SUFFIX}")
            _fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._name, self._size = fd, name, 0
        self._opened_at = self._monotonic()
        self.segments += 1

    def append(self, lines: Sequence[bytes]) -> None:
        """Write ``lines`` (each ending in a newline) and ``fdatasync``; raises :class:`LandingError`.
        After a failure the segment is abandoned (its state is unknown) and the next call starts a new one."""
        if not lines:
            return
        data = b"".join(lines)
        try:
            if self._fd is None:
                self._start_segment()
            elif self._size and (
                self._size + len(data) > self.max_bytes or self._monotonic() - self._opened_at >= self.max_age_s
            ):
                self._close_segment()
                self._start_segment()
            fd = self._fd
            assert fd is not None
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fdatasync(fd)
        except OSError as exc:
            self._abandon()
            raise LandingError(f"landing write failed: {exc.__class__.__name__} errno={exc.errno}") from None
        self._size += len(data)
        self.records += len(lines)
        self.bytes += len(data)

    def _close_segment(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.fsync(fd)
            opened = self.directory / f"{self._name}{OPEN_SUFFIX}"
            os.rename(opened, opened.with_suffix(CLOSED_SUFFIX))
            _fsync_dir(self.directory)
        finally:
            os.close(fd)  # releases the flock

    def _abandon(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # Left .open and unlocked: recovery truncates any torn tail and closes it.
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        """Make everything durable and mark the segment closed; safe to call twice."""
        self._close_segment()


# -- group commit ----------------------------------------------------------------------------------
class GroupCommitter:
    """One writer task for the whole server: requests hand in a line and wait; the task writes everything
    queued since its last write, ``fdatasync``s once, then wakes them all. While one fsync runs, the next
    group gathers, so throughput grows with load while each request waits about two fsyncs."""

    def __init__(self, writer: SegmentWriter, *, max_pending: int = 50_000) -> None:
        self.writer = writer
        self.max_pending = max_pending
        self._queue: list[tuple[bytes, asyncio.Future[None]]] = []
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.groups = 0

    @property
    def pending(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-landing-writer")

    async def commit(self, line: bytes) -> None:
        """Return once ``line`` is durable; raises :class:`LandingError` if it is not (answer 503)."""
        if self._stopping or self._wake is None:
            raise LandingError("landing writer is stopped")
        if len(self._queue) >= self.max_pending:
            raise LandingError("landing queue full")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((line, future))
        self._wake.set()
        await future

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            if not self._queue:
                if self._stopping:
                    return
                await self._wake.wait()
                self._wake.clear()
                continue
            batch, self._queue = self._queue, []
            try:
                # In a thread: the event loop keeps accepting requests during write + fsync.
                await asyncio.to_thread(self.writer.append, [line for line, _ in batch])
            except LandingError as exc:
                log.error("landing write of %d deliveries failed: %s", len(batch), exc)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                self.groups += 1
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def stop(self) -> None:
        """Refuse new lines, write what is queued, close the segment."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        await asyncio.to_thread(self.writer.close)


# -- de-duplication --------------------------------------------------------------------------------
class SeenIds:
    """Request ids already landed, bounded in size: the oldest are forgotten first. Forgetting only costs
    a second landed copy, which the loader drops (the table's request id is unique)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._set: set[str] = set()
        self._order: deque[str] = deque()

    def __contains__(self, key: object) -> bool:
        return key in self._set

    def __len__(self) -> int:
        return len(self._set)

    def add(self, key: str) -> None:
        if key in self._set:
            return
        self._set.add(key)
        self._order.append(key)
        while len(self._order) > self.capacity:
            self._set.discard(self._order.popleft())


def iter_keys(path: Path) -> Iterator[str]:
    """The de-duplication keys of a segment's complete lines, without parsing bodies."""
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            match = _PREFIX_RE.match(line)
            if match is None:
                continue
            rid = orjson.loads(match.group(1))
            yield seen_key(_CODE_KIND[match.group(2).decode()], rid)


def rebuild_seen(directory: Path, capacity: int) -> SeenIds:
    """The ids in the newest segments on disk (up to ``capacity``): a redelivery after a restart is still
    recognised. Segments the loader deleted after retention are not read; the table's key covers those."""
    per_segment: list[list[str]] = []
    total = 0
    for seg in reversed(list_segments(directory)):
        if total >= capacity:
            break
        try:
            keys = list(iter_keys(seg.path))
        except FileNotFoundError:  # renamed by a concurrent close: read it under its new name
            try:
                keys = list(iter_keys(segment_paths(directory, seg.name)[0]))
            except FileNotFoundError:
                continue
        per_segment.append(keys)
        total += len(keys)
    seen = SeenIds(capacity)
    for keys in reversed(per_segment):
        for key in keys:
            seen.add(key)
    return seen
