"""Webhook receiver under load: deliveries/s sustained, latency, and loss (landed and loaded vs acknowledged).

The receiver runs in its own process (``python -m etl.webhooks``, uvicorn + httptools + uvloop, landing in a
temporary directory with real ``fdatasync``). Client processes post the seed's example deliveries, each with
a unique ``x-request-id``, over keep-alive loopback connections for two phases:

1. **max**: closed loop, ``--concurrency`` connections posting back to back for ``--seconds``;
2. **paced**: open loop at ``--rate`` deliveries/s (the 1,000/s target) for ``--paced-seconds``; latency is
   measured from each request's *scheduled* time, so a stall is not hidden by the client waiting on it.

The client is a minimal HTTP/1.1 writer/reader on asyncio: httpx costs more CPU per request than the server
(see webengage_dev/sandbox/loadcheck.py), and client and server share the machine's 2 cores. Afterwards the receiver
is stopped (SIGTERM, drained), the loader moves the landing log into a DuckDB warehouse, and every
acknowledged id must be there exactly once. Last line: sustained deliveries/s ÷ 1,000 target.

    .venv/bin/python benchmarks/webhooks_load.py [--seconds 20 --concurrency 64 --processes 2 --rate 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine

from etl.webhooks import loader
from etl.webhooks.config import WebhookSettings
from etl.webhooks.examples import EXAMPLES
from etl.webhooks.runner import WebhookProcess

LICENSE = "bench"
KEY = "bench-webhook-key"
TARGET = 1_000.0


def _request(port: int, rid: str, body: bytes, event_type: str) -> bytes:
    secret = hashlib.md5(f"{LICENSE}:{KEY}".encode()).hexdigest()
    head = (
        f"POST /webhooks?licenseCode={LICENSE}&secret={secret}&eventType={event_type} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nx-request-id: {rid}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes) -> int:
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def _client(port: int, worker: int, connections: int, seconds: float, rate: float) -> dict[str, Any]:
    bodies = [(et, orjson.dumps(body)) for et, body in EXAMPLES]
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    acked: list[str] = []
    errors = 0
    counter = 0
    start = time.perf_counter()
    deadline = start + seconds
    interval = connections / rate if rate > 0 else 0.0  # per connection, open loop

    async def connection(index: int) -> None:
        nonlocal counter, errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        next_at = start + index * interval / max(connections, 1)
        try:
            while True:
                now = time.perf_counter()
                if now >= deadline:
                    return
                if interval:
                    if next_at > now:
                        await asyncio.sleep(next_at - now)
                    scheduled = next_at
                    next_at += interval
                else:
                    scheduled = now
                counter += 1
                rid = f"w{worker}-{counter}"
                event_type, body = bodies[counter % len(bodies)]
                try:
                    status = await _exchange(reader, writer, _request(port, rid, body, event_type))
                except (OSError, asyncio.IncompleteReadError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append(time.perf_counter() - scheduled)
                statuses[status] += 1
                if status == 200:
                    acked.append(rid)
        finally:
            writer.close()

    await asyncio.gather(*(connection(i) for i in range(connections)))
    return {
        "elapsed": time.perf_counter() - start,
        "latencies": latencies,
        "statuses": dict(statuses),
        "acked": acked,
        "errors": errors,
    }


def _client_process(port: int, worker: int, connections: int, seconds: float, rate: float) -> dict[str, Any]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(_client(port, worker, connections, seconds, rate))


def _cpu_seconds(pid: int | None) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase(
    server: WebhookProcess, *, name: str, seconds: float, connections: int, processes: int, rate: float, offset: int
) -> tuple[dict[str, Any], list[str]]:
    shares = [connections // processes + (i < connections % processes) for i in range(processes)]
    cpu_before = _cpu_seconds(server.pid)
    with ProcessPoolExecutor(processes) as pool:
        futures = [
            pool.submit(_client_process, server.port, offset + i, n, seconds, rate * n / connections)
            for i, n in enumerate(shares)
            if n
        ]
        parts = [f.result() for f in futures]
    cpu = _cpu_seconds(server.pid) - cpu_before
    latencies = sorted(x for p in parts for x in p["latencies"])
    statuses: Counter[int] = Counter()
    for p in parts:
        statuses.update(p["statuses"])
    acked = [rid for p in parts for rid in p["acked"]]
    elapsed = max(p["elapsed"] for p in parts)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    result = {
        "phase": name,
        "seconds": round(elapsed, 2),
        "connections": connections,
        "client_processes": processes,
        "target_rate": rate or None,
        "deliveries_per_s": round(len(acked) / elapsed, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2) if latencies else 0.0,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "transport_errors": sum(p["errors"] for p in parts),
        "server_cpu_ms_per_delivery": round(cpu * 1000 / max(len(acked), 1), 3),
    }
    return result, acked


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="max phase length")
    ap.add_argument("--concurrency", type=int, default=64, help="connections in the max phase")
    ap.add_argument("--processes", type=int, default=2, help="client processes")
    ap.add_argument("--rate", type=float, default=TARGET, help="paced phase rate (deliveries/s); 0 skips it")
    ap.add_argument("--paced-seconds", type=float, default=10.0)
    args = ap.parse_args()

    print(f"# {machine()}")
    tmp = Path(tempfile.mkdtemp(prefix="we-webhooks-bench-"))
    env = {
        "WEBENGAGE_LICENSE_CODE": LICENSE,
        "WEBENGAGE_WEBHOOK_SECRET": KEY,
        "WEBENGAGE_WEBHOOK_DIR": str(tmp / "landing"),
        "WAREHOUSE_URL": f"duckdb:///{tmp / 'w.duckdb'}",
    }
    try:
        server = WebhookProcess(env).start()
        try:
            results = []
            acked: list[str] = []
            peak, ids = phase(
                server,
                name="max",
                seconds=args.seconds,
                connections=args.concurrency,
                processes=args.processes,
                rate=0.0,
                offset=0,
            )
            results.append(peak)
            acked += ids
            if args.rate > 0:
                paced, ids = phase(
                    server,
                    name="paced",
                    seconds=args.paced_seconds,
                    connections=max(8, args.concurrency // 2),
                    processes=args.processes,
                    rate=args.rate,
                    offset=100,
                )
                results.append(paced)
                acked += ids
            stats = server.stats()
        finally:
            server.stop()
        for r in results:
            print(orjson.dumps(r).decode())
        started = time.monotonic()
        summary = loader.run(WebhookSettings.from_env(env, require_auth=False))
        load_s = time.monotonic() - started
        con = duckdb.connect(str(tmp / "w.duckdb"), read_only=True)
        con.register("acked", pa.table({"rid": acked}))
        rows, distinct = con.execute("SELECT count(*), count(DISTINCT request_id) FROM webengage_events").fetchone()
        missing_sql = "SELECT count(*) FROM acked a WHERE a.rid NOT IN (SELECT request_id FROM webengage_events)"
        (missing,) = con.execute(missing_sql).fetchone()
        con.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"server: accepted {stats['accepted']:,}, group commits {stats['group_commits']:,} "
        f"({stats['accepted'] / max(stats['group_commits'], 1):.1f} deliveries per fsync), landed "
        f"{stats['records_written']:,} lines / {stats['bytes_written'] / 2**20:.1f} MiB"
    )
    print(
        f"loader: {summary['lines']:,} lines -> {summary['events_loaded']:,} rows in {load_s:.1f}s "
        f"({summary['lines'] / load_s:,.0f} lines/s, chunks {summary['chunks']})"
    )
    print(
        f"loss: acknowledged {len(acked):,}, in webengage_events {rows:,} ({distinct:,} distinct), "
        f"acknowledged but missing {missing}, doubled {rows - distinct}"
    )
    peak = results[0]
    worst_p99 = max(r["p99_ms"] for r in results)
    print(
        f"sustained {peak['deliveries_per_s']:,.0f} deliveries/s (p50 {peak['p50_ms']} ms, p99 {peak['p99_ms']} ms); "
        f"worst p99 {worst_p99} ms; loss {missing}; ratio {peak['deliveries_per_s'] / TARGET:.2f}"
    )


if __name__ == "__main__":
    main()
