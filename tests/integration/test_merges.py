"""Anonymous -> known merges (``sync merges``): each new pair of the identify data goes once to /users with
both ids, and the events tracked before login end on the known profile in the sandbox. Pairs come from the
demo's Segment ``identifies`` (DuckDB) or a query; the same on PostgreSQL, with text timestamps."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa

from etl.config import Settings
from etl.errors import ConfigError, DeliveryError
from etl.mappings.events import EventMapping, event_mapping_from_dict, load_event_mapping
from etl.pipelines import events, merges
from etl.state import merges as merge_state
from etl.state.store import REJECTS, StateStore
from etl.warehouse.engine import make_engine
from tests.helpers.events import WINDOW, canonical, reference_events
from tests.helpers.sandbox import FAST, sandbox_fixture, sandbox_settings
from tests.helpers.warehouse import AS_OF, warehouse_fixture
from webengage_dev.sandbox import SandboxServer

KEY = "merges-test-key-not-logged"
warehouse = warehouse_fixture(600)
sandbox = sandbox_fixture(KEY, users_rpm=FAST, bulk_events_rpm=FAST)

#: The demo's valid pairs, as the preset must find them: both ids, ids WebEngage accepts, first user wins.
VALID_PAIRS = """
WITH p AS (
    SELECT anonymous_id, user_id, min("timestamp") AS t FROM segment.identifies
    WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL GROUP BY ALL
), ok AS (
    SELECT * FROM p WHERE length(user_id) <= 100 AND length(anonymous_id) <= 100
        AND lower(trim(user_id)) NOT IN ('null', 'none', 'nan', 'undefined', 'nil') AND anonymous_id <> user_id
)
SELECT anonymous_id, user_id, count(*) OVER (PARTITION BY anonymous_id) AS users_seen FROM ok
QUALIFY row_number() OVER (PARTITION BY anonymous_id ORDER BY t, user_id) = 1
"""


def mapping(**merge: Any) -> EventMapping:
    return event_mapping_from_dict({"merges": {"enabled": True, **merge}})


def settings_for(sandbox: SandboxServer, warehouse: Path | str, **values: Any) -> Settings:
    return sandbox_settings(sandbox, warehouse, KEY, users_rpm=FAST, bulk_events_rpm=FAST, **values)


def query(warehouse: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.execute(sql).fetchall()


def rejects(url: str) -> list[dict[str, Any]]:
    with StateStore(make_engine(url)) as store:
        rows = store.conn.execute(sa.select(REJECTS).where(REJECTS.c.pipeline == "merges")).mappings().all()
        return [dict(r) for r in rows]


def test_pairs_merge_once_and_pre_login_events_land_on_the_known_profile(
    sandbox: SandboxServer, warehouse: Path
) -> None:
    settings = settings_for(sandbox, warehouse)
    sent_events = events.run(settings, window=WINDOW, run_id="events", clock=lambda: AS_OF)
    assert sent_events["accepted"] > 0
    pre_login = sandbox.store.events(limit=None)
    anonymous_only = [e["event"] for e in pre_login if "userId" not in e["event"]]
    assert anonymous_only, "the demo has events tracked before login"
    # Events of anonymous visitors go as they are, with their anonymousId: exactly the window's anonymous rows.
    expected_events = reference_events(warehouse, WINDOW)
    assert canonical(anonymous_only) == Counter(
        {p: n for p, n in expected_events.items() if b'"userId"' not in p and b'"anonymousId"' in p}
    )

    valid = query(warehouse, VALID_PAIRS)
    expected = {a: u for a, u, _n in valid}
    others = sum(n - 1 for _a, _u, n in valid)  # the demo's shared devices: second users, reported
    assert others > 0
    first = merges.run(settings, mapping=mapping(), run_id="merge-1", clock=lambda: AS_OF)
    stats = sandbox.stats()
    assert first["status"] == "success" and stats["violations"] == 0, stats["violations_by_rule"]
    assert first["merged"] == first["accepted"] == len(expected) == stats["merges"] > 0
    assert stats["requests"] == {"bulk-events": sent_events["requests"], "users": len(expected)}
    assert first["extracted"] == first["unchanged"] + first["accepted"] + first["rejected"]
    # The demo's 200-character user ids are refused by name, never sent.
    assert first["rejected_by_reason"].get("user_id_too_long", 0) > 0
    assert first["rejected_by_reason"].get("shared_anonymous_id", 0) == others
    assert set(first["rejected_by_reason"]) <= {"user_id_too_long", "null_like_id", "shared_anonymous_id"}

    # Every event tracked before login now belongs to the user its device was merged into.
    moved = 0
    for record in sandbox.store.events(limit=None):
        event = record["event"]
        anonymous_id = event.get("anonymousId")
        if anonymous_id in expected:
            assert event["userId"] == expected[anonymous_id]
            moved += 1
    assert moved >= stats["merged_events"] > 0
    some_anonymous_id = next(e["anonymousId"] for e in anonymous_only if e["anonymousId"] in expected)
    user_id = expected[some_anonymous_id]
    on_profile = sandbox.store.events(user_id=user_id)
    assert any(e["event"].get("anonymousId") == some_anonymous_id for e in on_profile)
    assert sandbox.store.get_user(f"anon:{some_anonymous_id}") is None

    second = merges.run(settings, mapping=mapping(), run_id="merge-2", clock=lambda: AS_OF)
    assert second["requests"] == 0 and second["accepted"] == 0
    assert second["already_merged"] == len(expected) and second["merged_total"] == len(expected)
    assert sandbox.stats()["merges"] == len(expected)


def test_lookback_reads_only_recent_identifies(sandbox: SandboxServer, warehouse: Path) -> None:
    recent = query(
        warehouse,
        "SELECT count(*) FROM (SELECT DISTINCT anonymous_id, user_id FROM segment.identifies WHERE anonymous_id "
        "IS NOT NULL AND user_id IS NOT NULL AND received_at >= TIMESTAMPTZ '2026-11-01 00:00+00' - INTERVAL 7 DAY)",
    )[0][0]
    summary = merges.run(settings_for(sandbox, warehouse), mapping=mapping(lookback="7d"), clock=lambda: AS_OF)
    everything = len(query(warehouse, VALID_PAIRS))
    assert 0 < summary["extracted"] == recent < everything
    with pytest.raises(ConfigError, match=r"\[merges\]\.lookback"):
        mapping(lookback="a week")


SHARED = """
CREATE TABLE pairs (anonymous_id VARCHAR, user_id VARCHAR, identified_at TIMESTAMP);
INSERT INTO pairs VALUES
    ('device-1', 'alice', '2026-10-01 10:00'), ('device-1', 'bob', '2026-10-05 10:00'),
    ('device-1', 'alice', '2026-10-07 10:00'),
    ('device-2', 'carol', '2026-10-02 10:00'),
    ('device-3', 'null', '2026-10-02 10:00'), ('device-3', 'dave', '2026-10-03 10:00'),
    ('device-4', 'erin', NULL), ('device-4', 'frank', '2026-10-03 10:00'),
    (repeat('x', 101), 'grace', '2026-10-01 10:00'),
    ('device-6', 'hei' || chr(7) || 'di', '2026-10-01 10:00'),
    ('same', 'same', '2026-10-01 10:00'),
    (NULL, 'ivan', '2026-10-01 10:00');
