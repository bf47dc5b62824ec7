"""The trigger-form params of the WebEngage DAGs, and typed reading of their values in a task.

Tasks get ``params``, ``run_id``, ``dag_run`` and the data interval by TaskFlow's context injection (arguments
named like context keys); the readers here take those values, not the whole context.

Factories, not module constants: each DAG gets its own :class:`Param` objects (``dag.test(run_conf=...)`` and
``ParamsDict`` resolve values into the Param objects in place, so a shared one would carry one run's conf into
another DAG parsed in the same process).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from airflow.sdk import Param

from etl.instants import parse_instant


def flag_param(description: str, *, title: str) -> Param:
    """A boolean param, off by default, with the title the trigger form shows."""
    return Param(False, type="boolean", title=title, description=description)


def dry_run_param() -> Param:
    return flag_param(
        "Compute and report what would be sent; send nothing, change no state, publish no asset event.",
        title="Dry run",
    )


def as_of_param() -> Param:
    """The ``as_of`` param of the DAGs whose queries bind ``:as_of`` (read with :func:`run_as_of`)."""
    return Param(
        None,
        type=["null", "string"],
        title="As of",
        description="The instant the queries are computed at (ISO 8601, e.g. 2026-11-30T00:00:00Z; UTC when no "
        "offset). Empty: the end of the run's data interval, else the time the run was triggered.",
    )


def cohort_param(cohorts: Mapping[str, str]) -> Param:
    """A choice of one configured cohort: a drop-down of the names, each shown with its description from the
    cohorts file (``values_display``); a free, empty field if there is none."""
    if not cohorts:
        return Param("", type="string", title="Cohort", description="No cohort is configured (mappings/cohorts.toml).")
    names = list(cohorts)
    shown = {name: f"{name} — {text}" if text else name for name, text in cohorts.items()}
    return Param(
        names[0],
        type="string",
        enum=names,
        values_display=shown,
        title="Cohort",
        description="The cohort to export now (from the cohorts file, WEBENGAGE_COHORTS_CONFIG).",
    )


def override_guard_param() -> Param:
    return flag_param(
        "Send even if more members would leave than the cohort's max_exit_share allows (or none is found).",
        title="Override guard",
    )


def cohort_sync_params() -> dict[str, Param]:
    """The dynamic cohort sync's trigger form: dry run, guard override, as-of."""
    return {"dry_run": dry_run_param(), "override_guard": override_guard_param(), "as_of": as_of_param()}


def cohort_export_params(cohorts: Mapping[str, str]) -> dict[str, Param]:
    """The one-time cohort export's trigger form (``cohorts``: name -> description)."""
    return {
        "cohort": cohort_param(cohorts),
        "dry_run": dry_run_param(),
        "emit_events": flag_param(
            "Also send Cohort Entered / Cohort Exited events (cohorts configured with events always do).",
            title="Emit events",
        ),
        "override_guard": override_guard_param(),
        "as_of": as_of_param(),
    }


def users_params() -> dict[str, Param]:
    """The profile sync's trigger form."""
    return {
        "dry_run": dry_run_param(),
        "full_refresh": flag_param("Re-send every user, changed or not.", title="Full refresh"),
        "override_erasure_guard": flag_param(
            "Send the erasures even when more than max_erasure_share of the synced users look deleted.",
            title="Override the erasure guard",
        ),
    }


def flag(params: Mapping[str, Any], name: str) -> bool:
    """A boolean param's value in a task (False when absent)."""
    return bool(params.get(name, False))


def run_as_of(params: Mapping[str, Any], data_interval_end: datetime | None, dag_run: Any) -> datetime:
    """The run's one clock reading, bound as the queries' ``:as_of``: the ``as_of`` param when given, else the
    end of a scheduled run's data interval, else the time the run was triggered. Fixed per run, so a retried
    task computes the same result."""
    given = (params or {}).get("as_of")
    if given:
        try:
            return parse_instant(str(given))
        except ValueError:
            raise ValueError(f"param as_of: not an ISO 8601 date-time: {given!r}") from None
    for value in (data_interval_end, getattr(dag_run, "run_after", None)):
        if isinstance(value, datetime):
            return value
    raise RuntimeError("the run has neither an as_of param, a data interval nor a trigger time")
