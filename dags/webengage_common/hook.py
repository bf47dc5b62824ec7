"""``WebEngageHook``: the Airflow connection ``webengage_default`` -> :class:`etl.config.Settings`.

Connection fields: host = API base URL or data-centre name (global | in | ksa), login = license code,
password = REST API key, extras = any other setting by name (e.g. ``{"bulk_users_rpm": 1000, "warehouse_url":
"..."}``). ``WAREHOUSE_URL`` / ``STATE_URL`` / ``WEBENGAGE_*`` variables in the worker's environment fill what the
connection leaves out; the credentials and the host come from the connection only.

The connection type may be ``webengage`` or ``http`` (existing connections): the hook reads the same fields.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from etl.config import Settings, env_values

#: Settings only the connection may give (never the worker's environment).
_CONNECTION_ONLY = frozenset({"license_code", "api_key", "data_center", "api_url"})


class WebEngageHook(BaseHook):
    """Builds the sync's settings from an Airflow connection. It sends nothing: the pipelines do."""

    conn_name_attr = "webengage_conn_id"
    default_conn_name = "webengage_default"
    conn_type = "webengage"
    hook_name = "WebEngage"

    def __init__(self, webengage_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.webengage_conn_id = webengage_conn_id

    def get_settings(self, **overrides: Any) -> Settings:
        """The validated settings (raises :class:`etl.errors.ConfigError` naming a bad or missing one)."""
        conn = self.get_connection(self.webengage_conn_id)
        extra = dict(conn.extra_dejson or {})
        for name, value in env_values().items():
            if name not in _CONNECTION_ONLY and name not in extra:
                extra[name] = value
        return Settings.from_connection(
            host=conn.host, login=conn.login, password=conn.password, extra=extra, **overrides
        )

    def get_conn(self) -> Settings:
        return self.get_settings()

    def test_connection(self) -> tuple[bool, str]:
        """Check the connection's configuration (credentials present and well-formed, known extras, valid
        values) without sending anything to WebEngage. Never shows the API key."""
        try:
            settings = self.get_settings()
        except Exception as exc:  # ConfigError, or no such connection: both are the answer, not a crash
            return False, f"{type(exc).__name__}: {exc}"
        return True, (
            f"connection {self.webengage_conn_id!r} is valid: license code {settings.license_code}, "
            f"API {settings.base_url} (checked locally; nothing was sent)"
        )

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema", "port"],
            "relabeling": {"host": "API URL or data centre", "login": "License code", "password": "REST API key"},
            "placeholders": {
                "host": "global | in | ksa | https://api.webengage.com",
                "login": "~99199077",
                "extra": '{"bulk_users_rpm": 500, "warehouse_url": "postgresql+psycopg://..."}',
            },
        }
