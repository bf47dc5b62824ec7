"""``WebEngageHook``: an Airflow connection -> :class:`etl.config.Settings`, and the connection test.

**Where the settings come from** (one rule, logged at INFO on every run, never with values):

1. The Airflow connection ``webengage_conn_id`` (default ``webengage_default``), found the way Airflow finds
   any connection: an ``AIRFLOW_CONN_WEBENGAGE_DEFAULT`` environment variable first, then a secrets backend,
   then the connections created in the UI (the metadata database). Its fields give the account: login =
   license code, password = API key, extra ``data_center`` / ``api_url`` (or, in ``http`` connections, host =
   data-centre name or API URL), and any other setting by name in extra.
2. ``WAREHOUSE_URL`` / ``STATE_URL`` / ``WEBENGAGE_*`` variables of the worker fill what the connection leaves
   out, except the account (license code, key, data centre, API URL): those come from the connection alone,
   and a ``WEBENGAGE_API_KEY`` left in the environment is ignored (and logged as ignored).
3. No connection of that id at all: everything comes from the environment, as for the CLI.

The connection type may be ``webengage`` (the form registered by this package) or ``http``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from etl.airflow.provider import CONN_FIELDS, CONN_TYPE, UI_FIELD_BEHAVIOUR
from etl.airflow.wording import airflow_wording
from etl.config import Settings, env_values, env_var_for
from etl.engine.credentials import check_connection

log = logging.getLogger("webengage.connection")

#: Settings only the connection may give (never the worker's environment).
ACCOUNT_SETTINGS = frozenset({"license_code", "api_key", "data_center", "api_url"})
#: Older forms stored their own fields in extra with this prefix.
_PREFIX = f"extra__{CONN_TYPE}__"


def conn_env_var(conn_id: str) -> str:
    """The environment variable that defines connection ``conn_id`` (it shadows one created in the UI)."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


class WebEngageHook(BaseHook):
    """Builds the sync's settings from an Airflow connection. It sends nothing: the pipelines do; its
    :meth:`test_connection` makes the one call that carries no data (see :mod:`etl.engine.credentials`)."""

    conn_name_attr = "webengage_conn_id"
    default_conn_name = "webengage_default"
    conn_type = CONN_TYPE
    hook_name = "WebEngage"

    def __init__(self, webengage_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.webengage_conn_id = webengage_conn_id

    def get_settings(self, **overrides: Any) -> Settings:
        """The validated settings (raises :class:`etl.errors.ConfigError` naming a bad or missing one)."""
        return self._settings(fallback_to_env=True, **overrides)

    def get_conn(self) -> Settings:
        return self.get_settings()

    def _settings(self, *, fallback_to_env: bool, **overrides: Any) -> Settings:
        conn_id = self.webengage_conn_id
        try:
            conn = self.get_connection(conn_id)
        except AirflowNotFoundException:
            if not fallback_to_env:
                raise
            log.info(
                "WebEngage settings: no Airflow connection %r; using the WEBENGAGE_* environment variables", conn_id
            )
            return Settings.from_env(**overrides)
        extra = {
            key.removeprefix(_PREFIX): value
            for key, value in dict(conn.extra_dejson or {}).items()
            if value is not None and value != ""  # the form stores fields left empty as null or ""
        }
        environment = env_values()
        filled = sorted(name for name in environment if name not in ACCOUNT_SETTINGS and name not in extra)
        ignored = sorted(env_var_for(name) for name in environment if name in ACCOUNT_SETTINGS)
        extra.update({name: environment[name] for name in filled})
        source = (
            f"the environment variable {conn_env_var(conn_id)} (Airflow reads it before the UI's connections: "
            "a connection of this id created in the UI is not used while it is set)"
            if os.environ.get(conn_env_var(conn_id))
            else "a secrets backend or the connections stored in Airflow (UI)"
        )
        log.info(
            "WebEngage settings: connection %r (type %s) from %s; from the environment: %s%s",
            conn_id,
            conn.conn_type,
            source,
            ", ".join(filled) or "nothing",
            f"; ignored in the environment (the connection's account wins): {', '.join(ignored)}" if ignored else "",
        )
        return Settings.from_connection(
            host=conn.host, login=conn.login, password=conn.password, extra=extra, **overrides
        )

    def test_connection(self) -> tuple[bool, str]:
        """Airflow's *Test* button (and ``POST /api/v2/connections/test``): the settings are valid, the host
        is reachable and WebEngage accepts the license code and key, checked with a call that carries no data.
        Never shows the API key."""
        try:
            settings = self._settings(fallback_to_env=False)
        except Exception as exc:  # ConfigError, or no such connection: both are the answer, not a crash
            return False, airflow_wording(f"{type(exc).__name__}: {exc}")
        try:
            ok, message = check_connection(settings)
        except Exception as exc:  # e.g. an unreachable shared-budget database: still an answer for the form
            return False, airflow_wording(f"{type(exc).__name__}: {exc}")
        return ok, airflow_wording(message)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The form's standard fields (Airflow before 3.2 asks the hook; later ones read the provider info)."""
        return {key.replace("-", "_"): value for key, value in UI_FIELD_BEHAVIOUR.items()}

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """The form's own fields for Airflow before 3.2 (WTForms, present there); later versions read
        ``conn-fields`` from the provider info and never call this."""
        try:
            from wtforms import StringField
        except ImportError:  # Airflow 3.2+: no WTForms, and no need
            return {}
        return {
            name: StringField(
                spec["label"], description=spec.get("description", ""), default=spec["schema"].get("default")
            )
            for name, spec in CONN_FIELDS.items()
        }
