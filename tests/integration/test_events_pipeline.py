"""The event sync end to end: demo warehouse (DuckDB) or a Segment-shaped schema (DuckDB, PostgreSQL)
-> the real sandbox server on loopback; exactly-once across re-runs, overlapping windows and crashes."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from etl.config import Settings
from etl.mappings.events import EventMapping, event_mapping_from_dict
from etl.pipelines import events
from etl.state import ledger
from etl.state.store import StateStore
from etl.warehouse.engine import make_engine
from tests.helpers.events import canonical
from tests.helpers.runs import failed_delivery
from tests.helpers.sandbox import sandbox_fixture, sandbox_settings
from tests.helpers.warehouse import AS_OF, duck, warehouse_fixture
from webengage_dev.demo.mutate import add_events
from webengage_dev.sandbox import SandboxConfig, SandboxServer

KEY = "events-test-key-not-logged"
DAY = (AS_OF - timedelta(days=1), AS_OF)
WHOLE = (AS_OF - timedelta(days=31), AS_OF)


warehouse = warehouse_fixture(600)


sandbox = sandbox_fixture(KEY, bulk_events_rpm=60_000)


def settings_for(url: str, warehouse_url: str, **extra: Any) -> Settings:
    rates = {"bulk_events_rpm": 60_000, "events_rpm": 60_000, "expected_latency_s": 0.05}
    return sandbox_settings(url, warehouse_url, KEY, **(rates | extra))


def scalar(url: str, sql: str, **params: Any) -> Any:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar_one()
    finally:
        engine.dispose()


def valid_events(url: str, start: datetime, end: datetime) -> int:
    """Independent count of what must reach WebEngage: distinct ids with a name, a time, an id <= 100."""
    return int(
        scalar(
            url,
            "SELECT count(DISTINCT event_id) FROM main.events WHERE event_time >= :s AND event_time < :e "
            "AND nullif(trim(event_name), '') IS NOT NULL AND coalesce(user_id, anonymous_id) IS NOT NULL "
            "AND length(coalesce(user_id, '')) <= 100 AND length(coalesce(anonymous_id, '')) <= 100",
            s=start.replace(tzinfo=None),
            e=end.replace(tzinfo=None),
        )
    )


def sandbox_events(sandbox: SandboxServer) -> list[dict[str, Any]]:
    return [e["event"] for e in sandbox.store.events()]


def ledger_state(url: str) -> tuple[dict[str, int], int]:
    with StateStore(make_engine(url)) as store:
        return ledger.ledger_counts(store), len(ledger.pending(store))


def test_window_lands_once_with_mapped_names_and_no_violation(sandbox: SandboxServer, warehouse: Path) -> None:
    settings = settings_for(sandbox.url, duck(warehouse))
    first = events.run(settings, window=WHOLE, run_id="r1", clock=lambda: AS_OF)
    expected = valid_events(duck(warehouse), WHOLE[0] - timedelta(hours=2), WHOLE[1])
    stats = sandbox.stats()
    assert first["status"] == "success" and first["accepted"] == expected == stats["events"]
    assert stats["violations"] == 0, stats["violations_by_rule"]
    assert stats["duplicate_events"] == 0
    assert first["extracted"] == first["already_sent"] + first["accepted"] + first["rejected"]
    # main.events has no arrival time: rows without an event time fall outside every window.
    assert set(first["rejected_by_reason"]) == {"missing_event_name", "missing_id", "user_id_too_long"}
    assert first["requests"] == math.ceil(expected / 25)
    names = Counter(e["eventName"] for e in sandbox_events(sandbox))
    assert {"Page Viewed", "Searched", "Added to Cart", "Removed from Cart", "Order Completed"} <= set(names)
    assert not {"page", "Products Searched", "Product Added", "Product Removed"} & set(names)
    order = next(e for e in sandbox_events(sandbox) if e["eventName"] == "Order Completed")
    assert {"orderId", "amount", "currency", "products"} <= set(order["eventData"])
    assert "revenue" not in order["eventData"] and "order_id" not in order["eventData"]
    assert isinstance(order["eventData"]["products"], list) and "product_id" in order["eventData"]["products"][0]
    assert ledger_state(duck(warehouse)) == ({"accepted": expected, "rejected": first["rejected"]}, 0)

    again = events.run(settings, window=WHOLE, run_id="r2", clock=lambda: AS_OF)
    assert again["requests"] == 0 and again["accepted"] == 0 and again["sent"] == 0
    assert again["already_sent"] == expected and again["rejected"] == first["rejected"]
    assert sandbox.stats()["events"] == expected


def test_overlapping_window_sends_only_new_events(sandbox: SandboxServer, warehouse: Path) -> None:
    settings = settings_for(sandbox.url, duck(warehouse))
    url = duck(warehouse)
    t1, t2 = AS_OF - timedelta(hours=12), AS_OF
    first = events.run(settings, window=(t1 - timedelta(hours=10), t1), run_id="w1", clock=lambda: AS_OF)
    overlap = valid_events(url, t1 - timedelta(hours=2), t1)  # read by both runs (2 h lookback)
    later = valid_events(url, t1, t2)
    added = add_events(warehouse, count=120, start=t1 - timedelta(minutes=30), end=t1 + timedelta(hours=1), seed=7)
    assert added == 120 and first["accepted"] >= overlap > 0

    second = events.run(settings, window=(t1, t2), run_id="w2", clock=lambda: AS_OF)
    assert second["already_sent"] == overlap
    assert second["accepted"] == later + added == valid_events(url, t1 - timedelta(hours=2), t2) - overlap
    stats = sandbox.stats()
    assert stats["events"] == first["accepted"] + second["accepted"]
    assert stats["requests"]["bulk-events"] == first["requests"] + math.ceil(second["accepted"] / 25)
    assert stats["duplicate_events"] == 0 and stats["violations"] == 0


def test_dry_run_sends_nothing_and_writes_no_state(sandbox: SandboxServer, warehouse: Path) -> None:
    summary = events.run(
        settings_for(sandbox.url, duck(warehouse)), window=DAY, run_id="dry", dry_run=True, clock=lambda: AS_OF
    )
    expected = valid_events(duck(warehouse), DAY[0] - timedelta(hours=2), DAY[1])
    assert summary["sent"] == expected > 0 and summary["accepted"] == 0
    assert summary["batches"] == math.ceil(expected / 25)
    assert sandbox.stats()["requests"] == {}
    assert ledger_state(duck(warehouse)) == ({}, 0)
    with StateStore(make_engine(duck(warehouse))) as store:
        assert store.registry("event:Page Viewed") == {}


def with_endpoint(endpoint: str) -> EventMapping:
    return event_mapping_from_dict({"options": {"endpoint": endpoint}})


@pytest.mark.parametrize("endpoint", ["bulk-events", "events"])
def test_crash_after_acceptance_replays_the_same_requests(
    warehouse: Path, endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Accepted by WebEngage, then the process dies before the ledger write: the next run re-sends the
    journaled requests with the same x-request-id and bytes, and WebEngage's de-duplication absorbs them.
    With /events the de-duplication is documented, so the bulk one is switched off in the sandbox."""
    config = SandboxConfig(
        license_code="~99199077",
        api_key=KEY,
        bulk_events_rpm=60_000,
        events_rpm=60_000,
        dedupe_bulk_request_ids=endpoint == "bulk-events",
    )
    mapping = with_endpoint(endpoint)
    with SandboxServer(config) as sandbox:
        settings = settings_for(sandbox.url, duck(warehouse))

        def crash(*_a: Any, **_k: Any) -> None:
            raise RuntimeError("killed before the checkpoint")

        monkeypatch.setattr(ledger, "record_accepted", crash)
        with pytest.raises(RuntimeError, match="killed before the checkpoint"):
            events.run(settings, window=DAY, run_id="c1", mapping=mapping, clock=lambda: AS_OF)
        monkeypatch.undo()
        ingested = sandbox.stats()["events"]
        counts, outbox = ledger_state(duck(warehouse))
        with StateStore(make_engine(duck(warehouse))) as store:
            journaled = len(ledger.pending_event_ids(store))
        assert counts.get("accepted", 0) == 0 and outbox > 0 and journaled >= ingested > 0

        resumed = events.run(settings, window=DAY, run_id="c2", mapping=mapping, clock=lambda: AS_OF)
        stats = sandbox.stats()
    expected = valid_events(duck(warehouse), DAY[0] - timedelta(hours=2), DAY[1])
    assert resumed["status"] == "success" and resumed["replayed_events"] == journaled
    assert resumed["already_sent"] == journaled and resumed["accepted"] == expected - journaled
    assert stats["events"] == expected and stats["duplicate_events"] == 0
    assert stats["deduplicated_requests"] >= 1
    assert ledger_state(duck(warehouse)) == ({"accepted": expected, "rejected": resumed["rejected"]}, 0)


