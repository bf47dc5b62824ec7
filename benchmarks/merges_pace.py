"""Merges (issue 17): N anonymous -> known pairs through the real merge pipeline (chunked warehouse read,
screening, journal in ``we_merged_pairs``, one paced /users call per pair, confirmations) to the sandbox in its
own process at the /users rate limit with added latency. Prints achieved merges/min ÷ the ceiling (the /users
rpm: one pair per call), target >= 0.97, and 429s (target 0): merges use /users' own budget, and use all of it.

    .venv/bin/python benchmarks/merges_pace.py --pairs 5000 --rpm 5000 --latency-ms 300
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb

from etl.config import Settings
from etl.mappings.events import event_mapping_from_dict
from etl.pipelines import merges
from webengage_dev.sandbox import SandboxConfig, SandboxProcess

_PAIRS = """
CREATE TABLE main.identifies AS
SELECT printf('anon-%09d', i) AS anonymous_id, printf('usr_%07d', i % 50000) AS user_id,
    TIMESTAMP '2026-10-01' + to_seconds(i) AS identified_at
FROM range(?) t(i)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pairs", type=int, default=5000)
    ap.add_argument("--rpm", type=int, default=5000)
    ap.add_argument("--latency-ms", type=float, default=300.0)
    args = ap.parse_args()

    key = "bench-key-0123456789"
    with tempfile.TemporaryDirectory(prefix="we-merges-bench-") as tmp:
        warehouse = Path(tmp) / "bench.duckdb"
        with duckdb.connect(str(warehouse)) as con:
            con.execute(_PAIRS, [args.pairs])
        query = Path(tmp) / "pairs.sql"
        query.write_text("SELECT anonymous_id, user_id, identified_at FROM main.identifies")
        mapping = event_mapping_from_dict({"merges": {"enabled": True, "preset": "sql", "query": str(query)}})
        config = SandboxConfig(license_code="bench", api_key=key, users_rpm=args.rpm, latency_ms=args.latency_ms)
        with SandboxProcess(config) as sandbox:
            settings = Settings.from_mapping(
                {
                    "license_code": "bench",
                    "api_key": key,
                    "api_url": sandbox.url,
                    "warehouse_url": f"duckdb:///{warehouse}",
                    "users_rpm": args.rpm,
                    "expected_latency_s": args.latency_ms / 1000,
                }
            )
            started = time.monotonic()
            summary = merges.run(settings, run_id="bench", mapping=mapping)
            elapsed = time.monotonic() - started
            stats = sandbox.stats()
    merged = int(summary["merged"])
    send_s = float(stats["last_request_at"] - stats["first_request_at"]) if stats["first_request_at"] else 0.0
    send_s += args.latency_ms / 1000  # the last request's own latency is not in the arrival-to-arrival span
    print(
        f"pairs {args.pairs:,}; merged {merged:,}; sandbox merges {stats['merges']:,}; requests "
        f"{summary['requests']:,}; 429s {stats['throttled']}; violations {stats['violations']}"
    )
    print(
        f"run {elapsed:.1f}s (send phase {send_s:.1f}s); latency {args.latency_ms:.0f} ms; end-to-end ratio "
        f"{merged / elapsed * 60 / args.rpm:.3f}"
    )
    print(
        f"achieved {merged / send_s * 60:,.0f} merges/min / ceiling {args.rpm:,} = ratio "
        f"{merged / send_s * 60 / args.rpm:.3f}"
    )


if __name__ == "__main__":
    main()
