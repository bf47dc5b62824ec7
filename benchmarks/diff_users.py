"""Issue 16: the profile diff in the warehouse vs the full read, side by side, 30 columns, 1% changed.

Per backend (DuckDB file, throwaway PostgreSQL) and size (default 1M and 10M users), in one run:

1. the users table is generated inside the database (DuckDB ``range()``, PostgreSQL ``generate_series``;
   the same deterministic arithmetic as ``prep_users.py``, no Python row loop);
2. the state is warmed as if WebEngage had accepted every user: the full read's hashes (the pipeline's own
   functions, bulk inserted; see ``prep_users.warm_state``) and the warehouse's hashes (one UPDATE ... FROM
   the diff's own hash expression);
3. exactly 1 user in 100 changes (``prep_users.MUTATE``);
4. ``etl.pipelines.users.run(dry_run=True)`` runs with ``diff_mode = python`` (full read) and then with
   ``diff_mode = warehouse``, each in a fresh subprocess (its own peak RSS), and the ratios are printed:
   rows moved to the worker / changed rows, full-read time / warehouse-diff time, and for the warehouse
   diff peak RSS at the largest size / at the smallest.

    .venv/bin/python benchmarks/diff_users.py                         # DuckDB + PostgreSQL, 1M and 10M
    .venv/bin/python benchmarks/diff_users.py --sizes 1000000,3000000 --skip-duckdb
    .venv/bin/python benchmarks/diff_users.py --sizes 100000,1000000 --skip-pg
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import duckdb
import prep_users as prep

ROOT = _common.ROOT

PG_GENERATE = """
CREATE TABLE users AS
WITH base AS (
    SELECT i,
           (i * 7919 + 104729) % 1000003 AS a,
           (i * 6151 + 3571) % 999983 AS b,
           (i * 2654435761) % 4294967291 AS c
    FROM generate_series(CAST(0 AS BIGINT), CAST(:n AS BIGINT) - 1) AS t(i)
)
SELECT
    CAST('u' || lpad(CAST(i AS VARCHAR), 9, '0') AS varchar(100)) AS user_id,
    CAST(md5(CAST(i AS VARCHAR)) AS varchar) AS anonymous_id,
    CAST((ARRAY['Aarav', 'Vivaan', 'Diya', 'Ananya', 'Ishaan', 'Saanvi', 'John', 'Mary', 'José', 'Zoë', 'Li',
                'Fatima'])[1 + a % 12] AS varchar) AS first_name,
    CAST(CASE WHEN b % 37 = 0 THEN NULL ELSE
        (ARRAY['Sharma', 'Patel', 'Iyer', 'Reddy', 'Khan', 'Smith', 'García', 'O''Brien', 'Nguyen', 'Müller'])
        [1 + b % 10] END AS varchar) AS last_name,
    CAST(CASE a % 20
        WHEN 0 THEN NULL
        WHEN 1 THEN 'not-an-email-' || i
        WHEN 2 THEN '  User.' || i || '@Example.COM '
        ELSE 'user.' || i || '@' || (ARRAY['gmail.com', 'yahoo.co.in', 'example.org', 'rediffmail.com'])[1 + b % 4]
    END AS varchar) AS email,
    CAST(CASE c % 10
        WHEN 0 THEN '+91 ' || CAST(6 + b % 4 AS VARCHAR) || lpad(CAST(c % 1000000000 AS VARCHAR), 9, '0')
        WHEN 1 THEN '0' || CAST(7 + b % 3 AS VARCHAR) || lpad(CAST(c % 1000000000 AS VARCHAR), 9, '0')
        WHEN 2 THEN CAST(9 - b % 3 AS VARCHAR) || lpad(CAST(c % 100000 AS VARCHAR), 5, '0') || ' '
                    || lpad(CAST(a % 100000 AS VARCHAR), 5, '0')
        WHEN 3 THEN '91-' || CAST(6 + a % 4 AS VARCHAR) || lpad(CAST(c % 1000000000 AS VARCHAR), 9, '0')
        WHEN 4 THEN CAST(6 + a % 4 AS VARCHAR) || lpad(CAST(c % 1000000000 AS VARCHAR), 9, '0')
        WHEN 5 THEN '(' || CAST(201 + a % 700 AS VARCHAR) || ') ' || CAST(200 + b % 700 AS VARCHAR) || '-'
                    || lpad(CAST(c % 10000 AS VARCHAR), 4, '0')
        WHEN 6 THEN '+1 ' || CAST(201 + b % 700 AS VARCHAR) || '-' || CAST(200 + a % 700 AS VARCHAR) || '-'
                    || lpad(CAST(c % 10000 AS VARCHAR), 4, '0')
        WHEN 7 THEN CAST(201 + a % 700 AS VARCHAR) || '.' || CAST(200 + c % 700 AS VARCHAR) || '.'
                    || lpad(CAST(b % 10000 AS VARCHAR), 4, '0')
        WHEN 8 THEN CASE WHEN a % 2 = 0 THEN 'n/a' ELSE '12345' END
        ELSE NULL
    END AS varchar) AS phone,
    CAST(CASE WHEN c % 10 IN (5, 6, 7) THEN 'US' ELSE 'IN' END AS varchar) AS country_code,
    CASE WHEN a % 25 = 0 THEN NULL ELSE DATE '1950-01-01' + CAST(b % 20000 AS INTEGER) END AS birth_date,
    CAST((ARRAY['male', 'female', 'M', 'F', 'Female', 'other', NULL, 'unknown'])[1 + c % 8] AS varchar) AS gender,
    (a % 3 = 0) AS email_opt_in,
    CASE WHEN b % 11 = 0 THEN NULL ELSE (b % 2 = 0) END AS sms_opt_in,
    (c % 5 = 0) AS whatsapp_opt_in,
    CAST(CASE WHEN c % 10 IN (5, 6, 7) THEN 'United States' ELSE 'India' END AS varchar) AS country,
    CAST(CASE WHEN c % 10 IN (5, 6, 7) THEN (ARRAY['New York', 'Austin', 'Seattle', 'Chicago'])[1 + a % 4]
         ELSE (ARRAY['Mumbai', 'Bengaluru', 'Delhi', 'Chennai', 'Pune', 'Kolkata', 'Hyderabad'])[1 + a % 7] END
         AS varchar) AS city,
    CAST(CASE WHEN c % 10 IN (5, 6, 7) THEN (ARRAY['NY', 'TX', 'WA', 'IL'])[1 + a % 4]
         ELSE (ARRAY['MH', 'KA', 'DL', 'TN', 'MH', 'WB', 'TS'])[1 + a % 7] END AS varchar) AS region,
    CAST(CASE WHEN b % 13 = 0 THEN NULL ELSE lpad(CAST(100000 + (a * 7) % 800000 AS VARCHAR), 6, '0') END
         AS varchar) AS postal_code,
    CAST(CASE WHEN a % 3 = 0 THEN NULL ELSE 'Company ' || CAST(b % 5000 AS VARCHAR) || ' Pvt Ltd' END AS varchar)
        AS company,
    CAST((ARRAY['free', 'basic', 'pro', 'enterprise'])[1 + b % 4] AS varchar) AS plan,
    CASE WHEN a % 17 = 0 THEN NULL ELSE CAST((c % 10000000) / 100.0 AS NUMERIC(12, 2)) END AS lifetime_value,
    CAST(b % 500 AS INTEGER) AS orders_count,
    CASE WHEN c % 19 = 0 THEN NULL ELSE CAST((a % 100000) / 1000.0 AS DOUBLE PRECISION) END AS score,
    TIMESTAMP '2015-01-01 00:00:00' + (c % 340000000) * INTERVAL '1 second' AS signup_at,
    CASE WHEN b % 9 = 0 THEN NULL
         ELSE TIMESTAMPTZ '2024-01-01 00:00:00+00' + (a * 97 % 60000000) * INTERVAL '1 second' END AS last_seen_at,
    CASE WHEN a % 10 = 0 THEN NULL
         ELSE jsonb_build_object('lang', (ARRAY['en', 'hi', 'ta', 'mr'])[1 + b % 4], 'newsletter', c % 2 = 0,
                                 'topics', jsonb_build_array(CAST(a % 7 AS INTEGER), CAST(b % 5 AS INTEGER)),
                                 'tier', b % 3) END AS preferences,
    CAST(CASE WHEN a % 50 = 0 THEN repeat('Long biography text. ', 55)
         WHEN a % 4 = 0 THEN NULL
         ELSE repeat('Likes cricket and chai. ', CAST(1 + b % 8 AS INTEGER)) END AS varchar) AS bio,
    CAST(CASE WHEN c % 7 = 0 THEN 'Support note: ' || repeat('called about billing; ', CAST(1 + a % 20 AS INTEGER))
         ELSE NULL END AS varchar) AS notes,
    (i % 1000 = 0) AS is_test_user,
    TIMESTAMP '2026-01-01 00:00:00' + (b * 13 % 25000000) * INTERVAL '1 second' AS updated_at,
    CAST((ARRAY['en-IN', 'hi-IN', 'en-US', 'ta-IN', NULL])[1 + a % 5] AS varchar) AS locale,
    CAST('REF' || upper(substr(md5(CAST(b AS VARCHAR)), 1, 8)) AS varchar) AS referral_code
