"""
### WebEngage webhooks → warehouse (hourly)

Loads the webhook deliveries that `webengage-sync webhooks serve` landed (WebEngage's campaign events,
custom events and journey changes) into the warehouse table **`webengage_events`**, and undecodable ones
into `webengage_webhook_quarantine` with their reason.

* **Exactly once, incremental**: the loader reads each landing segment from its checkpoint
  (`we_webhook_segments`), inserts a chunk and advances the checkpoint in one transaction; a delivery
  landed twice (WebEngage redelivers until it gets a 200) has one unique `request_id`, so it is stored once.
  Re-runs, retries and manual triggers are always safe and never need a data interval.
* **Where it reads**: `WEBENGAGE_WEBHOOK_DIR` (the receiver's landing directory: the worker must see it,
  e.g. the same host or a shared volume) and writes `WAREHOUSE_URL`, both from the worker's environment.
* Fully loaded, closed segments are deleted after `WEBENGAGE_WEBHOOK_RETAIN_HOURS` (default 24).

The task's XCom `return_value` is the load summary (lines read, events loaded, duplicates, quarantined).
Each successful run publishes the Asset `webengage://webhooks` (the table `webengage_events` was loaded):
schedule your own DAG on it to process what arrived.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import dag, task
from webengage_common.assets import WEBHOOKS_ASSET, counts_extra
from webengage_common.defaults import schedule, task_defaults
from webengage_common.failures import fail_fast
from webengage_common.results import flat, log_block

SCHEDULE = schedule("WEBENGAGE_WEBHOOKS_SCHEDULE", "15 * * * *")


@dag(
    default_args=task_defaults(),
    dag_id="webengage_webhooks_load",
    description="Load WebEngage webhook deliveries into the warehouse table webengage_events.",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,  # every run loads everything landed so far: nothing to catch up
    max_active_runs=1,
    tags=["webengage", "webhooks"],
    doc_md=__doc__,
)
def webengage_webhooks_load() -> None:
    @task(task_id="load_webhooks", multiple_outputs=False, outlets=[WEBHOOKS_ASSET], doc_md=__doc__)
    @fail_fast
    def load_webhooks(outlet_events: Any = None) -> dict[str, Any]:
        from etl.webhooks.config import WebhookSettings
        from etl.webhooks.loader import render, run

        summary = run(WebhookSettings.from_env(require_auth=False))
        log_block(render(summary))
        outlet_events[WEBHOOKS_ASSET].extra = counts_extra(flat(summary))
        return flat(summary)

    load_webhooks()


webengage_webhooks_load()
