"""The WebEngage page for Airflow loaded from a plugins folder (``make airflow`` points
``AIRFLOW__CORE__PLUGINS_FOLDER`` here). An installed ``webengage-sync`` registers the same plugin through its
``airflow.plugins`` entry point; then this file stays empty, so Airflow does not load it twice (a second
plugin of the same name is reported as a plugin import error)."""

from __future__ import annotations

from importlib.metadata import entry_points

if not any(ep.value.startswith("etl.ui.plugin") for ep in entry_points(group="airflow.plugins")):
    from etl.ui.plugin import WebEngagePlugin

    __all__ = ["WebEngagePlugin"]
