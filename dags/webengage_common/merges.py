"""The merges task of ``webengage_events_sync``: anonymous -> known merges from identify data, skipped (not
failed) while the events mapping's ``[merges]`` is off."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowSkipException

if TYPE_CHECKING:  # the DAG file imports this module at parse time: no settings machinery then
    from etl.config import Settings

#: Shown on the task in the Airflow UI.
DOC = """
### Merge anonymous visitors into known users

Each new (anonymous_id, user_id) pair of the identify data (`[merges]` in the events mapping: Segment
`identifies` or a query) goes to WebEngage once, as a `/users` call carrying both ids, on the `/users`
budget; WebEngage then moves the anonymous profile and its pre-login events to the user. Journaled before
sending (`we_merged_pairs`), so a retry or a killed worker never merges twice. Skipped while `[merges]` is
off. The task log shows the summary block; the XCom `return_value` is the flat summary (`merged`,
`already_merged`, `shared_devices`, rejects).
"""


def run_merges(settings: Settings, *, run_id: str, dry_run: bool) -> dict[str, Any]:
    from etl.pipelines import merges
    from webengage_common.results import finish

    if not merges.load_config(settings).enabled:
        raise AirflowSkipException("merges are off: set [merges] enabled = true in the events mapping")
    # The block logged inside the task and the flat summary as the XCom, as every WebEngage task.
    return finish(merges.run(settings, run_id=run_id, dry_run=dry_run))