FROM base
"""


def build(url: str, rows: int) -> float:
    """Generate the users table inside the database."""
    started = time.perf_counter()
    if url.startswith("duckdb"):
        path = Path(url.removeprefix("duckdb:///").split("?")[0])
        path.unlink(missing_ok=True)
        with duckdb.connect(str(path)) as con:
            con.execute("SET TimeZone='UTC'")
            con.execute(prep.GENERATE, [rows])
    else:
        import sqlalchemy as sa

        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS users"))
            conn.execute(sa.text(PG_GENERATE), {"n": rows})  # SQLAlchemy escapes the % operators for psycopg
            conn.execute(sa.text("ALTER TABLE users ADD PRIMARY KEY (user_id)"))
            conn.execute(sa.text("VACUUM ANALYZE users"))
        engine.dispose()
    return time.perf_counter() - started


def warm_sql_hashes(url: str, mapping: Any) -> float:
    """Store each accepted user's warehouse hash, as a warehouse-diff run that sent everything would have."""
    import pandas as pd
    import sqlalchemy as sa

    from etl.pipelines.users import raw_source, resolve_source
    from etl.state.store import USER_STATE, StateStore
    from etl.transform import users as tx
    from etl.warehouse import user_diff
    from etl.warehouse.engine import make_engine

    started = time.perf_counter()
    engine = make_engine(url)
    _stmt, params, mapping = resolve_source(mapping, engine)
    raw = raw_source(mapping)
    found = user_diff.probe(engine, raw, params, *user_diff.diff_columns(mapping))
    assert isinstance(found, user_diff.Probe), found
    with StateStore(engine) as store:
        types, _new, _notes = tx.resolve_types(mapping, pd.DataFrame(columns=found.columns), store.registry("users"))
    salt = tx.types_salt(mapping, types)
    hashes = user_diff.keyed_hashes(
        user_diff.source_of(raw, found.columns), mapping, found, salt, engine.dialect.name
    ).subquery("hs")
    with engine.begin() as conn:
        conn.execute(sa.update(USER_STATE).where(USER_STATE.c.user_id == hashes.c.k).values(source_hash=hashes.c.h))
    engine.dispose()
    return time.perf_counter() - started