"""


@pytest.mark.parametrize(
    ("policy", "into"),
    [
        ("first", {"device-1": "alice", "device-2": "carol", "device-3": "dave", "device-4": "frank"}),
        ("last", {"device-1": "bob", "device-2": "carol", "device-3": "dave", "device-4": "frank"}),
        ("none", {"device-2": "carol", "device-3": "dave"}),
    ],
)
def test_shared_devices_and_bad_ids_are_reported(
    sandbox: SandboxServer, tmp_path: Path, policy: str, into: dict[str, str]
) -> None:
    path = tmp_path / "pairs.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(SHARED)
    sql = tmp_path / "pairs.sql"
    sql.write_text("SELECT anonymous_id, user_id, identified_at FROM pairs")
    settings = settings_for(sandbox, path)
    summary = merges.run(settings, mapping=mapping(preset="sql", query=str(sql), shared_anonymous_id=policy))

    stats = sandbox.stats()
    assert stats["violations"] == 0
    assert summary["accepted"] == len(into) == stats["merges"]
    assert summary["rows_read"] == 12 and summary["extracted"] == 11  # device-1/alice twice: one pair
    assert summary["shared_devices"] == 2  # device-1, device-4 (device-3's "null" user is no candidate)
    got = {r["anonymous_id"]: r["user_id"] for r in rows_of(path)}
    assert got == into
    found = {(r["row_key"], r["column_name"], r["reason"]) for r in rejects(f"duckdb:///{path}")}
    bad = {
        ("device-3 -> null", "user_id", "null_like_id"),
        ("x" * 101 + " -> grace", "anonymous_id", "anonymous_id_too_long"),
        ("device-6 -> hei\\x07di", "user_id", "control_character_in_id"),
        ("same -> same", "anonymous_id", "anonymous_id_is_user_id"),
        ("(missing) -> ivan", "anonymous_id", "missing_id"),
    }
    shared = {
        (f"{a} -> {u}", "anonymous_id", "shared_anonymous_id")
        for a, users_seen in (("device-1", ("alice", "bob")), ("device-4", ("erin", "frank")))
        for u in users_seen
        if into.get(a) != u
    }
    assert found == bad | shared
    # A later identify that names another user for a merged device is reported, never sent: no undo.
    with duckdb.connect(str(path)) as con:
        con.execute("INSERT INTO pairs VALUES ('device-2', 'mallory', '2026-09-01 10:00')")
    again = merges.run(settings, mapping=mapping(preset="sql", query=str(sql), shared_anonymous_id=policy))
    assert again["accepted"] == 0 and again["requests"] == 0
    assert again["rejected_by_reason"]["shared_anonymous_id"] == len(shared) + 1
    assert sandbox.stats()["merge_conflicts"] == 0


def rows_of(path: Path) -> list[dict[str, Any]]:
    with StateStore(make_engine(f"duckdb:///{path}")) as store:
        rows = store.conn.execute(sa.select(merge_state.PAIRS)).mappings().all()
        assert all(r["status"] == merge_state.MERGED for r in rows)
        assert all(r["request_id"] == merges.request_id(r["anonymous_id"], r["user_id"]) for r in rows)
        return [dict(r) for r in rows]


def test_off_and_disabled(sandbox: SandboxServer, warehouse: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[merges\]\.enabled"):
        merges.run(settings_for(sandbox, warehouse), mapping=load_event_mapping())
    summary = merges.run(settings_for(sandbox, warehouse, merge_path="off"), mapping=mapping())
    assert summary["dry_run"] and summary["requests"] == 0 and sandbox.stats()["requests"] == {}
    assert summary["sent"] == len(query(warehouse, VALID_PAIRS)) and "merge_path is off" in summary["notes"][0]


def test_single_calls_without_merging_leave_profiles_apart(warehouse: Path) -> None:
    """The sandbox switch for the unconfirmed behaviour: both ids on /users then merge nothing."""
    from tests.helpers.sandbox import sandbox_server

    with sandbox_server(KEY, users_rpm=FAST, merge_on_users=False) as server:
        summary = merges.run(settings_for(server, warehouse), mapping=mapping())
        assert summary["accepted"] > 0 and server.stats()["merges"] == 0


PG_SEGMENT = """
CREATE SCHEMA seg;
CREATE TABLE seg.identifies (id TEXT, anonymous_id TEXT, user_id TEXT, "timestamp" TEXT, received_at TEXT,
    email TEXT);
