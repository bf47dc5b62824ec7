"""P5 memory: peak RSS of a users sync dry run (``etl.pipelines.users.run(..., dry_run=True)``) for 5M vs
500k users. Prints both peaks and the ratio (target <= 1.2; absolute target < 1 GB).

Scenario per scale, P4's data set (``prep_users.py``: 30 mixed columns; warehouse and state in one DuckDB
file): ``nightly`` (default) = state populated as if every user had been accepted (P4's ``warm_state``:
the pipeline's own hash functions, bulk inserted), then 1 user in 100 changed; ``first`` = the first
full dry run over an empty state (every user built into a payload and batched).

Every step runs in its own child process started from this small parent, so each peak is that scenario's
alone: the peak is the child's VmHWM (its own high-water mark) and, as a cross-check, its ru_maxrss from
``wait4`` (which on Linux also folds in this parent's mark at fork, a few MB here).

    .venv/bin/python benchmarks/memory_scale.py                      # 500k vs 5M, nightly
    .venv/bin/python benchmarks/memory_scale.py --scenarios nightly,first --profile
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common
from _common import ROOT, load, machine, run_child

HERE = Path(__file__).resolve()
LIMIT_MB = 1024


# -- children ---------------------------------------------------------------------------------------
def _prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Generate the table; for ``nightly`` also warm the state and change 1 user in 100."""
    import prep_users as p4

    timings: dict[str, Any] = {"generate_s": p4.build_duckdb(args.path, args.rows, None)}
    if args.scenario == "nightly":
        url = f"duckdb:///{args.path}"
        timings["warm_s"] = p4.warm_state(url, p4.mapping_for(args.workdir))["total_s"]
        started = time.perf_counter()
        timings["changed"] = p4.mutate(url)
        timings["mutate_s"] = time.perf_counter() - started
    timings["peak_mb"] = _common.peak_rss_mb()
    return timings


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    import prep_users as p4
    import sqlalchemy as sa
    from sqlalchemy.engine import Engine

    from etl.pipelines import users

    raw: list[Any] = []  # the pipeline's DuckDB connections, to ask the database what memory it holds

    @sa.event.listens_for(Engine, "connect")
    def _keep(dbapi_conn: Any, _record: Any) -> None:
        raw.append(dbapi_conn)

    def duckdb_mb() -> float:
        # A duplicate connection shares the database instance (and its buffer pool) without disturbing
        # the cursor the pipeline is streaming from.
        con = next(c for c in reversed(raw) if not c.closed).duplicate()
        try:
            row = con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()
        finally:
            con.close()
        return float(row[0] or 0) / 2**20

    url = f"duckdb:///{args.path}" + (f"?memory_limit={args.duckdb_memory_limit}" if args.duckdb_memory_limit else "")
    mapping = p4.mapping_for(args.workdir)
    settings = p4.settings_for(url)
    base = _common.peak_rss_mb()
    trace: list[tuple[int, float, float]] = []  # (rows extracted, current RSS MB, DuckDB memory MB) per chunk

    def progress(report: Any) -> None:
        if not trace or trace[-1][0] != report.extracted:
            trace.append((report.extracted, _common.current_rss_mb(), duckdb_mb()))

    def run() -> dict[str, Any]:
        return users.run(
            settings,
            mapping=mapping,
            dry_run=True,
            run_id=f"p5-{time.time_ns()}",
            clock=lambda: p4.AS_OF,
            progress=progress,
        )

    started = time.perf_counter()
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        summary = profiler.runcall(run)
        profiler.dump_stats(str(args.profile))
    else:
        summary = run()
    return {
        "seconds": time.perf_counter() - started,
        "extracted": summary["extracted"],
        "sent": summary["sent"],
        "unchanged": summary["unchanged"],
        "rejected": summary["rejected"],
        "batches": summary["batches"],
        "peak_mb": _common.peak_rss_mb(),
        "after_imports_mb": base,
        "trace": trace,
    }


def _child_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=("_prepare", "_measure"))
    ap.add_argument("--rows", type=int, default=0)
    ap.add_argument("--path", type=Path, required=True)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--scenario", choices=("nightly", "first"), default="nightly")
    ap.add_argument("--profile", type=Path)
    ap.add_argument("--duckdb-memory-limit", default="")
    args = ap.parse_args(argv)
    result = _prepare(args) if args.step == "_prepare" else _measure(args)
    print(json.dumps(result))