def measure(url: str, workdir: Path, mode: str) -> dict[str, Any]:
    """One dry run in this (fresh) process."""
    from etl.pipelines import users

    mapping = prep.mapping_for(workdir)
    from etl.config import Settings

    settings = Settings.from_mapping(
        {"license_code": prep.LICENSE, "api_key": prep.KEY, "warehouse_url": url, "diff_mode": mode}
    )
    base = _common.peak_rss_mb()
    started, cpu = time.perf_counter(), time.process_time()
    summary = users.run(
        settings, mapping=mapping, dry_run=True, run_id=f"bench-{mode}-{time.time_ns()}", clock=lambda: prep.AS_OF
    )
    elapsed = time.perf_counter() - started
    note = next((n for n in summary["notes"] if n.startswith("in-warehouse diff:")), "")
    moved = int(note.split(", ")[1].split(" moved")[0]) if note else summary["extracted"]
    return {
        "mode": mode,
        "seconds": elapsed,
        "cpu_s": time.process_time() - cpu,
        "rows": summary["extracted"],
        "changed": summary["sent"],
        "moved": moved,
        "rss_mb": _common.peak_rss_mb(),
        "base_rss_mb": base,
        "notes": summary["notes"],
    }


def measure_child(url: str, workdir: Path, mode: str) -> dict[str, Any]:
    out, _rss = _common.run_child([str(Path(__file__).resolve()), "_measure", url, str(workdir), mode])
    result: dict[str, Any] = _common.last_json(out)
    return result


