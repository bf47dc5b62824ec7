from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from etl.state import RejectRow, StateStore
from etl.warehouse.engine import make_engine

T0 = datetime(2026, 11, 1, 12, 0, 0)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path / 'state.duckdb'}"
    return str(request.getfixturevalue("pg_db"))


def test_checkpoint_and_lookup_roundtrip(state_url: str) -> None:
    with StateStore(make_engine(state_url), clock=lambda: T0) as store:
        assert store.user_state(["a"]) == {}
        with store.transaction() as conn:
            store.checkpoint_users(conn, [("a", -5, "101"), ("b", 2**62, "1")], "run1")
        with store.transaction() as conn:
            store.checkpoint_users(conn, [("a", 7, "111")], "run2")
        assert store.user_state(["a", "b", "zz"]) == {"a": (7, "111"), "b": (2**62, "1")}
        assert store.count_users() == 2


def test_transaction_rolls_back_on_error(state_url: str) -> None:
    with StateStore(make_engine(state_url), clock=lambda: T0) as store:
        with pytest.raises(RuntimeError), store.transaction() as conn:
            store.checkpoint_users(conn, [("a", 1, "1")], "run1")
            raise RuntimeError("crash before commit")
        assert store.user_state(["a"]) == {}


def test_rejects_lifecycle(state_url: str) -> None:
    with StateStore(make_engine(state_url), clock=lambda: T0) as store:
        bad = RejectRow(row_key="u1", column="phone", reason="invalid_phone", detail="not a number")
        for run in ("r1", "r2"):
            with store.transaction() as conn:
                store.record_rejects(conn, "users", [bad], run)
        [row] = store.open_rejects("users")
        assert row["attempts"] == 2 and row["status"] == "open" and row["reason"] == "invalid_phone"
        with store.transaction() as conn:
            store.resolve_rejects(conn, "users", ["u1"], "r3")
        assert store.open_rejects("users") == []


def test_registry_keeps_first_type_and_releases_by_owner(state_url: str) -> None:
    with StateStore(make_engine(state_url), clock=lambda: T0) as store:
        store.register_attributes("users", {"plan": "string", "vip": "boolean"}, "users")
        store.register_attributes("users", {"plan": "number"}, "other")
        assert store.registry("users") == {"plan": ("string", "users"), "vip": ("boolean", "users")}
        assert store.release_attributes("users", "users") == 2
        assert store.registry("users") == {}


def test_runs_history(state_url: str) -> None:
    with StateStore(make_engine(state_url), clock=lambda: T0) as store:
        store.start_run(run_id="r1", pipeline="users", window=(T0, T0))
        store.finish_run(run_id="r1", pipeline="users", status="success", counts={"extracted": 3})
        [run] = store.runs(pipeline="users")
        assert run["status"] == "success" and run["counts"] == {"extracted": 3}


def test_resolve_then_record_keeps_only_the_new_reject(state_url: str) -> None:
    """A row sent without its bad phone: its old reject resolves, the phone reject found now stays open."""
    with StateStore(make_engine(state_url), clock=lambda: T0) as store:
        old = RejectRow(row_key="u1", column="email", reason="invalid_email")
        new = RejectRow(row_key="u1", column="phone", reason="invalid_phone")
        with store.transaction() as conn:
            store.record_rejects(conn, "users", [old], "r1")
        with store.transaction() as conn:
            store.resolve_rejects(conn, "users", ["u1"], "r2")
            store.record_rejects(conn, "users", [new], "r2")
        assert [(r["column_name"], r["reason"]) for r in store.open_rejects("users")] == [("phone", "invalid_phone")]
        assert store.open_reject_keys("users") == {"u1"}


def test_redriven_rejects_die_after_max_attempts_and_can_be_reopened(state_url: str) -> None:
    with StateStore(make_engine(state_url), clock=lambda: T0) as store:
        flaky = RejectRow(row_key="u1", column="*", reason="transient_failure", kind="transient")
        bad = RejectRow(row_key="u2", column="phone", reason="invalid_phone")
        for run in ("r1", "r2", "r3"):
            with store.transaction() as conn:
                store.record_rejects(conn, "users", [flaky, bad], run, max_attempts=3)
        assert store.dead_reject_keys("users") == {"u1"}  # data rejects never die
        assert store.reopen_dead("users") == 1
        assert store.dead_reject_keys("users") == set()
