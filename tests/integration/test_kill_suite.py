"""K1: ``kill -9`` at seeded random points of the users, events and cohort syncs, then a re-run to completion.

Each trial runs the real command line in its own process against the sandbox in another process (paced so
the kill lands mid-run), kills it once the sandbox has seen a random number of requests, checks that the
state never ran ahead of WebEngage, re-runs in this process and compares the final sandbox state with the
warehouse: users (concurrency 1) exactly the valid profiles with at most one batch re-sent per kill; events
each exactly once; cohorts exactly the members, each transition's event once; users with the overflow lane
(concurrency 1 per lane) at most a bulk batch, a single and a checkpoint group (24 users) unrecorded.

5 trials in CI; ``WEBENGAGE_K1_TRIALS=20`` runs more (the list cycles users, events, cohorts, users-overflow).
"""

from __future__ import annotations

import math
import os
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from etl.config import Settings
from etl.pipelines import cohorts, events, users
from etl.state import cohorts as cstate
from etl.state import ledger
from etl.state.store import StateStore
from etl.warehouse.engine import make_engine
from tests.helpers.events import WINDOW, canonical, ledger_request_ids, reference_events
from tests.helpers.kill import kill_at, requests_to, start_cli
from tests.helpers.sandbox import FAST, profiles, reconfigure, sandbox_process, sandbox_server, sandbox_settings
from tests.helpers.warehouse import AS_OF, COHORT_TABLE, DemoTemplates, duck, user_state_ids, valid_user_ids
from webengage_dev.sandbox import SandboxProcess

KEY = "k1-kill-suite-key-not-logged"
BATCH = 25
TRIALS = int(os.environ.get("WEBENGAGE_K1_TRIALS", "5"))
PIPELINES = ("users", "events", "cohorts", "users-overflow")
# Paced so a kill lands mid-run yet a trial stays short (a run sends for 1-2 s).
PACE: dict[str, dict[str, Any]] = {
    "users": {"bulk_users_rpm": 2400, "latency_ms": 15},
    "users-overflow": {"bulk_users_rpm": 2400, "users_rpm": 6000, "latency_ms": 15},
    "events": {"bulk_events_rpm": 6000, "latency_ms": 15},
    "cohorts": {"bulk_users_rpm": 1200, "bulk_events_rpm": 1200, "latency_ms": 25},
}
LIFTED = {"bulk_users_rpm": FAST, "bulk_events_rpm": FAST, "users_rpm": FAST, "latency_ms": 0}


@dataclass(frozen=True)
class Trial:
    index: int
    pipeline: str

    @property
    def seed(self) -> int:
        return 8_000 + self.index

    def __str__(self) -> str:
        return f"{self.index:02d}-{self.pipeline}"


TRIAL_LIST = [Trial(i, PIPELINES[i % len(PIPELINES)]) for i in range(TRIALS)]


# -- fixtures -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def templates(demo_templates: DemoTemplates) -> dict[str, Path]:
    users_wh = demo_templates.template(1200, setup=COHORT_TABLE)
    events_wh = demo_templates.template(300)
    return {"users": users_wh, "users-overflow": users_wh, "cohorts": users_wh, "events": events_wh}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with sandbox_process(KEY) as server:
        yield server


