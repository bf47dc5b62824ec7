"""Switching a deployment between the full read and the in-warehouse diff re-sends no unchanged user, and
sources the warehouse cannot hash fall back to the full read with the reason."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa

from etl.config import Settings
from etl.errors import ConfigError
from etl.mappings.users import user_mapping_from_dict
from etl.pipelines import users
from etl.state.store import USER_STATE
from etl.warehouse.engine import make_engine
from tests.helpers.sandbox import sandbox_fixture, sandbox_settings
from tests.helpers.warehouse import AS_OF, warehouse_fixture
from webengage_dev.demo.mutate import change_users
from webengage_dev.sandbox import SandboxServer

KEY = "diff-migration-key-not-logged-3"

warehouse = warehouse_fixture(1500)
sandbox = sandbox_fixture(KEY, bulk_users_rpm=60_000)


def settings_for(sandbox: SandboxServer, warehouse: Path, **extra: Any) -> Settings:
    return sandbox_settings(sandbox, warehouse, KEY, **({"bulk_users_rpm": 60_000, "expected_latency_s": 0.05} | extra))


def source_hashes(warehouse: Path) -> dict[str, str | None]:
    engine = make_engine(f"duckdb:///{warehouse}")
    with engine.connect() as conn:
        rows = conn.execute(sa.select(USER_STATE.c.user_id, USER_STATE.c.source_hash)).all()
    engine.dispose()
    return {r[0]: r[1] for r in rows}


def note(summary: dict[str, Any], start: str) -> str:
    return next(n for n in summary["notes"] if n.startswith(start))


def moved(summary: dict[str, Any]) -> int:
    return int(note(summary, "in-warehouse diff:").split(", ")[1].split(" moved")[0])


def test_switching_to_the_warehouse_diff_resends_nothing(sandbox: SandboxServer, warehouse: Path) -> None:
    full = settings_for(sandbox, warehouse, diff_mode="python")
    first = users.run(full, run_id="py1", clock=lambda: AS_OF)
    assert first["accepted"] > 1000
    assert set(source_hashes(warehouse).values()) == {None}  # the full read stores no warehouse hash
    requests = sandbox.stats()["requests"]["bulk-users"]

    # The migration run: reads every row once, finds each unchanged under the stored hash, stores its SQL hash.
    pushed = settings_for(sandbox, warehouse)  # auto: the state is in the warehouse
    migrate = users.run(pushed, run_id="wh1", clock=lambda: AS_OF)
    assert migrate["sent"] == 0 and migrate["requests"] == 0
    assert sandbox.stats()["requests"]["bulk-users"] == requests
    assert {k: migrate[k] for k in ("extracted", "unchanged", "rejected")} == {
        k: first[k] - (first["accepted"] if k == "unchanged" else 0) for k in ("extracted", "unchanged", "rejected")
    } | {"unchanged": first["accepted"]}
    # Read once (but the losing rows of duplicated ids, resolved in SQL: reported, not moved).
    losers = first["rejected_by_reason"]["duplicate_user_id"]
    assert first["extracted"] - losers <= moved(migrate) < first["extracted"]
    hashes = source_hashes(warehouse)
    assert None not in hashes.values() and len(hashes) == first["accepted"]

    # From now on unchanged users stay in the warehouse: only rows the worker must see again move.
    steady = users.run(pushed, run_id="wh2", clock=lambda: AS_OF)
    assert steady["sent"] == 0 and steady["extracted"] == first["extracted"]
    bad_rows = first["rejected"]
    assert moved(steady) <= bad_rows
    changed = change_users(warehouse, share=0.01, seed=5, as_of=AS_OF)
    third = users.run(pushed, run_id="wh3", clock=lambda: AS_OF)
    assert third["accepted"] == changed and third["requests"] == math.ceil(changed / 25)
    assert moved(third) <= changed + bad_rows

    # And back: the full read still knows every accepted payload; what it accepts loses its SQL hash, which
    # the next warehouse run confirms without sending.
    change_users(warehouse, share=0.01, seed=6, as_of=AS_OF)
    back = users.run(full, run_id="py2", clock=lambda: AS_OF)
    assert back["accepted"] > 0 and back["unchanged"] == first["accepted"] - back["accepted"]
    cleared = [k for k, v in source_hashes(warehouse).items() if v is None]
    assert len(cleared) == back["accepted"]
    before = sandbox.stats()["requests"]["bulk-users"]
    again = users.run(pushed, run_id="wh4", clock=lambda: AS_OF)
    assert again["sent"] == 0 and sandbox.stats()["requests"]["bulk-users"] == before
    assert "found unchanged here" in note(again, "in-warehouse diff:")
    assert None not in source_hashes(warehouse).values()


def test_a_column_the_warehouse_cannot_hash_falls_back_with_the_reason(sandbox: SandboxServer, tmp_path: Path) -> None:
    path = tmp_path / "blobs.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE people (user_id VARCHAR, email VARCHAR, avatar BLOB)")
        con.execute("INSERT INTO people SELECT 'b' || i, 'b' || i || '@example.com', 'x'::BLOB FROM range(40) t(i)")
    query = tmp_path / "people.sql"
    query.write_text("SELECT * FROM people", encoding="utf-8")
    mapping = user_mapping_from_dict(
        {
            "source": {"query": str(query), "user_id": "user_id"},
            "system_attributes": {"email": "email"},
            "custom_attributes": {"avatar": {"type": "string"}},
        }
    )
    first = users.run(settings_for(sandbox, path), mapping=mapping, run_id="b1", clock=lambda: AS_OF)
    assert first["accepted"] == 40
    assert "column 'avatar' has SQL type BLOB" in note(first, "full read, diff in the worker:")
    second = users.run(settings_for(sandbox, path), mapping=mapping, run_id="b2", clock=lambda: AS_OF)
    assert second["unchanged"] == 40 and second["sent"] == 0


def test_forcing_the_warehouse_diff_where_it_cannot_run_fails_before_sending(
    sandbox: SandboxServer, warehouse: Path, tmp_path: Path
) -> None:
    elsewhere = f"duckdb:///{tmp_path / 'state.duckdb'}"
    settings = settings_for(sandbox, warehouse, diff_mode="warehouse", state_url=elsewhere)
    with pytest.raises(ConfigError, match=r"diff_mode.*STATE_URL"):
        users.run(settings, run_id="forced", clock=lambda: AS_OF)
    assert sandbox.stats()["requests"] == {}
    auto = users.run(settings_for(sandbox, warehouse, state_url=elsewhere), run_id="auto", clock=lambda: AS_OF)
    assert auto["accepted"] > 0 and "another database" in note(auto, "full read, diff in the worker:")


def test_users_diff_is_validated() -> None:
    with pytest.raises(ConfigError, match="diff_mode"):
        Settings.from_mapping({"diff_mode": "sometimes"}, credentials=False)
