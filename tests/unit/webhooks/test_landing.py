"""The landing log: line format, segments (roll, close, crash recovery), group commit, remembered ids."""

from __future__ import annotations

import asyncio
import base64
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from etl.webhooks.examples import JOURNEY_ACTIVATED, PUSH_ACCEPTED
from etl.webhooks.landing import (
    GroupCommitter,
    LandingError,
    SeenIds,
    SegmentWriter,
    decode,
    encode_event,
    encode_quarantine,
    list_segments,
    rebuild_seen,
    recover_orphans,
)

AT = datetime(2026, 11, 24, 1, 2, 3, 456789, tzinfo=UTC)


def event_line(rid: str, body: dict[str, object] = PUSH_ACCEPTED) -> bytes:
    return encode_event(
        request_id=rid, received_at=AT, event_type="et", license_code="~99199077", raw_body=orjson.dumps(body)
    )


def test_event_line_keeps_the_raw_body_on_one_line() -> None:
    pretty = orjson.dumps(JOURNEY_ACTIVATED, option=orjson.OPT_INDENT_2).replace(b"\n", b"\r\n")
    line = encode_event(
        request_id='id "quoted"', received_at=AT, event_type=None, license_code="~99199077", raw_body=pretty
    )
    assert line.endswith(b"}\n") and line.count(b"\n") == 1 and b"\r" not in line
    rec = decode(line)
    assert rec.kind == "event" and rec.request_id == 'id "quoted"' and rec.body == JOURNEY_ACTIVATED
    assert (rec.received_at, rec.event_type, rec.license_code) == (AT, None, "~99199077")


@pytest.mark.parametrize(
    ("raw", "encoding"),
    [(b'{"event_name": "x",\n "oops"', "utf8"), (b"\xff\xfe garbage", "base64"), (b'{"a":"\x00"}', "base64")],
)
def test_quarantine_line_keeps_the_exact_bytes(raw: bytes, encoding: str) -> None:
    line = encode_quarantine(
        request_id="q1",
        received_at=AT,
        event_type="et",
        license_code="~99199077",
        reason="malformed_json",
        raw_body=raw,
    )
    assert line.count(b"\n") == 1
    rec = decode(line)
    assert (rec.kind, rec.reason, rec.encoding) == ("quarantine", "malformed_json", encoding)
    kept = base64.b64decode(rec.body) if encoding == "base64" else rec.body.encode()
    assert kept == raw


def test_segments_roll_by_size_and_age(tmp_path: Path) -> None:
    now = [0.0]
    writer = SegmentWriter(tmp_path, max_bytes=3_000, max_age_s=60, monotonic=lambda: now[0])
    writer.open()
    lines = [event_line(f"r{i}") for i in range(6)]  # ~1.1 kB each
    for line in lines[:4]:
        writer.append([line])
    now[0] = 61.0  # old enough: the next append starts a new segment even though it is small
    writer.append([lines[4]])
    writer.append([lines[5]])
    segs = list_segments(tmp_path)
    assert [s.closed for s in segs] == [True, True, False]
    writer.close()
    segs = list_segments(tmp_path)
    assert all(s.closed for s in segs)
    read = [decode(line).request_id for s in segs for line in s.path.read_bytes().splitlines(keepends=True)]
    assert read == [f"r{i}" for i in range(6)]
    assert writer.records == 6 and writer.segments == 3


def test_recovery_truncates_a_dead_writers_torn_tail_and_leaves_live_segments(tmp_path: Path) -> None:
    live = SegmentWriter(tmp_path)
    live.open()
    live.append([event_line("live-1")])
    dead = SegmentWriter(tmp_path)
    dead.open()
    dead.append([event_line("dead-1"), event_line("dead-2")])
    dead_path = tmp_path / f"{dead.segment}.open"
    torn = event_line("dead-3")[:100]
    with open(dead_path, "ab") as f:
        f.write(torn)  # the line being written when the process died
    dead._abandon()  # the process is gone: its fd closes, its flock goes with it
    old_hidden = tmp_path / ".20200101T000000000000Z-1-aaaaaa.new"
    young_hidden = tmp_path / ".20200101T000000000000Z-1-bbbbbb.new"
    old_hidden.touch()
    young_hidden.touch()
    # An hour older than a file created now: ages are on the file system's clock, not the process's.
    young_mtime = young_hidden.stat().st_mtime
    os.utime(old_hidden, (young_mtime - 3600, young_mtime - 3600))

    report = recover_orphans(tmp_path)

    assert (report.segments, report.torn_bytes) == (1, len(torn))
    closed = tmp_path / f"{dead.segment}.jsonl"
    assert not dead_path.exists() and [decode(x).request_id for x in closed.read_bytes().splitlines()] == [
        "dead-1",
        "dead-2",
    ]
    assert (tmp_path / f"{live.segment}.open").exists(), "a locked segment is a live writer's"
    assert not old_hidden.exists() and young_hidden.exists()
    live.append([event_line("live-2")])  # the live writer is unaffected
    live.close()
    assert recover_orphans(tmp_path) == type(report)(0, 0)


