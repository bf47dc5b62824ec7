"""
### WebEngage profile sync (nightly)

Reads users from the warehouse (`mappings/users.toml` says which query and columns), turns them into
WebEngage profiles, and sends **only the users that changed since WebEngage last accepted them**
through `/bulk-users` (25 per call, paced to the account's rate limit). Progress is checkpointed after
every accepted batch, so a retry or a re-run resends nothing that was accepted.

**Trigger by hand**: *Trigger DAG* with `dry_run` to see what would be sent (nothing is sent), or
`full_refresh` to re-send every user. The task's XCom `return_value` is the run summary; the log ends
with a readable summary block. Connection: `webengage_default` (see README).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime

from airflow.sdk import Asset, Param, dag, task
from webengage_common.defaults import task_defaults

USERS_ASSET = Asset("webengage://users")


@dag(
    default_args=task_defaults(),
    dag_id="webengage_users_sync",
    schedule=os.environ.get("WEBENGAGE_USERS_SCHEDULE", "0 2 * * *"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["webengage", "reverse-etl"],
    doc_md=__doc__,
    params={
        "dry_run": Param(False, type="boolean", description="Compute and report; send nothing."),
        "full_refresh": Param(False, type="boolean", description="Re-send every user, changed or not."),
    },
)
def webengage_users_sync() -> None:
    @task(task_id="sync_users", multiple_outputs=False, outlets=[USERS_ASSET], doc_md=__doc__)
    def sync_users(**context: object) -> dict[str, object]:
        from webengage_common.airflow_settings import run_as_of, settings_from_airflow, window_of

        from etl.pipelines import users
        from etl.plan import eta_warning
        from etl.report import render

        params = context["params"]
        assert isinstance(params, dict) or hasattr(params, "get")
        settings = settings_from_airflow()
        if not params.get("dry_run", False):
            warning = eta_warning(settings, as_of=run_as_of(context))
            if warning:
                logging.getLogger("webengage").warning("%s", warning)
        summary = users.run(
            settings,
            run_id=str(context["run_id"]),
            window=window_of(context),
            dry_run=bool(params.get("dry_run", False)),
            full_refresh=bool(params.get("full_refresh", False)),
        )
        print(render(summary))
        return summary

    sync_users()


webengage_users_sync()
