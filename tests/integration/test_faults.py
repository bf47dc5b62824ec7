"""Fault suite K2–K4: a bad night on the API, bad settings, and the databases going away.

K2: the sandbox answers 10 % 5xx, 2 % timeouts (before and after storing), 429 storms without Retry-After
and 2xx with error bodies: users and events runs complete, every row ends in one bucket, the sandbox holds
exactly the warehouse's data and no event twice.
K3: 401, 403, 404, an unresolvable host and a refused connection stop the run after one request with a
message naming the cause and the fix; nothing is marked sent.
K4: the warehouse connection is killed mid-run, or the state database is locked by another process: the
run fails with a clear message, nothing is marked sent that was not, and the next run finishes the job.
"""

from __future__ import annotations

import functools
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from etl.config import Settings
from etl.errors import TerminalAPIError
from etl.mappings.users import user_mapping_from_dict
from etl.pipelines import events, users
from etl.report import RunReport
from etl.state import ledger
from etl.state.store import StateStore
from etl.warehouse import adbc_reader
from etl.warehouse.engine import DatabaseLockedError, make_engine
from tests.helpers.events import WINDOW, canonical, reference_events
from tests.helpers.sandbox import FAST, profiles, sandbox_server, sandbox_settings
from tests.helpers.warehouse import duck, user_state_ids, valid_user_ids, warehouse_fixture
from webengage_dev.sandbox import SandboxServer

KEY = "fault-suite-key-not-logged-3"


warehouse = warehouse_fixture(600)


def settings_for(url: str, warehouse: str, **extra: Any) -> Settings:
    rates = {
        "bulk_users_rpm": FAST,
        "bulk_events_rpm": FAST,
        "users_rpm": FAST,
        "events_rpm": FAST,
        "expected_latency_s": 0.05,
    }
    return sandbox_settings(url, warehouse, KEY, **(rates | extra))


def sandbox_ids(sandbox: SandboxServer) -> set[str]:
    return set(profiles(sandbox))


def runs_of(url: str, pipeline: str) -> dict[str, dict[str, Any]]:
    with StateStore(make_engine(url)) as store:
        return {r["run_id"]: r for r in store.runs(pipeline=pipeline)}


# -- K2: a bad night ---------------------------------------------------------------------------------------
FAULTS = {
    "error_5xx_rate": 0.10,
    "timeout_rate": 0.02,
    "timeout_after_store_rate": 0.02,  # stored, then too slow: the retry must be de-duplicated by its id
    "error_body_2xx_rate": 0.03,
    "throttle_storm_rate": 0.05,  # 429 without Retry-After, under the limit
    "retry_after": False,
    "timeout_sleep_s": 2.0,
}
# A short read timeout (the sandbox's timeouts last 2 s) and short backoffs keep the test fast; a 429
# without Retry-After waits min(backoff_max_s, the next minute boundary).
PATIENT = {"read_timeout_s": 1.0, "backoff_base_s": 0.01, "backoff_max_s": 0.2, "max_retries": 8}


@pytest.fixture(scope="module")
def faulty() -> Iterator[SandboxServer]:
    with sandbox_server(KEY, bulk_users_rpm=FAST, bulk_events_rpm=FAST, seed=11, **FAULTS) as server:
        yield server


def test_k2_users_and_events_complete_under_the_fault_profile(faulty: SandboxServer, warehouse: Path) -> None:
    settings = settings_for(faulty.url, duck(warehouse), **PATIENT)
    summary = users.run(settings, run_id="k2-users")
    ev = events.run(settings, window=WINDOW, run_id="k2-events")
    stats = faulty.stats()
    faults = stats["faults"]
    print(
        f"FIGURES K2 faults {dict(faults)}; responses {stats['responses']}; users retries {summary['retries']} "
        f"429s {summary['throttled']}; events retries {ev['retries']} 429s {ev['throttled']}; "
        f"de-duplicated {stats['deduplicated_requests']}"
    )
    # The profile really happened, every kind of it.
    assert faults["error_5xx"] > 5 and faults["throttle_storm"] > 0 and faults["error_body_2xx"] > 0
    assert faults["timeout"] + faults["timeout_after_store"] > 0
    for run in (summary, ev):
        assert run["status"] == "success"
        assert run["extracted"] == run["unchanged"] + run["accepted"] + run["rejected"]  # every row terminal
        assert "transient_failure" not in run["rejected_by_reason"]
    # Users: exactly the valid ones, in the sandbox and in the state.
    valid = valid_user_ids(warehouse)
    assert sandbox_ids(faulty) == valid == user_state_ids(duck(warehouse)) and summary["accepted"] == len(valid)
    # Events: each exactly once, even those stored before their answer timed out.
    delivered = [e["event"] for e in faulty.store.events()]
    assert stats["duplicate_events"] == 0 and stats["violations"] == 0
    assert canonical(delivered) == reference_events(warehouse, WINDOW)
    with StateStore(make_engine(duck(warehouse))) as store:
        assert ledger.ledger_counts(store)["accepted"] == len(delivered) == ev["accepted"]
        assert ledger.pending(store) == []


