"""A cohort export from a run's trigger-form params, shared by the one-time export and the dynamic sync."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from webengage_common.hook import WebEngageHook
from webengage_common.params import flag, run_as_of


def export_from_params(
    cohort: str, params: dict[str, Any], run_id: str, dag_run: Any, data_interval_end: datetime | None, **options: Any
) -> dict[str, Any]:
    """Export ``cohort`` with the run's ``dry_run``, ``override_guard`` and ``as_of`` params (``options``:
    further arguments of :func:`etl.pipelines.cohorts.export`, e.g. ``emit_events``)."""
    from etl.pipelines import cohorts

    return cohorts.export(
        WebEngageHook().get_settings(),
        cohort=cohort,
        run_id=run_id,
        as_of=run_as_of(params, data_interval_end, dag_run),
        dry_run=flag(params, "dry_run"),
        override_guard=flag(params, "override_guard"),
        **options,
    )
