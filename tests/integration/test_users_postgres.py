"""The profile sync with PostgreSQL as the warehouse and as the state database (and DuckDB warehouse +
PostgreSQL state): every valid user accepted, no violation, nothing re-sent, then exactly the changes."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import sqlalchemy as sa

from etl.config import Settings
from etl.mappings.users import user_mapping_from_dict
from etl.pipelines import users
from etl.state.store import StateStore
from etl.warehouse.engine import make_engine
from tests.helpers.sandbox import sandbox_fixture, sandbox_settings
from webengage_dev.demo.mutate import change_users
from webengage_dev.demo.warehouse import build_demo_warehouse
from webengage_dev.sandbox import SandboxServer

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
KEY = "pg-test-key-not-logged-9"
N_USERS = 120

DDL = """
CREATE TABLE app_users (
    id          TEXT,
    updated_at  TIMESTAMPTZ,
    first_name  TEXT,
    email       TEXT,
    phone       TEXT,
    birth_date  DATE,
    gender      TEXT,
    vip         BOOLEAN,
    ltv         NUMERIC(12, 2),
    orders      INTEGER,
    prefs       JSONB,
    last_seen   TIMESTAMPTZ,
    signed_up   TIMESTAMP
)
"""
# Rows from generate_series: values derived from i, NULLs sprinkled in every column but the id.
FILL = """
INSERT INTO app_users
SELECT 'pg_' || lpad(i::text, 4, '0'),
    TIMESTAMPTZ '2026-10-01 00:00:00+00' + i * INTERVAL '1 minute',
    CASE WHEN i % 11 = 0 THEN NULL ELSE 'Name ' || i END,
    CASE WHEN i % 7 = 0 THEN NULL WHEN i % 13 = 0 THEN 'broken-email' ELSE 'user' || i || '@Example.com' END,
    CASE WHEN i % 5 = 0 THEN NULL ELSE '+91 98' || lpad((i * 7919 % 100000000)::text, 8, '0') END,
    CASE WHEN i % 6 = 0 THEN NULL ELSE DATE '1980-01-01' + i * 37 END,
    (ARRAY['male', 'F', 'unknown', NULL])[1 + i % 4],
    CASE WHEN i % 3 = 0 THEN NULL ELSE i % 2 = 0 END,
    CASE WHEN i % 4 = 0 THEN NULL ELSE i * 10.25 END,
    CASE WHEN i % 9 = 0 THEN NULL ELSE i % 17 END,
    CASE WHEN i % 8 = 0 THEN NULL ELSE jsonb_build_object('lang', 'en', 'n', i, 'tags', jsonb_build_array('a', i)) END,
    CASE WHEN i % 10 = 0 THEN NULL ELSE TIMESTAMPTZ '2026-10-15 12:00:00+05:30' + i * INTERVAL '1 hour' END,
    TIMESTAMP '2025-01-01 09:30:00' + i * INTERVAL '1 day'
