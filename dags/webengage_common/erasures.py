"""The erasure task of ``webengage_users_sync`` (kept here so the DAG file stays a thin wrapper): GDPR erasure
requests for users deleted in the warehouse, when the users mapping says ``deletions = "erase"``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from webengage_common.assets import ERASURES_ALIAS, ERASURES_ASSET
from webengage_common.hook import WebEngageHook
from webengage_common.params import flag, run_as_of
from webengage_common.results import finish


def erase_deleted_users(
    params: dict[str, Any],
    run_id: str,
    dag_run: Any,
    data_interval_end: datetime | None = None,
    outlet_events: Any = None,
) -> dict[str, Any]:
    """One erasure request per deleted user, exactly once; pending requests checked. The summary block is
    logged, the flat summary is the XCom and (unless a dry run) the Asset event's extra."""
    from etl.pipelines import erasures

    summary = erasures.run(
        WebEngageHook().get_settings(),
        run_id=run_id,
        as_of=run_as_of(params, data_interval_end, dag_run),
        dry_run=flag(params, "dry_run"),
        override_guard=flag(params, "override_erasure_guard"),
    )
    return finish(summary, outlet_events=outlet_events, alias=ERASURES_ALIAS, assets=[ERASURES_ASSET])
