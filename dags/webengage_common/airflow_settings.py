"""Airflow connection ``webengage_default`` -> :class:`etl.config.Settings`.

host = API base URL or data-centre name (global | in | ksa), login = license code, password = REST API
key, extras = any other setting by name (e.g. ``{"bulk_users_rpm": 1000, "warehouse_url": "..."}``).
``WAREHOUSE_URL`` / ``STATE_URL`` / ``WEBENGAGE_*`` variables in the worker's environment fill what the
connection leaves out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from airflow.sdk import BaseHook, Param

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


#: The ``as_of`` param of the DAGs whose queries bind ``:as_of`` (shown in the trigger form).
AS_OF_PARAM = Param(
    None,
    type=["null", "string"],
    title="As of",
    description="The instant the queries are computed at (ISO 8601, e.g. 2026-11-30T00:00:00Z; UTC when no "
    "offset). Empty: the end of the run's data interval, else the time the run was triggered.",
)


def run_as_of(context: dict[str, Any]) -> datetime:
    """The run's one clock reading, bound as the queries' ``:as_of``: the ``as_of`` param when given, else the
    end of a scheduled run's data interval, else the time the run was triggered. Fixed per run, so a retried
    task computes the same result."""
    given = (context.get("params") or {}).get("as_of")
    if given:
        try:
            parsed = datetime.fromisoformat(str(given).strip())
        except ValueError:
            raise ValueError(f"param as_of: not an ISO 8601 date-time: {given!r}") from None
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    for value in (context.get("data_interval_end"), getattr(context.get("dag_run"), "run_after", None)):
        if isinstance(value, datetime):
            return value
    raise RuntimeError("the run has neither an as_of param, a data interval nor a trigger time")