# -- parent -----------------------------------------------------------------------------------------
def _label(rows: int) -> str:
    return f"{rows / 1_000_000:g}M" if rows >= 1_000_000 else f"{rows / 1000:g}k"


def _top_of_profile(path: Path, lines: int = 25) -> str:
    import io
    import pstats

    out = io.StringIO()
    pstats.Stats(str(path), stream=out).sort_stats("cumulative").print_stats(lines)
    return out.getvalue()


def scenario(name: str, rows: int, workdir: Path, *, profile: bool, memory_limit: str) -> dict[str, Any]:
    path = workdir / f"users-{rows}-{name}.duckdb"
    common = ["--path", str(path), "--workdir", str(workdir), "--scenario", name]
    out, prep_maxrss = run_child([str(HERE), "_prepare", "--rows", str(rows), *common])
    prep = _common.last_json(out)
    extra = ["--profile", str(workdir / f"profile-{rows}-{name}.pstats")] if profile else []
    if memory_limit:
        extra += ["--duckdb-memory-limit", memory_limit]
    out, maxrss = run_child([str(HERE), "_measure", *common, *extra])
    result: dict[str, Any] = _common.last_json(out)
    result.update(
        rows=rows,
        scenario=name,
        ru_maxrss_mb=maxrss,
        prep=prep,
        prep_ru_maxrss_mb=prep_maxrss,
        db_mb=path.stat().st_size / 2**20,
        load=load(),
    )
    step = max(1, len(result["trace"]) // 12)
    trace = ", ".join(f"{n // 1000}k:{mb:.0f}/{db:.0f}" for n, mb, db in result["trace"][::step] + result["trace"][-1:])
    prep_s = ", ".join(f"{k} {v:.1f}" for k, v in prep.items() if k.endswith("_s"))
    print(
        f"  {name} {_label(rows)}: dry run {result['seconds']:.1f}s, extracted {result['extracted']:,}, would "
        f"send {result['sent']:,} in {result['batches']:,} batches; peak RSS {result['peak_mb']:,.0f} MB "
        f"(VmHWM; ru_maxrss {maxrss:,.0f} MB; after imports {result['after_imports_mb']:,.0f} MB); "
        f"DuckDB file {result['db_mb']:,.0f} MB; prepare: {prep_s} s, peak {prep['peak_mb']:,.0f} MB "
        f"[{result['load']}]",
        flush=True,
    )
    print(f"    after rows extracted: RSS/DuckDB-held MB {trace}", flush=True)
    if profile:
        print(_top_of_profile(workdir / f"profile-{rows}-{name}.pstats"), flush=True)
    path.unlink(missing_ok=True)  # free the disk before the next scale
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=500_000)
    ap.add_argument("--large", type=int, default=5_000_000)
    ap.add_argument("--scenarios", default="nightly", help="comma-separated: nightly, first")
    ap.add_argument("--profile", action="store_true", help="cProfile each dry run and print its top entries")
    ap.add_argument(
        "--duckdb-memory-limit",
        default="",
        help="append ?memory_limit=... to the DuckDB URL (e.g. 128MB); default: DuckDB's own (80%% of RAM)",
    )
    args = ap.parse_args()
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    print(f"machine: {machine()}", flush=True)

    (ROOT / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="memory-", dir=ROOT / "benchmarks" / "out"))
    lines = []
    try:
        for name in names:
            kw = {"profile": args.profile, "memory_limit": args.duckdb_memory_limit}
            small = scenario(name, args.small, workdir, **kw)
            large = scenario(name, args.large, workdir, **kw)
            ratio = large["peak_mb"] / small["peak_mb"]
            ok = ratio <= 1.2 and large["peak_mb"] < LIMIT_MB
            setting = f", DuckDB memory_limit={args.duckdb_memory_limit}" if args.duckdb_memory_limit else ""
            lines.append(
                f"P5 memory ({name}{setting}): peak RSS {_label(args.large)} {large['peak_mb']:,.0f} MB / "
                f"{_label(args.small)} {small['peak_mb']:,.0f} MB = ratio {ratio:.2f} (target <= 1.2), "
                f"absolute {large['peak_mb']:,.0f} MB (target < {LIMIT_MB} MB)"
                f"{'' if ok else ' MISSED'}"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:2] in (["_prepare"], ["_measure"]):
        _child_main(sys.argv[1:])
    else:
        main()
