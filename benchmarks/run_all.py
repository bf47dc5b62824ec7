"""Run every benchmark in this folder, one after the other, and print each one's last line (its ratio).

    .venv/bin/python benchmarks/run_all.py            # all
    .venv/bin/python benchmarks/run_all.py client     # only those whose file name contains "client"

Benchmarks are never part of the test run; their latest figures live in RESULTS.md.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    wanted = sys.argv[1:]
    scripts = sorted(p for p in HERE.glob("*.py") if p.name not in ("run_all.py",) and not p.name.startswith("_"))
    if wanted:
        scripts = [p for p in scripts if any(w in p.stem for w in wanted)]
    failures = 0
    summary: list[str] = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        started = time.monotonic()
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=False)
        print(proc.stdout, end="")
        if proc.returncode != 0:
            failures += 1
            print(proc.stderr[-2000:], file=sys.stderr)
        last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        summary.append(f"{script.stem}: {last} [{time.monotonic() - started:.0f}s, exit {proc.returncode}]")
    print("\n== summary")
    print("\n".join(summary))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
