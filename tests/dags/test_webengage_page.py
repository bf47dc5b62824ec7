"""The WebEngage page (etl/ui) as Airflow serves it: the plugin's own app with Airflow's auth dependency, over a
real DuckDB state database holding runs that real syncs made against the sandbox."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from etl.pipelines import cohorts, users
from etl.state.store import StateStore
from etl.warehouse.engine import make_engine
from tests.helpers.sandbox import sandbox_server, sandbox_settings
from tests.helpers.warehouse import AS_OF, DemoTemplates, duck

ROOT = Path(__file__).resolve().parents[2]
KEY = "page-test-key-not-shown-42"
P = "/webengage"
URL_PREFIX = P
RUN_ID = "scheduled__2026-11-01T02:00:00+00:00"


@dataclass(frozen=True)
class Synced:
    warehouse: Path
    first: dict[str, Any]
    again: dict[str, Any]
    dry: dict[str, Any]
    cohort: dict[str, Any]


@pytest.fixture(scope="module")
def synced(demo_templates: DemoTemplates, tmp_path_factory: pytest.TempPathFactory) -> Synced:
    """Real runs: users (everything), users again (nothing changed), a dry run, a cohort export."""
    path = demo_templates.copy(tmp_path_factory.mktemp("page"), 600)
    clock = iter(AS_OF + timedelta(minutes=m) for m in range(0, 10_000, 7))
    with sandbox_server(KEY, bulk_users_rpm=60_000) as sandbox:
        settings = sandbox_settings(sandbox, path, KEY, bulk_users_rpm=60_000)
        first = users.run(settings, run_id=RUN_ID, window=(None, AS_OF), clock=lambda: next(clock))
        again = users.run(settings, run_id="manual__again", clock=lambda: next(clock))
        dry = users.run(settings, run_id="manual__dry", dry_run=True, clock=lambda: next(clock))
        cohort = cohorts.export(
            settings, cohort="vip_buyers_30d", run_id=RUN_ID, as_of=AS_OF, clock=lambda: next(clock)
        )
    return Synced(path, first, again, dry, cohort)


@pytest.fixture
def client(synced: Synced, airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The plugin's app as the API server mounts it, reading the state where the environment says."""
    from airflow.api_fastapi.app import init_auth_manager

    monkeypatch.setenv("WAREHOUSE_URL", duck(synced.warehouse))
    monkeypatch.delenv("STATE_URL", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_WEBENGAGE_DEFAULT", raising=False)
    init_auth_manager()
    from fastapi import FastAPI

    from etl.ui.plugin import build_app

    server = FastAPI()  # mounted as Airflow's API server mounts plugin apps
    server.mount(URL_PREFIX, build_app())
    with TestClient(server) as c:
        yield c


def token(role: str | None = "viewer") -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return str(get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="someone", role=role)))


def bearer(role: str | None = "viewer") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(role)}"}


