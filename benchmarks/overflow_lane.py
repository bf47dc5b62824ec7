"""Overflow lane: the profile sync through /bulk-users only, then with the overflow lane (the remainder one
user per request through /users, on its own budget), against the sandbox with independent budgets.
Prints overflow items/min ÷ bulk-only items/min last. Target >= 1.35 (ideal at the default limits:
(25 × 500 + 5,000) / (25 × 500) = 1.4).

Limits are scaled up in proportion (default ×2.4: bulk 1,200/min, single 12,000/min) so a run takes
seconds; the ratio only depends on their proportion. Items/min are measured by the sandbox, from its first
to its last ingestion of each run; the buckets' burst is cut to 0.1 s of budget so the start does not flatter
either run. Both runs send the same users into an empty sandbox and state. At --scale 6 (500 single
requests/s) client and sandbox saturate a 2-core machine's CPU, which then caps the single lane.

    .venv/bin/python benchmarks/overflow_lane.py --users 8000 --scale 2.4 --latency-ms 50
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from etl.config import Settings
from etl.pipelines import users
from webengage_dev.demo.warehouse import build_demo_warehouse
from webengage_dev.sandbox import SandboxConfig, SandboxProcess

KEY = "bench-key-0123456789"
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
BURST_S = 0.1


def one_run(
    sandbox: SandboxProcess,
    warehouse: Path,
    state: Path,
    *,
    overflow: bool,
    bulk_rpm: float,
    single_rpm: float,
    latency_s: float,
) -> dict[str, Any]:
    httpx.post(f"{sandbox.url}/_sandbox/reset", timeout=10).raise_for_status()
    settings = Settings.from_mapping(
        {
            "license_code": "bench",
            "api_key": KEY,
            "api_url": sandbox.url,
            "warehouse_url": f"duckdb:///{warehouse}",
            "state_url": f"duckdb:///{state}",
            "bulk_users_rpm": bulk_rpm,
            "users_rpm": single_rpm,
            "expected_latency_s": latency_s,
            "burst_seconds": BURST_S,
            "overflow_lane": overflow,
        }
    )
    started = time.monotonic()
    summary = users.run(settings, run_id="overflow" if overflow else "bulk-only", clock=lambda: AS_OF)
    wall = time.monotonic() - started
    stats = sandbox.stats()
    listed = httpx.get(f"{sandbox.url}/_sandbox/users", params={"limit": 1_000_000}, timeout=30).json()["users"]
    seen = sorted(float(u["first_seen"]) for u in listed)
    span = seen[-1] - seen[0]
    return {
        "summary": summary,
        "stats": stats,
        "items": len(seen),
        "span": span,
        "wall": wall,
        "per_min": len(seen) / span * 60,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=8_000)
    ap.add_argument("--scale", type=float, default=2.4, help="multiplies WebEngage's 500 and 5,000 requests/min")
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--jitter-ms", type=float, default=20.0)
    args = ap.parse_args()
    bulk_rpm, single_rpm = 500 * args.scale, 5000 * args.scale
    latency_s = (args.latency_ms + args.jitter_ms) / 1000

    with tempfile.TemporaryDirectory(prefix="overflow-bench-") as tmp:
        warehouse = Path(tmp) / "warehouse.duckdb"
        build_demo_warehouse(warehouse, users=args.users, as_of=AS_OF)
        config = SandboxConfig(
            license_code="bench",
            api_key=KEY,
            bulk_users_rpm=int(bulk_rpm),
            users_rpm=int(single_rpm),
            latency_ms=args.latency_ms,
            jitter_ms=args.jitter_ms,
        )
        with SandboxProcess(config) as sandbox:
            runs = {
                name: one_run(
                    sandbox,
                    warehouse,
                    Path(tmp) / f"state-{name}.duckdb",
                    overflow=name == "overflow",
                    bulk_rpm=bulk_rpm,
                    single_rpm=single_rpm,
                    latency_s=latency_s,
                )
                for name in ("bulk-only", "overflow")
            }

    for name, run in runs.items():
        stats, summary = run["stats"], run["summary"]
        print(
            f"{name:9s}: {run['items']:,} users in {run['span']:.1f}s of sending ({run['wall']:.1f}s run) = "
            f"{run['per_min']:,.0f} items/min; requests bulk "
            f"{stats['requests'].get('bulk-users', 0):,} single {stats['requests'].get('users', 0):,}; "
            f"429s {stats['throttled']}; violations {stats['violations']}; accepted {summary['accepted']:,} of "
            f"{summary['extracted']:,} rows"
        )
        for note in summary["notes"]:
            print(f"           {note}")
    ideal = (25 * bulk_rpm + single_rpm) / (25 * bulk_rpm)
    print(
        f"limits: bulk {bulk_rpm:,.0f}/min x 25, single {single_rpm:,.0f}/min; latency {args.latency_ms:.0f}"
        f"±{args.jitter_ms:.0f} ms; ideal ratio {ideal:.3f}"
    )
    ratio = runs["overflow"]["per_min"] / runs["bulk-only"]["per_min"]
    print(
        f"overflow {runs['overflow']['per_min']:,.0f} / bulk-only {runs['bulk-only']['per_min']:,.0f} items/min "
        f"= ratio {ratio:.3f}"
    )


if __name__ == "__main__":
    main()
