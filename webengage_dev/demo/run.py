"""``webengage-sync demo``: the whole job on the embedded demo, end to end, in under a minute.

Builds the DuckDB demo warehouse, starts the sandbox on a free loopback port, then syncs users three
times - everything, nothing (unchanged), and exactly the users changed in between - and checks that
the sandbox saw no contract violation.
"""

from __future__ import annotations

import dataclasses
import math
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from etl.config import Settings
from etl.mappings.deletions import DeletionRules
from etl.mappings.events import event_mapping_from_dict
from etl.pipelines import cohorts as cohort_pipeline
from etl.pipelines import erasures as erasure_pipeline
from etl.pipelines import events as events_pipeline
from etl.pipelines import merges as merges_pipeline
from etl.pipelines import users as users_pipeline
from etl.report import render
from etl.state.store import reset_state
from etl.warehouse.engine import make_engine
from webengage_dev.demo.deletions import delete_users
from webengage_dev.demo.mutate import change_users
from webengage_dev.demo.warehouse import build_demo_warehouse, demo_as_of
from webengage_dev.sandbox import SandboxConfig, SandboxProcess

#: A real-looking license code: WebEngage's start with "~" (the demo proves such codes go through).
DEMO_LICENSE_CODE = "~99199077"


def run_demo(*, users: int, directory: Path, rpm: int, change_share: float, console: Console, now: datetime) -> bool:
    """The demo as of `now`: the warehouse is built relative to it (the start of its hour), so the last day of
    events and the cohorts' last N days hold data whatever the date."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "warehouse.duckdb"
    as_of = demo_as_of(now)
    console.rule(f"1. demo warehouse (as of {as_of:%Y-%m-%d %H:%M} UTC)")
    built = build_demo_warehouse(path, users=users, as_of=as_of)
    table = Table("table", "rows")
    for name, count in built.tables.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    console.print(f"built {path} in {built.seconds:.1f}s")

    url = f"duckdb:///{path}"
    engine = make_engine(url)
    reset_state(engine)  # the sandbox starts empty, so the state of what it accepted must too
    engine.dispose()

    key = secrets.token_urlsafe(24)
    # Merges go one pair per /users call: the demo raises that budget too (WebEngage's default is 5,000/min).
    single_rpm = 5 * rpm
    config = SandboxConfig(
        license_code=DEMO_LICENSE_CODE,
        api_key=key,
        bulk_users_rpm=rpm,
        bulk_events_rpm=rpm,
        users_rpm=single_rpm,
        gdpr_rpm=rpm,
    )
    console.rule("2. sandbox")
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S")
    # A separate process: the sandbox does not compete with the sync for one interpreter lock.
    with SandboxProcess(config) as sandbox:
        console.print(f"sandbox at {sandbox.url} ({rpm:,} bulk requests/min; WebEngage's default is 500)")
        settings = Settings.from_mapping(
            {
                "license_code": DEMO_LICENSE_CODE,
                "api_key": key,
                "api_url": sandbox.url,
                "warehouse_url": url,
                "bulk_users_rpm": rpm,
                "bulk_events_rpm": rpm,
                "gdpr_rpm": rpm,
                "users_rpm": single_rpm,
                "expected_latency_s": 0.05,
            }
        )
        console.rule("3. profile sync: first run sends every valid user")
        first = users_pipeline.run(settings, run_id=f"demo__{stamp}__1-initial")
        console.print(render(first), highlight=False, soft_wrap=True)
        console.rule("4. second run right after: nothing changed, nothing sent")
        second = users_pipeline.run(settings, run_id=f"demo__{stamp}__2-unchanged")
        console.print(render(second), highlight=False, soft_wrap=True)
        console.rule(f"5. change {change_share:.0%} of users in the warehouse, run again")
        changed = change_users(path, share=change_share, seed=7, as_of=as_of)
        third = users_pipeline.run(settings, run_id=f"demo__{stamp}__3-changed")
        console.print(render(third), highlight=False, soft_wrap=True)

        day = (as_of - timedelta(days=1), as_of)
        console.rule("6. event sync: the last day of events, exactly once (then the same window again)")
        events = events_pipeline.run(settings, window=day, run_id=f"demo__{stamp}__events")
        console.print(render(events), highlight=False, soft_wrap=True)
        events_again = events_pipeline.run(settings, window=day, run_id=f"demo__{stamp}__events-again")
        console.print(
            f"same window again: already sent {events_again['already_sent']:,}, requests {events_again['requests']}",
            highlight=False,
        )
        console.rule("7. merges: anonymous visitors into the users they logged in as (Segment identifies)")
        # The packaged events mapping keeps merges off; the demo turns them on for its Segment schema, over the
        # last week of identifies (a deployment's first run reads the whole history: lookback = "").
        merge_mapping = event_mapping_from_dict({"merges": {"enabled": True, "preset": "segment", "lookback": "7d"}})
        merged = merges_pipeline.run(
            settings, mapping=merge_mapping, run_id=f"demo__{stamp}__merges", clock=lambda: as_of
        )
        console.print(render(merged), highlight=False, soft_wrap=True)
        merged_again = merges_pipeline.run(
            settings, mapping=merge_mapping, run_id=f"demo__{stamp}__merges-again", clock=lambda: as_of
        )
        console.rule("8. cohorts: each one a boolean attribute (entered -> true, left -> false)")
        cohort_summaries = []
        for name in cohort_pipeline.load_config(settings).names:
            summary = cohort_pipeline.export(settings, cohort=name, as_of=as_of, run_id=f"demo__{stamp}__{name}")
            cohort_summaries.append(summary)
            console.print(render(summary), highlight=False, soft_wrap=True)
        console.rule('8. deleted users: one GDPR erasure request each (users mapping: deletions = "erase")')
        deleted = delete_users(path, count=max(1, users // 500), seed=11, as_of=as_of)
        erasing = dataclasses.replace(
            users_pipeline.load_mapping(settings),
            deletions=DeletionRules(mode="erase", absent=True, table="deleted_users"),
        )
        erased = erasure_pipeline.run(settings, mapping=erasing, as_of=as_of, run_id=f"demo__{stamp}__erasures")
        console.print(render(erased), highlight=False, soft_wrap=True)
        erased_again = erasure_pipeline.run(
            settings, mapping=erasing, as_of=as_of, run_id=f"demo__{stamp}__erasures-again"
        )
        console.print(render(erased_again), highlight=False, soft_wrap=True)
        stats = sandbox.stats()

    violations = int(stats["violations"])
    expected_requests = math.ceil(third["accepted"] / settings.batch_size)
    console.rule("summary")
    lines = [
        f"users accepted by the sandbox: {first['accepted']:,} (run 1) + {third['accepted']:,} (run 3)",
        f"run 2 requests: {second['requests']} (nothing changed)",
        f"run 3: {changed:,} users changed in the warehouse -> {third['requests']:,} requests "
        f"(ceil({third['accepted']:,}/{settings.batch_size}) = {expected_requests:,})",
        f"events accepted: {events['accepted']:,} in {events['requests']:,} requests; the same window again: "
        f"{events_again['requests']} requests; duplicate events seen by the sandbox: {stats['duplicate_events']}",
        f"merges: {merged['merged']:,} anonymous visitors merged into known users in {merged['requests']:,} /users "
        f"requests ({merged['shared_devices']:,} shared devices: merged into the first user, "
        f"{merged['rejected_by_reason'].get('shared_anonymous_id', 0):,} reported); pre-login events moved to "
        f"their users: {stats['merged_events']:,}; again: {merged_again['requests']} requests",
        "cohort members exported: " + ", ".join(f"{c['cohort']} {c['members']:,}" for c in cohort_summaries),
        f"erasures: {len(deleted):,} users deleted in the warehouse ({erased['detected_by'].get('absent', 0):,} "
        f"gone from the users table, {erased['detected_by'].get('table:deleted_users', 0):,} listed in "
        f"deleted_users) -> {erased['accepted']:,} erasure requests accepted, {stats['erased_users']:,} profiles "
        f"erased by the sandbox; the next run: {erased_again['sent']} requests, "
        f"{erased_again['status_checks']:,} status checks ({_counts(erased_again['statuses_seen'])})",
        f"profiles stored by the sandbox: {stats['users']:,}; HTTP requests it answered: "
        f"{sum(stats['requests'].values()):,} ({stats['credential_checks']} of them key checks of runs with nothing "
        f"to send); 429s: {stats['throttled']}",
        f"contract violations seen by the sandbox: {violations} {dict(stats['violations_by_rule']) or ''}",
    ]
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)
    ok = (
        violations == 0
        and second["requests"] == 0
        and first["accepted"] > 0
        and events_again["requests"] == 0
        and merged["merged"] == stats["merges"] > 0
        and merged_again["requests"] == 0
        and stats["duplicate_events"] == 0
        and erased["accepted"] == len(deleted) == stats["gdpr_requests"]
        and erased_again["sent"] == 0
    )
    console.print(
        "[green]demo OK[/green]" if ok else "[red]demo found a problem (see above)[/red]",
        "\nnext: `webengage-sync runs`, `webengage-sync rejects`, `webengage-sync plan` with\n"
        f"      WAREHOUSE_URL={url} (README: 'Operating it')",
        soft_wrap=True,
    )
    return ok


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"