FROM generate_series(1, :n) AS s(i)
"""
# An older row for an existing id: the newer one must win and this one be reported.
DUPLICATE = (
    "INSERT INTO app_users (id, updated_at, first_name, ltv) "
    "VALUES ('pg_0002', TIMESTAMPTZ '2020-01-01 00:00:00+00', 'Stale', 1.00)"
)

MAPPING = {
    "source": {"user_id": "id", "updated_at": "updated_at"},
    "options": {"source_timezone": "UTC", "default_phone_region": "IN"},
    "system": {
        "firstName": "first_name",
        "email": "email",
        "phone": "phone",
        "birthDate": "birth_date",
        "gender": "gender",
    },
    "attributes": {
        "vip": "vip",
        "ltv": "ltv",
        "orders": "orders",
        "prefs": "prefs",
        "last_seen": "last_seen",
        "signed_up": "signed_up",
    },
}


sandbox = sandbox_fixture(KEY, bulk_users_rpm=60_000)


def settings_for(sandbox: SandboxServer, *, warehouse: str, state: str, **extra: Any) -> Settings:
    return sandbox_settings(sandbox, warehouse, KEY, **({"state_url": state, "bulk_users_rpm": 60_000} | extra))


def pg_execute(url: str, *statements: str, **params: Any) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement), params if ":" in statement else {})
    engine.dispose()


def state_ids(url: str) -> set[str]:
    with StateStore(make_engine(url)) as store:
        return {r[0] for r in store.conn.execute(sa.text("SELECT user_id FROM we_user_state"))}


def test_postgres_warehouse_and_state(sandbox: SandboxServer, pg_db: str, tmp_path: Path) -> None:
    pg_execute(pg_db, DDL, FILL, DUPLICATE, n=N_USERS)
    query = tmp_path / "app_users.sql"
    query.write_text("SELECT * FROM app_users\n", encoding="utf-8")
    mapping = user_mapping_from_dict({**MAPPING, "source": {**MAPPING["source"], "query": str(query)}})
    settings = settings_for(sandbox, warehouse=pg_db, state=pg_db)

    first = users.run(settings, mapping=mapping, run_id="pg1", clock=lambda: AS_OF)
    stats = sandbox.stats()
    assert stats["violations"] == 0, stats["violations_by_rule"]
    assert first["extracted"] == N_USERS + 1
    assert first["accepted"] == N_USERS == stats["users"] == len(state_ids(pg_db))
    assert first["rejected_by_reason"] == {"duplicate_user_id": 1}
    assert first["requests"] == math.ceil(N_USERS / 25)
    assert first["values_dropped_by_reason"] == {
        "invalid_email": len([i for i in range(1, N_USERS + 1) if i % 13 == 0 and i % 7 != 0])
    }

    # Types from PostgreSQL: numeric -> number, jsonb -> object, timestamptz -> UTC, naive -> source zone.
    p = sandbox.store.get_profile("pg_0001")
    assert p == {
        "userId": "pg_0001",
        "firstName": "Name 1",
        "email": "user1@example.com",
        "phone": "+919800007919",
        "birthDate": "1980-02-07T00:00:00+0000",
        "gender": "female",
        "attributes": {
            "vip": False,
            "ltv": 10.25,
            "orders": 1,
            "prefs": {"lang": "en", "n": 1, "tags": ["a", 1]},
            "last_seen": "2026-10-15T07:30:00+0000",
            "signed_up": "2025-01-02T09:30:00+0000",
        },
    }
    newer = sandbox.store.get_profile("pg_0002")  # the duplicate id: the newer row won
    assert newer is not None and newer["firstName"] == "Name 2" and "gender" not in newer  # 'unknown' is missing
    with StateStore(make_engine(pg_db)) as store:
        assert store.registry("users") == {
            "vip": ("boolean", "users"),
            "ltv": ("number", "users"),
            "orders": ("number", "users"),
            "prefs": ("object", "users"),
            "last_seen": ("date", "users"),
            "signed_up": ("date", "users"),
        }

    second = users.run(settings, mapping=mapping, run_id="pg2", clock=lambda: AS_OF)
    assert second["requests"] == 0 and second["unchanged"] == N_USERS

    # Three users change, one is new (known and new ids in one chunk), one changes a NULL into a value.
    before = stats["requests"]["bulk-users"]
    pg_execute(
        pg_db,
        "UPDATE app_users SET first_name = 'Renamed' WHERE id IN ('pg_0003', 'pg_0050')",
        "UPDATE app_users SET ltv = 4.00 WHERE id = 'pg_0004'",
        "INSERT INTO app_users (id, first_name, prefs) VALUES ('pg_new', 'New', '[1, 2]'::jsonb)",
    )
    third = users.run(settings, mapping=mapping, run_id="pg3", clock=lambda: AS_OF)
    assert third["accepted"] == 4 and third["unchanged"] == N_USERS - 3 and third["requests"] == 1
    assert sandbox.stats()["requests"]["bulk-users"] - before == 1
    assert sandbox.store.get_profile("pg_0050")["firstName"] == "Renamed"  # type: ignore[index]
    assert sandbox.store.get_profile("pg_0004")["attributes"]["ltv"] == 4.0  # type: ignore[index]
    assert sandbox.store.get_profile("pg_new") == {
        "userId": "pg_new",
        "firstName": "New",
        "attributes": {"prefs": [1, 2]},
    }
    assert len(state_ids(pg_db)) == N_USERS + 1
    assert sandbox.stats()["violations"] == 0


def test_duckdb_warehouse_with_postgres_state(sandbox: SandboxServer, pg_db: str, tmp_path: Path) -> None:
    warehouse = tmp_path / "demo.duckdb"
    build_demo_warehouse(warehouse, users=300, as_of=AS_OF)
    settings = settings_for(sandbox, warehouse=f"duckdb:///{warehouse}", state=pg_db)

    first = users.run(settings, run_id="d1", clock=lambda: AS_OF)
    stats = sandbox.stats()
    assert stats["violations"] == 0, stats["violations_by_rule"]
    assert first["accepted"] == 300 == stats["users"] == len(state_ids(pg_db))
    with duckdb.connect(str(warehouse), read_only=True) as con:  # the state went to PostgreSQL only
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'we_%'").fetchone() == (0,)

    second = users.run(settings, run_id="d2", clock=lambda: AS_OF)
    assert second["requests"] == 0 and second["accepted"] == 0

    changed = change_users(warehouse, share=0.05, seed=7, as_of=AS_OF)
    third = users.run(settings, run_id="d3", clock=lambda: AS_OF)
    assert changed > 0 and third["accepted"] == changed and third["requests"] == math.ceil(changed / 25)
    with StateStore(make_engine(pg_db)) as store:
        assert [r["status"] for r in store.runs(pipeline="users")] == ["success"] * 3
