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
from functools import cache
from typing import TYPE_CHECKING, Any, Final

from airflow.plugins_manager import AirflowPlugin

from etl.config import Settings, env_values

if TYPE_CHECKING:
    from fastapi import FastAPI, Request

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
    """The page's app, guarded by Airflow's own dependency: a valid JWT and read access to DAG runs."""
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag
    from fastapi import Depends

    from etl.ui.app import create_app

    return create_app(
        ui_settings,
        dependencies=[Depends(requires_access_dag("GET", DagAccessEntity.RUN))],
        login_url=_login_url,
    )


@cache
def _fastapi_apps() -> list[dict[str, Any]]:
    return [{"app": build_app(), "url_prefix": URL_PREFIX, "name": "WebEngage"}]


class _BuiltOnFirstUse:
    """``fastapi_apps``, built when first read. Every Airflow process (scheduler, DAG processor, each task)
    imports plugins, but only the API server reads this: the others skip importing the API's security
    module and FastAPI (about a second each time)."""

    def __get__(self, instance: object, owner: type | None = None) -> list[dict[str, Any]]:
        return _fastapi_apps()


class WebEngagePlugin(AirflowPlugin):
    name = "webengage"
    fastapi_apps = _BuiltOnFirstUse()
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