INSERT INTO seg.identifies VALUES
    ('i1', 'a-1', 'u-1', '2026-10-01T10:00:00+05:30', '2026-10-01T04:30:01Z', 'x@example.com'),
    ('i2', 'a-1', 'u-2', '2026-10-01T09:00:00Z', '2026-10-01T09:00:01Z', NULL),
    ('i3', 'a-1', 'u-1', '2026-10-02T10:00:00Z', '2026-10-02T10:00:01Z', NULL),
    ('i4', 'a-2', 'u-2', '2026-10-03T10:00:00Z', '2026-10-03T10:00:01Z', NULL),
    ('i5', NULL, 'u-3', '2026-10-03T10:00:00Z', '2026-10-03T10:00:01Z', NULL),
    ('i6', 'a-4', 'undefined', '2026-10-03T10:00:00Z', '2026-10-03T10:00:01Z', NULL);
"""


def test_segment_preset_on_postgres_with_text_timestamps(sandbox: SandboxServer, pg_db: str) -> None:
    engine = sa.create_engine(pg_db)
    with engine.begin() as conn:
        for stmt in PG_SEGMENT.strip().split(";"):
            if stmt.strip():
                conn.execute(sa.text(stmt))
    engine.dispose()
    url = pg_db.replace("postgresql://", "postgresql+psycopg://", 1)
    settings = settings_for(sandbox, url)
    summary = merges.run(settings, mapping=mapping(segment_schema="seg"))
    # a-1: u-1 at 04:30 UTC (+05:30 read as an instant) comes before u-2 at 09:00, so u-1 wins.
    assert summary["accepted"] == 2 and summary["rejected_by_reason"] == {
        "shared_anonymous_id": 1,
        "null_like_id": 1,
    }
    assert {(r["anonymous_id"], r["user_id"]) for r in pg_pairs(url)} == {("a-1", "u-1"), ("a-2", "u-2")}
    assert sandbox.stats()["merges"] == 2
    again = merges.run(settings, mapping=mapping(segment_schema="seg"))
    assert again["requests"] == 0 and again["already_merged"] == 2


def pg_pairs(url: str) -> list[dict[str, Any]]:
    with StateStore(make_engine(url)) as store:
        return [dict(r) for r in store.conn.execute(sa.select(merge_state.PAIRS)).mappings().all()]


def test_unconfirmed_merges_stay_journaled_and_are_resent_with_their_ids(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    path = tmp_path / "pairs.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE pairs AS SELECT 'dev-' || i AS anonymous_id, 'user-' || i AS user_id FROM range(30) r(i)"
        )
    sql = tmp_path / "pairs.sql"
    sql.write_text("SELECT anonymous_id, user_id FROM pairs")
    config = mapping(preset="sql", query=str(sql))
    sandbox.state.update({"error_5xx_rate": 1.0})
    settings = settings_for(sandbox, path, max_retries=0, backoff_base_s=0.01)
    with pytest.raises(DeliveryError, match="delivered nothing"):
        merges.run(settings, mapping=config, run_id="all-5xx")
    with StateStore(make_engine(f"duckdb:///{path}")) as store:
        assert len(merge_state.in_flight(store)) == 30  # no verdict: kept, to be re-sent
    assert {r["reason"] for r in rejects(f"duckdb:///{path}")} == {"transient_failure"}

    sandbox.state.update({"error_5xx_rate": 0.0})
    summary = merges.run(settings, mapping=config, run_id="resend")
    assert summary["resent_pairs"] == summary["resent_merged"] == 30 and summary["accepted"] == 0
    assert summary["already_merged"] == 30 and summary["requests"] == 30
    assert sandbox.stats()["merges"] == 30
    assert {r["status"] for r in rejects(f"duckdb:///{path}")} == {"resolved"}
    assert {r["anonymous_id"] for r in rows_of(path)} == {f"dev-{i}" for i in range(30)}


def test_plan_counts_the_merges_at_the_users_budget(warehouse: Path, tmp_path: Path) -> None:
    from etl.plan import plan, render_plan

    events_mapping = tmp_path / "events.toml"
    events_mapping.write_text('[merges]\nenabled = true\npreset = "segment"\n')
    settings = Settings.from_mapping(
        {"warehouse_url": f"duckdb:///{warehouse}", "events_mapping": str(events_mapping), "users_rpm": 5000},
        credentials=False,  # plan needs no API key
    )
    lines = plan(settings, users=False, cohorts=False, as_of=AS_OF, clock=lambda: AS_OF)
    (line,) = lines
    pairs = len(query(warehouse, VALID_PAIRS))
    assert (line.pipeline, line.endpoint, line.rows, line.requests) == ("merges", "users", pairs, pairs)
    assert f"merges: {pairs:,} new merges → {pairs:,} requests" in render_plan(lines, settings)
