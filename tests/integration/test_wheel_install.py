"""A real install: build the wheel from the sources, install it (not editable) into its own directory, and
sync users against the sandbox from a directory outside the checkout. The state DDL, default query and
mapping must come from the installed package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from webengage_dev.demo.warehouse import build_demo_warehouse
from webengage_dev.sandbox import SandboxConfig, SandboxServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
LICENSE = "~99199077"
KEY = "wheel-test-key-0123456789"
SHIPPED = (
    "etl/defaults/sql/state/001_user_state.sql",
    "etl/defaults/sql/users/users.sql",
    "etl/defaults/sql/webhooks/webhooks.sql",
    "etl/defaults/sql/cohorts/vip_buyers_30d.sql",
    "etl/defaults/mappings/users.toml",
    "etl/defaults/mappings/events.toml",
    "etl/defaults/mappings/cohorts.toml",
    "etl/defaults/mappings/schema/users.schema.json",
)


def run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the sources (not the checkout: no stale build/ files can leak in),
    installed with --target; returns the target directory."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "etl", src / "etl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(base / "dist"), str(src)])
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (base / "dist").glob("webengage_sync-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in SHIPPED if name not in names]
    assert not missing, f"the wheel lacks {missing}"
    target = base / "site"
    done = run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)])
    assert done.returncode == 0, done.stderr[-3000:]
    return target


def test_wheel_install_syncs_users_from_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"  # no sql/, mappings/ or etl/ here
    work.mkdir()
    warehouse = tmp_path / "w.duckdb"
    build_demo_warehouse(warehouse, users=150, as_of=AS_OF)
    with SandboxServer(SandboxConfig(license_code=LICENSE, api_key=KEY, bulk_users_rpm=60_000)) as sandbox:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WEBENGAGE_")},
            "PYTHONPATH": str(installed),
            "WEBENGAGE_LICENSE_CODE": LICENSE,
            "WEBENGAGE_API_KEY": KEY,
            "WEBENGAGE_API_URL": sandbox.url,
            "WEBENGAGE_BULK_USERS_RPM": "60000",
            "WAREHOUSE_URL": f"duckdb:///{warehouse}",
        }
        where = run([sys.executable, "-c", "import etl; print(etl.__file__)"], env=env, cwd=work)
        assert Path(where.stdout.strip()).is_relative_to(installed), where.stdout  # the wheel, not the checkout
        script = installed / "bin" / "webengage-sync"
        synced = run([str(script), "sync", "users", "--json"], env=env, cwd=work)
        assert synced.returncode == 0, synced.stderr[-3000:]
        stats = sandbox.stats()
        env = {k: v for k, v in env.items() if not k.startswith("WEBENGAGE_")}  # read-only: no credentials
        runs = run([str(script), "runs"], env=env, cwd=work)
    summary = json.loads(synced.stdout)
    assert summary["status"] == "success" and summary["accepted"] == stats["users"] > 0
    assert stats["violations"] == 0
    assert runs.returncode == 0 and summary["run_id"] in runs.stdout, runs.stderr[-2000:]
    with duckdb.connect(str(warehouse), read_only=True) as con:
        (stored,) = con.execute("SELECT count(*) FROM we_user_state").fetchone() or (0,)
    assert stored == summary["accepted"]
