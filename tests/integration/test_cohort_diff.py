"""The cohort membership diff run by the warehouse (issue 16) gives what the worker-side diff gives: the same
entered / exited / repairs, counts and exclusions, on DuckDB and PostgreSQL, with messy ids, duplicates,
NULLs, integer ids and a snapshot holding members, leavers and unconfirmed flips."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from etl.config import Settings
from etl.engine.frame import Run
from etl.mappings.cohorts import cohort_config_from_dict
from etl.pipelines import cohorts
from etl.report import RunReport
from etl.state import cohorts as cstate
from etl.state.store import StateStore
from etl.warehouse import cohort_diff
from etl.warehouse.engine import make_engine
from tests.helpers.events import canonical
from tests.helpers.sandbox import FAST, sandbox_server, sandbox_settings
from tests.helpers.warehouse import duck

NOW = datetime(2026, 11, 1, tzinfo=UTC)
KEY = "cohort-diff-key-not-logged"

#: Query ids: plain, padded, duplicated, blank, NULL, null-like, control characters, tab-padded (screened to
#: a plain id that is also present), unicode, over-long, and ids only the worker can judge.
TEXT_IDS: list[str | None] = [
    *(f"u{i:03d}" for i in range(40)),
    "u001",
    "u002",
    "  u003  ",
    " u050 ",
    "",
    "   ",
    None,
    None,
    "null",
    "None",
    " NaN ",
    "bad\x01id",
    "\tu004",
    "\tu060",
    "josé",
    "josé",
    "zoë",
    "x" * 101,
    "y" * 100,
    "a\u00a0",
    "\u00a0",
]
#: Snapshot: (user, member, pending). Members still in the query, members who left, unconfirmed flips of both
#: kinds, and members whose query id needs the worker (josé, u060 from a tab-padded id).
SNAPSHOT: list[tuple[str, bool, bool]] = [
    *((f"u{i:03d}", True, False) for i in range(0, 20) if i != 5),
    *((f"u{i:03d}", True, False) for i in range(90, 99) if i != 95),  # left
    ("u005", True, True),  # in doubt, still a member
    ("u095", True, True),  # in doubt, left
    ("u030", False, True),  # unconfirmed entry, in the query
    ("u097x", False, True),  # unconfirmed entry, not in the query
    ("josé", True, False),
    ("zoë", True, True),
    ("u060", True, False),
    ("émile", True, False),  # left, unicode
]


def _setup(url: str, column_type: str, values: list[Any], *, snapshot: bool = True) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE TABLE cohort_src (user_id {column_type}, n INTEGER)"))  # test's own DDL
        conn.execute(
            sa.text("INSERT INTO cohort_src VALUES (:v, :n)"), [{"v": v, "n": i} for i, v in enumerate(values)]
        )
    with StateStore(engine) as store, store.transaction() as conn:
        for user, member, pending in SNAPSHOT if column_type == "VARCHAR(200)" and snapshot else []:
            conn.execute(
                sa.insert(cstate.MEMBERS).values(
                    cohort="c1", user_id=user, member=member, pending=pending, version=1, changed_at=NOW, run_id="r0"
                )
            )
    engine.dispose()


def _membership(url: str, tmp_path: Path, mode: str) -> tuple[cohort_diff.Membership, str, list[str]]:
    # A statement-ending semicolon, as SQL files often have: the warehouse path wraps the query as a subquery.
    (tmp_path / "c1.sql").write_text("SELECT user_id FROM cohort_src WHERE n >= :lo ;\n")
    config = cohort_config_from_dict(
        {
            "cohorts": {
                "c1": {
                    "query": str(tmp_path / "c1.sql"),
                    "attribute": "cohort_c1",
                    "mode": "dynamic",
                    "params": {"lo": 0},
                }
            }
        }
    )
    spec = config.get("c1")
    settings = Settings.from_mapping({"warehouse_url": url, "diff_mode": mode}, credentials=False)
    counts = cohorts._Counts(cohort="c1", attribute="cohort_c1", mode="dynamic", operation="export", events_on=False)
    report = RunReport(pipeline="cohort:c1", run_id=f"{mode}-run", dry_run=True)
    with StateStore(make_engine(url)) as store:
        run = Run(settings, report, store, started_at=NOW, transport=None, progress=None)
        try:
            found = cohorts._membership(run, spec, NOW, counts)
        finally:
            run.close()
    return found, counts.diff, report.notes


def _both(url: str, tmp_path: Path) -> tuple[cohort_diff.Membership, cohort_diff.Membership, list[str]]:
    python, where, _ = _membership(url, tmp_path, "python")
    assert where == "python"
    sql, where, notes = _membership(url, tmp_path, "warehouse")
    return python, sql, [where, *notes]


def _backend_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    return duck(tmp_path / "w.duckdb") if backend == "duckdb" else str(request.getfixturevalue("pg_db"))


BACKENDS = ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_ids_same_diff_on_both_paths(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = _backend_url(backend, tmp_path, request)
    _setup(url, "VARCHAR(200)", TEXT_IDS)
    python, sql, how = _both(url, tmp_path)
    assert how == ["warehouse"]
    assert sql == python
    diff = python.diff
    # The reference itself is the story the data tells (so equality is not of two empty results).
    assert "u050" in diff.entered and "zoë" not in diff.entered and "josé" not in diff.exited
    assert {"u090", "u095", "émile"} <= set(diff.exited) and "u060" not in diff.exited
    assert diff.resend_true == ["u005", "zoë"] and diff.resend_false == ["u097x"]
    assert python.excluded == Counter(
        anonymous=2, empty_user_id=3, null_like_id=3, control_character_in_id=1, user_id_too_long=1, duplicate_user_id=5
    )
    assert python.extracted == len(TEXT_IDS) and python.previous == sum(m for _, m, _ in SNAPSHOT) == 33


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_ids_with_nulls_same_diff(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = _backend_url(backend, tmp_path, request)
    values = [*range(0, 30), 5, 7, None, None, 120]
    _setup(url, "BIGINT", values)
    engine = make_engine(url)
    with StateStore(engine) as store, store.transaction() as conn:
        for user in ("0", "1", "29", "500", "501"):
            conn.execute(
                sa.insert(cstate.MEMBERS).values(
                    cohort="c1", user_id=user, member=True, pending=user == "1", version=1, changed_at=NOW, run_id="r0"
                )
            )
    engine.dispose()
    python, sql, how = _both(url, tmp_path)
    assert how == ["warehouse"] and sql == python
    assert {"500", "501"} <= set(python.diff.exited) and "120" in python.diff.entered
    assert python.excluded == Counter(anonymous=2, duplicate_user_id=2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float_ids_fall_back_to_the_worker_with_a_reason(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = _backend_url(backend, tmp_path, request)
    _setup(url, "DOUBLE PRECISION", [1.0, 2.0, 3.0, None])
    python, sql, how = _both(url, tmp_path)
    assert how[0] == "python" and "floating-point" in how[1]
    assert sql == python and "1" in python.diff.entered  # 1.0 keyed "1", as the profile sync keys it


def test_many_odd_ids_fall_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = duck(tmp_path / "w.duckdb")
    _setup(url, "VARCHAR(200)", TEXT_IDS)
    monkeypatch.setattr(cohort_diff, "MAX_WORKER_SCREENED", 3)
    python, sql, how = _both(url, tmp_path)
    assert how[0] == "python" and "worker's screening" in how[1] and sql == python


def test_exports_send_the_same_updates_on_both_paths(tmp_path: Path) -> None:
    """Two exports (the second after members left, joined and changed spelling) against a real sandbox: the
    same summaries and the same cohort attribute on every profile, whichever path diffed."""
    (tmp_path / "c1.sql").write_text("SELECT user_id FROM cohort_src WHERE n >= :lo\n")
    config = cohort_config_from_dict(
        {
            "cohorts": {
                "c1": {
                    "query": str(tmp_path / "c1.sql"),
                    "attribute": "cohort_c1",
                    "mode": "dynamic",
                    "events": True,
                    "params": {"lo": 0},
                }
            }
        }
    )
    change = (
        "DELETE FROM cohort_src WHERE user_id IN ('u010', 'u011', 'josé');"
        "INSERT INTO cohort_src VALUES ('u200', 900), ('\tu201', 901), ('émile', 902), (' u010 ', 903)"
    )
    seen: dict[str, Any] = {}
    for mode in ("python", "warehouse"):
        (tmp_path / mode).mkdir()
        url = duck(tmp_path / mode / "w.duckdb")
        _setup(url, "VARCHAR(200)", TEXT_IDS, snapshot=False)
        with sandbox_server(KEY, bulk_users_rpm=FAST, bulk_events_rpm=FAST) as sandbox:
            settings = sandbox_settings(
                sandbox, url, KEY, bulk_users_rpm=FAST, bulk_events_rpm=FAST, expected_latency_s=0.05, diff_mode=mode
            )
            summaries = []
            for n in range(2):
                if n:
                    engine = make_engine(url)
                    with engine.begin() as conn:
                        for stmt in change.split(";"):
                            conn.execute(sa.text(stmt))
                    engine.dispose()
                summary = cohorts.export(
                    settings, cohort="c1", run_id=f"{mode}{n}", as_of=NOW, config=config, clock=lambda: NOW
                )
                assert summary["diff"] == mode
                summaries.append({k: v for k, v in summary.items() if k in COMPARED})
            stored = {
                u["id"]: u["profile"].get("attributes", {}).get("cohort_c1")
                for u in sandbox.store.list_users(limit=1000)[1]
            }
            events = canonical([e["event"] for e in sandbox.store.events()])
            assert sandbox.stats()["violations"] == 0
        seen[mode] = (summaries, stored, events)
    assert seen["warehouse"] == seen["python"]
    summaries, stored = seen["python"][0], seen["python"][1]
    assert summaries[1]["entered"] == 3 and summaries[1]["exited"] == 2  # u200, émile, u201 / u011, josé
    assert stored["u011"] is False and stored["u010"] is True and stored["émile"] is True


COMPARED = (
    "status",
    "extracted",
    "excluded",
    "members",
    "previous_members",
    "entered",
    "exited",
    "unchanged",
    "resent",
    "rejected",
    "requests",
    "events",
)
