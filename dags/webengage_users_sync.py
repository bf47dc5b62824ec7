"""
### WebEngage profile sync (nightly)

Reads users from the warehouse (`mappings/users.toml` says which query and columns), turns them into
WebEngage profiles, and sends **only the users that changed since WebEngage last accepted them**
through `/bulk-users` (25 per call, paced to the account's rate limit). Progress is checkpointed after
every accepted batch, so a retry or a re-run resends nothing that was accepted.

**Trigger by hand**: the DAG's *Trigger* button with `dry_run` to see what would be sent (nothing is sent), or
`full_refresh` to re-send every user. The task log shows the summary block (`== DRY RUN ==` first for a dry
run); the XCom `return_value` is the flat summary; a run that could send publishes the Asset
`webengage://users` with the counts in the event's extra (a dry run publishes none, so DAGs scheduled on it
do not run). A run with nothing to send still checks the API key with one call that carries no data.
Connection: `webengage_default` (see README).

**Erasures** (task `erase_deleted_users`, after the sync): with `deletions = "erase"` in the users mapping,
each user synced before and deleted in the warehouse gets one GDPR erasure request (100/min), exactly once;
pending requests are checked on later runs. More than `max_erasure_share` (1 %) of the synced users deleted
at once stops the task before anything is sent: check the source, then trigger with `override_erasure_guard`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from airflow.sdk import dag, task
from webengage_common.assets import ERASURES_ALIAS, USERS_ALIAS, USERS_ASSET
from webengage_common.defaults import schedule, task_defaults
from webengage_common.erasures import erase_deleted_users
from webengage_common.failures import fail_fast
from webengage_common.hook import WebEngageHook
from webengage_common.params import flag, run_as_of, users_params
from webengage_common.results import finish


@dag(
    default_args=task_defaults(),
    dag_id="webengage_users_sync",
    description="Send new and changed warehouse users to WebEngage profiles (nightly).",
    schedule=schedule("WEBENGAGE_USERS_SCHEDULE", "0 2 * * *"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["webengage", "reverse-etl"],
    doc_md=__doc__,
    params=users_params(),
)
def webengage_users_sync() -> None:
    @task(task_id="sync_users", multiple_outputs=False, outlets=[USERS_ALIAS], doc_md=__doc__)
    @fail_fast
    def sync_users(
        params: dict[str, Any],
        run_id: str,
        dag_run: Any,
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        outlet_events: Any = None,
    ) -> dict[str, Any]:
        from etl.pipelines import users
        from etl.plan import eta_warning

        settings = WebEngageHook().get_settings()
        if not flag(params, "dry_run"):
            warning = eta_warning(settings, as_of=run_as_of(params, data_interval_end, dag_run))
            if warning:
                logging.getLogger("webengage").warning("%s", warning)
        summary = users.run(
            settings,
            run_id=run_id,
            window=(data_interval_start, data_interval_end),
            dry_run=flag(params, "dry_run"),
            full_refresh=flag(params, "full_refresh"),
        )
        return finish(summary, outlet_events=outlet_events, alias=USERS_ALIAS, assets=[USERS_ASSET])

    erase = task(task_id="erase_deleted_users", outlets=[ERASURES_ALIAS])(fail_fast(erase_deleted_users))
    sync_users() >> erase()


webengage_users_sync()
