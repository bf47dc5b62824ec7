"""The loader on a DuckDB warehouse: typed rows, exactly once across re-runs, crashes and duplicates,
incremental reads of a live segment, quarantine, chunking and retention. (PostgreSQL: tests/integration.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from etl.webhooks import loader
from etl.webhooks.config import WebhookSettings
from etl.webhooks.examples import CUSTOM_EVENT, EXAMPLES, JOURNEY_ACTIVATED, PUSH_ACCEPTED
from etl.webhooks.landing import SegmentWriter, encode_event, encode_quarantine, list_segments

T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def line(rid: str, body: dict[str, Any] | bytes, *, event_type: str | None = "et") -> bytes:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return encode_event(request_id=rid, received_at=T0, event_type=event_type, license_code="~99199077", raw_body=raw)


def qline(rid: str, raw: bytes, reason: str = "malformed_json") -> bytes:
    return encode_quarantine(
        request_id=rid, received_at=T0, event_type=None, license_code="~99199077", reason=reason, raw_body=raw
    )


def land(directory: Path, lines: list[bytes], *, close: bool = True) -> SegmentWriter:
    writer = SegmentWriter(directory)
    writer.open()
    writer.append(lines)
    if close:
        writer.close()
    return writer


@pytest.fixture
def settings(tmp_path: Path) -> WebhookSettings:
    return WebhookSettings(landing_dir=tmp_path / "landing", warehouse_url=f"duckdb:///{tmp_path / 'w.duckdb'}")


def query(settings: WebhookSettings, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(settings.warehouse_url.removeprefix("duckdb:///"), read_only=True)
    try:
        con.execute("SET TimeZone='UTC'")
        return con.execute(sql).fetchall()
    finally:
        con.close()


def run(settings: WebhookSettings, **kwargs: Any) -> dict[str, Any]:
    return loader.run(settings, clock=kwargs.pop("clock", lambda: T0), **kwargs)


def test_every_shape_becomes_a_typed_row(settings: WebhookSettings) -> None:
    land(settings.landing_dir, [line(f"r{i}", body, event_type=et) for i, (et, body) in enumerate(EXAMPLES)])
    summary = run(settings)
    assert (summary["lines"], summary["events_loaded"], summary["duplicates"], summary["quarantined"]) == (4, 4, 0, 0)
    assert summary["categories"] == {"account": 1, "application": 1, "system": 2}
    rows = query(
        settings,
        "SELECT request_id, event_name, event_time, category, user_id, anonymous_id, "
        "event_data, system_data, extra, license_code, event_type, received_at, loaded_at "
        "FROM webengage_events ORDER BY request_id",
    )
    assert [r[0] for r in rows] == ["r0", "r1", "r2", "r3"]
    for row, (event_type, body) in zip(rows, EXAMPLES, strict=True):
        assert row[1] == body["event_name"] and row[3] == body["category"] and row[10] == event_type
        parsed = datetime.strptime(body["event_time"], "%Y-%m-%dT%H:%M:%S%z")
        assert row[2] == parsed and row[2].utcoffset() == timedelta(0)
        assert (row[4], row[5]) == (body["user_id"], body.get("anonymous_id"))
        assert json.loads(row[6]) == body["event_data"]
        assert (json.loads(row[7]) if row[7] else None) == body.get("system_data")
        assert row[9] == "~99199077"  # the authenticated (query) license, never the one the body claims
        assert (row[11], row[12]) == (T0, T0)
    assert json.loads(rows[3][8]) == {"resource": "Journey", "version": 1}
    # JSON columns are queryable as JSON.
    assert query(settings, "SELECT event_data->>'status' FROM webengage_events WHERE request_id = 'r3'") == [
        ("ACTIVE",)
    ]


def test_reruns_and_redeliveries_store_each_request_id_once(settings: WebhookSettings) -> None:
    land(settings.landing_dir, [line("a", PUSH_ACCEPTED), line("b", CUSTOM_EVENT), line("a", PUSH_ACCEPTED)])
    first = run(settings)
    assert (first["events_loaded"], first["duplicates"]) == (2, 1)
    assert run(settings)["lines"] == 0, "nothing is read twice"
    # A redelivery landed in a later segment (after the receiver forgot the id), plus one new delivery.
    land(settings.landing_dir, [line("b", CUSTOM_EVENT), line("c", JOURNEY_ACTIVATED)])
    third = run(settings)
    assert (third["lines"], third["events_loaded"], third["duplicates"]) == (2, 1, 1)
    assert query(settings, "SELECT request_id, count(*) FROM webengage_events GROUP BY 1 ORDER BY 1") == [
        ("a", 1),
        ("b", 1),
        ("c", 1),
    ]


def test_a_live_segment_is_read_to_its_last_complete_line_then_finished(settings: WebhookSettings) -> None:
    writer = land(settings.landing_dir, [line("a", PUSH_ACCEPTED)], close=False)
    path = settings.landing_dir / f"{writer.segment}.open"
    half = line("b", CUSTOM_EVENT)
    with open(path, "ab") as f:
        f.write(half[:40])  # a line being written right now
    first = run(settings)
    assert (first["lines"], first["events_loaded"], first["torn_bytes"]) == (1, 1, 0)
    ((offset, closed_at),) = query(settings, "SELECT byte_offset, closed_at FROM we_webhook_segments")
    assert offset == len(line("a", PUSH_ACCEPTED)) and closed_at is None
    with open(path, "ab") as f:
        f.write(half[40:])
    writer.close()
    second = run(settings)
    assert (second["lines"], second["events_loaded"]) == (1, 1)
    assert query(settings, "SELECT closed_at IS NOT NULL FROM we_webhook_segments") == [(True,)]
    assert query(settings, "SELECT count(*) FROM webengage_events") == [(2,)]


def test_a_crash_mid_load_loses_and_doubles_nothing(settings: WebhookSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    land(settings.landing_dir, [line(f"r{i}", {**CUSTOM_EVENT, "event_data": {"i": i}}) for i in range(7)])
    real_rows: Callable[..., Any] = loader._rows
    calls = {"n": 0}

    def crash_on_third_chunk(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return real_rows(*args)

    monkeypatch.setattr(loader, "_rows", crash_on_third_chunk)
    with pytest.raises(RuntimeError):
        run(settings, chunk_rows=2)
    assert query(settings, "SELECT count(*) FROM webengage_events") == [(4,)]
    assert query(settings, "SELECT lines FROM we_webhook_segments") == [(4,)]
    monkeypatch.undo()
    summary = run(settings, chunk_rows=2)
    assert (summary["lines"], summary["events_loaded"], summary["duplicates"], summary["chunks"]) == (3, 3, 0, 2)
    assert query(settings, "SELECT list(event_data->>'i' ORDER BY request_id) FROM webengage_events") == [
        (["0", "1", "2", "3", "4", "5", "6"],)
    ]


def test_bad_deliveries_land_in_quarantine_with_their_reason(settings: WebhookSettings) -> None:
    writer = land(
        settings.landing_dir,
        [
            qline("q1", b'{"event_name": '),
            qline("q2", b"\xff\xfe", reason="malformed_json"),
            qline("q1", b'{"event_name": '),  # WebEngage's retry, landed twice
            line("e1", {**CUSTOM_EVENT, "event_time": "not a time"}),  # landed under older, looser rules
            line("e2", CUSTOM_EVENT),
        ],
        close=False,
    )
    with open(settings.landing_dir / f"{writer.segment}.open", "ab") as f:
        f.write(b"this is not a landing record\n")
    writer.close()
    summary = run(settings)
    assert (summary["events_loaded"], summary["quarantined"], summary["duplicates"]) == (1, 4, 1)
    rows = dict(
        (r[0], r[1:])
        for r in query(settings, "SELECT request_id, reason, body_encoding, body FROM webengage_webhook_quarantine")
    )
    assert rows["q1"] == ("malformed_json", "utf8", '{"event_name": ')
    assert rows["q2"] == ("malformed_json", "base64", "//4=")
    assert rows["e1"][0] == "bad_event_time" and json.loads(rows["e1"][2])["event_time"] == "not a time"
    corrupt = [k for k in rows if k.startswith("line-")]
    assert len(corrupt) == 1 and rows[corrupt[0]] == ("corrupt_landing_line", "utf8", "this is not a landing record\n")


def test_closed_loaded_segments_are_deleted_after_retention(settings: WebhookSettings) -> None:
    settings = WebhookSettings(landing_dir=settings.landing_dir, warehouse_url=settings.warehouse_url, retain_hours=1)
    land(settings.landing_dir, [line("a", PUSH_ACCEPTED)])
    live = land(settings.landing_dir, [line("b", CUSTOM_EVENT)], close=False)
    assert run(settings, clock=lambda: T0)["segments_deleted"] == 0
    later = run(settings, clock=lambda: T0 + timedelta(hours=2))
    assert later["segments_deleted"] == 1 and later["lines"] == 0
    assert [s.name for s in list_segments(settings.landing_dir)] == [live.segment], "the live one stays"
    assert query(settings, "SELECT count(*) FROM we_webhook_segments") == [(2,)]
    live.close()
    assert run(settings, clock=lambda: T0 + timedelta(hours=4))["segments_deleted"] == 0, "retained from its close"
    assert run(settings, clock=lambda: T0 + timedelta(hours=5, seconds=1))["segments_deleted"] == 1
    assert list_segments(settings.landing_dir) == []
    assert query(settings, "SELECT count(*) FROM webengage_events") == [(2,)]
