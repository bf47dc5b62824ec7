"""``get_provider_info()``: what Airflow's providers manager reads through the ``apache_airflow_provider``
entry point (pyproject.toml). Declarative (Airflow 3.2+ reads ``conn-fields`` and ``ui-field-behaviour``
without importing the hook); :class:`~etl.airflow.hook.WebEngageHook` serves the same data to older
versions. Imports nothing from Airflow."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

PACKAGE: Final = "webengage-sync"
CONN_TYPE: Final = "webengage"
HOOK_CLASS: Final = "etl.airflow.hook.WebEngageHook"

#: The connection form's own fields, stored in the connection's extra by name (the settings of the same name).
CONN_FIELDS: Final[dict[str, dict[str, Any]]] = {
    "data_center": {
        "label": "Data centre",
        "schema": {"type": ["string", "null"], "enum": ["global", "in", "ksa"], "default": "global"},
        "description": "Where your WebEngage account lives (the dashboard's URL says): global = api.webengage.com, "
        "in = api.in.webengage.com, ksa = api.ksa.webengage.com.",
    },
    "api_url": {
        "label": "API URL (optional)",
        "schema": {"type": ["string", "null"]},
        "description": "Overrides the data centre's host, e.g. http://127.0.0.1:8765 for the local sandbox. "
        "Leave empty for WebEngage.",
    },
}

#: Standard fields: login = license code, password = REST API key; host, schema and port are not used.
UI_FIELD_BEHAVIOUR: Final[dict[str, Any]] = {
    "hidden-fields": ["host", "schema", "port"],
    "relabeling": {"login": "License code", "password": "API key"},
    "placeholders": {
        "login": "~99199077 (as the WebEngage dashboard shows it, with any leading ~)",
        "password": "REST API key of an admin with Account Management + Update Data permissions",
        "extra": '{"bulk_users_rpm": 500, "warehouse_url": "postgresql+psycopg://host/db"}',
        "api_url": "https://api.webengage.com",
    },
}


def _version() -> str:
    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # imported from a source tree that is not installed
        return "0+unknown"


def get_provider_info() -> dict[str, Any]:
    """The provider's description in the format of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": PACKAGE,
        "name": "WebEngage",
        "description": "Reverse-ETL from a data warehouse to WebEngage: the webengage connection type.",
        "versions": [_version()],
        "integrations": [
            {
                "integration-name": "WebEngage",
                "external-doc-url": "https://docs.webengage.com/docs/rest-api-getting-started",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "WebEngage", "python-modules": ["etl.airflow.hook"]}],
        "connection-types": [
            {
                "hook-class-name": HOOK_CLASS,
                "hook-name": "WebEngage",
                "connection-type": CONN_TYPE,
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
    }
