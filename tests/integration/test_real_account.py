"""What a real account brings: WebEngage's license code formats, read-only commands run with no API
credentials at all, and a demo that has data on whatever day it is built."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from etl.cli import app
from etl.config import Settings
from etl.pipelines import cohorts, users
from tests.helpers.sandbox import sandbox_server, sandbox_settings
from tests.helpers.warehouse import AS_OF, DemoTemplates
from webengage_dev.demo.warehouse import build_demo_warehouse, demo_as_of
from webengage_dev.sandbox import SandboxConfig, SandboxServer

KEY = "real-account-key-0123456789"
#: Codes as WebEngage shows them: a leading "~" (seed 003, the dashboard), all digits, and the "in~" / "ksa~~"
#: forms seen in public integrations.
REAL_CODES = ["~99199077", "in~58adcc11", "ksa~~47b66537", "82617894"]


@pytest.fixture(scope="module")
def warehouse(demo_templates: DemoTemplates) -> Path:
    return demo_templates.template(200)  # read only: a test that writes copies it


@pytest.fixture
def no_webengage_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("WEBENGAGE_", "AIRFLOW_CONN_")) or name in ("WAREHOUSE_URL", "STATE_URL"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("code", REAL_CODES)
def test_sync_with_a_real_license_code_format(
    code: str, warehouse: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with SandboxServer(SandboxConfig(license_code=code, api_key=KEY, bulk_users_rpm=60_000)) as sandbox:
        settings = Settings.from_mapping(
            {
                "license_code": code,
                "api_key": KEY,
                "api_url": sandbox.url,
                "warehouse_url": f"duckdb:///{warehouse}",
                "state_url": f"duckdb:///{tmp_path / 'state.duckdb'}",
                "bulk_users_rpm": 60_000,
                "expected_latency_s": 0.05,
            }
        )
        assert settings.account_url == f"{sandbox.url}/v1/accounts/{code}"  # into the path unchanged
        summary = users.run(settings)
        stats = sandbox.stats()
    # The sandbox answers 404 to any other code, so acceptance proves the code reached it unchanged.
    assert summary["status"] == "success" and summary["accepted"] == stats["users"] > 0
    assert stats["violations"] == 0
    assert "data centre" not in caplog.text  # api_url is set: no data-centre hint


@pytest.mark.parametrize(("code", "hinted"), [("in~58adcc11", "in"), ("ksa~~47b66537", "ksa")])
def test_a_data_centre_prefix_without_a_data_centre_warns_and_keeps_the_code(
    code: str, hinted: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="etl.config"):
        settings = Settings.from_mapping({"license_code": code, "api_key": KEY})
    assert settings.license_code == code and settings.base_url == "https://api.webengage.com"  # nothing rewritten
    assert f"probably in the '{hinted}' data centre" in caplog.text and f"WEBENGAGE_DATA_CENTER={hinted}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="etl.config"):
        chosen = Settings.from_mapping({"license_code": code, "api_key": KEY, "data_center": hinted})
    assert chosen.base_url == f"https://api.{hinted}.webengage.com" and caplog.text == ""


@pytest.fixture
def synced_state(warehouse: Path, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A warehouse copy with one real users run in its state; yields (warehouse URL, run id)."""
    copy = tmp_path / "w.duckdb"
    copy.write_bytes(warehouse.read_bytes())
    url = f"duckdb:///{copy}"
    with sandbox_server(KEY, bulk_users_rpm=60_000) as sandbox:
        settings = sandbox_settings(sandbox, url, KEY, bulk_users_rpm=60_000, expected_latency_s=0.05)
        summary = users.run(settings, run_id="real__users__1")
    assert summary["accepted"] > 0
    yield url, summary["run_id"]


def test_read_only_commands_need_no_webengage_settings(
    synced_state: tuple[str, str], no_webengage_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, run_id = synced_state
    monkeypatch.setenv("WAREHOUSE_URL", url)  # the only setting: state lives in the warehouse
    runner = CliRunner()
    for argv in (
        ["runs"],
        ["runs", "show", run_id],
        ["rejects"],
        ["plan", "--as-of", "2026-11-01T00:00"],
        ["cohort", "list"],
    ):
        result = runner.invoke(app, argv)
        assert result.exit_code == 0, (argv, result.output)
        assert "configuration error" not in result.output, argv
    assert run_id in runner.invoke(app, ["runs"]).output
    # Sending still needs both credentials, and says which variable to set before anything is sent.
    refused = runner.invoke(app, ["sync", "users"])
    assert refused.exit_code == 2 and "WEBENGAGE_LICENSE_CODE" in refused.output


@pytest.mark.parametrize("built", [AS_OF, datetime(2028, 2, 29, 13, 37, tzinfo=UTC)])
def test_demo_cohorts_have_members_whatever_day_the_demo_is_built(built: datetime, tmp_path: Path) -> None:
    """The demo built on any day, exported two days later (a user trying it out): every shipped cohort has
    members. Dry runs, so no credentials either."""
    path = tmp_path / "w.duckdb"
    build_demo_warehouse(path, users=600, as_of=demo_as_of(built))
    settings = Settings.from_mapping({"warehouse_url": f"duckdb:///{path}"}, credentials=False)
    names = cohorts.load_config(settings).names
    assert len(names) >= 4
    for name in names:
        summary = cohorts.export(settings, cohort=name, as_of=built + timedelta(days=2), dry_run=True)
        assert summary["members"] > 0, name


def test_demo_as_of_is_the_start_of_the_hour() -> None:
    assert demo_as_of(datetime(2031, 7, 4, 23, 59, 59, 999, tzinfo=UTC)) == datetime(2031, 7, 4, 23, tzinfo=UTC)
    naive = datetime(2031, 7, 4, 5, 30)  # naive is UTC
    assert demo_as_of(naive) == datetime(2031, 7, 4, 5, tzinfo=UTC)
