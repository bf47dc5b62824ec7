"""The Airflow plugin (Airflow 3.1+: ``fastapi_apps`` + ``external_views``, no Flask): a "WebEngage" entry in
the navigation and a "WebEngage" tab on every DAG run, both served by :mod:`etl.ui.app` under ``/webengage``.

Loaded through the ``airflow.plugins`` entry point of the installed package (``pyproject.toml``), or from a
plugins folder (``plugins/webengage.py`` in this repository). Plugin endpoints are not protected by Airflow
by default: every route here requires a logged-in user allowed to read DAG runs (Airflow's own dependency,
so the JWT comes from the UI's ``_token`` cookie or an ``Authorization: Bearer`` header, and the configured
auth manager decides).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, Request

from etl.config import Settings, env_values
from etl.ui.app import create_app

log = logging.getLogger(__name__)

URL_PREFIX: Final = "/webengage"
#: The connection the DAGs use; its extras (warehouse_url, state_url, mapping paths, rates) say where the
#: state lives, as for the tasks. The page never sends anything, so credentials are not read.
CONN_ID: Final = "webengage_default"


def ui_settings() -> Settings:
    """The syncs' settings without credentials: the connection's extras over the API server's environment
    (the precedence the tasks use)."""
    values: dict[str, Any] = dict(env_values())
    try:
        from airflow.models.connection import Connection

        conn = Connection.get_connection_from_secrets(CONN_ID)
        values.update(conn.extra_dejson or {})
    except Exception as exc:  # no such connection: the environment alone says where the state is
        log.debug("connection %s not used: %s", CONN_ID, type(exc).__name__)
    return Settings.from_mapping(values, credentials=False)


def _login_url(request: Request) -> str:
    from airflow.api_fastapi.app import get_auth_manager

    return str(get_auth_manager().get_url_login(next_url=str(request.url)))


def build_app() -> FastAPI:
    return create_app(
        ui_settings,
        dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))],
        login_url=_login_url,
    )


class WebEngagePlugin(AirflowPlugin):
    name = "webengage"
    fastapi_apps = [{"app": build_app(), "url_prefix": URL_PREFIX, "name": "WebEngage"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012 - Airflow reads these class attributes
        {
            "name": "WebEngage",
            "href": "webengage/",
            "destination": "nav",
            "url_route": "webengage",
            "icon": "webengage/icon.svg",
        },
        {
            "name": "WebEngage",
            "href": "webengage/dag-run?dag_id={DAG_ID}&run_id={RUN_ID}",
            "destination": "dag_run",
            "url_route": "webengage-dag-run",
        },
    ]
