"""
### WebEngage event sync (hourly)

Sends the warehouse events of each data interval to WebEngage **exactly once** (`mappings/events.toml`
says which query or Segment schema to read and how names and properties map). The window read is the
run's data interval `[start, end)` widened by the mapping's `lookback` (default 2 h) for late rows.

* **Exactly once**: a ledger in the state database remembers every event WebEngage accepted; re-runs,
  retries, catch-up and back-fills of any interval skip them. Each request is journaled (outbox) before it
  is sent and replayed with the same `x-request-id` after a crash, so WebEngage de-duplicates it.
* **Back-fill**: `airflow backfill create --dag-id webengage_events_sync --from-date ... --to-date ...`
  (runs go one at a time: `max_active_runs=1`). `WEBENGAGE_EVENTS_CATCHUP=true` makes the scheduler
  catch up missed intervals by itself.
* **Trigger by hand** with `dry_run` to see what would be sent. A manual run covers the last complete hour.
* **Ordering with `webengage_users_sync`**: none is required. WebEngage accepts events for a `userId`
  it does not know yet and attaches them when the profile arrives. Where journeys must see the profile
  first, run the profile sync before the hour's events (e.g. schedule it at `55 * * * *`, or consume its
  Asset `webengage://users` in a DAG of your own that triggers this one).

* **Merges**: the task `merge_users` (after `sync_events`, whatever its outcome) sends each new
  anonymous -> known pair of the identify data once (`[merges]` in the events mapping; skipped while off),
  so pre-login events end on the known profile.

The task log shows the summary block (`== DRY RUN ==` first for a dry run); the XCom `return_value` is the
flat summary (`already_sent`, `accepted`, `rejected_by_reason.<reason>`, ...). Each successful run that could
send publishes the Asset `webengage://events` with those counts in the event's extra; a dry run publishes none.
Connection: `webengage_default` (see README).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import CronDataIntervalTimetable, dag, task
from webengage_common.assets import EVENTS_ALIAS, EVENTS_ASSET
from webengage_common.defaults import schedule, task_defaults
from webengage_common.failures import fail_fast
from webengage_common.hook import WebEngageHook
from webengage_common.merges import DOC as MERGES_DOC
from webengage_common.params import dry_run_param, flag
from webengage_common.results import finish

SCHEDULE = schedule("WEBENGAGE_EVENTS_SCHEDULE", "0 * * * *")
CATCHUP = os.environ.get("WEBENGAGE_EVENTS_CATCHUP", "false").strip().lower() in ("1", "true", "yes", "on")


@dag(
    default_args=task_defaults(),
    dag_id="webengage_events_sync",
    description="Send each hour's warehouse events to WebEngage, exactly once.",
    # A data-interval timetable: each run covers [previous tick, this tick). (A plain cron string makes
    # trigger-style runs whose interval is empty.)
    schedule=CronDataIntervalTimetable(SCHEDULE, timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=CATCHUP,
    max_active_runs=1,
    tags=["webengage", "reverse-etl"],
    doc_md=__doc__,
    params={"dry_run": dry_run_param()},
)
def webengage_events_sync() -> None:
    @task(task_id="sync_events", multiple_outputs=False, outlets=[EVENTS_ALIAS], doc_md=__doc__)
    @fail_fast
    def sync_events(
        params: dict[str, Any],
        run_id: str,
        data_interval_start: datetime | None = None,
        data_interval_end: datetime | None = None,
        outlet_events: Any = None,
    ) -> dict[str, Any]:
        from etl.pipelines import events

        summary = events.run(
            WebEngageHook().get_settings(),
            run_id=run_id,
            window=(data_interval_start, data_interval_end),
            dry_run=flag(params, "dry_run"),
        )
        return finish(summary, outlet_events=outlet_events, alias=EVENTS_ALIAS, assets=[EVENTS_ASSET])

    # After the event sync whatever its outcome: one writer at a time on a DuckDB state file.
    @task(task_id="merge_users", multiple_outputs=False, doc_md=MERGES_DOC, trigger_rule="all_done")
    @fail_fast
    def merge_users(params: dict[str, Any], run_id: str) -> dict[str, Any]:
        from webengage_common.merges import run_merges

        return run_merges(WebEngageHook().get_settings(), run_id=run_id, dry_run=flag(params, "dry_run"))

    sync_events() >> merge_users()


webengage_events_sync()
