"""Merges exactly once under ``kill -9``: ``sync merges`` is killed at 3 points (mid-send, and right after a
restart while it re-sends the pairs the previous kill left journaled), then re-run to completion.

The sandbox runs in its own process, paced (6,000 requests/min, 20 ms latency) so kills land mid-run. After
every kill the state never records a merge the sandbox did not make; at the end every pair is merged exactly
once: the sandbox ingested one /users call per pair (re-sends were de-duplicated by their x-request-id).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
import sqlalchemy as sa

from etl.mappings.events import event_mapping_from_dict
from etl.pipelines import merges
from etl.state import merges as merge_state
from etl.state.store import StateStore
from etl.warehouse.engine import make_engine
from tests.helpers.kill import kill_at, requests_to, start_cli
from tests.helpers.sandbox import reconfigure, sandbox_process, sandbox_settings
from tests.helpers.warehouse import duck
from webengage_dev.sandbox import SandboxProcess

KEY = "merges-kill-key-not-logged"
RPM = 6000
PAIRS = 1500
#: Requests the sandbox must have seen since the previous kill before the next one (the small one lands
#: while the restarted run re-sends what the killed one left journaled).
KILL_STEPS = (40, 2, 60)
MAPPING = """
[merges]
enabled = true
preset = "sql"
query = "{query}"
"""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[SandboxProcess]:
    with sandbox_process(KEY, users_rpm=RPM, latency_ms=20) as server:
        yield server


def build(tmp_path: Path) -> tuple[Path, Path]:
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "CREATE TABLE identifies AS SELECT 'anon-' || i AS anonymous_id, 'user-' || (i % 1000) AS user_id, "
            "TIMESTAMP '2026-10-01' + to_seconds(i) AS identified_at FROM range(?) r(i)",
            [PAIRS],
        )
    query = tmp_path / "pairs.sql"
    query.write_text("SELECT anonymous_id, user_id, identified_at FROM identifies")
    mapping = tmp_path / "events.toml"
    mapping.write_text(MAPPING.format(query=query))
    return warehouse, mapping


def state_counts(warehouse: Path) -> dict[str, int]:
    engine = make_engine(duck(warehouse))
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("we_merged_pairs"):
                return {}
            rows = conn.execute(sa.select(merge_state.PAIRS.c.status, sa.func.count()).group_by("status"))
            return {str(s): int(n) for s, n in rows}
    finally:
        engine.dispose()


def test_kill_nine_at_three_points_then_resume_merges_each_pair_once(sandbox: SandboxProcess, tmp_path: Path) -> None:
    warehouse, mapping_file = build(tmp_path)
    kills: list[int] = []
    url = sandbox.url
    with httpx.Client(base_url=url, timeout=10) as http:
        reconfigure(http, reset=True, users_rpm=RPM, latency_ms=20)
        for step in KILL_STEPS:
            proc: subprocess.Popen[bytes] = start_cli(
                ["etl.cli_merges", "--json"],
                url,
                warehouse,
                KEY,
                WEBENGAGE_EVENTS_MAPPING=str(mapping_file),
                WEBENGAGE_USERS_RPM=str(RPM),
                WEBENGAGE_EXPECTED_LATENCY_S="0.05",
            )
            kills.append(kill_at(proc, http, "users", requests_to(http, "users") + step))
            stats = http.get("/_sandbox/stats").json()
            # The state never runs ahead of WebEngage: every pair it calls merged was merged there.
            assert state_counts(warehouse).get(merge_state.MERGED, 0) <= stats["merges"]
        assert http.get("/_sandbox/stats").json()["merges"] < PAIRS, "the kills came too late"
        assert state_counts(warehouse).get(merge_state.IN_FLIGHT, 0) > 0, "no kill left a journaled pair"

        reconfigure(http, users_rpm=60_000, latency_ms=0)
        settings = sandbox_settings(url, warehouse, KEY, users_rpm=60_000, expected_latency_s=0.05)
        summary = merges.run(settings, mapping=event_mapping_from_dict({"merges": _merges(mapping_file)}))
        stats = http.get("/_sandbox/stats").json()

    assert summary["status"] == "success" and summary["resent_pairs"] > 0
    assert stats["violations"] == 0 and stats["merge_conflicts"] == 0
    assert stats["merges"] == PAIRS  # every anonymous id merged, into its one user
    assert stats["items_accepted"]["users"] == PAIRS  # each pair ingested once: re-sends were de-duplicated
    assert state_counts(warehouse) == {merge_state.MERGED: PAIRS}
    with StateStore(make_engine(duck(warehouse))) as store:
        assert merge_state.in_flight(store) == []
    print(
        f"FIGURES kills_at={kills} pairs={PAIRS} requests={stats['requests']['users']} "
        f"deduplicated={stats['deduplicated_requests']} resent={summary['resent_pairs']}"
    )


def _merges(mapping_file: Path) -> dict[str, object]:
    import tomllib

    merges_table: dict[str, object] = tomllib.loads(mapping_file.read_text())["merges"]
    return merges_table