@pytest.fixture(scope="module")
def reference_profiles(templates: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The profiles one uninterrupted profile sync of the users template leaves in WebEngage."""
    path = tmp_path_factory.mktemp("k1-ref") / "warehouse.duckdb"
    path.write_bytes(templates["users"].read_bytes())
    with sandbox_server(KEY, bulk_users_rpm=FAST) as server:
        users.run(settings_for(server.url, path), run_id="reference")
        return profiles(server)


def settings_for(url: str, warehouse: Path, **extra: Any) -> Settings:
    rates = {"bulk_users_rpm": FAST, "bulk_events_rpm": FAST, "users_rpm": FAST, "expected_latency_s": 0.05}
    return sandbox_settings(url, warehouse, KEY, **(rates | extra))


# -- the kill -----------------------------------------------------------------------------------------------
def start(argv: list[str], sandbox: SandboxProcess, warehouse: Path, **env: str) -> subprocess.Popen[bytes]:
    return start_cli(argv, sandbox.url, warehouse, KEY, **env)


def paced(http: httpx.Client, pipeline: str) -> None:
    reconfigure(http, reset=True, **{**LIFTED, **PACE[pipeline]})


def lift(http: httpx.Client) -> None:
    reconfigure(http, **LIFTED)


# -- users --------------------------------------------------------------------------------------------------
def users_trial(
    rng: random.Random,
    sandbox: SandboxProcess,
    http: httpx.Client,
    warehouse: Path,
    reference: dict[str, Any],
    *,
    overflow: bool,
) -> str:
    target = rng.randint(1, 40)
    pace = PACE["users-overflow" if overflow else "users"]
    lane = {"WEBENGAGE_OVERFLOW_LANE": "true", "WEBENGAGE_USERS_RPM": str(pace["users_rpm"])} if overflow else {}
    proc = start(
        ["etl.cli", "sync", "users"],
        sandbox,
        warehouse,
        WEBENGAGE_CONCURRENCY="1",
        WEBENGAGE_BULK_USERS_RPM=str(pace["bulk_users_rpm"]),
        **lane,
    )
    seen = kill_at(proc, http, "bulk-users", target)
    singles = requests_to(http, "users")
    in_sandbox, in_state = set(profiles(http)), user_state_ids(warehouse)
    assert in_state <= in_sandbox, f"{len(in_state - in_sandbox)} users checkpointed but never accepted"
    # One request per lane in flight: at most its batch (and, with the lane, one single plus a checkpoint
    # group still filling) is accepted without a checkpoint.
    assert len(in_sandbox - in_state) <= (BATCH + 1 + BATCH - 1 if overflow else BATCH)
    assert len(in_sandbox) < len(reference), "the kill came after the run had finished"

    lift(http)
    summary = users.run(settings_for(sandbox.url, warehouse, concurrency=1, overflow_lane=overflow), run_id="resume")
    stats = http.get("/_sandbox/stats").json()
    assert summary["status"] == "success" and summary["accepted"] == len(reference) - len(in_state)
    assert summary["extracted"] == summary["unchanged"] + summary["accepted"] + summary["rejected"]
    assert profiles(http) == reference  # exactly the warehouse's users, field by field
    assert user_state_ids(warehouse) == set(reference)
    assert stats["violations"] == 0
    unrecorded = len(in_sandbox - in_state)
    if overflow:
        return (
            f"killed at {seen} bulk requests and {singles} singles, checkpointed {len(in_state)}, accepted "
            f"but unrecorded {unrecorded} users (re-sent)"
        )
    resent = int(stats["requests"]["bulk-users"]) - math.ceil(len(reference) / BATCH)
    assert 0 <= resent <= 1, f"{resent} batches re-sent after one kill"
    return f"killed at {seen} requests, checkpointed {len(in_state)}, re-sent batches {resent}"


# -- events -------------------------------------------------------------------------------------------------
def events_trial(rng: random.Random, sandbox: SandboxProcess, http: httpx.Client, warehouse: Path) -> str:
    expected = reference_events(warehouse, WINDOW)
    target = rng.randint(1, 60)
    argv = ["etl.cli_events", "--start", WINDOW[0].isoformat(), "--end", WINDOW[1].isoformat()]
    proc = start(
        argv,
        sandbox,
        warehouse,
        WEBENGAGE_BULK_EVENTS_RPM=str(PACE["events"]["bulk_events_rpm"]),
        WEBENGAGE_EXPECTED_LATENCY_S="0.05",
    )
    seen = kill_at(proc, http, "bulk-events", target)
    ingested = http.get("/_sandbox/events").json()["events"]
    assert ledger_request_ids(warehouse) <= {str(e["request_id"]) for e in ingested}  # never ahead
    assert len(ingested) < sum(expected.values()), "the kill came after the run had finished"

    lift(http)
    summary = events.run(settings_for(sandbox.url, warehouse), window=WINDOW, run_id="resume")
    delivered = [e["event"] for e in http.get("/_sandbox/events").json()["events"]]
    stats = http.get("/_sandbox/stats").json()
    assert summary["status"] == "success"
    assert stats["duplicate_events"] == 0 and stats["violations"] == 0
    assert canonical(delivered) == expected  # nothing lost, nothing twice, every field as transformed
    with StateStore(make_engine(duck(warehouse))) as store:
        assert ledger.ledger_counts(store)["accepted"] == len(delivered)
        assert ledger.pending(store) == []
    return (
        f"killed at {seen} requests with {len(ingested)} events ingested; replayed "
        f"{summary['replayed_events']}, de-duplicated requests {stats['deduplicated_requests']}"
    )


# -- cohorts ------------------------------------------------------------------------------------------------
ATTR = "cohort_k1"


def uid(i: int) -> str:
    return f"usr_{i:07d}"


def set_members(warehouse: Path, members: list[str]) -> None:
    with duckdb.connect(str(warehouse)) as con:
        con.execute("DELETE FROM test_cohort")
        con.execute("INSERT INTO test_cohort SELECT unnest(?::VARCHAR[])", [members])


def cohort_config(tmp_path: Path) -> Path:
    (tmp_path / "k1.sql").write_text("SELECT user_id FROM test_cohort\n")
    path = tmp_path / "cohorts.toml"
    path.write_text(f'[cohorts.k1]\nsql = "{tmp_path / "k1.sql"}"\nattribute = "{ATTR}"\nmode = "dynamic"\n')
    return path


def attribute_values(http: httpx.Client) -> dict[str, bool]:
    body = http.get("/_sandbox/users", params={"limit": 1_000_000}).json()
    return {
        u["id"]: u["profile"]["attributes"][ATTR] for u in body["users"] if ATTR in u["profile"].get("attributes", {})
    }


def cohorts_trial(
    rng: random.Random, sandbox: SandboxProcess, http: httpx.Client, warehouse: Path, tmp_path: Path
) -> str:
    config = cohort_config(tmp_path)
    settings = settings_for(sandbox.url, warehouse, cohorts_config=str(config))
    first = [uid(i) for i in range(1, 301)]
    final = [uid(i) for i in (*range(101, 301), *range(1001, 1301))]  # 100 leave, 300 join: 16 batches
    lift(http)
    set_members(warehouse, first)
    cohorts.export(settings, cohort="k1", as_of=AS_OF, emit_events=True)
    set_members(warehouse, final)
    http.post("/_sandbox/config", json=PACE["cohorts"]).raise_for_status()
    endpoint = rng.choice(["bulk-users", "bulk-users", "bulk-events"])
    target = requests_to(http, endpoint) + rng.randint(1, 14)
    proc = start(
        ["etl.cli_cohorts", "export", "k1", "--events"],
        sandbox,
        warehouse,
        WEBENGAGE_COHORTS_CONFIG=str(config),
        WEBENGAGE_CONCURRENCY="2",
        WEBENGAGE_BULK_USERS_RPM=str(PACE["cohorts"]["bulk_users_rpm"]),
        WEBENGAGE_BULK_EVENTS_RPM=str(PACE["cohorts"]["bulk_events_rpm"]),
    )
    seen = kill_at(proc, http, endpoint, target)
    with StateStore(make_engine(duck(warehouse))) as store:
        after_kill = cstate.snapshot(store, "k1")
    true_now = {u for u, v in attribute_values(http).items() if v}
    assert set(after_kill.members) - set(after_kill.in_doubt) <= true_now  # the snapshot never runs ahead

    lift(http)
    rerun = cohorts.export(settings, cohort="k1", as_of=AS_OF, emit_events=True)
    assert rerun["status"] == "success"
    values = attribute_values(http)
    assert {u for u, v in values.items() if v} == set(final)
    assert {u for u, v in values.items() if not v} == set(first) - set(final)
    with StateStore(make_engine(duck(warehouse))) as store:
        snap = cstate.snapshot(store, "k1")
    assert snap.members == sorted(final) and snap.in_doubt == []
    entered = sorted(e["event"]["userId"] for e in events_named(http, "Cohort Entered"))
    exited = sorted(e["event"]["userId"] for e in events_named(http, "Cohort Exited"))
    assert entered == sorted(set(first) | set(final)) and exited == sorted(set(first) - set(final))
    stats = http.get("/_sandbox/stats").json()
    assert stats["duplicate_events"] == 0 and stats["violations"] == 0
    return (
        f"killed at {endpoint} request {seen}; in doubt {len(after_kill.in_doubt)}, re-run sent {rerun['sent']} users"
    )


def events_named(http: httpx.Client, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = http.get("/_sandbox/events", params={"event_name": name}).json()["events"]
    return found


# -- the suite ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("trial", TRIAL_LIST, ids=str)
def test_kill_nine_at_a_random_point_then_rerun(
    trial: Trial,
    templates: dict[str, Path],
    sandbox: SandboxProcess,
    reference_profiles: dict[str, Any],
    tmp_path: Path,
) -> None:
    rng = random.Random(trial.seed)
    warehouse = tmp_path / "warehouse.duckdb"
    warehouse.write_bytes(templates[trial.pipeline].read_bytes())
    with httpx.Client(base_url=sandbox.url, timeout=10) as http:  # one connection: cheap polling
        paced(http, trial.pipeline)
        if trial.pipeline in ("users", "users-overflow"):
            overflow = trial.pipeline == "users-overflow"
            outcome = users_trial(rng, sandbox, http, warehouse, reference_profiles, overflow=overflow)
        elif trial.pipeline == "events":
            outcome = events_trial(rng, sandbox, http, warehouse)
        else:
            outcome = cohorts_trial(rng, sandbox, http, warehouse, tmp_path)
    print(f"FIGURES K1 trial {trial} (seed {trial.seed}): {outcome}")


def test_the_valid_users_are_what_the_reference_holds(
    templates: dict[str, Path], reference_profiles: dict[str, Any]
) -> None:
    """The reference the users trials compare with is the warehouse's valid users (not a run's output only)."""
    assert set(reference_profiles) == valid_user_ids(templates["users"])