def test_single_event_endpoint_uses_one_request_per_event(sandbox: SandboxServer, warehouse: Path) -> None:
    summary = events.run(
        settings_for(sandbox.url, duck(warehouse)),
        window=DAY,
        run_id="s1",
        mapping=with_endpoint("events"),
        clock=lambda: AS_OF,
    )
    stats = sandbox.stats()
    assert stats["requests"] == {"events": summary["accepted"]} and stats["violations"] == 0
    ids = [e["request_id"] for e in sandbox.store.events()]
    assert len(set(ids)) == len(ids) == summary["accepted"]


def test_transient_failures_stay_journaled_and_are_replayed(sandbox: SandboxServer, warehouse: Path) -> None:
    sandbox.update_config(error_5xx_rate=1.0)
    settings = settings_for(sandbox.url, duck(warehouse), max_retries=0)
    failed = failed_delivery(events.run, settings, window=DAY, run_id="t1", clock=lambda: AS_OF)
    assert failed["accepted"] == 0 and failed["rejected_by_reason"]["transient_failure"] == failed["sent"] > 0
    assert ledger_state(duck(warehouse))[1] == failed["batches"]
    # While still failing, a new run does not re-batch journaled events: they wait for their replay.
    waiting = failed_delivery(events.run, settings, window=DAY, run_id="t2", clock=lambda: AS_OF)
    assert waiting["rejected_by_reason"]["awaiting_replay"] == failed["sent"] and waiting["sent"] == 0

    sandbox.update_config(error_5xx_rate=0.0)
    ok = events.run(settings, window=DAY, run_id="t3", clock=lambda: AS_OF)
    assert ok["replayed_requests"] == failed["batches"] and ok["replayed_events"] == failed["sent"]
    assert ok["already_sent"] == failed["sent"] and ok["accepted"] == 0
    assert sandbox.stats()["events"] == failed["sent"] and sandbox.stats()["duplicate_events"] == 0
    with StateStore(make_engine(duck(warehouse))) as store:
        assert not [r for r in store.open_rejects("events") if r["reason"] == "transient_failure"]


