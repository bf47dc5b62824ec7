"""Throughput check of the sandbox: ``python -m webengage_dev.sandbox.loadcheck [--seconds 10 --concurrency 16]``.

Runs the sandbox in a subprocess (so client and server do not share a GIL) with unlimited rate and posts
bulk-users bodies of 25 valid users from ``concurrency`` connections for ``seconds``. httpx costs more CPU
per request than the server, so ``--processes`` spreads the client and the report includes the server's
own CPU time per request (its capacity when the client is the bottleneck).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson

from webengage_dev.sandbox.config import SandboxConfig
from webengage_dev.sandbox.runner import SandboxProcess

BODIES = 200  # distinct bodies cycled through, so profiles are both created and merged


def bulk_users_body(batch: int, size: int = 25) -> bytes:
    """One valid bulk-users body: ``size`` users with system fields and a few typed attributes."""
    users = [
        {
            "userId": f"load-{batch}-{i}",
            "firstName": "Ada",
            "email": f"load{batch}.{i}@example.com",
            "phone": "+917850009678",
            "birthDate": "1990-01-01T00:00:00+0000",
            "gender": "female",
            "emailOptIn": True,
            "attributes": {
                "plan": "gold",
                "ltv": 123.45,
                "active": True,
                "signup": "2024-05-01T10:00:00+0000",
            },
        }
        for i in range(size)
    ]
    return orjson.dumps({"users": users})


async def _measure(url: str, seconds: float, concurrency: int, license_code: str, api_key: str) -> dict[str, Any]:
    bodies = itertools.cycle([bulk_users_body(b) for b in range(BODIES)])
    endpoint = f"{url}/v1/accounts/{license_code}/bulk-users"
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    response = await client.post(endpoint, content=next(bodies), headers=headers)
                except httpx.TransportError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - sent)
                statuses[response.status_code] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"elapsed": elapsed, "statuses": dict(statuses), "latencies": latencies, "errors": errors}


def _measure_sync(url: str, seconds: float, concurrency: int, license_code: str, api_key: str) -> dict[str, Any]:
    return asyncio.run(_measure(url, seconds, concurrency, license_code, api_key))


def measure(
    url: str,
    seconds: float,
    concurrency: int,
    *,
    processes: int = 1,
    license_code: str = "~99199077",
    api_key: str = "sandbox-key",
) -> dict[str, Any]:
    """Post 25-user bulk bodies to ``url`` for ``seconds`` from ``concurrency`` connections; report rates.

    ``processes`` > 1 splits the connections over that many client processes.
    """
    args = (url, seconds, license_code, api_key)
    if processes <= 1:
        parts = [_measure_sync(url, seconds, concurrency, license_code, api_key)]
    else:
        shares = [concurrency // processes + (i < concurrency % processes) for i in range(processes)]
        with ProcessPoolExecutor(processes) as pool:
            futures = [pool.submit(_measure_sync, args[0], args[1], n, args[2], args[3]) for n in shares if n]
            parts = [f.result() for f in futures]
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    for part in parts:
        statuses.update(part["statuses"])
        latencies += part["latencies"]
    elapsed = max(part["elapsed"] for part in parts)
    done = sum(statuses.values())
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "requests": done,
        "transport_errors": sum(part["errors"] for part in parts),
        "seconds": round(elapsed, 3),
        "requests_per_s": round(done / elapsed, 1),
        "requests_per_min": round(done / elapsed * 60),
        "items_per_s": round(done * 25 / elapsed, 1),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "p50_ms": round(quantiles[49] * 1000, 1),
        "p95_ms": round(quantiles[94] * 1000, 1),
        "concurrency": concurrency,
        "client_processes": max(processes, 1),
    }


def _cpu_seconds(pid: int | None) -> float | None:
    """User+system CPU time of a process (Linux /proc); None where unavailable."""
    stat = Path(f"/proc/{pid}/stat")
    if pid is None or not stat.exists():
        return None
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m webengage_dev.sandbox.loadcheck", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--processes", type=int, default=2, help="client processes (httpx is the bottleneck)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="server latency per request")
    args = parser.parse_args(argv)
    config = SandboxConfig(users_rpm=0, events_rpm=0, bulk_users_rpm=0, bulk_events_rpm=0, latency_ms=args.latency_ms)
    with SandboxProcess(config) as sandbox:
        cpu_before = _cpu_seconds(sandbox.pid)
        result = measure(sandbox.url, args.seconds, args.concurrency, processes=args.processes)
        cpu_after = _cpu_seconds(sandbox.pid)
        stats = sandbox.stats()
    result["latency_ms"] = args.latency_ms
    result["server_items_accepted"] = stats["items_accepted"].get("bulk-users", 0)
    result["server_violations"] = stats["violations"]
    if cpu_before is not None and cpu_after is not None and result["requests"]:
        cpu_ms = (cpu_after - cpu_before) * 1000 / result["requests"]
        result["server_cpu_ms_per_request"] = round(cpu_ms, 3)
        result["server_capacity_req_per_s_per_core"] = round(1000 / cpu_ms) if cpu_ms else None
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
