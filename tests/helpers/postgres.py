"""A throwaway PostgreSQL cluster on a free loopback port, for the tests (``pg_url``) and the benchmarks.

Runs the server as the ``postgres`` user when we are root (initdb refuses root). Its directory is not a
pytest tmp dir: those are 0700 for root, which the postgres user cannot enter."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


def pg_bindir() -> str | None:
    """The directory of the server binaries (``initdb``, ``pg_ctl``), or None when they are not installed."""
    found = shutil.which("pg_ctl") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1:]), None)
    bindir = os.path.dirname(os.path.realpath(found)) if found else None
    return bindir if bindir and os.path.exists(os.path.join(bindir, "initdb")) else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def throwaway_cluster(*, server_options: str = "", prefix: str = "we-pg-", timeout_s: float = 120) -> Iterator[str]:
    """Start a cluster (fsync off, UTC), yield its SQLAlchemy URL, stop and delete it."""
    bindir = pg_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb/pg_ctl) not found on this machine")
    base = tempfile.mkdtemp(prefix=prefix)
    run_as: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = _free_port()

    def sh(*args: str) -> None:
        subprocess.run([*run_as, *args], check=True, capture_output=True, timeout=timeout_s)

    init = ["-D", f"{base}/data", "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]
    sh(f"{bindir}/initdb", *init)
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c TimeZone=UTC {server_options}"
    # -l is required: without a log file the postmaster keeps our pipe open and run() hangs.
    sh(f"{bindir}/pg_ctl", "-D", f"{base}/data", "-l", f"{base}/log", "-w", "-o", opts.strip(), "start")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        stop = [*run_as, f"{bindir}/pg_ctl", "-D", f"{base}/data", "-m", "immediate", "stop"]
        subprocess.run(stop, capture_output=True, timeout=60, check=False)
        shutil.rmtree(base, ignore_errors=True)
