"""P2 (events): N events through the real event pipeline (chunked warehouse read, transform, outbox journal,
bulk batches, paced client, ledger checkpoints in the same DuckDB file) to the sandbox in its own process at
a rate limit with added latency. Prints achieved events/min ÷ the ceiling (rpm × 25), target >= 0.97, and
the duplicates the sandbox saw (target 0).

    .venv/bin/python benchmarks/events_ceiling.py --events 300000 --rpm 3000 --latency-ms 300
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from etl.config import Settings
from etl.mappings.events import event_mapping_from_dict
from etl.pipelines import events
from webengage_dev.sandbox import SandboxConfig, SandboxProcess

_EVENTS_TABLE = """
CREATE TABLE main.bench_events AS
SELECT printf('ev-%09d', i) AS event_id,
    printf('usr_%07d', i % 50000) AS user_id,
    CASE WHEN i % 7 = 0 THEN md5(i::VARCHAR) END AS anonymous_id,
    (['page', 'Product Viewed', 'Products Searched', 'Product Added', 'Order Completed'])[1 + i % 5] AS event_name,
    TIMESTAMPTZ '2026-10-31 00:00:00+00' + to_seconds(i % 86400) AS event_time,
    json_object('order_id', printf('ORD-%d', i), 'revenue', (i % 1000) / 10.0, 'currency', 'INR',
                'page_path', '/p/' || (i % 300), 'items', json_array(json_object('sku', 'S' || (i % 90), 'qty', 1)))
        AS properties
FROM range(?) t(i)
"""
_QUERY = """SELECT event_id, user_id, anonymous_id, event_name, event_time, properties
FROM main.bench_events WHERE event_time >= :start AND event_time < :end
"""
WINDOW = (datetime(2026, 10, 31, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))


def build(directory: Path, n: int) -> tuple[Path, Path]:
    warehouse = directory / "bench.duckdb"
    con = duckdb.connect(str(warehouse))
    con.execute("SET TimeZone='UTC'")
    con.execute(_EVENTS_TABLE, [n])
    con.close()
    query = directory / "bench_events.sql"
    query.write_text(_QUERY)
    return warehouse, query


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--rpm", type=int, default=3000)
    ap.add_argument("--latency-ms", type=float, default=300.0)
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    args = ap.parse_args()

    key = "bench-key-0123456789"
    with tempfile.TemporaryDirectory(prefix="we-events-bench-") as tmp:
        warehouse, query = build(Path(tmp), args.events)
        mapping = event_mapping_from_dict({"source": {"query": str(query)}})
        config = SandboxConfig(
            license_code="bench",
            api_key=key,
            bulk_events_rpm=args.rpm,
            latency_ms=args.latency_ms,
            jitter_ms=args.jitter_ms,
        )
        with SandboxProcess(config) as sandbox:
            settings = Settings.from_mapping(
                {
                    "license_code": "bench",
                    "api_key": key,
                    "api_url": sandbox.url,
                    "warehouse_url": f"duckdb:///{warehouse}",
                    "bulk_events_rpm": args.rpm,
                    "expected_latency_s": (args.latency_ms + args.jitter_ms) / 1000,
                }
            )
            started = time.monotonic()
            summary = events.run(settings, window=WINDOW, run_id="bench", mapping=mapping)
            elapsed = time.monotonic() - started
            stats = sandbox.stats()
    ceiling = args.rpm * 25
    accepted = int(summary["accepted"])
    send_s = float(stats["last_request_at"] - stats["first_request_at"]) if stats["first_request_at"] else 0.0
    # The last request's own latency is not in the arrival-to-arrival span: add it back.
    send_s += args.latency_ms / 1000
    end_to_end = accepted / elapsed * 60 / ceiling
    print(
        f"events {args.events:,}; accepted {accepted:,}; requests {summary['requests']:,}; sandbox events "
        f"{stats['events']:,}; 429s {stats['throttled']}; violations {stats['violations']}"
    )
    print(
        f"run {elapsed:.1f}s (send phase {send_s:.1f}s); latency {args.latency_ms:.0f}±{args.jitter_ms:.0f} ms; "
        f"end-to-end ratio {end_to_end:.3f}"
    )
    print(
        f"achieved {accepted / send_s * 60:,.0f} events/min / ceiling {ceiling:,} events/min = ratio "
        f"{accepted / send_s * 60 / ceiling:.3f}; duplicates {stats['duplicate_events']}"
    )


if __name__ == "__main__":
    main()
