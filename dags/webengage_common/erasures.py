"""The erasure task of ``webengage_users_sync`` (kept here so the DAG file stays a thin wrapper): GDPR erasure
requests for users deleted in the warehouse, when the users mapping says ``deletions = "erase"``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import Param

from webengage_common.assets import ERASURES_ASSET, counts_extra
from webengage_common.hook import WebEngageHook
from webengage_common.params import flag, flag_param, run_as_of


def erasure_guard_param() -> Param:
    return flag_param("Send the erasures even when more than max_erasure_share of the synced users look deleted.")


def erase_deleted_users(
    params: dict[str, Any],
    run_id: str,
    dag_run: Any,
    data_interval_end: datetime | None = None,
    outlet_events: Any = None,
) -> dict[str, object]:
    """One erasure request per deleted user, exactly once; pending requests checked. The summary is the XCom
    and the Asset event's extra; the log ends with its readable block."""
    from etl.pipelines import erasures
    from etl.report import render

    summary = erasures.run(
        WebEngageHook().get_settings(),
        run_id=run_id,
        as_of=run_as_of(params, data_interval_end, dag_run),
        dry_run=flag(params, "dry_run"),
        override_guard=flag(params, "override_erasure_guard"),
    )
    print(render(summary))
    if outlet_events is not None:
        outlet_events[ERASURES_ASSET].extra = counts_extra(summary)
    return summary
