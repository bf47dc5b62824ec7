"""The WebEngage page in a real browser: Debian's Chromium driven by Playwright (no browser download), on the
`make airflow` stack. Logs in through Airflow's login form, runs a demo sync, opens the WebEngage entry of the
navigation and the WebEngage tab of the DAG run, and finds the run's counts there. Screenshots go to
``.screenshots/`` (git-ignored). Marked slow; `make airflow-test` runs it alone.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.e2e.conftest import trigger
from webengage_dev.demo.airflow_up import AirflowStack

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("WEBENGAGE_SCREENSHOTS", ROOT / ".screenshots"))
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT_MS = 60_000


def _text(html_text: str) -> str:
    return " ".join(html_text.split())


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        why = "Chromium not found (Debian: apt-get install chromium; CI installs it)"
        # CI sets REQUIRE_BROWSER: there the page's browser test must run, never skip.
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(why)
        pytest.skip(why)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A browser tab; its state is kept as ``.screenshots/failure.png`` when the test fails."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab = browser.new_page(viewport={"width": 1400, "height": 1400})
    tab.set_default_timeout(TIMEOUT_MS)
    failed_before = request.session.testsfailed
    yield tab
    if request.session.testsfailed > failed_before:
        tab.screenshot(path=SHOTS / "failure.png", full_page=True)
    tab.close()


def test_the_webengage_page_shows_the_runs_counts(stack: AirflowStack, api: httpx.Client, page: Any) -> None:
    plugins = api.get("/plugins").json()["plugins"]
    assert "webengage" in [p["name"] for p in plugins]
    assert api.get("/plugins/importErrors").json()["total_entries"] == 0
    # Nobody logged in: the page's data is refused (the UI's own login guards the rest).
    assert httpx.get(f"{stack.url}/webengage/", timeout=30).status_code == 401

    run_id, summary = trigger(api, "webengage_users_sync", {"dry_run": False, "full_refresh": True}, "sync_users")
    assert summary["status"] == "success" and summary["accepted"] > 0

    page.goto(stack.url)
    page.locator("input[name=username]").fill(stack.username)
    page.locator("input[name=password]").fill(stack.password)
    page.screenshot(path=SHOTS / "01-login.png")
    page.locator("button[type=submit]").click()
    page.get_by_role("link", name="WebEngage").first.wait_for()

    started = time.monotonic()
    page.get_by_role("link", name="WebEngage").first.click()
    runs = page.frame_locator("iframe[title=WebEngage]")
    # The DAG run made two of our runs (users, then erasures) with Airflow's run id: the users one.
    row = runs.locator("tr", has_text=run_id).filter(has=runs.locator("td", has_text=re.compile(r"^users$")))
    row.wait_for()
    load_s = time.monotonic() - started
    cells = _text(row.inner_text())
    expected = " ".join(f"{summary[k]:,}" for k in ("extracted", "unchanged", "accepted", "rejected", "requests"))
    assert f"{expected} {summary['throttled']:,}" in cells, cells
    page.screenshot(path=SHOTS / "02-runs.png", full_page=True)

    row.get_by_role("link", name=run_id).click()
    report = runs.locator("main")
    report.get_by_text("Rejected rows by reason").wait_for()
    text = _text(report.inner_text())
    assert f"accepted {summary['accepted']:,}" in text and "webengage-sync sync users" in text
    by_reason = {k.split(".", 1)[1]: n for k, n in summary.items() if k.startswith("rejected_by_reason.")}
    for reason, n in by_reason.items():
        assert re.search(rf"{re.escape(reason)}\s+{n:,}", text), reason
    page.screenshot(path=SHOTS / "03-run-report.png", full_page=True)

    for name, heading in (("Cohorts", "members now"), ("Budget", "User attribute slots")):
        runs.get_by_role("link", name=name).click()
        runs.get_by_text(heading).first.wait_for()
        page.screenshot(path=SHOTS / f"04-{name.lower()}.png", full_page=True)
    # The plan: dry runs in the API server; nothing changed since the full refresh, so users send nothing.
    runs.get_by_role("button", name="compute the plan now").click()
    plan = runs.locator("main")
    plan.get_by_text("total:").wait_for()
    assert re.search(r"users\s+0\s+0\s+bulk-users", plan.inner_text()), plan.inner_text()
    page.screenshot(path=SHOTS / "04-budget-plan.png", full_page=True)

    # The DAG run's own WebEngage tab opens that run's report.
    page.goto(f"{stack.url}/dags/webengage_users_sync/runs/{quote(run_id, safe='')}")
    page.locator('a[href$="plugin/webengage-dag-run"]').click()
    tab = page.frame_locator("iframe[title=WebEngage]").locator("main")
    tab.get_by_text("Rejected rows by reason").wait_for()
    assert f"accepted {summary['accepted']:,}" in _text(tab.inner_text())
    page.screenshot(path=SHOTS / "05-dag-run-tab.png", full_page=True)
    # A browser without the session is sent to Airflow's login page, not shown the runs.
    anonymous = page.context.browser.new_page()
    try:
        anonymous.goto(f"{stack.url}/webengage/")
        anonymous.locator("input[name=password]").wait_for()
        assert "/auth/login" in anonymous.url and run_id not in anonymous.content()
    finally:
        anonymous.close()
    headers = {"Authorization": api.headers["Authorization"]}
    started = time.monotonic()
    served = httpx.get(f"{stack.url}/webengage/", headers=headers, timeout=30)
    assert served.status_code == 200 and run_id in served.text
    print(
        f"\nWebEngage page: runs table visible {load_s:.2f}s after the click in the navigation; "
        f"served in {time.monotonic() - started:.3f}s"
    )
