"""Erasures: how long finding the deleted users takes at scale, in SQL (state in the warehouse's database) and in
Python (state elsewhere: the source's ids streamed), against the time the API needs to erase them.

    .venv/bin/python benchmarks/erasure_detection.py [--users 1000000] [--deleted 1000]

A DuckDB warehouse of N users (the source query ``SELECT user_id FROM users``) and a state of the same N synced
users, of which ``--deleted`` are gone from the source. Prints both timings and the ratio of the erasure time at
100 requests/min to the slower detection (how many times faster the detection is than the sending it feeds).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common
import duckdb

from etl.mappings.users import user_mapping_from_dict
from etl.state import erasures as journal
from etl.state.store import StateStore
from etl.warehouse.deletions import find_deleted
from etl.warehouse.engine import make_engine


def build(path: Path, users: int, deleted: int) -> None:
    with duckdb.connect(str(path)) as con:
        con.execute(
            "CREATE TABLE users AS SELECT 'usr_' || lpad(i::VARCHAR, 9, '0') AS user_id FROM range(?) t(i)", [users]
        )
        con.execute(
            "CREATE TABLE we_user_state AS SELECT user_id, 0::BIGINT AS payload_hash, '1'::VARCHAR AS field_mask, "
            "TIMESTAMP '2026-11-01' AS accepted_at, 'bench'::VARCHAR AS run_id FROM users"
        )
        # every k-th user is deleted (deterministic, spread over the key range)
        con.execute("DELETE FROM users WHERE hash(user_id) % ? = 0", [max(1, users // deleted)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--deleted", type=int, default=1_000)
    args = parser.parse_args()
    print(_common.machine())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "w.duckdb"
        query = Path(tmp) / "users.sql"
        query.write_text("SELECT user_id FROM users", encoding="utf-8")
        build(path, args.users, args.deleted)
        mapping = user_mapping_from_dict({"source": {"query": str(query)}, "deletions": "erase"})
        engine = make_engine(f"duckdb:///{path}")
        timings: dict[str, float] = {}
        deleted = 0
        with StateStore(engine) as store:
            for label, same in (("sql", True), ("python", False)):
                started = time.perf_counter()
                found = find_deleted(
                    mapping, engine, lambda: journal.synced_users(store), same_database=same, as_of=None
                )
                timings[label] = time.perf_counter() - started
                deleted = len(found)
                print(
                    f"{label:6}: {len(found):,} of {args.users:,} synced users found deleted in {timings[label]:.2f} s"
                )
        engine.dispose()
    sending_s = deleted / (100 * 0.98) * 60
    slower = max(timings.values())
    print(f"python / sql: {timings['python'] / timings['sql']:.1f}x")
    print(f"erasing them at 100 req/min takes {sending_s / 60:.1f} min: detection is {sending_s / slower:,.0f}x faster")


if __name__ == "__main__":
    main()