# -- K3: wrong settings --------------------------------------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Counting:
    """A transport that counts requests and answers 403 (the sandbox has no such knob)."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        body = {"response": {"status": "error", "message": "Forbidden: missing permission"}}
        return httpx.Response(403, json=body)


# case -> (settings changes, text the message must contain: the cause and the fix)
CASES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "401": ({"api_key": "wrong-key-not-logged"}, ("HTTP 401", "WEBENGAGE_API_KEY", "Update Data", "host")),
    "403": ({}, ("HTTP 403", "WEBENGAGE_API_KEY", "Account Management + Update Data", "data centre host")),
    "404": ({"license_code": "wronglicense"}, ("HTTP 404", "WEBENGAGE_LICENSE_CODE", "data centre host")),
    "dns": ({"api_url": "http://nonexistent.invalid"}, ("ConnectError", "API host", "WEBENGAGE_API_URL")),
    "refused": ({"api_url": "http://127.0.0.1:{port}"}, ("ConnectError", "API host", "accept connections")),
}


@pytest.fixture(scope="module")
def healthy() -> Iterator[SandboxServer]:
    with sandbox_server(KEY, bulk_users_rpm=FAST, bulk_events_rpm=FAST) as server:
        yield server


@pytest.mark.parametrize("pipeline", ["users", "events"])
@pytest.mark.parametrize("case", list(CASES))
def test_k3_bad_settings_fail_fast_with_the_fix(
    case: str, pipeline: str, healthy: SandboxServer, warehouse: Path
) -> None:
    changes, expected = CASES[case]
    changes = {k: v.format(port=closed_port()) if isinstance(v, str) else v for k, v in changes.items()}
    transport = Counting() if case == "403" else None
    before = sum(healthy.stats()["requests"].values())
    settings = settings_for(healthy.url, duck(warehouse), **changes)
    run: Callable[..., dict[str, Any]] = (
        users.run if pipeline == "users" else functools.partial(events.run, window=WINDOW)
    )
    started = time.monotonic()
    with pytest.raises(TerminalAPIError) as info:
        run(settings, run_id=f"k3-{case}", transport=httpx.MockTransport(transport) if transport else None)
    assert time.monotonic() - started < 10  # no retry storm, no backoff
    message = str(info.value)
    for text in expected:
        assert text in message, (text, message)
    assert KEY not in message and "wrong-key-not-logged" not in message
    # At most one request reached the API (here: exactly one, or none when the host cannot be reached).
    sent = transport.requests if transport else sum(healthy.stats()["requests"].values()) - before
    assert sent == (1 if case in ("401", "403", "404") else 0)
    failed = runs_of(duck(warehouse), pipeline)[f"k3-{case}"]
    assert failed["status"] == "failed" and "Fix:" in failed["message"]
    assert failed["counts"]["requests"] == 1  # one attempt, whatever its fate
    # Nothing is marked sent.
    assert user_state_ids(duck(warehouse)) == set()
    with StateStore(make_engine(duck(warehouse))) as store:
        assert ledger.ledger_counts(store).get("accepted", 0) == 0


# -- K4: the databases go away --------------------------------------------------------------------------------
PG_USERS = """
CREATE TABLE k4_users AS
SELECT 'k4_' || lpad(i::text, 5, '0') AS id, 'Name ' || i AS first_name, i % 97 AS visits,
       TIMESTAMPTZ '2026-10-01 00:00:00+00' + i * INTERVAL '1 minute' AS updated_at