def run_size(backend: str, url: str, workdir: Path, rows: int, modes: list[str]) -> dict[str, dict[str, Any]]:
    mapping = prep.mapping_for(workdir)
    plain = url.split("?")[0]  # DuckDB options apply to the measured runs only
    built = build(plain, rows)
    warm = prep.warm_state(plain, mapping)
    sql_warm = warm_sql_hashes(plain, mapping)
    changed = prep.mutate(plain)
    assert changed == prep.expected_changed(rows), (changed, prep.expected_changed(rows))
    print(
        f"{backend} {rows:,}: generated in {built:.1f}s, state warmed in {warm['total_s']:.1f}s "
        f"(+ warehouse hashes {sql_warm:.1f}s), {changed:,} users changed; {_common.load()}",
        flush=True,
    )
    results: dict[str, dict[str, Any]] = {}
    for mode in modes:
        # "warehouse+": the warehouse diff on the DuckDB URL with --duckdb-options (e.g. a memory_limit)
        r = measure_child(url if mode.endswith("+") else plain, workdir, mode.rstrip("+"))
        ok = r["changed"] == changed and r["rows"] == rows
        print(
            f"  {mode:>9}: {r['seconds']:7.1f}s (worker CPU {r['cpu_s']:.1f}s), rows moved to the worker "
            f"{r['moved']:,}, changed found {r['changed']:,}{'' if ok else ' MISMATCH'}, peak RSS {r['rss_mb']:.0f} MB "
            f"(after imports {r['base_rss_mb']:.0f}); {_common.load()}",
            flush=True,
        )
        if not ok:
            raise SystemExit(f"{backend} {rows}: {mode} found {r['changed']} changed of {r['rows']} rows")
        r["expected"] = changed
        results[mode] = r
    if {"python", "warehouse"} <= results.keys():
        wh, py = results["warehouse"], results["python"]
        print(
            f"  => moved/changed {wh['moved'] / changed:.3f} (target <= 1.02); full read / warehouse diff "
            f"{py['seconds'] / wh['seconds']:.1f}x (target >= {5 if backend == 'duckdb' else 10}x at 10M)",
            flush=True,
        )
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,10000000", help="comma-separated user counts (smallest first)")
    ap.add_argument("--modes", default="python,warehouse", help="python, warehouse, warehouse+ (DuckDB options)")
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-duckdb", action="store_true")
    ap.add_argument("--duckdb-options", default="", help="URL query for mode warehouse+, e.g. memory_limit=256MB")
    ap.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out" / "diff_users")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WEBENGAGE_API_URL", "http://127.0.0.1:9")  # nothing is sent (dry runs)
    print(f"diff_users: {_common.machine()}", flush=True)
    summary: list[str] = []

    def scales(backend: str, url_for: Any) -> None:
        results = {rows: run_size(backend, url_for(rows), workdir, rows, modes) for rows in sizes}
        for mode in ("warehouse", "warehouse+"):
            if mode in modes and len(sizes) > 1:
                small, big = results[sizes[0]][mode], results[sizes[-1]][mode]
                summary.append(
                    f"{backend}: {mode} diff peak RSS {sizes[-1]:,} / {sizes[0]:,} = "
                    f"{big['rss_mb'] / small['rss_mb']:.2f} (target <= 1.1 for 10M / 1M)"
                )

    if not args.skip_duckdb:
        query = f"?{args.duckdb_options}" if args.duckdb_options else ""
        scales("duckdb", lambda rows: f"duckdb:///{workdir / f'users_{rows}.duckdb'}{query}")
    if not args.skip_pg:
        with prep.pg_cluster() as admin:
            import psycopg

            def pg_url(rows: int) -> str:
                name = f"diff_{rows}"
                with psycopg.connect(prep._libpq(admin), autocommit=True) as con:
                    con.execute(f'DROP DATABASE IF EXISTS "{name}"')  # name is ours
                    con.execute(f'CREATE DATABASE "{name}"')
                return admin.rsplit("/", 1)[0] + "/" + name

            scales("postgresql", pg_url)
    for line in summary:
        print(line, flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_measure":
        print(json.dumps(measure(sys.argv[2], Path(sys.argv[3]), sys.argv[4])))
    else:
        main()
