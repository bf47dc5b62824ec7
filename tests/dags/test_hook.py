"""WebEngageHook: the connection `webengage_default` (conn_type http, as users have it, or webengage) ->
Settings, and test_connection(), which checks the configuration without sending anything."""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import pytest

KEY = "hook-test-key-123456"


@pytest.fixture
def hook_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    # Airflow's DAG processor and workers put dags/ on sys.path; here we do it ourselves.
    monkeypatch.syspath_prepend(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    for var in (
        "WAREHOUSE_URL",
        "STATE_URL",
        "WEBENGAGE_LICENSE_CODE",
        "WEBENGAGE_API_KEY",
        "WEBENGAGE_API_URL",
        "WEBENGAGE_DATA_CENTER",
        "WEBENGAGE_BULK_USERS_RPM",
        "WEBENGAGE_BATCH_SIZE",
    ):
        monkeypatch.delenv(var, raising=False)
    import webengage_common.hook

    return webengage_common.hook


def set_conn(monkeypatch: pytest.MonkeyPatch, conn_id: str = "webengage_default", **conn: Any) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


def test_hook_is_an_airflow_hook_named_like_a_provider_hook(hook_module: Any) -> None:
    from airflow.sdk import BaseHook

    hook_cls = hook_module.WebEngageHook
    assert issubclass(hook_cls, BaseHook)
    assert (hook_cls.conn_name_attr, hook_cls.default_conn_name) == ("webengage_conn_id", "webengage_default")
    assert (hook_cls.conn_type, hook_cls.hook_name) == ("webengage", "WebEngage")
    assert hook_cls().webengage_conn_id == "webengage_default"
    assert hook_cls(webengage_conn_id="other").webengage_conn_id == "other"
    assert set(hook_cls.get_ui_field_behaviour()["hidden_fields"]) == {"host", "schema", "port"}
    import etl.airflow.hook

    assert hook_cls is etl.airflow.hook.WebEngageHook  # the installed package's hook, re-exported for the DAGs


def test_providers_manager_lists_the_webengage_connection_type_with_its_form() -> None:
    """Through the installed package's entry point (apache_airflow_provider), as the API server sees it."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "webengage-sync" in manager.providers
    with warnings.catch_warnings():  # deprecated for tasks; Connection.get_hook() (the Test button) uses it
        warnings.simplefilter("ignore")
        hook = manager.hooks["webengage"]
    assert hook is not None and hook.hook_class_name == "etl.airflow.hook.WebEngageHook"
    assert hook.hook_name == "WebEngage" and hook.connection_testable
    widgets = manager.connection_form_widgets
    assert widgets["extra__webengage__data_center"].field["schema"]["enum"] == ["global", "in", "ksa"]
    assert widgets["extra__webengage__api_url"].field["schema"]["title"] == "API URL (optional)"
    behaviour = manager.field_behaviours["webengage"]
    assert behaviour["relabeling"] == {"login": "License code", "password": "API key"}
    assert set(behaviour["hidden_fields"]) == {"host", "schema", "port"}

    meta = next(m for m in HookMetaService.hook_meta_data() if m.connection_type == "webengage")
    assert meta.standard_fields is not None and meta.standard_fields.login.title == "License code"
    assert meta.standard_fields.host.hidden and meta.extra_fields is not None
    assert set(meta.extra_fields) == {"data_center", "api_url"}


@pytest.mark.parametrize("conn_type", ["http", "webengage"])
def test_settings_from_a_json_connection_of_either_type(
    hook_module: Any, monkeypatch: pytest.MonkeyPatch, conn_type: str
) -> None:
    set_conn(
        monkeypatch,
        conn_type=conn_type,
        host="http://127.0.0.1:8765",
        login="~99199077",
        password=KEY,
        extra={"bulk_users_rpm": "1000", "batch_size": 10},
    )
    # The worker's environment fills what the connection leaves out, never the credentials or the host.
    monkeypatch.setenv("WAREHOUSE_URL", "duckdb:///from-env.duckdb")
    monkeypatch.setenv("WEBENGAGE_API_KEY", "env-key-must-not-win")
    monkeypatch.setenv("WEBENGAGE_API_URL", "https://env.example")
    monkeypatch.setenv("WEBENGAGE_BATCH_SIZE", "5")

    settings = hook_module.WebEngageHook().get_settings()
    assert settings.license_code == "~99199077" and settings.api_key.reveal() == KEY
    assert settings.base_url == "http://127.0.0.1:8765"
    assert settings.account_url == "http://127.0.0.1:8765/v1/accounts/~99199077"
    assert settings.bulk_users_rpm == 1000 and settings.batch_size == 10  # the connection's extra wins
    assert settings.warehouse_url == "duckdb:///from-env.duckdb"
    assert hook_module.WebEngageHook().get_conn() == settings

    from webengage_common.airflow_settings import settings_from_airflow

    assert settings_from_airflow() == settings  # the pre-hook helper is a thin wrapper
    assert settings_from_airflow(batch_size=3).batch_size == 3


def test_data_centre_host_and_a_named_connection(hook_module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, "webengage_india", conn_type="webengage", host="in", login="in~58adcc11", password=KEY)
    settings = hook_module.WebEngageHook(webengage_conn_id="webengage_india").get_settings()
    assert settings.data_center == "in" and settings.base_url == "https://api.in.webengage.com"


def test_test_connection_against_the_sandbox_without_showing_the_key(
    hook_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.helpers.sandbox import LICENSE, sandbox_server

    with sandbox_server(KEY) as sandbox:
        # The webengage type as the form stores it: fields by name in extra, empty ones as null.
        extra = {"data_center": "global", "api_url": sandbox.url, "bulk_events_rpm": 600, "concurrency": None}
        set_conn(monkeypatch, conn_type="webengage", login=LICENSE, password=KEY, extra=extra)
        ok, message = hook_module.WebEngageHook().test_connection()
        assert ok is True, message
        assert LICENSE in message and sandbox.url in message and "nothing was ingested" in message
        assert KEY not in message
        assert sandbox.stats()["credential_checks"] == 1 and sandbox.stats()["users"] == 0

        set_conn(monkeypatch, conn_type="webengage", login=LICENSE, password="revoked-key-1", extra=extra)
        ok, message = hook_module.WebEngageHook().test_connection()
        assert ok is False and "HTTP 401" in message and "revoked-key-1" not in message
        assert "password (API key) of the Airflow connection webengage_default" in message  # the fix, for Airflow

    # Nobody listens there any more: unreachable, said before any HTTP.
    set_conn(monkeypatch, conn_type="webengage", login=LICENSE, password=KEY, extra=extra)
    ok, message = hook_module.WebEngageHook().test_connection()
    assert ok is False and "cannot reach the WebEngage API" in message


def test_which_source_wins_is_logged_without_values(
    hook_module: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    set_conn(
        monkeypatch, conn_type="webengage", login="~99199077", password=KEY, extra={"api_url": "http://127.0.0.1:9"}
    )
    monkeypatch.setenv("WEBENGAGE_API_KEY", "env-key-must-not-win")
    monkeypatch.setenv("WEBENGAGE_BATCH_SIZE", "5")
    with caplog.at_level("INFO", logger="webengage.connection"):
        settings = hook_module.WebEngageHook().get_settings()
    assert settings.api_key.reveal() == KEY and settings.batch_size == 5
    line = caplog.text
    assert "AIRFLOW_CONN_WEBENGAGE_DEFAULT" in line and "created in the UI is not used" in line
    assert "from the environment: batch_size" in line and "ignored in the environment" in line
    assert "WEBENGAGE_API_KEY" in line and KEY not in line and "env-key-must-not-win" not in line


def test_without_a_connection_the_environment_gives_everything(
    hook_module: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_WEBENGAGE_DEFAULT", raising=False)
    monkeypatch.setenv("WEBENGAGE_LICENSE_CODE", "in~58adcc11")
    monkeypatch.setenv("WEBENGAGE_API_KEY", KEY)
    monkeypatch.setenv("WEBENGAGE_DATA_CENTER", "in")
    with caplog.at_level("INFO", logger="webengage.connection"):
        settings = hook_module.WebEngageHook().get_settings()
    assert settings.license_code == "in~58adcc11" and settings.base_url == "https://api.in.webengage.com"
    assert "no Airflow connection 'webengage_default'" in caplog.text and KEY not in caplog.text


@pytest.mark.parametrize(
    ("conn", "expected"),
    [
        ({"conn_type": "webengage", "host": "global", "login": "~99199077"}, "api_key: missing"),
        ({"conn_type": "http", "host": "global", "password": KEY}, "license_code: missing"),
        ({"conn_type": "http", "host": "global", "login": "99199077.0", "password": KEY}, "float"),
        (
            {"conn_type": "http", "host": "global", "login": "~99199077", "password": KEY, "extra": {"api_keyy": 1}},
            "extra.api_keyy",
        ),
        ({"conn_type": "webengage", "host": "ftp://x", "login": "~99199077", "password": KEY}, "api_url"),
        (
            {"conn_type": "http", "host": "global", "login": "~99199077", "password": KEY, "extra": {"batch_size": 26}},
            "batch_size",
        ),
    ],
)
def test_test_connection_names_what_is_wrong(
    hook_module: Any, monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any], expected: str
) -> None:
    set_conn(monkeypatch, **conn)
    ok, message = hook_module.WebEngageHook().test_connection()
    assert ok is False and expected in message and KEY not in message


def test_test_connection_on_a_missing_connection(hook_module: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_WEBENGAGE_NOWHERE", raising=False)
    ok, message = hook_module.WebEngageHook(webengage_conn_id="webengage_nowhere").test_connection()
    assert ok is False and "webengage_nowhere" in message
