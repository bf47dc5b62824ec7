"""
### WebEngage cohort export (one-time, from the trigger form)

Exports **one cohort** from `mappings/cohorts.toml` to WebEngage now, like Mixpanel's *Export to
WebEngage → one-time sync*: every member gets the cohort's boolean user attribute set to `true`, users
who were in it at the previous export and have left get `false`, and nobody else is touched. Exporting a
cohort again overwrites the previous export.

**Trigger** (in the Airflow 3 UI: the DAG's *Trigger* button) shows a form:

* `cohort` — which cohort (the list comes from the cohort config);
* `dry_run` — compute and report, send nothing;
* `emit_events` — also send `Cohort Entered` / `Cohort Exited` events for this export (cohorts with
  `events = true` in the config always send them);
* `override_guard` — let an export through that would set more than the cohort's `max_exit_share` of its
  members to `false` (or that finds no member at all); otherwise such a run stops before sending;
* `as_of` — the instant the cohort is computed at (bound as the query's `:as_of`, e.g. "the 30 days before
  it"); empty means the time the run was triggered.

**Where the counts show**: the task log opens its summary block with the counts (`== DRY RUN ==` first for a
dry run); the XCom `return_value` is the flat summary (members, entered, exited, unchanged, excluded,
accepted, rejected, requests, `events.sent`, ...); an export that could send publishes the Assets
`webengage://cohorts` and `webengage://cohorts/<name>` with those counts in the event's extra (a dry run
publishes none). Connection: `webengage_default` (see README, "Where the connection comes from").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import dag, task
from webengage_common.assets import COHORT_ALIAS
from webengage_common.cohort_runs import export_from_params
from webengage_common.defaults import task_defaults
from webengage_common.failures import fail_fast
from webengage_common.params import cohort_export_params, flag
from webengage_common.results import finish_cohort

from etl.mappings.cohorts import configured_cohorts

# Read at parse time from the TOML (WEBENGAGE_COHORTS_CONFIG or mappings/cohorts.toml): no DB, no HTTP.
COHORTS = configured_cohorts()


@dag(
    default_args=task_defaults(),
    dag_id="webengage_cohort_export",
    description="Export one cohort to WebEngage now (a boolean attribute; leavers get false).",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["webengage", "reverse-etl", "cohorts"],
    doc_md=__doc__,
    params=cohort_export_params(COHORTS),
)
def webengage_cohort_export() -> None:
    @task(task_id="export_cohort", multiple_outputs=False, outlets=[COHORT_ALIAS])
    @fail_fast
    def export_cohort(
        params: dict[str, Any],
        run_id: str,
        dag_run: Any,
        outlet_events: Any,
        data_interval_end: datetime | None = None,
    ) -> dict[str, Any]:
        cohort, emit = str(params.get("cohort", "")), flag(params, "emit_events") or None
        summary = export_from_params(cohort, params, run_id, dag_run, data_interval_end, emit_events=emit)
        return finish_cohort(summary, outlet_events)

    export_cohort()


webengage_cohort_export()
