"""The event sync's ledger anti-join in the warehouse (issue 16) against the worker-side filter: the same
events reach WebEngage, each exactly once, with the same counts; only unsent rows leave the warehouse."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from etl.errors import ConfigError
from etl.mappings.events import EventMapping, event_mapping_from_dict
from etl.pipelines import events
from etl.state.store import reset_state
from etl.warehouse import queries
from etl.warehouse.engine import make_engine
from etl.warehouse.pushdown import same_database
from tests.helpers.events import canonical
from tests.helpers.sandbox import FAST, sandbox_server, sandbox_settings
from tests.helpers.warehouse import AS_OF, DemoTemplates, duck
from webengage_dev.demo.mutate import add_events

KEY = "events-pushdown-key-not-logged"
COMPARED = ("status", "extracted", "already_sent", "accepted", "rejected", "rejected_by_reason", "sent", "requests")


class RowsRead:
    """Counts the rows the event sync reads out of the warehouse (every chunk it is handed)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rows = 0
        real = queries.read_chunks

        def counting(*args: Any, **kwargs: Any) -> Iterator[pd.DataFrame]:
            for chunk in real(*args, **kwargs):
                self.rows += len(chunk)
                yield chunk

        monkeypatch.setattr(events, "read_chunks", counting)

    def take(self) -> int:
        rows, self.rows = self.rows, 0
        return rows


def _scenario(
    warehouse: str, mode: str, rows: RowsRead, *, mapping: EventMapping | None = None, grow: Path | None = None
) -> tuple[list[dict[str, Any]], list[int], Any, dict[str, int]]:
    """Two overlapping windows (the second one after late events arrived) and a repeat of the second one."""
    t1, t2 = AS_OF - timedelta(hours=12), AS_OF
    windows = [(t1 - timedelta(hours=10), t1), (t1, t2), (t1, t2)]
    summaries, read = [], []
    with sandbox_server(KEY, bulk_events_rpm=FAST) as sandbox:
        settings = sandbox_settings(
            sandbox, warehouse, KEY, bulk_events_rpm=FAST, expected_latency_s=0.05, diff_mode=mode
        )
        for n, window in enumerate(windows):
            if n == 1 and grow is not None:
                add_events(grow, count=120, start=t1 - timedelta(minutes=30), end=t1 + timedelta(hours=1), seed=7)
            summary = events.run(settings, window=window, run_id=f"{mode}{n}", mapping=mapping, clock=lambda: AS_OF)
            summaries.append({k: summary[k] for k in COMPARED} | {"diff": summary["diff"]})
            read.append(rows.take())
        stats = sandbox.stats()
        sent = canonical([e["event"] for e in sandbox.store.events()])
    assert stats["duplicate_events"] == 0 and stats["violations"] == 0
    return summaries, read, sent, {"events": stats["events"], "requests": stats["requests"].get("bulk-events", 0)}


