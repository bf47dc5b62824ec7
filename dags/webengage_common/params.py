"""The trigger-form params of the WebEngage DAGs, and typed reading of their values in a task.

Tasks get ``params``, ``run_id``, ``dag_run`` and the data interval by TaskFlow's context injection (arguments
named like context keys); the readers here take those values, not the whole context.

Factories, not module constants: each DAG gets its own :class:`Param` objects (``dag.test(run_conf=...)`` and
``ParamsDict`` resolve values into the Param objects in place, so a shared one would carry one run's conf into
another DAG parsed in the same process).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from airflow.sdk import Param

from etl.instants import parse_instant


def flag_param(description: str, *, title: str | None = None) -> Param:
    """A boolean param, off by default."""
    return Param(False, type="boolean", description=description, **({"title": title} if title else {}))


def dry_run_param(*, title: str | None = None) -> Param:
    return flag_param("Compute and report; send nothing.", title=title)


def as_of_param() -> Param:
    """The ``as_of`` param of the DAGs whose queries bind ``:as_of`` (read with :func:`run_as_of`)."""
    return Param(
        None,
        type=["null", "string"],
        title="As of",
        description="The instant the queries are computed at (ISO 8601, e.g. 2026-11-30T00:00:00Z; UTC when no "
        "offset). Empty: the end of the run's data interval, else the time the run was triggered.",
    )


def cohort_param(names: Sequence[str]) -> Param:
    """A choice of one configured cohort (a drop-down of ``names``; a free, empty field if there is none)."""
    if names:
        return Param(names[0], type="string", enum=list(names), title="Cohort", description="The cohort to export now.")
    return Param("", type="string", title="Cohort", description="No cohort is configured (mappings/cohorts.toml).")


def cohort_sync_params() -> dict[str, Param]:
    """The dynamic cohort sync's trigger form: dry run, guard override, as-of."""
    return {
        "dry_run": dry_run_param(),
        "override_guard": flag_param("Let syncs through that the guard would stop."),
        "as_of": as_of_param(),
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