def cells(html: str) -> str:
    """The page's text with tags removed (what a reader sees), whitespace collapsed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_a_logged_in_user_sees_every_run_with_its_counts(client: TestClient, synced: Synced) -> None:
    page = client.get(P + "/", headers=bearer())
    assert page.status_code == 200, page.text
    text = cells(page.text)
    first = synced.first
    assert first["accepted"] > 500 and first["rejected"] > 0
    counts = " ".join(f"{first[k]:,}" for k in ("extracted", "unchanged", "accepted", "rejected", "requests"))
    assert f"users {RUN_ID} success until {AS_OF:%Y-%m-%d %H:%M:%S} {counts} 0" in text
    again = synced.again
    assert f"manual__again success {again['extracted']:,} {again['unchanged']:,} 0 {again['rejected']:,} 0 0" in text
    assert "manual__dry success dry run" in text
    assert "cohort:vip_buyers_30d" in text
    assert "<svg" in page.text and "accepted rows per run" in text
    assert KEY not in page.text


def test_the_pipeline_filter_shows_that_pipeline_only(client: TestClient) -> None:
    text = cells(client.get(P + "/", params={"pipeline": "cohort:vip_buyers_30d"}, headers=bearer()).text)
    assert "cohort:vip_buyers_30d" in text and "manual__again" not in text


def test_anonymous_and_unauthorized_requests_are_refused(client: TestClient) -> None:
    for path in ("/", "/cohorts", "/budget", f"/run?pipeline=users&run_id={RUN_ID}"):
        anonymous = client.get(P + path)
        assert anonymous.status_code == 401, (path, anonymous.status_code)
        assert "users" not in anonymous.text
    assert client.get(P + "/", headers={"Authorization": "Bearer not-a-token"}).status_code == 403
    assert client.get(P + "/", headers=bearer(role=None)).status_code == 403  # logged in, no role
    browser = client.get(P + "/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert browser.status_code == 303 and "login" in browser.headers["location"]


def test_the_ui_session_cookie_is_accepted(client: TestClient) -> None:
    client.cookies.set("_token", token())
    try:
        assert client.get(P + "/").status_code == 200
    finally:
        client.cookies.clear()


def test_one_run_shows_rejects_with_keys_never_values(client: TestClient, synced: Synced) -> None:
    page = client.get(P + "/run", params={"pipeline": "users", "run_id": RUN_ID}, headers=bearer())
    assert page.status_code == 200
    text = cells(page.text)
    for reason, n in synced.first["rejected_by_reason"].items():
        assert f"{reason} {n:,}" in text
    assert "webengage-sync sync users" in text
    # Sample keys are shown, values are not (the CLI's `rejects --keys` shows the same).
    engine = make_engine(duck(synced.warehouse))
    with StateStore(engine) as store:
        phones = [g for g in store.reject_groups("users", sample=5, run_id=RUN_ID) if g["reason"] == "invalid_phone"]
    engine.dispose()
    assert phones and phones[0]["keys"]
    key = phones[0]["keys"][0]
    assert key in text
    with duckdb.connect(str(synced.warehouse), read_only=True) as con:
        [(phone,)] = con.execute("SELECT phone FROM users WHERE user_id = ? LIMIT 1", [key]).fetchall()
    assert phone and str(phone) not in page.text
    assert client.get(P + "/run", params={"pipeline": "users", "run_id": "nope"}, headers=bearer()).status_code == 404


def test_the_dag_run_tab_finds_the_run_by_airflow_run_id(client: TestClient, synced: Synced) -> None:
    # Two DAGs wrote runs with the same run id: each DAG's tab shows its own pipelines only.
    users_tab = cells(
        client.get(P + "/dag-run", params={"dag_id": "webengage_users_sync", "run_id": RUN_ID}, headers=bearer()).text
    )
    assert f"accepted {synced.first['accepted']:,}" in users_tab and "vip_buyers_30d" not in users_tab
    cohort_tab = cells(
        client.get(
            P + "/dag-run", params={"dag_id": "webengage_cohort_export", "run_id": RUN_ID}, headers=bearer()
        ).text
    )
    assert f"members {synced.cohort['members']:,}" in cohort_tab and "users run" not in cohort_tab
    missing = client.get(P + "/dag-run", params={"dag_id": "webengage_users_sync", "run_id": "x"}, headers=bearer())
    assert missing.status_code == 200 and "No WebEngage run recorded" in missing.text


def test_cohorts_page_shows_size_guard_slot_and_history(client: TestClient, synced: Synced) -> None:
    text = cells(client.get(P + "/cohorts", headers=bearer()).text)
    members = synced.cohort["members"]
    assert members > 0
    assert "vip_buyers_30d" in text and f"active {members:,} ok boolean slot held" in text
    assert "churn_risk" in text and "never run" in text and "entered per export" in text


def test_budget_page_counts_slots_and_plans_on_request(client: TestClient, synced: Synced) -> None:
    text = cells(client.get(P + "/budget", headers=bearer()).text)
    assert re.search(r"boolean \d+ of 25", text) and "compute the plan now" in text
    planned = cells(client.get(P + "/budget", params={"plan": "1"}, headers=bearer()).text)
    # Nothing changed since the sync: the profile sync would send nothing.
    assert "users 0 0 bulk-users" in planned and "total:" in planned


def test_the_plugin_registers_a_nav_entry_and_a_dag_run_tab() -> None:
    from airflow._shared.plugins_manager import _load_plugins_from_plugin_directory

    from etl.ui.plugin import WebEngagePlugin

    views = {v["destination"]: v for v in WebEngagePlugin.external_views}
    assert views["nav"]["href"] == "webengage/" and "{RUN_ID}" in views["dag_run"]["href"]
    assert WebEngagePlugin.fastapi_apps[0]["url_prefix"] == "/webengage"
    loaded, errors = _load_plugins_from_plugin_directory(plugins_folder=str(ROOT / "plugins"))
    assert not errors and [p.name for p in loaded] == ["webengage"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'webengage = "etl.ui.plugin:WebEngagePlugin"' in pyproject