def test_rejected_bulk_call_is_bisected_to_the_bad_event(warehouse: Path) -> None:
    """WebEngage refuses a whole bulk call (400) for one bad event: halves go out until it is isolated."""
    poison = str(scalar(duck(warehouse), "SELECT strftime(max(event_time), '%Y-%m-%dT%H:%M:%S+0000') FROM main.events"))
    seen: list[int] = []
    accepted: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)["events"]
        seen.append(len(body))
        if any(e["eventTime"] == poison for e in body):
            return httpx.Response(400, json={"response": {"status": "error", "message": "bad event"}})
        accepted.extend(body)
        return httpx.Response(201, json={"response": {"status": "queued"}})

    settings = settings_for("http://we.test", duck(warehouse))
    summary = events.run(settings, window=DAY, run_id="b1", clock=lambda: AS_OF, transport=httpx.MockTransport(handler))
    assert summary["rejected_by_reason"].get("api_rejected") == 1
    assert summary["accepted"] == len(accepted) == summary["sent"] - 1
    assert 1 in seen
    counts, outbox = ledger_state(duck(warehouse))
    assert counts["accepted"] == len(accepted) and outbox == 0


# -- Segment preset ---------------------------------------------------------------------------------
SEGMENT = event_mapping_from_dict({"source": {"preset": "segment", "segment_schema": "seg"}})
HOUR = (datetime(2026, 10, 31, 10, tzinfo=UTC), datetime(2026, 10, 31, 11, tzinfo=UTC))
_COMMON = 'id VARCHAR, user_id VARCHAR, anonymous_id VARCHAR, "timestamp" TIMESTAMPTZ, received_at TIMESTAMPTZ'
SEGMENT_DDL = [
    "CREATE SCHEMA seg",
    f"CREATE TABLE seg.tracks ({_COMMON}, event VARCHAR, event_text VARCHAR, context_ip VARCHAR)",
    f"CREATE TABLE seg.order_completed ({_COMMON}, event VARCHAR, event_text VARCHAR, context_ip VARCHAR, "
    "order_id VARCHAR, revenue NUMERIC(12, 2), currency VARCHAR, products JSON, gift BOOLEAN, "
    "shipped_at TIMESTAMPTZ, uuid_ts TIMESTAMPTZ)",
    f"CREATE TABLE seg.products_searched ({_COMMON}, event VARCHAR, event_text VARCHAR, query VARCHAR)",
    f"CREATE TABLE seg.pages ({_COMMON}, name VARCHAR, path VARCHAR, url VARCHAR, referrer VARCHAR, "
    "title VARCHAR, search VARCHAR, context_ip VARCHAR)",
    f"CREATE TABLE seg.screens ({_COMMON}, name VARCHAR, context_app_version VARCHAR)",
    f"CREATE TABLE seg.identifies ({_COMMON}, email VARCHAR)",
]
T = "2026-10-31 {}+00"
SEGMENT_ROWS = [
    # id, user, anon, timestamp, received_at, event, event_text
    (
        "INSERT INTO seg.tracks VALUES (:id, :u, :a, CAST(:ts AS TIMESTAMPTZ), CAST(:rx AS TIMESTAMPTZ), :ev, :et, "
        "'10.0.0.1')",
        [
            {
                "id": "t1",
                "u": "u1",
                "a": "a1",
                "ts": T.format("10:05:00"),
                "rx": T.format("10:05:02"),
                "ev": "order_completed",
                "et": "Order Completed",
            },
            {
                "id": "t2",
                "u": None,
                "a": "a2",
                "ts": T.format("09:10:00"),
                "rx": T.format("09:10:01"),
                "ev": "products_searched",
                "et": "Products Searched",
            },
            {
                "id": "t3",
                "u": "u3",
                "a": None,
                "ts": T.format("10:20:00"),
                "rx": T.format("10:20:01"),
                "ev": "signed_up",
                "et": "Signed Up",
            },
            # arrived in the window hours after it happened: read by arrival time
            {
                "id": "t4",
                "u": "u1",
                "a": None,
                "ts": T.format("07:00:00"),
                "rx": T.format("10:40:00"),
                "ev": "products_searched",
                "et": "Products Searched",
            },
            {
                "id": "t5",
                "u": "u1",
                "a": None,
                "ts": T.format("10:50:00"),
                "rx": T.format("11:30:00"),
                "ev": "signed_up",
                "et": "Signed Up",
            },  # arrives after the window
            {
                "id": "t6",
                "u": "u1",
                "a": None,
                "ts": T.format("10:10:00"),
                "rx": T.format("10:10:01"),
                "ev": None,
                "et": None,
            },  # no name: rejected
            {
                "id": "t7",
                "u": "u1",
                "a": None,
                "ts": T.format("05:00:00"),
                "rx": T.format("06:00:00"),
                "ev": "signed_up",
                "et": "Signed Up",
            },  # before the lookback
        ],
    ),
    (
        'INSERT INTO seg.order_completed (id, user_id, anonymous_id, "timestamp", received_at, event, event_text, '
        "order_id, revenue, currency, products, gift, shipped_at) VALUES ('t1', 'u1', 'a1', "
        "CAST(:ts AS TIMESTAMPTZ), CAST(:ts AS TIMESTAMPTZ), 'order_completed', 'Order Completed', 'ORD-1', 39.80, "
        "'USD', CAST(:products AS JSON), TRUE, CAST(:shipped AS TIMESTAMPTZ))",
        [
            {
                "ts": T.format("10:05:00"),
                "shipped": T.format("10:30:00"),
                "products": '[{"product_id": "SKU-1", "price": 39.8, "quantity": 1}]',
            }
        ],
    ),
    (
        'INSERT INTO seg.products_searched (id, user_id, anonymous_id, "timestamp", received_at, query) '
        "VALUES (:id, :u, :a, CAST(:ts AS TIMESTAMPTZ), CAST(:ts AS TIMESTAMPTZ), :q)",
        [
            {"id": "t2", "u": None, "a": "a2", "ts": T.format("09:10:00"), "q": "shoes"},
            {"id": "t4", "u": "u1", "a": None, "ts": T.format("07:00:00"), "q": "late"},
        ],
    ),
    (
        "INSERT INTO seg.pages VALUES ('p1', NULL, 'a1', CAST(:ts AS TIMESTAMPTZ), CAST(:ts AS TIMESTAMPTZ), 'Home', "
        "'/', 'https://shop.example.com/', NULL, 'Shop', NULL, '10.0.0.1')",
        [{"ts": T.format("10:01:00")}],
    ),
    (
        "INSERT INTO seg.screens VALUES ('s1', 'u1', NULL, CAST(:ts AS TIMESTAMPTZ), CAST(:ts AS TIMESTAMPTZ), "
        "'Cart', '4.1.8')",
        [{"ts": T.format("10:02:00")}],
    ),
    (
        "INSERT INTO seg.identifies VALUES ('i1', 'u1', NULL, CAST(:ts AS TIMESTAMPTZ), CAST(:ts AS TIMESTAMPTZ), "
        "'a@example.com')",
        [{"ts": T.format("10:03:00")}],
    ),
]
SEGMENT_EXPECTED = [
    {
        "userId": "u1",
        "anonymousId": "a1",
        "eventName": "Order Completed",
        "eventTime": "2026-10-31T10:05:00+0000",
        "eventData": {
            "orderId": "ORD-1",
            "amount": 39.8,
            "currency": "USD",
            "gift": True,
            "products": [{"product_id": "SKU-1", "price": 39.8, "quantity": 1}],
            "shippedAt": "2026-10-31T10:30:00+0000",
        },
    },
    {
        "anonymousId": "a2",
        "eventName": "Searched",
        "eventTime": "2026-10-31T09:10:00+0000",
        "eventData": {"query": "shoes"},
    },
    {"userId": "u3", "eventName": "Signed Up", "eventTime": "2026-10-31T10:20:00+0000"},
    {"userId": "u1", "eventName": "Searched", "eventTime": "2026-10-31T07:00:00+0000", "eventData": {"query": "late"}},
    {
        "anonymousId": "a1",
        "eventName": "Page Viewed",
        "eventTime": "2026-10-31T10:01:00+0000",
        "eventData": {"name": "Home", "path": "/", "url": "https://shop.example.com/", "title": "Shop"},
    },
    {
        "userId": "u1",
        "eventName": "Screen Viewed",
        "eventTime": "2026-10-31T10:02:00+0000",
        "eventData": {"name": "Cart"},
    },
]


