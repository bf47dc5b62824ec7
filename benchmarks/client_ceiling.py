"""P1 (client): send N users through WebEngageClient to the sandbox at a configured rate limit with
added latency, and print achieved items/min ÷ the ceiling (rpm × 25). Target >= 0.97 with no 429s.

    .venv/bin/python benchmarks/client_ceiling.py --users 50000 --rpm 3000 --latency-ms 300
"""

from __future__ import annotations

import argparse
import time

from etl.config import Settings
from etl.engine.frame import client_options
from etl.load.batching import Item, batch_requests
from etl.webengage.client import WebEngageClient
from webengage_dev.sandbox import SandboxConfig, SandboxProcess


def payloads(n: int) -> list[Item[str]]:
    return [
        Item(
            key=f"user-{i:07d}",
            identity=f"user-{i:07d}:1",
            payload={
                "userId": f"user-{i:07d}",
                "firstName": "Ann",
                "email": f"u{i}@example.com",
                "attributes": {"plan": "pro", "ltv": i * 1.5, "vip": i % 2 == 0},
            },
        )
        for i in range(n)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--users", type=int, default=50_000)
    ap.add_argument("--rpm", type=int, default=3000)
    ap.add_argument("--latency-ms", type=float, default=300.0)
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    args = ap.parse_args()

    key = "bench-key-0123456789"
    config = SandboxConfig(
        license_code="bench", api_key=key, bulk_users_rpm=args.rpm, latency_ms=args.latency_ms, jitter_ms=args.jitter_ms
    )
    with SandboxProcess(config) as sandbox:
        settings = Settings.from_mapping(
            {
                "license_code": "bench",
                "api_key": key,
                "api_url": sandbox.url,
                "bulk_users_rpm": args.rpm,
                "expected_latency_s": (args.latency_ms + args.jitter_ms) / 1000,
            }
        )
        requests = list(
            batch_requests(payloads(args.users), endpoint="bulk-users", batch_size=25, max_bytes=512_000, oversize=[])
        )
        accepted = 0
        with WebEngageClient(client_options(settings)) as client:
            started = time.monotonic()
            for result in client.send_many(requests):
                accepted += result.request.items if result.accepted else 0
            elapsed = time.monotonic() - started
            client_stats = client.stats.snapshot()
        stats = sandbox.stats()
    ceiling = args.rpm * 25
    achieved = accepted / elapsed * 60
    print(
        f"users {args.users:,}; accepted {accepted:,}; requests {client_stats['requests']:,}; "
        f"sandbox 429s {stats['throttled']}; violations {stats['violations']}; elapsed {elapsed:.1f}s"
    )
    print(f"concurrency {client.concurrency_for('bulk-users')}; latency {args.latency_ms:.0f}±{args.jitter_ms:.0f} ms")
    print(f"achieved {achieved:,.0f} items/min / ceiling {ceiling:,} items/min = ratio {achieved / ceiling:.3f}")


if __name__ == "__main__":
    main()
