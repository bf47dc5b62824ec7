"""P3 diff: 1M users in a DuckDB warehouse, state fully synced, exactly 1% changed: the real profile sync
(``etl.pipelines.users.run``) must send only the changed users, in full batches. Prints changed, requests
and requests ÷ ceil(changed / 25) (target <= 1.01); fails if the users sent are not exactly the changed ones.

The data set is P4's (``prep_users.py``: 30 mixed columns, deterministic set-based SQL; 1 user in 100
changed). The state is populated either (``--warm hashes``, default) with P4's ``warm_state``: every user
hashed with the pipeline's own functions and salt, bulk inserted into ``we_user_state``; or honestly
(``--warm pipeline``): the real pipeline sends every user once to an ``httpx.MockTransport`` answering 201
queued and checkpoints each accepted batch (about 24 ms a batch on DuckDB, so 16 minutes for 1M users).
Both give the same diff (measured: 400 requests either way). The measured run goes to a MockTransport that
counts requests and records every userId it receives.

``--users-diff`` picks where the diff runs (issue 16; default ``auto``: in the warehouse). With ``--warm
hashes`` the warehouse hashes are warmed too (``diff_users.warm_sql_hashes``) unless ``--migrate``: then the
measured run is the migration run of a deployment switching from the full read (every row read once).

    .venv/bin/python benchmarks/diff_requests.py --users 1000000
    .venv/bin/python benchmarks/diff_requests.py --users 1000000 --users-diff python
    .venv/bin/python benchmarks/diff_requests.py --users 1000000 --migrate
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _common  # noqa: F401  (puts the repository on sys.path)
import httpx
import orjson
import prep_users as p4
from _common import ROOT, load, machine

from etl.config import Settings
from etl.pipelines import users

BULK_ITEMS = 25
_QUEUED = orjson.dumps({"response": {"status": "queued"}})


class CountingTransport(httpx.MockTransport):
    """Answers every call 201 queued (WebEngage's bulk answer); counts calls and the userIds they carry."""

    def __init__(self) -> None:
        super().__init__(self._handle)
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.user_ids: list[str] = []

    def _handle(self, request: httpx.Request) -> httpx.Response:
        endpoint = request.url.path.rsplit("/", 1)[-1]
        body = orjson.loads(request.content)
        ids = [u["userId"] for u in body["users"]] if endpoint == "bulk-users" else [body["userId"]]
        with self._lock:
            self.requests[endpoint] = self.requests.get(endpoint, 0) + 1
            self.user_ids.extend(ids)
        return httpx.Response(201, content=_QUEUED, headers={"Content-Type": "application/json"})


def settings_for(url: str, users_diff: str = "auto") -> Settings:
    # No pacing (the mock has no limit): the figure is a request count, not a rate.
    return Settings.from_mapping(
        {
            "license_code": p4.LICENSE,
            "api_key": p4.KEY,
            "api_url": "http://webengage.mock",
            "warehouse_url": url,
            "bulk_users_rpm": 1e9,
            "concurrency": 4,
            "diff_mode": users_diff,
        }
    )


def sync(url: str, mapping: Any, run_id: str, users_diff: str) -> tuple[dict[str, Any], CountingTransport, float]:
    transport = CountingTransport()
    started = time.perf_counter()
    summary = users.run(
        settings_for(url, users_diff), mapping=mapping, run_id=run_id, clock=lambda: p4.AS_OF, transport=transport
    )
    return summary, transport, time.perf_counter() - started


def changed_ids(rows: int) -> set[str]:
    """The users p4.MUTATE changes: row numbers i with i % 100 == 37 (user_id 'u' + 9-digit i)."""
    return {f"u{i:09d}" for i in range(37, rows, p4.CHANGED_EVERY)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--warm", choices=("pipeline", "hashes"), default="hashes")
    ap.add_argument("--users-diff", choices=("auto", "warehouse", "python"), default="auto")
    ap.add_argument("--migrate", action="store_true", help="leave the warehouse hashes unknown (migration run)")
    ap.add_argument("--keep", action="store_true", help="keep the DuckDB file (printed) instead of deleting it")
    args = ap.parse_args()
    print(f"machine: {machine()}", flush=True)

    (ROOT / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="diff-", dir=ROOT / "benchmarks" / "out"))
    try:
        path = workdir / "warehouse.duckdb"
        url = f"duckdb:///{path}"
        took = p4.build_duckdb(path, args.users, None)
        print(f"generated {args.users:,} users x {len(p4.COLUMNS)} columns in {took:.1f}s [{load()}]", flush=True)
        mapping = p4.mapping_for(workdir)

        if args.warm == "pipeline":
            summary, transport, took = sync(url, mapping, "warm", args.users_diff)
            sent = len(transport.user_ids)
            print(
                f"warm (real pipeline, MockTransport 201 queued): accepted {summary['accepted']:,}, "
                f"rejected {summary['rejected']:,}, {transport.requests} requests, {sent:,} users, "
                f"{took:.1f}s [{load()}]",
                flush=True,
            )
            if summary["accepted"] + summary["rejected"] != args.users:
                raise SystemExit(f"warm run did not account for every user: {summary}")
        else:
            warm = p4.warm_state(url, mapping)
            print(
                f"warm (pipeline hash functions, staged insert): {warm['users']:,.0f} users, "
                f"{warm['total_s']:.1f}s [{load()}]",
                flush=True,
            )
            if args.users_diff != "python" and not args.migrate:
                from diff_users import warm_sql_hashes

                print(f"warehouse hashes warmed in {warm_sql_hashes(url, mapping):.1f}s", flush=True)

        changed = p4.mutate(url)
        expected = changed_ids(args.users)
        if changed != len(expected):
            raise SystemExit(f"mutation changed {changed} rows, expected {len(expected)}")
        print(f"changed {changed:,} users ({changed / args.users:.2%})", flush=True)

        summary, transport, took = sync(url, mapping, "diff", args.users_diff)
        requests = sum(transport.requests.values())
        received = transport.user_ids
        missed, extra = expected - set(received), set(received) - expected
        print(
            f"diff run: extracted {summary['extracted']:,}, unchanged {summary['unchanged']:,}, accepted "
            f"{summary['accepted']:,}, rejected {summary['rejected']:,}; requests by endpoint {transport.requests}; "
            f"users received {len(received):,} ({len(set(received)):,} distinct), missed {len(missed)}, "
            f"unchanged users sent {len(extra)}; {took:.1f}s [{load()}]",
            flush=True,
        )
        print(f"notes: {summary['notes']}", flush=True)
        if missed or extra or len(received) != len(expected):
            raise SystemExit("the users sent are not exactly the changed users")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    floor = math.ceil(changed / BULK_ITEMS)
    print(
        f"P3 diff: changed {changed:,}; requests {requests:,}; ceil(changed/25) {floor:,}; "
        f"ratio {requests / floor:.4f} (target <= 1.01)"
    )


if __name__ == "__main__":
    main()
