"""
### WebEngage cohort export (one-time, from the trigger form)

Exports **one cohort** from `mappings/cohorts.toml` to WebEngage now, like Mixpanel's *Export to
WebEngage → one-time sync*: every member gets the cohort's boolean user attribute set to `true`, users
who were in it at the previous export and have left get `false`, and nobody else is touched. Exporting a
cohort again overwrites the previous export.

**Trigger DAG w/ config** shows a form:

* `cohort` — which cohort (the list comes from the cohort config);
* `dry_run` — compute and report, send nothing;
* `emit_events` — also send `Cohort Entered` / `Cohort Exited` events for this export (cohorts with
  `events = true` in the config always send them);
* `override_guard` — let an export through that would set more than the cohort's `max_exit_share` of its
  members to `false` (or that finds no member at all); otherwise such a run stops before sending;
* `as_of` — the instant the cohort is computed at (bound as the query's `:as_of`, e.g. "the 30 days before
  it"); empty means the time the run was triggered.

The task's XCom `return_value` is the summary (entered, exited, unchanged, excluded, accepted, rejected,
requests); the log ends with a readable block. Connection: `webengage_default` (see README).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Asset, AssetAlias, Param, dag, task
from webengage_common.airflow_settings import AS_OF_PARAM
from webengage_common.defaults import task_defaults

from etl.transform.cohorts import configured_names

COHORTS_ASSET = Asset("webengage://cohorts")
#: Each export also publishes webengage://cohorts/<name> through this alias.
COHORT_ALIAS = AssetAlias("webengage-cohort")
# Read at parse time from the TOML (WEBENGAGE_COHORTS_CONFIG or mappings/cohorts.toml): no DB, no HTTP.
NAMES = configured_names()

_cohort_param = (
    Param(NAMES[0], type="string", enum=NAMES, title="Cohort", description="The cohort to export now.")
    if NAMES
    else Param("", type="string", title="Cohort", description="No cohort is configured (mappings/cohorts.toml).")
)


@dag(
    default_args=task_defaults(),
    dag_id="webengage_cohort_export",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["webengage", "reverse-etl", "cohorts"],
    doc_md=__doc__,
    params={
        "cohort": _cohort_param,
        "dry_run": Param(False, type="boolean", title="Dry run", description="Compute and report; send nothing."),
        "emit_events": Param(
            False,
            type="boolean",
            title="Emit events",
            description="Also send Cohort Entered / Cohort Exited events (cohorts configured with events always do).",
        ),
        "override_guard": Param(
            False,
            type="boolean",
            title="Override guard",
            description="Send even if more members would leave than the cohort's max_exit_share allows.",
        ),
        "as_of": AS_OF_PARAM,
    },
)
def webengage_cohort_export() -> None:
    @task(task_id="export_cohort", multiple_outputs=False, outlets=[COHORTS_ASSET, COHORT_ALIAS])
    def export_cohort(**context: object) -> dict[str, object]:
        from webengage_common.airflow_settings import run_as_of, settings_from_airflow

        from etl.pipelines import cohorts

        params = context["params"]
        assert isinstance(params, dict) or hasattr(params, "get")
        cohort = str(params.get("cohort", ""))
        summary = cohorts.export(
            settings_from_airflow(),
            cohort=cohort,
            run_id=str(context["run_id"]),
            as_of=run_as_of(context),
            dry_run=bool(params.get("dry_run", False)),
            emit_events=True if params.get("emit_events") else None,
            override_guard=bool(params.get("override_guard", False)),
        )
        print(cohorts.render_summary(summary))
        if not summary["dry_run"]:
            context["outlet_events"][COHORT_ALIAS].add(Asset(f"webengage://cohorts/{cohort}"))
        return summary

    export_cohort()


webengage_cohort_export()
