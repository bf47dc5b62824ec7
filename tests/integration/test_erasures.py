"""Erasure of deleted users end to end: demo warehouse (DuckDB) -> profile sync -> users deleted in the
warehouse -> one GDPR erasure request each in the real sandbox, the profile gone there and the user's sync state
gone here; the guard; dry run and plan; the three ways to detect a deletion, in SQL (state in the warehouse) and
in Python (state elsewhere)."""

from __future__ import annotations

import dataclasses
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from etl.cli import app
from etl.config import Settings
from etl.errors import DeliveryError, TerminalAPIError
from etl.mappings.users import UserMapping, user_mapping_from_dict
from etl.pipelines import erasures, users
from etl.plan import plan, render_plan
from etl.resources import DEFAULT_USERS_MAPPING, packaged
from etl.state import erasures as journal
from etl.state.store import StateStore
from etl.warehouse.engine import make_engine
from tests.helpers.sandbox import FAST, profiles, sandbox_fixture, sandbox_settings
from tests.helpers.warehouse import AS_OF, duck, user_state_ids, warehouse_fixture
from webengage_dev.sandbox import SandboxServer

KEY = "erasure-test-key-not-logged-7"
warehouse = warehouse_fixture(600)
sandbox = sandbox_fixture(KEY, bulk_users_rpm=FAST, gdpr_rpm=FAST)


def mapping_with(**deletions: Any) -> UserMapping:
    doc = tomllib.loads(packaged(DEFAULT_USERS_MAPPING).read_text(encoding="utf-8"))
    return user_mapping_from_dict({**doc, "deletions": deletions or "erase"})


def settings_for(sandbox: SandboxServer, warehouse: Path, **extra: Any) -> Settings:
    values = {"bulk_users_rpm": FAST, "gdpr_rpm": FAST, "expected_latency_s": 0.05} | extra
    return sandbox_settings(sandbox, warehouse, KEY, **values)


def synced(sandbox: SandboxServer, warehouse: Path, settings: Settings, mapping: UserMapping) -> list[str]:
    users.run(settings, mapping=mapping, run_id="users-1", clock=lambda: AS_OF)
    ids = sorted(user_state_ids(warehouse))
    assert len(ids) > 500 and set(ids) <= set(profiles(sandbox))
    return ids


def delete_rows(warehouse: Path, ids: list[str]) -> None:
    with duckdb.connect(str(warehouse)) as con:
        con.execute("DELETE FROM users WHERE user_id IN (SELECT unnest(?))", [ids])


def gdpr(sandbox: SandboxServer) -> list[dict[str, Any]]:
    with httpx.Client(base_url=sandbox.url) as http:
        body: dict[str, Any] = http.get("/_sandbox/gdpr").raise_for_status().json()
    return list(body["requests"])


def requests_by_status(warehouse: Path | str) -> dict[str, int]:
    with StateStore(make_engine(duck(warehouse))) as store:
        return journal.status_counts(store)


def test_users_absent_from_the_source_are_erased_once_and_forgotten(sandbox: SandboxServer, warehouse: Path) -> None:
    mapping = mapping_with(mode="erase")
    settings = settings_for(sandbox, warehouse)
    ids = synced(sandbox, warehouse, settings, mapping)
    gone = ids[:5]  # under 1% of the synced users: the guard lets it through
    with duckdb.connect(str(warehouse)) as con:  # cohort membership the erasure must remove too
        con.execute(
            "INSERT INTO we_cohort_members SELECT 'vip', unnest(?), true, false, 1, TIMESTAMP '2026-10-01', 'c1'",
            [gone[:2] + ids[10:12]],
        )
    delete_rows(warehouse, gone)

    summary = erasures.run(settings, mapping=mapping, run_id="erase-1", clock=lambda: AS_OF)

    assert summary["status"] == "success" and summary["extracted"] == 5 and summary["accepted"] == 5
    assert summary["detected_by"] == {"absent": 5} and summary["synced_users"] == len(ids)
    received = gdpr(sandbox)
    assert sorted(r["user_id"] for r in received) == gone
    assert {r["subject_request_type"] for r in received} == {"erasure"}
    assert sandbox.stats()["violations"] == 0, sandbox.stats()["violations_by_rule"]
    assert not set(gone) & set(profiles(sandbox))  # the sandbox erased the profiles
    assert user_state_ids(warehouse) == set(ids) - set(gone)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        members = {r[0] for r in con.execute("SELECT user_id FROM we_cohort_members").fetchall()}
    assert members == set(ids[10:12])
    assert requests_by_status(warehouse) == {"submitted": 5}

    later = AS_OF + timedelta(hours=1)  # requests are checked from the next run on
    again = erasures.run(settings, mapping=mapping, run_id="erase-2", clock=lambda: later)
    assert again["extracted"] == 0 and again["sent"] == 0 and again["status_checks"] == 5
    assert again["statuses_seen"] == {"completed": 5} and again["pending"] == 0
    assert len(gdpr(sandbox)) == 5 and sandbox.stats()["gdpr_duplicates"] == 0
    assert requests_by_status(warehouse) == {"completed": 5}

    out = CliRunner().invoke(app, ["runs", "show", "erase-1"], env={"WAREHOUSE_URL": duck(warehouse)})
    assert out.exit_code == 0, out.output
    assert "erasure requests journaled by this run: 5" in out.output and "completed" in out.output
    assert "deleted users found 5" in out.output


