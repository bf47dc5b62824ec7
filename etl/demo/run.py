"""``webengage-sync demo``: the whole job on the embedded demo, end to end, in under a minute.

Builds the DuckDB demo warehouse, starts the sandbox on a free loopback port, then syncs users three
times - everything, nothing (unchanged), and exactly the users changed in between - and checks that
the sandbox saw no contract violation.
"""

from __future__ import annotations

import math
import secrets
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from etl.config import Settings
from etl.demo.mutate import change_users
from etl.demo.warehouse import build_demo_warehouse
from etl.pipelines import users as users_pipeline
from etl.report import render
from etl.sandbox import SandboxConfig, SandboxServer
from etl.state.store import reset_state
from etl.warehouse.engine import make_engine

DEMO_AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def run_demo(*, users: int, directory: Path, rpm: int, change_share: float, console: Console) -> bool:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "warehouse.duckdb"
    console.rule("1. demo warehouse")
    built = build_demo_warehouse(path, users=users, as_of=DEMO_AS_OF)
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
    config = SandboxConfig(license_code="demo", api_key=key, bulk_users_rpm=rpm, bulk_events_rpm=rpm)
    console.rule("2. sandbox")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    with SandboxServer(config) as sandbox:
        console.print(f"sandbox at {sandbox.url} ({rpm:,} bulk requests/min; WebEngage's default is 500)")
        settings = Settings.from_mapping(
            {"license_code": "demo", "api_key": key, "api_url": sandbox.url, "warehouse_url": url,
             "bulk_users_rpm": rpm, "bulk_events_rpm": rpm, "expected_latency_s": 0.05}
        )  # fmt: skip
        console.rule("3. profile sync: first run sends every valid user")
        first = users_pipeline.run(settings, run_id=f"demo__{stamp}__1-initial")
        console.print(render(first), highlight=False, soft_wrap=True)
        console.rule("4. second run right after: nothing changed, nothing sent")
        second = users_pipeline.run(settings, run_id=f"demo__{stamp}__2-unchanged")
        console.print(render(second), highlight=False, soft_wrap=True)
        console.rule(f"5. change {change_share:.0%} of users in the warehouse, run again")
        changed = change_users(path, share=change_share, seed=7, as_of=DEMO_AS_OF)
        third = users_pipeline.run(settings, run_id=f"demo__{stamp}__3-changed")
        console.print(render(third), highlight=False, soft_wrap=True)
        stats = sandbox.stats()

    violations = (
        int(stats.get("violations", {}).get("total", 0))
        if isinstance(stats.get("violations"), dict)
        else int(stats.get("violations", 0))
    )
    expected_requests = math.ceil(third["accepted"] / settings.batch_size)
    console.rule("summary")
    lines = [
        f"users accepted by the sandbox: {first['accepted']:,} (run 1) + {third['accepted']:,} (run 3)",
        f"run 2 requests: {second['requests']} (nothing changed)",
        f"run 3: {changed:,} users changed in the warehouse -> {third['requests']:,} requests "
        f"(ceil({third['accepted']:,}/{settings.batch_size}) = {expected_requests:,})",
        f"profiles stored by the sandbox: {stats['users']:,}; HTTP requests it answered: "
        f"{sum(stats['requests'].values()):,}; 429s: {stats['throttled']}",
        f"contract violations seen by the sandbox: {violations} {dict(stats['violations_by_rule']) or ''}",
    ]
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)
    ok = violations == 0 and second["requests"] == 0 and first["accepted"] > 0
    console.print(
        "[green]demo OK[/green]" if ok else "[red]demo found a problem (see above)[/red]",
        "\nnext: `webengage-sync runs`, `webengage-sync rejects`, `webengage-sync sync users --dry-run` with\n"
        f"      WAREHOUSE_URL={url} (README: 'Operating it')",
    )
    return ok
