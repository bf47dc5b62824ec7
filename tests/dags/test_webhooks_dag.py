from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from etl.webhooks.examples import EXAMPLES
from etl.webhooks.landing import SegmentWriter, encode_event
from etl.webhooks.shapes import request_id_for


def test_webhooks_dag_is_hourly_thin_and_documented(dagbag: Any) -> None:
    assert dagbag.import_errors == {}
    dag = dagbag.get_dag("webengage_webhooks_load")
    assert dag is not None and dag.max_active_runs == 1 and not dag.catchup
    assert [t.task_id for t in dag.tasks] == ["load_webhooks"]
    assert dag.timetable.expression == "15 * * * *" and "webengage_events" in (dag.doc_md or "")
    assert dag.default_args["retries"] == 2 and "on_failure_callback" in dag.default_args


def test_webhooks_dag_loads_landed_deliveries_once(
    dagbag: Any, dag_runner: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    landing, warehouse = tmp_path / "landing", tmp_path / "w.duckdb"
    writer = SegmentWriter(landing)
    writer.open()
    bodies = [orjson.dumps(body) for _, body in EXAMPLES]
    now = datetime.now(UTC)
    lines = [
        encode_event(
            request_id=request_id_for(None, raw), received_at=now, event_type=et, license_code="~99199077", raw_body=raw
        )
        for (et, _), raw in zip(EXAMPLES, bodies, strict=True)
    ]
    writer.append(lines)
    writer.close()
    monkeypatch.setenv("WEBENGAGE_WEBHOOK_DIR", str(landing))
    monkeypatch.setenv("WAREHOUSE_URL", f"duckdb:///{warehouse}")
    monkeypatch.delenv("WEBENGAGE_WEBHOOK_SECRET", raising=False)  # the loader needs no credentials

    dr = dag_runner(dagbag, "webengage_webhooks_load")
    assert dr.state == "success"
    summary = dr.get_task_instances()[0].xcom_pull(task_ids="load_webhooks")
    assert (summary["lines"], summary["events_loaded"], summary["quarantined"]) == (4, 4, 0)

    again = dag_runner(dagbag, "webengage_webhooks_load")  # a re-run reads nothing twice
    assert again.state == "success"
    assert again.get_task_instances()[0].xcom_pull(task_ids="load_webhooks")["lines"] == 0
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        names = con.execute("SELECT event_name FROM webengage_events ORDER BY event_name").fetchall()
    finally:
        con.close()
    assert [n for (n,) in names] == sorted(body["event_name"] for _, body in EXAMPLES)
