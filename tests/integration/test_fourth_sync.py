"""A fourth sync written on the engine, the way a team would add one: a spec of its own (source, a pure
prepare step, what to checkpoint), nothing copied from the other three. The engine gives it the runs table,
the invariant, dry runs, pacing, bisection of a refused batch and the reject policy.

The spec below (a loyalty tier from a CRM table onto each profile, re-sent in full each run: a small
reference table) is the whole of it; its line count is asserted so it stays a spec, not a copy."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from etl.config import Settings
from etl.engine.delivery import Checkpoints, Request, Result, count_only, counted, deliver, keys_of
from etl.engine.frame import Run, execute
from etl.engine.rejects import ROW, RejectRow, classify
from etl.load.batching import Item, batch_requests
from etl.state.store import StateStore
from etl.warehouse.engine import make_engine
from etl.warehouse.queries import read_chunks
from tests.helpers.runs import failed_delivery
from webengage_dev.sandbox import SandboxConfig, SandboxServer

KEY = "fourth-sync-key-0123456"


# -- the spec: everything a new sync needs --------------------------------------------------------------------
def tier_items(rows: Any) -> Iterator[Item[str]]:
    """Pure: rows in, payloads out."""
    for user_id, tier in zip(rows["user_id"], rows["tier"], strict=True):
        yield Item(
            key=user_id, identity=f"tier:{user_id}:{tier}", payload={"userId": user_id, "attributes": {"tier": tier}}
        )


def sync_tiers(settings: Settings, **options: Any) -> dict[str, Any]:
    def body(run: Run) -> None:
        def prepared() -> Iterator[Item[str]]:
            for chunk in read_chunks(run.warehouse(), "SELECT user_id, tier FROM crm_tiers", {}):
                run.report.extracted += len(chunk)
                yield from tier_items(chunk)

        requests = batch_requests(
            prepared(),
            endpoint="bulk-users",
            batch_size=run.settings.batch_size,
            max_bytes=run.settings.max_batch_bytes,
            oversize=[],
        )
        if run.dry_run:
            return count_only(requests, run.report)

        def accepted(done: list[Request]) -> None:
            run.report.accepted += len(keys_of(done))

        def failed(request: Request, result: Result) -> None:
            reason, kind, detail = classify(result)
            rows = [
                RejectRow(row_key=k, column=ROW, reason=reason, detail=detail, kind=kind) for k in keys_of([request])
            ]
            with run.store.transaction() as conn:
                run.store.record_rejects(conn, "tiers", rows, run.run_id)
            run.report.rejected[reason] += len(rows)

        deliver(run.client(), counted(requests, run.report), Checkpoints(accepted=accepted, failed=failed))

    return execute(settings, body, pipeline="tiers", **options)


# -- the tests -------------------------------------------------------------------------------------------------
def test_the_spec_is_short() -> None:
    lines = [line for f in (tier_items, sync_tiers) for line in inspect.getsource(f).splitlines() if line.strip()]
    assert len(lines) <= 40, len(lines)


@pytest.fixture
def warehouse(tmp_path: Path) -> str:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE crm_tiers AS SELECT printf('u%03d', i) AS user_id, CASE WHEN i % 3 = 0 "
                "THEN 'gold' ELSE 'silver' END AS tier FROM range(60) t(i)"
            )
        )
    engine.dispose()
    return url


def test_the_fourth_sync_gets_runs_dry_runs_and_rejects_from_the_engine(warehouse: str) -> None:
    with SandboxServer(SandboxConfig(license_code="~99199077", api_key=KEY, bulk_users_rpm=60_000)) as sandbox:
        settings = Settings.from_mapping(
            {
                "license_code": "~99199077",
                "api_key": KEY,
                "api_url": sandbox.url,
                "warehouse_url": warehouse,
                "bulk_users_rpm": 60_000,
                "expected_latency_s": 0.05,
                "max_retries": 0,
                "max_reject_attempts": 1,
            }
        )
        dry = sync_tiers(settings, dry_run=True, run_id="tiers-dry")
        assert (dry["dry_run"], dry["sent"], dry["requests"]) == (True, 60, 0) and sandbox.stats()["requests"] == {}
        done = sync_tiers(settings, run_id="tiers-1")
        assert (done["accepted"], done["requests"], done["status"]) == (60, 3, "success")
        assert sandbox.store.get_profile("u003")["attributes"]["tier"] == "gold"
        sandbox.update_config(error_5xx_rate=1.0)
        flaky = failed_delivery(sync_tiers, settings, run_id="tiers-2")  # nothing accepted: a red run, as for all
        assert flaky["rejected_by_reason"] == {"transient_failure": 60}
    with StateStore(make_engine(warehouse)) as store:
        runs = {r["run_id"]: r["status"] for r in store.runs(pipeline="tiers")}
        groups = store.reject_groups("tiers")
    assert runs == {"tiers-dry": "success", "tiers-1": "success", "tiers-2": "failed"}
    # The one max-attempts rule applies to a new sync too: with max_reject_attempts=1 they are dead at once.
    assert [(g["reason"], g["status"], g["rows"]) for g in groups] == [("transient_failure", "dead", 60)]
