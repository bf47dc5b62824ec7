"""
### WebEngage dynamic cohorts (every 2 hours)

Every cohort with `mode = "dynamic"` in `mappings/cohorts.toml` is re-exported every two hours (schedule:
`WEBENGAGE_COHORTS_SCHEDULE`, default `0 */2 * * *`), like Mixpanel's dynamic sync: users who entered get
the cohort attribute `true`, users who left get `false`, unchanged users are not sent.

One **mapped task per cohort** (`sync_cohort [name]`): a failing cohort (e.g. stopped by the blast-radius
guard) fails alone; the others still sync. Each returns its summary: entered, exited, unchanged, excluded,
accepted, rejected, requests. They run one at a time: they share the account's request budget.

`retire_removed_cohorts` retires cohorts that were exported before but are no longer in the config
(their last members get `false`, their attribute slot is freed). A config listing no cohort at all is
treated as a mistake and retires nothing unless triggered with `override_guard`.

**Trigger by hand** with `dry_run` (send nothing, publish no Asset event) or `override_guard`. Each cohort's
counts are in its task log (summary block), its XCom and the extra of its `webengage://cohorts` /
`webengage://cohorts/<name>` Asset events. Connection: `webengage_default`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import dag, task
from webengage_common.assets import COHORT_ALIAS
from webengage_common.cohort_runs import export_from_params
from webengage_common.defaults import schedule, task_defaults
from webengage_common.failures import fail_fast
from webengage_common.hook import WebEngageHook
from webengage_common.params import cohort_sync_params, flag
from webengage_common.results import finish_cohort

from etl.mappings.cohorts import configured_names

# Read at parse time from the TOML (WEBENGAGE_COHORTS_CONFIG or mappings/cohorts.toml): no DB, no HTTP.
DYNAMIC = configured_names(mode="dynamic")


@dag(
    default_args=task_defaults(),
    dag_id="webengage_cohorts_sync",
    description="Re-export every dynamic cohort to WebEngage (every 2 hours).",
    schedule=schedule("WEBENGAGE_COHORTS_SCHEDULE", "0 */2 * * *"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["webengage", "reverse-etl", "cohorts"],
    doc_md=__doc__,
    params=cohort_sync_params(),
)
def webengage_cohorts_sync() -> None:
    @task(
        task_id="sync_cohort",
        multiple_outputs=False,
        outlets=[COHORT_ALIAS],
        max_active_tis_per_dagrun=1,
        map_index_template="{{ task.op_kwargs['cohort'] }}",
    )
    @fail_fast
    def sync_cohort(
        cohort: str,
        params: dict[str, Any],
        run_id: str,
        dag_run: Any,
        outlet_events: Any,
        data_interval_end: datetime | None = None,
    ) -> dict[str, Any]:
        summary = export_from_params(cohort, params, run_id, dag_run, data_interval_end)
        return finish_cohort(summary, outlet_events)

    @task(task_id="retire_removed_cohorts", multiple_outputs=False, outlets=[COHORT_ALIAS])
    @fail_fast
    def retire_removed_cohorts(params: dict[str, Any], run_id: str, outlet_events: Any) -> list[dict[str, Any]]:
        from etl.pipelines import cohorts

        if flag(params, "dry_run"):
            return []
        settings = WebEngageHook().get_settings()
        summaries = cohorts.retire_removed(settings, run_id=run_id, override_guard=flag(params, "override_guard"))
        return [finish_cohort(s, outlet_events) for s in summaries]

    sync_cohort.expand(cohort=DYNAMIC)
    retire_removed_cohorts()


webengage_cohorts_sync()