def test_the_guard_stops_a_five_percent_deletion_before_sending(sandbox: SandboxServer, warehouse: Path) -> None:
    mapping = mapping_with(mode="erase")
    settings = settings_for(sandbox, warehouse)
    ids = synced(sandbox, warehouse, settings, mapping)
    gone = ids[: len(ids) // 20]  # 5 %
    delete_rows(warehouse, gone)

    with pytest.raises(erasures.ErasureGuardError, match=f"{len(gone)} of {len(ids)} synced users"):
        erasures.run(settings, mapping=mapping, run_id="erase-guarded", clock=lambda: AS_OF)
    assert gdpr(sandbox) == [] and requests_by_status(warehouse) == {}
    assert user_state_ids(warehouse) == set(ids)
    with StateStore(make_engine(duck(warehouse))) as store:
        [row] = store.runs(run_id="erase-guarded")
    assert row["status"] == "failed" and "max_erasure_share" in row["message"]

    # A higher share lets it through, as does the override.
    raised = erasures.run(
        settings_for(sandbox, warehouse, max_erasure_share=0.06), mapping=mapping, run_id="erase-share"
    )
    assert raised["accepted"] == len(gone)
    assert sorted(r["user_id"] for r in gdpr(sandbox)) == gone


def test_override_lets_the_deletion_through(sandbox: SandboxServer, warehouse: Path) -> None:
    mapping = mapping_with(mode="erase")
    settings = settings_for(sandbox, warehouse)
    ids = synced(sandbox, warehouse, settings, mapping)
    gone = ids[: len(ids) // 20]
    delete_rows(warehouse, gone)
    summary = erasures.run(settings, mapping=mapping, run_id="erase-override", override_guard=True)
    assert summary["accepted"] == len(gone) and "guard overridden" in " ".join(summary["notes"])


def test_dry_run_and_plan_count_the_erasures_and_their_time(sandbox: SandboxServer, warehouse: Path) -> None:
    mapping = mapping_with(mode="erase")
    settings = settings_for(sandbox, warehouse)
    ids = synced(sandbox, warehouse, settings, mapping)
    gone = ids[:4]
    delete_rows(warehouse, gone)

    dry = erasures.run(settings, mapping=mapping, dry_run=True, run_id="erase-dry")
    assert dry["sent"] == 4 and dry["accepted"] == 0 and dry["requests"] == 0
    assert dry["eta_minutes"] == pytest.approx(4 / dry["gdpr_rpm"], abs=0.01)
    assert gdpr(sandbox) == [] and requests_by_status(warehouse) == {}

    # plan reads the packaged mapping: point it at one that erases
    path = warehouse.parent / "users.toml"
    text = packaged(DEFAULT_USERS_MAPPING).read_text(encoding="utf-8")
    path.write_text(text.replace("[source]", 'deletions = "erase"\n\n[source]', 1), encoding="utf-8")
    at_default = Settings.from_mapping(
        {"warehouse_url": duck(warehouse), "users_mapping": str(path)}, credentials=False
    )
    lines = plan(at_default, users=True, cohorts=False, as_of=AS_OF)
    [line] = [x for x in lines if x.pipeline == "erasures"]
    assert (line.rows, line.requests, line.rpm) == (4, 4, 98.0)
    assert "erasures: 4 deleted users → 4 requests → 3 s at 98 req/min" in render_plan(lines, at_default)


@pytest.mark.parametrize("state", ["warehouse", "separate"])
def test_deletion_column_and_table_in_sql_and_in_python(
    sandbox: SandboxServer, warehouse: Path, tmp_path: Path, state: str
) -> None:
    query = tmp_path / "users.sql"
    query.write_text("SELECT * FROM users", encoding="utf-8")
    with duckdb.connect(str(warehouse)) as con:
        con.execute("ALTER TABLE users ADD COLUMN is_deleted VARCHAR DEFAULT 'no'")
        con.execute("CREATE SCHEMA gdpr")
        con.execute("CREATE TABLE gdpr.deleted_users (id VARCHAR)")
    extra = {"state_url": duck(tmp_path / "state.duckdb")} if state == "separate" else {}
    settings = settings_for(sandbox, warehouse, **extra)
    base = mapping_with(mode="erase", column="is_deleted", table="gdpr.deleted_users", user_id="id")
    mapping = dataclasses.replace(base, query=str(query))
    assert mapping.deletions.sources == ("column:is_deleted", "table:gdpr.deleted_users")
    users.run(settings, mapping=mapping, run_id="users-1")
    state_path = tmp_path / "state.duckdb" if extra else warehouse
    ids = sorted(user_state_ids(state_path))
    flagged, listed, both = ids[:2], ids[2:4], ids[4]
    with duckdb.connect(str(warehouse)) as con:
        con.execute("UPDATE users SET is_deleted = 'TRUE' WHERE user_id IN (SELECT unnest(?))", [[*flagged, both]])
        # listed: a never-synced id too, which gets no request; a padded id matches its synced user
        con.execute("INSERT INTO gdpr.deleted_users SELECT unnest(?)", [[*listed, f" {both} ", "never-synced-1"]])
        con.execute("UPDATE users SET first_name = 'Changed' WHERE user_id IN (SELECT unnest(?))", [ids[:5]])

    # the profile sync no longer sends users marked deleted (it would re-create them)
    again = users.run(settings, mapping=mapping, run_id="users-2")
    assert again["rejected_by_reason"].get("deleted_user", 0) >= 5 and again["accepted"] == 0, again

    summary = erasures.run(settings, mapping=mapping, run_id="erase-1")
    assert summary["accepted"] == 5, summary
    assert summary["detected_by"] == {"column:is_deleted": 3, "table:gdpr.deleted_users": 3}
    assert sorted(r["user_id"] for r in gdpr(sandbox)) == sorted([*flagged, *listed, both])
    assert user_state_ids(state_path) == set(ids) - {*flagged, *listed, both}
    # nothing absent: users still in the source are not erased by absence when the rules list them
    assert "absent" not in summary["detected_by"]


def test_ignore_mode_sends_nothing(sandbox: SandboxServer, warehouse: Path) -> None:
    mapping = mapping_with(mode="ignore")
    settings = settings_for(sandbox, warehouse)
    ids = synced(sandbox, warehouse, settings, mapping)
    delete_rows(warehouse, ids[:3])
    summary = erasures.run(settings, mapping=mapping, run_id="erase-ignored")
    assert summary["extracted"] == 0 and summary["sent"] == 0 and gdpr(sandbox) == []
    assert any("ignore" in n for n in summary["notes"])


def test_a_request_that_never_got_through_is_replayed_by_the_next_run(sandbox: SandboxServer, warehouse: Path) -> None:
    mapping = mapping_with(mode="erase")
    settings = settings_for(sandbox, warehouse)
    ids = synced(sandbox, warehouse, settings, mapping)
    delete_rows(warehouse, ids[:2])
    sandbox.update_config(gdpr_rpm=0, error_5xx_rate=0.0)
    # an account whose GDPR path differs: 404 is terminal (wrong license/host/path), nothing recorded as sent
    wrong = settings_for(sandbox, warehouse, gdpr_path="gdpr/v2/requests")
    with pytest.raises(TerminalAPIError, match=r"404.*WEBENGAGE_GDPR_PATH"):
        erasures.run(wrong, mapping=mapping, run_id="erase-wrong-path")
    # the first request was journaled before it went (it stops the run): replayed next, the other sent fresh
    assert requests_by_status(warehouse) == {"journaled": 1}
    summary = erasures.run(settings, mapping=mapping, run_id="erase-ok")
    assert summary["replayed_requests"] == 1 and summary["replayed_accepted"] == 1
    assert summary["sent"] == summary["accepted"] == summary["extracted"] == 1  # the replayed one is gone from state
    assert sorted(r["user_id"] for r in gdpr(sandbox)) == ids[:2]
    assert requests_by_status(warehouse) == {"submitted": 2}


def test_postgres_warehouse_and_state(sandbox: SandboxServer, pg_db: str, tmp_path: Path) -> None:
    engine = sa.create_engine(pg_db)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE people (user_id TEXT, updated_at TIMESTAMPTZ, first_name TEXT)"))
        conn.execute(
            sa.text(
                "INSERT INTO people SELECT 'pg_' || lpad(i::text, 4, '0'), TIMESTAMPTZ '2026-10-01 00:00+00', "
                "'Name ' || i FROM generate_series(1, 400) AS i"
            )
        )
        conn.execute(sa.text("CREATE TABLE deleted_users (user_id TEXT, deleted_at TIMESTAMPTZ)"))
    engine.dispose()
    query = tmp_path / "people.sql"
    query.write_text("SELECT user_id, updated_at, first_name FROM people", encoding="utf-8")
    mapping = user_mapping_from_dict(
        {
            "source": {"query": str(query), "user_id": "user_id"},
            "system_attributes": {"first_name": "firstName"},
            "deletions": {"mode": "erase", "absent": True, "table": "deleted_users"},
        }
    )
    settings = sandbox_settings(sandbox, pg_db, KEY, bulk_users_rpm=FAST, gdpr_rpm=FAST)
    users.run(settings, mapping=mapping, run_id="pg-users")
    engine = sa.create_engine(pg_db)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM people WHERE user_id IN ('pg_0001', 'pg_0002')"))
        conn.execute(sa.text("INSERT INTO deleted_users VALUES ('pg_0003', now()), ('pg_0001', now())"))
    summary = erasures.run(settings, mapping=mapping, run_id="pg-erase")
    assert summary["accepted"] == 3
    assert summary["detected_by"] == {"absent": 2, "table:deleted_users": 2}
    assert sorted(r["user_id"] for r in gdpr(sandbox)) == ["pg_0001", "pg_0002", "pg_0003"]
    with engine.connect() as conn:
        left = {r[0] for r in conn.execute(sa.text("SELECT user_id FROM we_user_state"))}
        statuses = dict(conn.execute(sa.text("SELECT status, count(*) FROM we_erasure_requests GROUP BY status")).all())
    engine.dispose()
    assert len(left) == 397 and not left & {"pg_0001", "pg_0002", "pg_0003"}
    assert statuses == {"submitted": 3}
    again = erasures.run(settings, mapping=mapping, run_id="pg-erase-2")
    assert again["sent"] == 0 and again["statuses_seen"] == {"completed": 3}


def test_a_refused_request_is_sent_again_only_while_its_user_is_deleted(
    sandbox: SandboxServer, warehouse: Path
) -> None:
    mapping = mapping_with(mode="erase")
    settings = settings_for(sandbox, warehouse)
    ids = synced(sandbox, warehouse, settings, mapping)
    gone = ids[:3]
    with duckdb.connect(str(warehouse)) as con:
        kept = con.execute("SELECT * FROM users WHERE user_id = ?", [gone[0]]).fetchall()
    delete_rows(warehouse, gone)
    # A path whose endpoint answers 400 to this body: every request refused (nothing happened there).
    refusing = settings_for(sandbox, warehouse, gdpr_path="bulk-users")
    with pytest.raises(DeliveryError, match="delivered nothing"):
        erasures.run(refusing, mapping=mapping, run_id="erase-refused")
    assert requests_by_status(warehouse) == {"rejected": 3} and gdpr(sandbox) == []
    assert user_state_ids(warehouse) >= set(gone)  # refused: the state stays
    with duckdb.connect(str(warehouse)) as con:  # one of them comes back before the next run
        con.executemany("INSERT INTO users VALUES (" + ", ".join("?" * len(kept[0])) + ")", kept)

    summary = erasures.run(settings, mapping=mapping, run_id="erase-again")
    assert summary["accepted"] == 2 and summary["extracted"] == 2
    assert sorted(r["user_id"] for r in gdpr(sandbox)) == gone[1:]
    assert requests_by_status(warehouse) == {"rejected": 1, "submitted": 2}
    with StateStore(make_engine(duck(warehouse))) as store:
        groups = {(g["pipeline"], g["status"]): g["rows"] for g in store.reject_groups("erasures")}
    assert groups == {("erasures", "open"): 1}  # the user who came back: its refusal stays on record


def test_segment_preset_users_absent_from_segment_users(sandbox: SandboxServer, warehouse: Path) -> None:
    mapping = user_mapping_from_dict(
        {"source": {"preset": "segment", "segment_schema": "segment"}, "deletions": "erase"}
    )
    settings = settings_for(sandbox, warehouse)
    users.run(settings, mapping=mapping, run_id="seg-users")
    ids = sorted(user_state_ids(warehouse))
    assert len(ids) > 100
    with duckdb.connect(str(warehouse)) as con:
        con.execute("DELETE FROM segment.users WHERE id IN (SELECT unnest(?))", [ids[:2]])
    summary = erasures.run(settings, mapping=mapping, run_id="seg-erase")
    assert summary["accepted"] == 2 and summary["detected_by"] == {"absent": 2}
    assert sorted(r["user_id"] for r in gdpr(sandbox)) == ids[:2]
