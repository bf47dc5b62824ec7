"""The ``kill -9`` harness: start one of our command lines in its own process against the sandbox, wait
until the sandbox has seen N requests to an endpoint, SIGKILL the process; the test then re-runs to completion
and compares."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from webengage_dev.sandbox import SandboxProcess, SandboxServer

from .sandbox import LICENSE
from .warehouse import duck

ROOT = Path(__file__).resolve().parents[2]
#: How often the sandbox's counters are read while waiting for the kill point.
POLL_S = 0.003
#: How long a run may take to reach the kill point.
DEADLINE_S = 60.0


def start_cli(argv: Sequence[str], sandbox_url: str, warehouse: Path, key: str, **env: str) -> subprocess.Popen[bytes]:
    """``python -m <argv>`` (our own CLI modules, fixed arguments) sending to the sandbox at ``sandbox_url``
    from the DuckDB ``warehouse``; ``env`` adds settings (``WEBENGAGE_…``)."""
    environ = {
        **os.environ,
        "WEBENGAGE_LICENSE_CODE": LICENSE,
        "WEBENGAGE_API_KEY": key,
        "WEBENGAGE_API_URL": sandbox_url,
        "WAREHOUSE_URL": duck(warehouse),
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", *argv], cwd=ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def requests_to(source: httpx.Client | SandboxServer | SandboxProcess, endpoint: str) -> int:
    """Requests the sandbox has seen to ``endpoint`` (``source``: a client on its URL, or the server)."""
    stats = source.get("/_sandbox/stats").json() if isinstance(source, httpx.Client) else source.stats()
    return int(stats["requests"].get(endpoint, 0))


def kill_at(
    proc: subprocess.Popen[bytes],
    source: httpx.Client | SandboxServer | SandboxProcess,
    endpoint: str,
    target: int,
    *,
    poll_s: float = POLL_S,
) -> int:
    """SIGKILL ``proc`` once the sandbox has seen ``target`` requests to ``endpoint`` in all; returns the count
    seen then. Fails the test if the run exits first or is too slow to get there."""
    if isinstance(source, SandboxProcess):
        with httpx.Client(base_url=source.url, timeout=10) as http:  # one connection: cheap polling
            return kill_at(proc, http, endpoint, target, poll_s=poll_s)
    deadline = time.monotonic() + DEADLINE_S
    while (seen := requests_to(source, endpoint)) < target:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            pytest.fail(f"run exited ({proc.returncode}) before {target} {endpoint} requests: {err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"sandbox saw only {seen} {endpoint} requests in {DEADLINE_S:.0f} s")
        time.sleep(poll_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    if proc.stderr is not None:
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    return seen
