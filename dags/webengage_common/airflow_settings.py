"""Airflow connection ``webengage_default`` -> :class:`etl.config.Settings`.

host = API base URL or data-centre name (global | in | ksa), login = license code, password = REST API
key, extras = any other setting by name (e.g. ``{"bulk_users_rpm": 1000, "warehouse_url": "..."}``).
``WAREHOUSE_URL`` / ``STATE_URL`` / ``WEBENGAGE_*`` variables in the worker's environment fill what the
connection leaves out.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from etl.config import Settings, env_values

CONN_ID = "webengage_default"


def settings_from_airflow(conn_id: str = CONN_ID, **overrides: Any) -> Settings:
    conn = BaseHook.get_connection(conn_id)
    extra = dict(conn.extra_dejson or {})
    for name, value in env_values().items():
        # Credentials and the host come from the connection only; the rest may come from the worker.
        if name not in ("license_code", "api_key", "data_center", "api_url") and name not in extra:
            extra[name] = value
    return Settings.from_connection(host=conn.host, login=conn.login, password=conn.password, extra=extra,
                                    **overrides)  # fmt: skip


def window_of(context: dict[str, Any]) -> tuple[Any, Any]:
    """The run's data interval (None for manual runs without one)."""
    return context.get("data_interval_start"), context.get("data_interval_end")