def test_write_failure_abandons_the_segment_and_the_next_append_starts_another(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path)
    writer.open()
    first = writer.segment
    writer.append([event_line("a")])
    os.close(writer._fd)  # type: ignore[arg-type]  # the disk goes away under the writer
    with pytest.raises(LandingError):
        writer.append([event_line("b")])
    writer.append([event_line("c")])
    assert writer.segment != first
    writer.close()
    recover_orphans(tmp_path)
    ids = [decode(x).request_id for s in list_segments(tmp_path) for x in s.path.read_bytes().splitlines()]
    assert ids == ["a", "c"]


def test_seen_ids_forget_the_oldest_first() -> None:
    seen = SeenIds(3)
    for key in ("a", "b", "c", "a", "d"):
        seen.add(key)
    assert len(seen) == 3 and "a" not in seen and {"b", "c", "d"} <= {k for k in "abcd" if k in seen}


def test_rebuild_keeps_the_newest_ids_and_separates_quarantine(tmp_path: Path) -> None:
    for batch in (["r1", "r2"], ["r3", "r4"]):
        writer = SegmentWriter(tmp_path)
        writer.open()
        q = encode_quarantine(
            request_id=batch[0],
            received_at=AT,
            event_type=None,
            license_code=None,
            reason="malformed_json",
            raw_body=b"{",
        )
        writer.append([event_line(rid) for rid in batch] + [q])
        writer.close()
        time.sleep(0.001)  # distinct segment names (microsecond timestamps)
    seen = rebuild_seen(tmp_path, capacity=100)
    assert {k for k in ("r1", "r2", "r3", "r4", "q:r1", "q:r3") if k in seen} == {
        "r1",
        "r2",
        "r3",
        "r4",
        "q:r1",
        "q:r3",
    }
    assert "q:r2" not in seen
    small = rebuild_seen(tmp_path, capacity=3)
    assert len(small) == 3 and "r4" in small and "r1" not in small


class GatedWriter:
    """A stand-in SegmentWriter whose first append waits for a gate, recording every group written."""

    def __init__(self) -> None:
        self.groups: list[int] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail_next = False
        self.closed = False

    def append(self, lines: list[bytes]) -> None:
        self.entered.set()
        self.gate.wait(5)
        if self.fail_next:
            self.fail_next = False
            raise LandingError("disk full")
        self.groups.append(len(lines))

    def close(self) -> None:
        self.closed = True


def test_group_commit_writes_everything_queued_during_one_fsync_at_once() -> None:
    async def scenario() -> GatedWriter:
        writer = GatedWriter()
        committer = GroupCommitter(writer)  # type: ignore[arg-type]
        committer.start()
        first = asyncio.create_task(committer.commit(b"0\n"))
        await asyncio.to_thread(writer.entered.wait, 5)  # the first group is "fsyncing"
        rest = [asyncio.create_task(committer.commit(f"{i}\n".encode())) for i in range(1, 100)]
        await asyncio.sleep(0)
        assert not any(t.done() for t in [first, *rest]), "nobody is answered before the fsync"
        writer.gate.set()
        await asyncio.gather(first, *rest)
        await committer.stop()
        return writer

    writer = asyncio.run(scenario())
    assert writer.groups == [1, 99] and writer.closed


def test_group_commit_failure_fails_that_group_only_and_stop_drains() -> None:
    async def scenario() -> tuple[list[object], GatedWriter]:
        writer = GatedWriter()
        writer.fail_next = True
        writer.gate.set()
        committer = GroupCommitter(writer)  # type: ignore[arg-type]
        committer.start()
        failed = await asyncio.gather(*(committer.commit(b"x\n") for _ in range(3)), return_exceptions=True)
        ok = [asyncio.create_task(committer.commit(b"y\n")) for _ in range(5)]
        await asyncio.sleep(0)  # they are queued (in flight) when the shutdown starts
        await committer.stop()  # drains the five queued lines before closing
        results = [*failed, *(t.result() for t in ok)]
        with pytest.raises(LandingError):
            await committer.commit(b"late\n")
        return results, writer

    results, writer = asyncio.run(scenario())
    assert [type(r).__name__ for r in results[:3]] == ["LandingError"] * 3
    assert results[3:] == [None] * 5 and sum(writer.groups) == 5 and writer.closed