FROM generate_series(1, 3000) AS s(i)
"""


@pytest.mark.postgres
def test_k4_warehouse_connection_killed_mid_run_then_resume(
    healthy: SandboxServer, pg_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The row-streaming reader: ADBC's would hold all 3,000 rows in its first batch before the cut.
    monkeypatch.setattr(adbc_reader, "usable", lambda _engine: False)
    admin = sa.create_engine(pg_db)
    with admin.begin() as conn:
        conn.execute(sa.text(PG_USERS))
    query = tmp_path / "k4_users.sql"
    query.write_text("SELECT * FROM k4_users\n", encoding="utf-8")
    mapping = user_mapping_from_dict(
        {
            "source": {"query": str(query), "user_id": "id", "updated_at": "updated_at", "chunk_rows": 500},
            "system": {"firstName": "first_name"},
            "attributes": {"visits": "visits"},
        }
    )
    state = duck(tmp_path / "state.duckdb")  # the state survives; only the warehouse goes away
    settings = settings_for(healthy.url, pg_db, state_url=state, concurrency=2)
    healthy.reset()
    killed: list[int] = []

    def pull_the_plug(report: RunReport) -> None:
        if report.extracted >= 1000 and not killed:
            with admin.connect() as conn:  # another session ends the warehouse reader's backend
                killed.extend(
                    conn.execute(
                        sa.text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        )
                    ).scalars()
                )

    with pytest.raises(sa.exc.OperationalError) as info:
        users.run(settings, mapping=mapping, run_id="k4-cut", progress=pull_the_plug)
    assert killed == [True]
    failed = runs_of(state, "users")["k4-cut"]
    assert failed["status"] == "failed" and "terminat" in failed["message"]
    assert "OperationalError" in str(info.type.__name__)
    in_sandbox, in_state = sandbox_ids(healthy), user_state_ids(state)
    assert in_state and in_state <= in_sandbox  # nothing marked sent that was not
    assert len(in_sandbox - in_state) <= 2 * 25  # at most the requests in flight lack a checkpoint

    resumed = users.run(settings, mapping=mapping, run_id="k4-resume")
    everyone = {f"k4_{i:05d}" for i in range(1, 3001)}
    assert resumed["status"] == "success" and resumed["accepted"] == 3000 - len(in_state)
    assert sandbox_ids(healthy) == everyone == user_state_ids(state)
    assert healthy.stats()["violations"] == 0
    admin.dispose()
    print(
        f"FIGURES K4 warehouse cut after {failed['counts']['extracted']} rows: {len(in_state)} checkpointed, "
        f"{len(in_sandbox - in_state)} accepted but not checkpointed, resume sent {resumed['accepted']}"
    )


HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("CREATE TABLE IF NOT EXISTS holder (x INT)")
print("locked", flush=True)
time.sleep(60)
"""


def test_k4_state_database_locked_fails_cleanly_then_resumes(
    healthy: SandboxServer, warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_path = tmp_path / "state.duckdb"
    # Wait 1 s for the lock instead of the default 120 s (the lock_timeout_s setting).
    settings = settings_for(healthy.url, duck(warehouse), state_url=duck(state_path), lock_timeout_s=1.0)
    healthy.reset()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(state_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(DatabaseLockedError) as info:
            users.run(settings, run_id="k4-locked")
        assert 1.0 <= time.monotonic() - started < 10  # waited out the timeout, then gave up
        assert "locked by another process" in str(info.value) and "lock_timeout_s" in str(info.value)
        assert sum(healthy.stats()["requests"].values()) == 0  # nothing sent without a state to record it
    finally:
        holder.kill()
        holder.wait()
    resumed = users.run(settings, run_id="k4-after-lock")
    valid = valid_user_ids(warehouse)
    assert resumed["status"] == "success" and resumed["accepted"] == len(valid)
    assert sandbox_ids(healthy) == valid == user_state_ids(duck(state_path))
    assert list(runs_of(duck(state_path), "users")) == ["k4-after-lock"]  # the locked run never started