def test_demo_warehouse_both_paths_send_the_same_events_once(
    demo_templates: DemoTemplates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = RowsRead(monkeypatch)
    results = {}
    for mode in ("python", "warehouse"):
        path = demo_templates.copy((tmp_path / mode).resolve(), 600) if (tmp_path / mode).mkdir() is None else None
        assert path is not None
        results[mode] = _scenario(duck(path), mode, rows, grow=path)
    (py, py_read, py_sent, py_stats), (wh, wh_read, wh_sent, wh_stats) = results["python"], results["warehouse"]
    assert [s.pop("diff") for s in py] == ["python"] * 3 and [s.pop("diff") for s in wh] == ["warehouse"] * 3
    assert wh == py  # same counts, run by run
    assert wh_sent == py_sent and wh_stats == py_stats
    assert py[1]["already_sent"] > 0 and py[2]["accepted"] == 0 and py[2]["requests"] == 0
    # Only unsent rows leave the warehouse: the repeat reads none of the accepted ones.
    assert py_read[1] == py[1]["extracted"] and py_read[2] == py[2]["extracted"]
    for run in (1, 2):
        assert wh_read[run] == wh[run]["extracted"] - wh[run]["already_sent"]
    assert wh_read[2] == py[2]["rejected"]  # rejected rows are read again (re-evaluated), sent ones are not


SEGMENT_DDL = (
    "CREATE SCHEMA IF NOT EXISTS sgmt",
    "CREATE TABLE sgmt.tracks (id VARCHAR(40), user_id VARCHAR(100), anonymous_id VARCHAR(40), event VARCHAR(60), "
    "event_text VARCHAR(60), timestamp TIMESTAMP, received_at TIMESTAMP)",
    "CREATE TABLE sgmt.pages (id INTEGER, user_id VARCHAR(100), anonymous_id VARCHAR(40), name VARCHAR(60), "
    "timestamp TIMESTAMP, received_at TIMESTAMP)",
)


def _segment(url: str) -> EventMapping:
    """A small Segment schema: text ids on tracks, integer ids on pages (compared with the ledger as text)."""
    engine = make_engine(url)
    base = AS_OF.replace(tzinfo=None) - timedelta(hours=20)
    with engine.begin() as conn:
        for ddl in SEGMENT_DDL:
            conn.execute(sa.text(ddl))
        tracks = [
            {
                "id": f"t{i}",
                "u": f"u{i % 7}",
                "e": "order_completed" if i % 3 else None,
                "ts": base + timedelta(minutes=i),
            }
            for i in range(300)
        ]
        conn.execute(
            sa.text("INSERT INTO sgmt.tracks VALUES (:id, :u, NULL, :e, :e, :ts, :ts)"),
            tracks,
        )
        pages = [{"id": i, "u": f"u{i % 5}", "ts": base + timedelta(minutes=2 * i)} for i in range(200)]
        conn.execute(sa.text("INSERT INTO sgmt.pages VALUES (:id, :u, NULL, 'Home', :ts, :ts)"), pages)
    engine.dispose()
    return event_mapping_from_dict({"source": {"preset": "segment", "segment_schema": "sgmt"}})


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_segment_preset_both_paths_agree(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    url = duck(tmp_path / "seg.duckdb") if backend == "duckdb" else str(request.getfixturevalue("pg_db"))
    mapping = _segment(url)
    rows = RowsRead(monkeypatch)
    results = {}
    for mode in ("python", "warehouse"):
        results[mode] = _scenario(url, mode, rows, mapping=mapping)
        engine = make_engine(url)
        reset_state(engine)  # the next path starts from nothing sent, against a fresh sandbox
        engine.dispose()
    (py, _, py_sent, py_stats), (wh, wh_read, wh_sent, wh_stats) = results["python"], results["warehouse"]
    for s in (*py, *wh):
        s.pop("diff")
    assert wh == py and wh_sent == py_sent and wh_stats == py_stats
    assert py[0]["accepted"] > 0 and py[1]["already_sent"] > 0 and py[2]["accepted"] == 0
    assert wh_read[2] == py[2]["rejected"]  # integer page ids were matched in SQL too


def test_forced_warehouse_diff_needs_the_ledger_in_the_warehouse(tmp_path: Path) -> None:
    warehouse = duck(tmp_path / "w.duckdb")
    engine = make_engine(warehouse)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE main_events (x INTEGER)"))
    engine.dispose()
    with sandbox_server(KEY) as sandbox:
        state = duck(tmp_path / "state.duckdb")
        forced = sandbox_settings(sandbox, warehouse, KEY, state_url=state, diff_mode="warehouse")
        with pytest.raises(ConfigError, match="diff_mode"):
            events.run(forced, window=(AS_OF - timedelta(hours=1), AS_OF), run_id="f1", clock=lambda: AS_OF)
        assert sandbox.stats()["requests"] == {}


def test_same_database_rules(tmp_path: Path) -> None:
    f = tmp_path / "w.duckdb"
    assert same_database(f"duckdb:///{f}", f"duckdb:///{f}?memory_limit=1GB")
    assert not same_database(f"duckdb:///{f}", f"duckdb:///{tmp_path / 'other.duckdb'}")
    assert not same_database("duckdb:///:memory:", "duckdb:///:memory:")  # one database per connection
    pg = "postgresql+psycopg://u@127.0.0.1:5432/db"
    assert same_database(pg, pg) and not same_database(pg, pg.replace("/db", "/state"))
    assert not same_database(pg, f"duckdb:///{f}")
