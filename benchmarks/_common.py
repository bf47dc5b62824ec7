"""Helpers shared by the P2/P3/P5 benchmarks: the machine line, peak RSS, and child processes with rusage.

Not a benchmark itself (``run_all.py`` skips files starting with ``_``).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load() -> str:
    """The 1/5/15-minute load averages: the machine is shared, so every figure carries them."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f}/{five:.2f}/{fifteen:.2f}"


def machine() -> str:
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{now}; {os.cpu_count()} CPUs, {mem_gib:.0f} GiB RAM; {load()}"


def peak_rss_mb() -> float:
    """Peak RSS of this process image (VmHWM). ru_maxrss would also do in a child started from a small
    parent, but Linux folds the parent's high-water mark into a child's ru_maxrss across fork+exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def run_child(args: list[str], *, env: dict[str, str] | None = None) -> tuple[str, float]:
    """Run ``python <args>`` from the repository root; return its stdout and its own ru_maxrss in MB
    (``wait4`` gives this child's rusage alone, not the maximum over every child this process waited for).
    Stderr passes through so progress stays visible; a non-zero exit raises."""
    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), child_env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True, env=child_env)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped: tell Popen, so it does not wait again
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, args, out)
    return out, usage.ru_maxrss / 1024  # KiB on Linux


def last_json(out: str) -> Any:
    import json

    return json.loads(out.strip().splitlines()[-1])
