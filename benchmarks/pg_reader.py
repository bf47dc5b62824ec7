"""Issue 16 (PostgreSQL reads): the same query through both readers of ``etl.warehouse.queries.read_chunks``,
psycopg rows (server-side cursor) and ADBC's Arrow stream, on a throwaway PostgreSQL: N rows x 30 columns of
mixed types (text, int, bigint, numeric, double, bool, timestamp, timestamptz, date, jsonb; with NULLs), and
the same with numeric/jsonb as double/text ("plain": no per-value Python objects on either path). Prints rows/s
of each reader and the ratio; checks both gave the same frames.

    .venv/bin/python benchmarks/pg_reader.py --rows 1000000
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (puts the repository on sys.path)
import pandas as pd
import sqlalchemy as sa
from _common import machine

from etl.warehouse import adbc_reader, queries
from etl.warehouse.engine import make_engine
from tests.helpers.postgres import throwaway_cluster


def columns(plain: bool) -> str:
    """The 30 columns; ``plain``: the numeric and jsonb ones as double precision and text (no Python object per
    value on either path: the reader's own speed)."""
    amount = "::double precision" if plain else "::numeric(12, 2)"
    json_cast = "::text" if plain else ""
    return ",\n".join(
        [
            "'usr_' || lpad(i::text, 8, '0') AS user_id",
            *(f"CASE WHEN i % {7 + k} = 0 THEN NULL ELSE 'text ' || (i * {k + 3}) END AS t{k}" for k in range(8)),
            *(f"CASE WHEN i % {11 + k} = 0 THEN NULL ELSE (i * {k + 1}) % 100000 END AS n{k}" for k in range(5)),
            "i::bigint * 1000003 AS big",
            *(f"round((i % 10000) / {k + 7}.0, 2){amount} AS amount{k}" for k in range(3)),
            *(f"(i % 997) / {k + 3}.0::double precision AS d{k}" for k in range(3)),
            "i % 2 = 0 AS flag",
            "CASE WHEN i % 13 = 0 THEN NULL ELSE i % 3 = 0 END AS maybe",
            "TIMESTAMP '2026-01-01' + i * INTERVAL '1 second' AS seen_at",
            "TIMESTAMPTZ '2026-01-01 00:00+00' + i * INTERVAL '1 minute' AS updated_at",
            "DATE '2000-01-01' + (i % 9000) AS birthday",
            f"jsonb_build_object('plan', 'p' || (i % 5), 'tags', jsonb_build_array(i % 7, 'x')){json_cast} AS prefs",
            f"CASE WHEN i % 17 = 0 THEN NULL ELSE jsonb_build_object('score', i % 100){json_cast} END AS extra",
            "CASE WHEN i % 19 = 0 THEN NULL ELSE 'city ' || (i % 500) END AS city",
            "CASE WHEN i % 23 = 0 THEN NULL ELSE 'IN' END AS country_code",
        ]
    )


_COLUMNS = columns(plain=False)  # the profiling scripts' table


def timed(engine: sa.Engine, fast: bool, table: str) -> tuple[float, int, list[pd.DataFrame]]:
    usable = adbc_reader.usable
    if not fast:
        adbc_reader.usable = lambda _engine: False  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        frames, rows = [], 0
        for chunk in queries.read_chunks(
            engine,
            sa.select(sa.literal_column("*"))
            .select_from(sa.table(table))
            .where(sa.column("user_id") > sa.bindparam("lo")),
            {"lo": ""},
        ):
            rows += len(chunk)
            if len(frames) < 2:
                frames.append(chunk)  # the first chunks, to compare the readers' frames
        return time.perf_counter() - started, rows, frames
    finally:
        adbc_reader.usable = usable  # type: ignore[assignment]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1, help="runs per reader; the fastest counts")
    args = ap.parse_args()
    if not adbc_reader.installed():
        raise SystemExit("adbc-driver-postgresql is not installed: pip install 'webengage-sync[postgres-fast]'")
    print(machine())
    results: dict[str, dict[str, tuple[float, int, list[pd.DataFrame]]]] = {}
    with throwaway_cluster(server_options="-c shared_buffers=256MB", prefix="we-bench-pg-") as url:
        engine = make_engine(url)
        for table, plain in (("bench_mixed", False), ("bench_plain", True)):
            with engine.begin() as conn:
                conn.execute(
                    sa.text(f"CREATE TABLE {table} AS SELECT {columns(plain)} FROM generate_series(1, :n) AS s(i)"),
                    {"n": args.rows},
                )
            best: dict[str, tuple[float, int, list[pd.DataFrame]]] = {}
            for _ in range(args.repeat):
                for name, fast in (("psycopg", False), ("adbc", True)):
                    result = timed(engine, fast, table)
                    if name not in best or result[0] < best[name][0]:
                        best[name] = result
            results[table] = best
        engine.dispose()
    for table, best in results.items():
        for a, b in zip(best["adbc"][2], best["psycopg"][2], strict=True):
            pd.testing.assert_frame_equal(a, b, check_exact=True)
        rates = {}
        for name, (seconds, rows, _) in best.items():
            rates[name] = rows / seconds
            print(f"  {table} {name:8s}: {rows:,} rows x 30 columns in {seconds:.1f} s = {rates[name]:,.0f} rows/s")
        print(
            f"PostgreSQL reader ({table}): ADBC {rates['adbc']:,.0f} rows/s vs psycopg {rates['psycopg']:,.0f} "
            f"rows/s = {rates['adbc'] / rates['psycopg']:.1f}x (same frames)"
        )


if __name__ == "__main__":
    main()
