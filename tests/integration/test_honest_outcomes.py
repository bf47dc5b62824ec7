"""Nothing wrong looks green: a run that had work and got none of it accepted is red, so is one whose share of
rows not accepted is above max_reject_share; a host that is not WebEngage (an HTML page, a blackhole) stops
the run after one request. One case each, with the one-line reason a user sees."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from etl.errors import DeliveryError, TerminalAPIError
from etl.pipelines import users
from tests.helpers.runs import failed_delivery
from tests.helpers.sandbox import sandbox_settings
from tests.helpers.warehouse import AS_OF, DemoTemplates

KEY = "honest-outcomes-key-0123"
USERS = 60


@pytest.fixture
def warehouse(demo_templates: DemoTemplates, tmp_path: Path) -> Path:
    return demo_templates.copy(tmp_path, USERS)


def run_against(handler: Callable[[httpx.Request], httpx.Response], warehouse: Path, **settings: Any) -> Any:
    calls: list[int] = []

    def counting(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return handler(request)

    config = sandbox_settings("http://we.test", warehouse, KEY, bulk_users_rpm=600_000, **settings)
    return calls, lambda: users.run(config, clock=lambda: AS_OF, transport=httpx.MockTransport(counting))


def test_every_batch_failing_transiently_is_a_red_run(warehouse: Path) -> None:
    calls, run = run_against(
        lambda r: httpx.Response(503, json={"response": {"status": "error"}}),
        warehouse,
        max_retries=2,
        backoff_base_s=0.001,
        backoff_max_s=0.002,
    )
    summary = failed_delivery(run)
    assert summary["accepted"] == 0 and summary["rejected_by_reason"]["transient_failure"] == summary["sent"]
    assert "delivered nothing" in summary["message"] and len(calls) <= summary["batches"] * 3  # ≤ its retries


def test_every_item_refused_is_a_red_run(warehouse: Path) -> None:
    _, run = run_against(
        lambda r: httpx.Response(400, json={"response": {"status": "error", "message": "bad"}}), warehouse
    )
    summary = failed_delivery(run)
    assert summary["accepted"] == 0 and summary["rejected_by_reason"]["api_rejected"] == summary["sent"]


def refuse_most(request: httpx.Request) -> httpx.Response:
    """Refuses every user whose id ends in 0-5 (60% of them): bisection isolates each one."""
    body = orjson.loads(request.content)["users"]
    if any(u["userId"][-1] in "012345" for u in body):
        return httpx.Response(400, json={"response": {"status": "error", "message": "refused"}})
    return httpx.Response(201, json={"response": {"status": "queued"}})


def test_more_refused_than_max_reject_share_is_a_red_run_after_finishing(warehouse: Path) -> None:
    _, run = run_against(refuse_most, warehouse)
    summary = failed_delivery(run)
    assert summary["accepted"] > 0 and "above max_reject_share=0.5" in summary["message"]
    assert summary["extracted"] == summary["unchanged"] + summary["accepted"] + summary["rejected"]  # all done


def test_max_reject_share_is_a_setting(warehouse: Path) -> None:
    _, run = run_against(refuse_most, warehouse, max_reject_share=1.0)
    assert run()["status"] == "success"


@pytest.mark.parametrize(
    "answer",
    [
        lambda r: httpx.Response(200, text="<html><body>Welcome to the hotel Wi-Fi</body></html>"),
        lambda r: (_ for _ in ()).throw(httpx.ConnectTimeout("timed out", request=r)),  # a blackholed host
    ],
    ids=["html-200", "blackhole"],
)
def test_a_host_that_is_not_webengage_stops_the_run_after_one_request(
    warehouse: Path, answer: Callable[[httpx.Request], httpx.Response]
) -> None:
    calls, run = run_against(answer, warehouse, max_retries=5)
    with pytest.raises(TerminalAPIError) as err:
        run()
    assert len(calls) == 1 and "Fix:" in str(err.value)


def test_the_cli_exits_non_zero_with_the_counts_and_one_line(warehouse: Path, tmp_path: Path) -> None:
    from webengage_dev.sandbox import SandboxConfig, SandboxServer

    with SandboxServer(SandboxConfig(license_code="~99199077", api_key=KEY, error_5xx_rate=1.0)) as sandbox:
        env = {
            "PATH": "/usr/bin:/bin",
            "WAREHOUSE_URL": f"duckdb:///{warehouse}",
            "WEBENGAGE_API_URL": sandbox.url,
            "WEBENGAGE_LICENSE_CODE": "~99199077",
            "WEBENGAGE_API_KEY": KEY,
            "WEBENGAGE_MAX_RETRIES": "0",
            "WEBENGAGE_BULK_USERS_RPM": "60000",
        }
        done = subprocess.run(
            [sys.executable, "-m", "etl.cli", "sync", "users"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "users sync failed: delivered nothing" in " ".join(done.stderr.split())
    assert "extracted" in done.stderr  # the counts are printed before the reason


def test_delivery_error_is_not_raised_for_a_dry_run(warehouse: Path) -> None:
    _, run = run_against(lambda r: httpx.Response(503), warehouse, max_retries=0)
    config = sandbox_settings("http://we.test", warehouse, KEY)
    assert users.run(config, dry_run=True, clock=lambda: AS_OF)["status"] == "success"
    with pytest.raises(DeliveryError):
        run()
