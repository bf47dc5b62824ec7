"""Issue 16 (events): a window of N events of which 99% WebEngage already accepted (in the ledger). With the
ledger anti-join in the warehouse only the new events leave it; the worker-side filter reads them all.
Prints rows transferred ÷ new events for both paths (target for the warehouse path: <= 1.02), their wall
times, and checks both sent the same events exactly once.

    .venv/bin/python benchmarks/events_pushdown.py --events 1000000
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the repository on sys.path)
import duckdb
import pandas as pd
from _common import machine
from events_ceiling import WINDOW, build

from etl.config import Settings
from etl.mappings.events import event_mapping_from_dict
from etl.pipelines import events
from etl.state.store import ensure_schema
from etl.warehouse import queries
from etl.warehouse.engine import make_engine
from webengage_dev.sandbox import SandboxConfig, SandboxServer

KEY = "bench-key-0123456789"
#: 99 of every 100 events were sent by an earlier run (a run id of its own, as in production).
_SEED_LEDGER = """
INSERT INTO we_event_ledger (event_id, status, request_id, run_id, accepted_at, updated_at)
SELECT event_id, 'accepted', 'seed', 'earlier-run', TIMESTAMP '2026-10-31 12:00', TIMESTAMP '2026-10-31 12:00'
FROM main.bench_events WHERE hash(event_id) % 100 <> 0
"""


class RowsRead:
    """Counts the rows the event sync is handed by the warehouse reader."""

    def __init__(self) -> None:
        self.rows = 0
        real = queries.read_chunks

        def counting(*args: Any, **kwargs: Any) -> Iterator[pd.DataFrame]:
            for chunk in real(*args, **kwargs):
                self.rows += len(chunk)
                yield chunk

        events.read_chunks = counting  # type: ignore[assignment]


def run(warehouse: Path, query: Path, mode: str, reader: RowsRead) -> tuple[dict[str, Any], int, float, int]:
    mapping = event_mapping_from_dict({"source": {"query": str(query)}})
    config = SandboxConfig(license_code="bench", api_key=KEY, bulk_events_rpm=1_000_000)
    with SandboxServer(config) as sandbox:
        settings = Settings.from_mapping(
            {
                "license_code": "bench",
                "api_key": KEY,
                "api_url": sandbox.url,
                "warehouse_url": f"duckdb:///{warehouse}",
                "bulk_events_rpm": 1_000_000,
                "expected_latency_s": 0.01,
                "diff_mode": mode,
            }
        )
        reader.rows = 0
        started = time.perf_counter()
        summary = events.run(settings, window=WINDOW, run_id=f"bench-{mode}", mapping=mapping)
        seconds = time.perf_counter() - started
        stats = sandbox.stats()
        assert stats["duplicate_events"] == 0 and stats["violations"] == 0, stats
        return summary, reader.rows, seconds, int(stats["events"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    args = ap.parse_args()
    print(machine())
    reader = RowsRead()
    with tempfile.TemporaryDirectory(prefix="we-events-pushdown-") as tmp:
        directory = Path(tmp)
        warehouse, query = build(directory, args.events)
        engine = make_engine(f"duckdb:///{warehouse}")
        ensure_schema(engine)
        engine.dispose()
        with duckdb.connect(str(warehouse)) as con:
            con.execute(_SEED_LEDGER)
            row = con.execute(
                "SELECT count(*) FROM main.bench_events e ANTI JOIN we_event_ledger l USING (event_id)"
            ).fetchone()
        assert row is not None
        new = int(row[0])
        copy = directory / "python.duckdb"
        shutil.copyfile(warehouse, copy)
        results = {mode: run(path, query, mode, reader) for mode, path in (("python", copy), ("warehouse", warehouse))}
    print(f"window: {args.events:,} events, {new:,} not yet sent ({new / args.events:.1%})")
    for mode, (summary, rows, seconds, accepted) in results.items():
        print(
            f"  {mode:9s}: rows transferred {rows:,} = {rows / new:.3f} x new events; accepted {accepted:,}; "
            f"already_sent {summary['already_sent']:,}; {seconds:.1f} s"
        )
    py, wh = results["python"], results["warehouse"]
    assert py[0]["accepted"] == wh[0]["accepted"] == new and py[0]["already_sent"] == wh[0]["already_sent"]
    ratio = wh[1] / new
    print(
        f"events pushdown: rows transferred / new events = {ratio:.3f} (target <= 1.02; worker-side filter "
        f"{py[1] / new:.1f}); run time {py[2]:.1f} s -> {wh[2]:.1f} s ({py[2] / wh[2]:.1f}x)"
    )


if __name__ == "__main__":
    main()