def create_segment_schema(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        for ddl in SEGMENT_DDL:
            conn.execute(sa.text(ddl))
        for sql, rows in SEGMENT_ROWS:
            for row in rows:
                conn.execute(sa.text(sql), row)
    engine.dispose()


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_segment_preset_reads_tracks_pages_screens(
    backend: str, tmp_path: Path, sandbox: SandboxServer, request: pytest.FixtureRequest
) -> None:
    url = duck(tmp_path / "segment.duckdb") if backend == "duckdb" else str(request.getfixturevalue("pg_db"))
    create_segment_schema(url)
    settings = settings_for(sandbox.url, url)
    summary = events.run(settings, window=HOUR, run_id="seg1", mapping=SEGMENT, clock=lambda: AS_OF)
    stats = sandbox.stats()
    assert canonical(sandbox_events(sandbox)) == canonical(SEGMENT_EXPECTED)
    assert stats["violations"] == 0, stats["violations_by_rule"]
    assert summary["extracted"] == 7 and summary["rejected_by_reason"] == {"missing_event_name": 1}
    assert summary["accepted"] == 6 and summary["requests"] == 1
    with StateStore(make_engine(url)) as store:
        assert store.registry("event:Order Completed")["shippedAt"][0] == "date"
        assert ledger.accepted_ids(store, ["t1", "t2", "t3", "t4", "t5", "t6", "p1", "s1"]) == {
            "t1",
            "t2",
            "t3",
            "t4",
            "p1",
            "s1",
        }
    again = events.run(settings, window=HOUR, run_id="seg2", mapping=SEGMENT, clock=lambda: AS_OF)
    assert again["already_sent"] == 6 and again["requests"] == 0


def test_segment_preset_on_the_demo_schema(sandbox: SandboxServer, warehouse: Path) -> None:
    mapping = event_mapping_from_dict({"source": {"preset": "segment", "segment_schema": "segment"}})
    summary = events.run(
        settings_for(sandbox.url, duck(warehouse)), window=WHOLE, run_id="sd", mapping=mapping, clock=lambda: AS_OF
    )
    start = (WHOLE[0] - timedelta(hours=2)).replace(tzinfo=None)
    valid = scalar(
        duck(warehouse),
        "SELECT count(DISTINCT id) FROM ("
        ' SELECT id, user_id, anonymous_id, coalesce(event_text, event) AS n, "timestamp" AS ts, received_at'
        " FROM segment.tracks UNION ALL"
        " SELECT id, user_id, anonymous_id, 'page', \"timestamp\", received_at FROM segment.pages UNION ALL"
        " SELECT id, user_id, anonymous_id, 'screen', \"timestamp\", received_at FROM segment.screens)"
        " WHERE coalesce(received_at, ts) >= :s AND coalesce(received_at, ts) < :e AND n IS NOT NULL"
        " AND ts IS NOT NULL AND coalesce(user_id, anonymous_id) IS NOT NULL AND length(coalesce(user_id, '')) <= 100",
        s=start,
        e=WHOLE[1].replace(tzinfo=None),
    )
    stats = sandbox.stats()
    assert summary["accepted"] == valid == stats["events"] and stats["violations"] == 0
    assert {"missing_event_name", "invalid_event_time", "missing_id"} <= set(summary["rejected_by_reason"])
    names = {e["eventName"] for e in sandbox_events(sandbox)}
    assert {"Page Viewed", "Screen Viewed", "Searched", "Added to Cart", "Order Completed"} <= names
    order = next(e for e in sandbox_events(sandbox) if e["eventName"] == "Order Completed")
    assert isinstance(order["eventData"]["products"], list) and "amount" in order["eventData"]
    assert not any(k.startswith("context") for e in sandbox_events(sandbox) for k in e.get("eventData", {}))
