"""``settings_from_airflow()``: the sync's settings from the Airflow connection, through
:class:`~webengage_common.hook.WebEngageHook` (kept for callers of the pre-hook helper).

The trigger-form params and the run's clock (``run_as_of``) are in :mod:`webengage_common.params`.
"""

from __future__ import annotations

from typing import Any

from etl.config import Settings
from webengage_common.hook import WebEngageHook

CONN_ID = WebEngageHook.default_conn_name


def settings_from_airflow(conn_id: str = CONN_ID, **overrides: Any) -> Settings:
    """The sync's settings from the Airflow connection ``conn_id`` (see :class:`WebEngageHook`)."""
    return WebEngageHook(conn_id).get_settings(**overrides)
