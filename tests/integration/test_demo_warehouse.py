"""The embedded demo warehouse: sizes, messy cases, determinism, re-runs and the mutation helpers."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from webengage_dev.demo import DemoWarehouseSummary, add_events, build_demo_warehouse, change_users
from webengage_dev.demo._sql import EVENT_NAMES

USERS = 2_000
#: A fixed instant: the data is built relative to it, never to today.
DEFAULT_AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


@contextmanager
def _read(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone='UTC'")
    try:
        yield con
    finally:
        con.close()


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    row = con.execute(sql, params or []).fetchone()
    assert row is not None
    return row[0]


def _table_hash(con: duckdb.DuckDBPyConnection, table: str) -> str:
    # Every column, rows in a total order: equal hashes mean equal tables.
    return str(_one(con, f"SELECT md5(string_agg(t::VARCHAR, chr(10) ORDER BY t::VARCHAR)) FROM {table} t"))


def _user_row_hashes(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    rows = con.execute(
        "SELECT user_id, md5(string_agg(u::VARCHAR, chr(10) ORDER BY u::VARCHAR)) FROM main.users u "
        "WHERE user_id IS NOT NULL GROUP BY user_id"
    ).fetchall()
    return {str(k): str(v) for k, v in rows}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> DemoWarehouseSummary:
    return build_demo_warehouse(
        tmp_path_factory.mktemp("demo") / "nested" / "wh.duckdb", users=USERS, as_of=DEFAULT_AS_OF
    )


def test_sizes(built: DemoWarehouseSummary) -> None:
    assert built.path.exists()
    assert built.users == USERS
    assert built.user_rows > USERS  # the messy extras come on top
    assert 5 * USERS < built.events < 12 * USERS  # about 8 events per user
    for table in [
        "main.users",
        "main.orders",
        "main.events",
        "segment.identifies",
        "segment.users",
        "segment.tracks",
        "segment.pages",
        "segment.screens",
        *(f"segment.{t}" for t in EVENT_NAMES),
    ]:
        assert built.tables[table] > 0, table
    assert built.tables["main.events"] == built.events
    with _read(built.path) as con:
        assert _one(con, "SELECT count(*) FROM main.users") == built.user_rows
        valid = _one(con, "SELECT count(DISTINCT user_id) FROM main.users WHERE regexp_matches(user_id, '^usr_')")
        assert valid >= USERS
        # Orders: most users few, some VIPs many.
        per_user = dict(con.execute("SELECT user_id, count(*) FROM main.orders GROUP BY 1").fetchall())
        assert max(per_user.values()) >= 20
        assert sorted(per_user.values())[len(per_user) // 2] <= 3
        assert _one(con, "SELECT count(*) FROM main.orders WHERE status NOT IN ('completed', 'refunded')") == 0


def test_messy_cases_present(built: DemoWarehouseSummary) -> None:
    a = built.anomalies
    assert a["duplicate_user_ids"] == round(USERS * 0.005)
    assert a["anonymous_only_users"] == round(USERS * 0.01)
    assert a["long_user_ids"] == 20
    assert a["strings_5000_chars"] >= 50
    assert a["invalid_phones"] >= 100
    for key in [
        "nan_lifetime_value",
        "inf_lifetime_value",
        "negative_lifetime_value",
        "null_lifetime_value",
        "empty_emails",
        "malformed_emails",
        "future_birth_dates",
        "pre_1900_birth_dates",
        "emoji_names",
        "invalid_preferences_json",
        "null_event_names",
        "null_event_timestamps",
        "events_without_ids",
        "anonymous_events",
        "late_tracks",
        "shared_devices",
    ]:
        assert a[key] > 0, key
    with _read(built.path) as con:
        # Duplicated ids: two rows with different updated_at and different values.
        dups = con.execute(
            "SELECT user_id, count(DISTINCT updated_at), count(DISTINCT plan) FROM main.users "
            "WHERE user_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1"
        ).fetchall()
        assert dups and all(n_ts == 2 and n_plan == 2 for _, n_ts, n_plan in dups)
        assert _one(con, "SELECT count(*) FROM main.users WHERE length(user_id) = 200") == 20
        assert _one(con, "SELECT count(*) FROM main.users WHERE length(bio) = 5000") >= 50
        phones = {r[0] for r in con.execute("SELECT DISTINCT phone FROM main.users").fetchall()}
        assert {"12345", "call me", "+1 555", "0000000000"} <= phones
        assert _one(con, "SELECT count(*) FROM main.users WHERE isnan(lifetime_value)") > 0
        assert _one(con, "SELECT count(*) FROM main.users WHERE lifetime_value = 'Infinity'::DOUBLE") > 0
        genders = {r[0] for r in con.execute("SELECT DISTINCT gender FROM main.users").fetchall()}
        assert {"M", "male", "F", "female", "FEMALE", "", None} <= genders
        opt_ins = {r[0] for r in con.execute("SELECT DISTINCT email_opt_in FROM main.users").fetchall()}
        assert {"yes", "Y", "1", "true", "no", "N", "0", "", None} <= opt_ins
        assert _one(con, "SELECT count(*) FROM main.users WHERE regexp_matches(notes, '\\n')") > 0
        types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE main.users)").fetchall())
        assert types["signup_at"] == "TIMESTAMP"
        assert types["last_seen_at"] == "TIMESTAMP WITH TIME ZONE"
        assert types["preferences"] == "JSON"
        assert _one(con, "SELECT count(*) FROM segment.tracks WHERE event IS NULL") == 25
        assert _one(con, "SELECT count(*) FROM main.events WHERE event_name IS NULL") == 25
        late = 'SELECT count(*) FROM segment.tracks WHERE received_at > "timestamp" + INTERVAL 1 HOUR'
        assert _one(con, late) > 0


def test_events_in_window(built: DemoWarehouseSummary) -> None:
    with _read(built.path) as con:
        lo, hi = con.execute("SELECT min(event_time), max(event_time) FROM main.events").fetchone() or (None, None)
    assert lo is not None and hi is not None
    assert DEFAULT_AS_OF - timedelta(days=30) <= lo and hi <= DEFAULT_AS_OF


def test_every_track_has_its_per_event_row(built: DemoWarehouseSummary) -> None:
    union = " UNION ALL ".join(f"SELECT id, '{t}' AS tbl, event FROM segment.{t}" for t in EVENT_NAMES)
    with _read(built.path) as con:
        assert _one(con, "SELECT count(*) - count(DISTINCT id) FROM segment.tracks") == 0
        assert _one(con, f"SELECT count(*) FROM ({union})") == _one(con, "SELECT count(*) FROM segment.tracks")
        missing = f"SELECT count(*) FROM segment.tracks t ANTI JOIN ({union}) e USING (id)"
        assert _one(con, missing) == 0
        orphans = f"SELECT count(*) FROM ({union}) e ANTI JOIN segment.tracks t USING (id)"
        assert _one(con, orphans) == 0
        wrong_table = f"SELECT count(*) FROM ({union}) e WHERE e.event IS NOT NULL AND e.event <> e.tbl"
        assert _one(con, wrong_table) == 0
        products = _one(con, "SELECT products FROM segment.order_completed WHERE products IS NOT NULL LIMIT 1")
        assert '"product_id"' in products and '"quantity"' in products


def test_deterministic(built: DemoWarehouseSummary, tmp_path: Path) -> None:
    again = build_demo_warehouse(tmp_path / "again.duckdb", users=USERS, as_of=DEFAULT_AS_OF)
    other = build_demo_warehouse(tmp_path / "other.duckdb", users=USERS, seed=7, as_of=DEFAULT_AS_OF)
    assert again.tables == built.tables and again.anomalies == built.anomalies
    hashes = {}
    for name, path in [("built", built.path), ("again", again.path), ("other", other.path)]:
        with _read(path) as con:
            hashes[name] = (_table_hash(con, "main.users"), _table_hash(con, "segment.tracks"))
    assert hashes["built"] == hashes["again"]
    assert hashes["built"][0] != hashes["other"][0]


def test_rebuild_same_path(built: DemoWarehouseSummary, tmp_path: Path) -> None:
    path = tmp_path / "rebuild.duckdb"
    shutil.copy(built.path, path)
    with _read(path) as con:
        before = _table_hash(con, "main.users")
    again = build_demo_warehouse(path, users=USERS, as_of=DEFAULT_AS_OF)
    assert again.tables == built.tables
    with _read(path) as con:
        assert _table_hash(con, "main.users") == before
    smaller = build_demo_warehouse(path, users=500, as_of=DEFAULT_AS_OF)
    assert smaller.users == 500 and smaller.tables["main.users"] < built.tables["main.users"]


def test_change_users_changes_exactly_the_returned_ids(built: DemoWarehouseSummary, tmp_path: Path) -> None:
    path = tmp_path / "change.duckdb"
    shutil.copy(built.path, path)
    as_of = DEFAULT_AS_OF + timedelta(hours=1)
    with _read(path) as con:
        before = _user_row_hashes(con)
    changed = change_users(path, share=0.01, seed=7, as_of=as_of)
    assert changed == round(USERS * 0.01)
    with _read(path) as con:
        after = _user_row_hashes(con)
        ids = {k for k in before if before[k] != after[k]}
        assert len(ids) == changed
        stamps = con.execute(
            "SELECT min(updated_at) FROM main.users WHERE user_id IN (SELECT unnest(?::VARCHAR[]))", [sorted(ids)]
        ).fetchone()
        assert stamps is not None and stamps[0] >= as_of.replace(tzinfo=None)
        seg = _one(con, "SELECT count(*) FROM segment.users WHERE received_at > ?", [DEFAULT_AS_OF])
        assert seg == changed
    # Same seed: the same ids again (all still change, their plan cycles once more).
    assert change_users(path, share=0.01, seed=7, as_of=as_of) == changed
    with _read(path) as con:
        assert {k for k, v in _user_row_hashes(con).items() if v != after[k]} == ids
    assert change_users(path, share=0.0, seed=7, as_of=as_of) == 0
    with pytest.raises(ValueError, match="share"):
        change_users(path, share=1.5, seed=7, as_of=as_of)


def test_add_events_appends(built: DemoWarehouseSummary, tmp_path: Path) -> None:
    path = tmp_path / "add.duckdb"
    shutil.copy(built.path, path)
    start, end = DEFAULT_AS_OF, DEFAULT_AS_OF + timedelta(hours=6)
    assert add_events(path, count=300, start=start, end=end, seed=1) == 300
    union = " UNION ALL ".join(f"SELECT id FROM segment.{t}" for t in EVENT_NAMES)
    with _read(path) as con:
        assert _one(con, "SELECT count(*) FROM segment.tracks") == built.tables["segment.tracks"] + 300
        assert _one(con, f"SELECT count(*) FROM ({union})") == built.tables["segment.tracks"] + 300
        new = con.execute(
            'SELECT count(*), min("timestamp"), max("timestamp"), count(DISTINCT id) FROM segment.tracks '
            'WHERE "timestamp" >= ?',
            [start],
        ).fetchone()
        assert new is not None and new[0] == 300 and new[3] == 300
        assert start <= new[1] and new[2] <= end
        assert _one(con, "SELECT count(*) FROM main.events WHERE event_time >= ?", [start]) == 300
        assert (
            _one(con, 'SELECT count(*) FROM segment.tracks WHERE "timestamp" >= ? AND user_id IS NULL', [start]) < 300
        )
    assert add_events(path, count=0, start=start, end=end, seed=1) == 0
    with pytest.raises(ValueError, match="end"):
        add_events(path, count=1, start=end, end=start, seed=1)


def test_naive_as_of_is_utc(tmp_path: Path) -> None:
    aware = build_demo_warehouse(tmp_path / "a.duckdb", users=50, as_of=datetime(2026, 1, 1, tzinfo=UTC), days=3)
    naive = build_demo_warehouse(tmp_path / "b.duckdb", users=50, as_of=datetime(2026, 1, 1), days=3)
    with _read(aware.path) as a, _read(naive.path) as b:
        assert _table_hash(a, "main.users") == _table_hash(b, "main.users")
