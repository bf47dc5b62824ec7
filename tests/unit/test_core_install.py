"""The core install (no extras: what goes into an Airflow image) has no web server stack: the syncs, the CLI
and the webhook loader import without starlette/uvicorn, and the commands that need an extra say which."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BLOCK = """
import sys
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("starlette", "uvicorn"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, _NotInstalled())
"""


def run_without_web_stack(code: str) -> subprocess.CompletedProcess[str]:
    script = BLOCK + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_syncs_cli_and_loader_import_without_the_web_stack() -> None:
    done = run_without_web_stack("""
        import etl.cli, etl.pipelines.users, etl.pipelines.events, etl.pipelines.cohorts, etl.plan
        import etl.webhooks.loader
        print("ok")
    """)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_commands_that_need_an_extra_name_it() -> None:
    done = run_without_web_stack("""
        from typer.testing import CliRunner
        from etl.cli import app
        for argv in (["webhooks", "serve"], ["sandbox"], ["demo"]):
            result = CliRunner().invoke(app, argv)
            print(result.exit_code, result.output.replace("\\n", " "))
    """)
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3, done.stderr[-2000:]
    for line, extra in zip(lines, ("webhooks", "sandbox", "sandbox"), strict=True):
        assert line.startswith("2 ") and f"pip install 'webengage-sync[{extra}]'" in " ".join(line.split()), line
