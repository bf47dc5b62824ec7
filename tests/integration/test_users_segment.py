"""The Segment preset (``[source] preset = "segment"``): Segment's ``users`` table or the latest
``identifies`` row per user, read with no SQL to write, on DuckDB (the demo warehouse) and PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import sqlalchemy as sa

from etl.config import Settings
from etl.mappings.users import user_mapping_from_dict
from etl.pipelines import users
from etl.warehouse.engine import make_engine
from etl.warehouse.presets import SEGMENT_BOOKKEEPING
from tests.helpers.sandbox import sandbox_fixture, sandbox_settings
from tests.helpers.warehouse import AS_OF, warehouse_fixture
from webengage_dev.sandbox import SandboxServer

KEY = "segment-test-key-not-logged-3"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# Latest identify per user, as the preset must pick it (Segment's own bookkeeping decides the order).
LATEST_IDENTIFY = """
SELECT user_id, email, phone, plan, address_city FROM segment.identifies WHERE user_id IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY "timestamp" DESC, received_at DESC) = 1
"""


warehouse = warehouse_fixture(300)


sandbox = sandbox_fixture(KEY, bulk_users_rpm=60_000)


def settings_for(sandbox: SandboxServer, warehouse_url: str) -> Settings:
    return sandbox_settings(sandbox, warehouse_url, KEY, bulk_users_rpm=60_000)


def preset(table: str, **options: Any) -> Any:
    return user_mapping_from_dict({"source": {"preset": "segment", "segment_table": table}, "options": options})


def profiles(sandbox: SandboxServer) -> dict[str, dict[str, Any]]:
    total, page = sandbox.store.list_users(limit=100_000)
    assert total == len(page)
    return {u["id"]: u["profile"] for u in page}


def rows(warehouse: Path, sql: str) -> list[dict[str, Any]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def check_common(summary: dict[str, Any], sandbox: SandboxServer, expected_attributes: dict[str, str]) -> None:
    stats = sandbox.stats()
    assert stats["violations"] == 0, stats["violations_by_rule"]
    assert summary["extracted"] == summary["unchanged"] + summary["accepted"] + summary["rejected"]
    assert summary["accepted"] == stats["users"] > 0
    # Only the traits became attributes: no Segment bookkeeping (ids, received_at, the rank column...).
    assert sandbox.store.attribute_types() == {"user": expected_attributes}
    for name in expected_attributes:
        assert name.lower() not in SEGMENT_BOOKKEEPING and not name.startswith(("context_", "we_"))
    phones = [p["phone"] for p in profiles(sandbox).values() if "phone" in p]
    assert phones and all(E164.match(p) for p in phones)


def test_segment_users_table_on_duckdb(sandbox: SandboxServer, warehouse: Path) -> None:
    summary = users.run(settings_for(sandbox, f"duckdb:///{warehouse}"), mapping=preset("users"), clock=lambda: AS_OF)
    check_common(summary, sandbox, {"plan": "string", "created_at": "date"})
    assert summary["rejected_by_reason"] == {"user_id_too_long": 20}  # the demo's 200-character ids

    source = {r["id"]: r for r in rows(warehouse, "SELECT * FROM segment.users WHERE length(id) <= 100")}
    got = profiles(sandbox)
    assert set(got) == set(source)
    for user_id, row in source.items():
        p = got[user_id]
        assert p.get("firstName") == (row["first_name"] or None)
        assert p.get("lastName") == (row["last_name"] or None)
        assert p.get("city") == (row["address_city"] or None)
        assert p.get("country") == (row["address_country"] or None)
        assert p.get("postalCode") == (row["address_postal_code"] or None)
        assert p["attributes"]["plan"] == row["plan"]
        if row["email"] and "email" in p:
            assert p["email"].lower() == row["email"].strip().lower()
    with_phone = [u for u, r in source.items() if r["phone"] and r["phone"].startswith("+91-")]
    assert with_phone
    for user_id in with_phone:
        assert got[user_id]["phone"] == "+91" + source[user_id]["phone"][4:].replace("-", "")
    assert summary["values_dropped_by_reason"].get("invalid_phone", 0) == sum(
        1 for u, r in source.items() if r["phone"] and "phone" not in got[u]
    )


def test_segment_latest_identify_wins_on_duckdb(sandbox: SandboxServer, warehouse: Path) -> None:
    summary = users.run(
        settings_for(sandbox, f"duckdb:///{warehouse}"), mapping=preset("identifies"), clock=lambda: AS_OF
    )
    check_common(summary, sandbox, {"plan": "string"})
    latest = {r["user_id"]: r for r in rows(warehouse, LATEST_IDENTIFY) if len(r["user_id"]) <= 100}
    got = profiles(sandbox)
    assert set(got) == set(latest)
    # Users whose plan changed over their identifies: the newest identify's plan is the one sent.
    changed = rows(
        warehouse,
        "SELECT user_id FROM segment.identifies WHERE length(user_id) <= 100 "
        "GROUP BY 1 HAVING count(DISTINCT plan) > 1",
    )
    assert changed
    for user_id, row in latest.items():
        assert got[user_id]["attributes"]["plan"] == row["plan"]
        assert got[user_id].get("city") == (row["address_city"] or None)
        if row["email"] is None:  # an identify without the trait leaves the field out: no stale value sent
            assert "email" not in got[user_id]
    second = users.run(
        settings_for(sandbox, f"duckdb:///{warehouse}"), mapping=preset("identifies"), clock=lambda: AS_OF
    )
    assert second["requests"] == 0


PG_SEGMENT = [
    "CREATE SCHEMA segment",
    """CREATE TABLE segment.users (
        id TEXT, received_at TIMESTAMPTZ, uuid_ts TIMESTAMPTZ, context_library_name TEXT, email TEXT,
        first_name TEXT, last_name TEXT, phone TEXT, address_city TEXT, address_country TEXT,
        address_postal_code TEXT, company_name TEXT, birthday TEXT, gender TEXT, plan TEXT, logins INTEGER)""",
    """INSERT INTO segment.users VALUES
        ('seg_1', '2026-10-01 10:00+00', '2026-10-01 10:05+00', 'analytics.js', ' Asha@Example.com ', 'Asha', 'Rao',
         '+91-98765-43210', 'Pune', 'India', '411001', 'Acme', '1990-05-17', 'female', 'pro', 12),
        ('seg_2', '2026-10-02 10:00+00', '2026-10-02 10:05+00', 'analytics.js', 'no-at-sign', 'Ben', NULL,
         'call me', 'London', 'United Kingdom', NULL, NULL, NULL, 'M', 'free', NULL),
        ('seg_3', '2026-10-03 10:00+00', '2026-10-03 10:05+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
         NULL, NULL, NULL, NULL, 3)""",
    """CREATE TABLE segment.identifies (
        id TEXT, anonymous_id TEXT, user_id TEXT, "timestamp" TIMESTAMPTZ, received_at TIMESTAMPTZ,
        sent_at TIMESTAMPTZ, context_ip TEXT, email TEXT, first_name TEXT, phone TEXT, plan TEXT)""",
    """INSERT INTO segment.identifies VALUES
        ('i1', 'a1', 'seg_1', '2026-09-01 10:00+00', '2026-09-01 10:00:01+00', NULL, '10.0.0.1',
         'old@example.com', 'Asha', NULL, 'free'),
        ('i2', 'a1', 'seg_1', '2026-10-01 10:00+00', '2026-10-01 10:00:01+00', NULL, '10.0.0.1',
         'asha@example.com', 'Asha R', '+91 98765 43210', 'pro'),
        ('i3', 'a2', 'seg_2', '2026-10-05 10:00+00', '2026-10-05 10:00:01+00', NULL, '10.0.0.2',
         'ben@example.com', 'Ben', NULL, 'free'),
        ('i4', 'a2', 'seg_2', '2026-10-02 10:00+00', '2026-10-02 10:00:01+00', NULL, '10.0.0.2',
         'older@example.com', 'Benjamin', NULL, 'pro'),
        ('i5', 'a3', NULL, '2026-10-06 10:00+00', '2026-10-06 10:00:01+00', NULL, '10.0.0.3',
         'anon@example.com', NULL, NULL, NULL)""",
]


def test_segment_preset_on_postgres(sandbox: SandboxServer, pg_db: str) -> None:
    engine = make_engine(pg_db)
    with engine.begin() as conn:
        for statement in PG_SEGMENT:  # fixed test DDL and literals
            conn.execute(sa.text(statement))
    engine.dispose()
    settings = settings_for(sandbox, pg_db)

    summary = users.run(settings, mapping=preset("users"), run_id="seg-users", clock=lambda: AS_OF)
    check_common(summary, sandbox, {"plan": "string", "logins": "number"})
    assert summary["accepted"] == 3 and summary["values_dropped_by_reason"] == {"invalid_email": 1, "invalid_phone": 1}
    got = profiles(sandbox)
    assert got["seg_1"] == {
        "userId": "seg_1",
        "firstName": "Asha",
        "lastName": "Rao",
        "email": "Asha@example.com",
        "phone": "+919876543210",
        "city": "Pune",
        "country": "India",
        "postalCode": "411001",
        "company": "Acme",
        "birthDate": "1990-05-17T00:00:00+0000",
        "gender": "female",
        "attributes": {"plan": "pro", "logins": 12},
    }
    assert got["seg_2"]["gender"] == "male" and "phone" not in got["seg_2"] and "email" not in got["seg_2"]
    assert got["seg_3"] == {"userId": "seg_3", "attributes": {"logins": 3}}

    sandbox.reset()
    summary = users.run(settings, mapping=preset("identifies"), run_id="seg-identifies", clock=lambda: AS_OF)
    check_common(summary, sandbox, {"plan": "string"})
    assert summary["extracted"] == 2 and summary["accepted"] == 2  # the anonymous-only identify is not a user
    got = profiles(sandbox)
    assert got["seg_1"] == {
        "userId": "seg_1",
        "firstName": "Asha R",
        "email": "asha@example.com",
        "phone": "+919876543210",
        "attributes": {"plan": "pro"},
    }
    assert got["seg_2"] == {
        "userId": "seg_2",
        "firstName": "Ben",
        "email": "ben@example.com",
        "attributes": {"plan": "free"},
    }
