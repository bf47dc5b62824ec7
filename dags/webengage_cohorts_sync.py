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

**Trigger by hand** with `dry_run` (send nothing) or `override_guard`. Connection: `webengage_default`.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import Asset, Param, dag, task
from webengage_common.airflow_settings import AS_OF_PARAM
from webengage_common.defaults import task_defaults

from etl.transform.cohorts import configured_names

COHORTS_ASSET = Asset("webengage://cohorts")
# Read at parse time from the TOML (WEBENGAGE_COHORTS_CONFIG or mappings/cohorts.toml): no DB, no HTTP.
DYNAMIC = configured_names(mode="dynamic")


@dag(
    default_args=task_defaults(),
    dag_id="webengage_cohorts_sync",
    schedule=os.environ.get("WEBENGAGE_COHORTS_SCHEDULE", "0 */2 * * *"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["webengage", "reverse-etl", "cohorts"],
    doc_md=__doc__,
    params={
        "dry_run": Param(False, type="boolean", description="Compute and report; send nothing."),
        "override_guard": Param(False, type="boolean", description="Let syncs through that the guard would stop."),
        "as_of": AS_OF_PARAM,
    },
)
def webengage_cohorts_sync() -> None:
    @task(
        task_id="sync_cohort",
        multiple_outputs=False,
        outlets=[COHORTS_ASSET],
        max_active_tis_per_dagrun=1,
        map_index_template="{{ task.op_kwargs['cohort'] }}",
    )
    def sync_cohort(cohort: str, **context: object) -> dict[str, object]:
        from webengage_common.airflow_settings import run_as_of, settings_from_airflow

        from etl.pipelines import cohorts

        params = context["params"]
        assert isinstance(params, dict) or hasattr(params, "get")
        summary = cohorts.export(
            settings_from_airflow(),
            cohort=cohort,
            run_id=str(context["run_id"]),
            as_of=run_as_of(context),
            dry_run=bool(params.get("dry_run", False)),
            override_guard=bool(params.get("override_guard", False)),
        )
        print(cohorts.render_summary(summary))
        return summary

    @task(task_id="retire_removed_cohorts", multiple_outputs=False, outlets=[COHORTS_ASSET])
    def retire_removed_cohorts(**context: object) -> list[dict[str, object]]:
        from webengage_common.airflow_settings import settings_from_airflow

        from etl.pipelines import cohorts

        params = context["params"]
        assert isinstance(params, dict) or hasattr(params, "get")
        if params.get("dry_run", False):
            return []
        summaries = cohorts.retire_removed(
            settings_from_airflow(), run_id=str(context["run_id"]),
            override_guard=bool(params.get("override_guard", False)),
        )  # fmt: skip
        for summary in summaries:
            print(cohorts.render_summary(summary))
        return summaries

    sync_cohort.expand(cohort=DYNAMIC)
    retire_removed_cohorts()


webengage_cohorts_sync()
