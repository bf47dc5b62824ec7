"""The ``webengage-sync`` command line (typer). Long runs show a progress bar on a terminal and plain
log lines elsewhere (CI, Airflow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from etl.cli_cohorts import cohort_app
from etl.cli_common import (
    AS_OF_HELP,
    Progress,
    as_of_or_now,
    console,
    fail,
    load_settings,
    parse_instant,
    print_summary,
    require_extra,
    setup_logging,
    table_console,
)
from etl.cli_erasures import erasures_app
from etl.cli_events import events_app
from etl.cli_merges import merges_app
from etl.cli_webhooks import webhooks_app
from etl.errors import WebEngageSyncError
from etl.report import render

app = typer.Typer(
    help="Keep WebEngage in step with your data warehouse: profiles, events and cohorts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
sync_app = typer.Typer(help="Run one sync now.", no_args_is_help=True)
app.add_typer(sync_app, name="sync")
app.add_typer(cohort_app, name="cohort")
sync_app.add_typer(events_app)
sync_app.add_typer(erasures_app)
sync_app.add_typer(merges_app)
app.add_typer(webhooks_app, name="webhooks")


@sync_app.command("users")
def sync_users(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Send nothing; show what would be sent.")] = False,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Re-send every user.")] = False,
    mapping: Annotated[str, typer.Option(help="Mapping file (TOML).")] = "",
    as_of: Annotated[str, typer.Option("--as-of", help=AS_OF_HELP + " Used for the run-time estimate.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Sync warehouse users to WebEngage profiles (only new or changed ones).

    Examples:
      webengage-sync sync users --dry-run
      WEBENGAGE_API_URL=http://127.0.0.1:8765 webengage-sync sync users
    """
    from etl.pipelines import users

    setup_logging(verbose)
    instant = as_of_or_now(as_of)
    settings = load_settings(credentials=not dry_run, users_mapping=mapping or None)
    try:
        if not dry_run:
            from etl.plan import eta_warning

            warning = eta_warning(settings, as_of=instant)
            if warning:
                console.print(f"[yellow]warning:[/yellow] {warning}", soft_wrap=True)
        summary = users.run(settings, dry_run=dry_run, full_refresh=full_refresh, progress=Progress("users"))
    except WebEngageSyncError as exc:
        raise fail("users sync", exc) from None
    print_summary(summary, as_json)


@app.command()
def check() -> None:
    """Check the WebEngage settings without sending data: credentials well-formed, the API host reachable
    (DNS, TCP, TLS) and the license code and key accepted (one empty POST /users call that WebEngage refuses,
    so nothing is ingested; WEBENGAGE_VERIFY_CREDENTIALS=false skips it). Exit 0 when good, 1 when not.

    The same check as the Airflow connection's Test button."""
    from etl.engine.credentials import check_connection

    setup_logging(False)
    ok, message = check_connection(load_settings(credentials=False))
    shown = f"[green]ok:[/green] {escape(message)}" if ok else f"[red]failed:[/red] {escape(message)}"
    console.print(shown, soft_wrap=True)
    if not ok:
        raise typer.Exit(1)


@app.command()
def plan(
    start: Annotated[str, typer.Option(help="Events window start (ISO); events are planned only with --end.")] = "",
    end: Annotated[str, typer.Option(help="Events window end (ISO).")] = "",
    users: Annotated[bool, typer.Option("--users/--no-users", help="Plan the profile sync.")] = True,
    cohorts: Annotated[bool, typer.Option("--cohorts/--no-cohorts", help="Plan the dynamic cohorts.")] = True,
    erasures: Annotated[
        bool, typer.Option("--erasures/--no-erasures", help='Plan erasures (users mapping: deletions = "erase").')
    ] = True,
    as_of: Annotated[str, typer.Option("--as-of", help=AS_OF_HELP + " Bound as the cohorts' :as_of.")] = "",
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """What would be sent now, the requests that takes, and the time at the configured rate limits.
    Nothing is sent (each pipeline is dry-run), so no API key is needed.

    Examples:
      webengage-sync plan
      webengage-sync plan --start 2026-11-01T00:00 --end 2026-11-02T00:00 --no-cohorts
    """
    from etl.plan import plan as make_plan
    from etl.plan import render_plan

    setup_logging(verbose)
    instant = as_of_or_now(as_of)
    settings = load_settings(credentials=False)
    window = (parse_instant(start, option="--start"), parse_instant(end, option="--end")) if start and end else None
    try:
        lines = make_plan(
            settings, users=users, cohorts=cohorts, events_window=window, as_of=instant, erasures=erasures
        )
    except WebEngageSyncError as exc:
        raise fail("plan", exc) from None
    typer.echo(render_plan(lines, settings))


@app.command()
def sandbox(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765,
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")] = "127.0.0.1",
    license_code: Annotated[str, typer.Option("--license", help="License code it accepts.")] = "~99199077",
    api_key: Annotated[str, typer.Option(help="API key it accepts.", envvar="SANDBOX_API_KEY")] = "sandbox-key",
    bulk_rpm: Annotated[int, typer.Option(help="Requests/min per bulk endpoint (0 = unlimited).")] = 500,
    single_rpm: Annotated[int, typer.Option(help="Requests/min for /users and /events.")] = 5000,
    latency_ms: Annotated[float, typer.Option(help="Added latency per request.")] = 0.0,
    jitter_ms: Annotated[float, typer.Option(help="Uniform +/- jitter on the latency.")] = 0.0,
    config_json: Annotated[str, typer.Option(help="Any other SandboxConfig fields as JSON.")] = "{}",
) -> None:
    """Run the local WebEngage sandbox (strict contract checks, rate limits, faults).

    Example:
      webengage-sync sandbox --port 8765 --latency-ms 300 --jitter-ms 100
      curl -s http://127.0.0.1:8765/_sandbox/stats
    """
    require_extra("sandbox", "sandbox")
    from webengage_dev.sandbox import SandboxConfig, serve

    try:
        config = SandboxConfig.from_mapping(
            {
                "license_code": license_code,
                "api_key": api_key,
                "bulk_users_rpm": bulk_rpm,
                "bulk_events_rpm": bulk_rpm,
                "users_rpm": single_rpm,
                "events_rpm": single_rpm,
                "latency_ms": latency_ms,
                "jitter_ms": jitter_ms,
                **json.loads(config_json),
            }
        )
    except (ValueError, TypeError) as exc:
        console.print(f"[red]invalid sandbox configuration:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    console.print(f"WebEngage sandbox on http://{host}:{port}/v1/accounts/{license_code}/  (Ctrl-C stops)")
    console.print(f"inspect: http://{host}:{port}/_sandbox/stats")
    serve(config, host=host, port=port)


@app.command()
def demo(
    users: Annotated[int, typer.Option(help="Valid users in the demo warehouse.")] = 50_000,
    directory: Annotated[Path, typer.Option("--dir", help="Where the demo files go.")] = Path(".demo"),
    rpm: Annotated[int, typer.Option(help="Bulk requests/min for the sandbox and the client.")] = 12_000,
    change_share: Annotated[float, typer.Option(help="Share of users changed before the last run.")] = 0.01,
    as_of: Annotated[str, typer.Option("--as-of", help=AS_OF_HELP + " The warehouse is built relative to it.")] = "",
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Build the embedded demo warehouse, start the sandbox, and sync users three times:
    everything, then nothing (unchanged), then only the users changed in between.

    Example:
      webengage-sync demo --users 5000
    """
    require_extra("sandbox", "demo")
    from webengage_dev.demo.run import run_demo

    setup_logging(verbose)
    try:
        ok = run_demo(
            users=users,
            directory=directory,
            rpm=rpm,
            change_share=change_share,
            console=console,
            now=as_of_or_now(as_of),
        )
    except WebEngageSyncError as exc:
        raise fail("demo", exc) from None
    if not ok:
        raise typer.Exit(1)


runs_app = typer.Typer(help="Run history (one row per pipeline run).", invoke_without_command=True)
app.add_typer(runs_app, name="runs")


def _store() -> Any:
    from etl.engine.frame import state_engine_for
    from etl.state.store import StateStore

    settings = load_settings(credentials=False)  # reads the state database only
    return StateStore(state_engine_for(settings))


@runs_app.callback()
def runs_list(
    ctx: typer.Context,
    pipeline: Annotated[str, typer.Option(help="Only this pipeline (users, events, cohort:NAME).")] = "",
    last: Annotated[int, typer.Option(help="How many runs.")] = 20,
) -> None:
    """List recent runs with their counts.

    Examples:
      webengage-sync runs --last 5
      webengage-sync runs --pipeline users
      webengage-sync runs show manual__2026-11-23T02:00:00
    """
    if ctx.invoked_subcommand:
        return
    from rich.table import Table

    with _store() as store:
        rows = store.runs(pipeline=pipeline or None, last=last)
    table = Table(
        "run id",
        "pipeline",
        "started (UTC)",
        "status",
        "extracted",
        "unchanged",
        "accepted",
        "rejected",
        "requests",
        "429s",
        "seconds",
        title="webengage-sync runs",
    )
    for r in rows:
        c = r["counts"]
        table.add_row(
            r["run_id"],
            r["pipeline"],
            f"{r['started_at']:%Y-%m-%d %H:%M:%S}",
            r["status"] + (" (dry)" if r["dry_run"] else ""),
            *(f"{c.get(k, 0):,}" for k in ("extracted", "unchanged", "accepted", "rejected", "requests", "throttled")),
            f"{c.get('duration_s', 0):.1f}",
        )
    table_console().print(table)


@runs_app.command("show")
def runs_show(run_id: Annotated[str, typer.Argument(help="A run id from `webengage-sync runs`.")]) -> None:
    """Print one run's full summary, with rejects by reason."""
    with _store() as store:
        rows = store.runs(run_id=run_id, last=100)
    if not rows:
        console.print(f"no run {escape(repr(run_id))}")
        raise typer.Exit(1)
    for r in rows:
        summary = {**r["counts"], "status": r["status"], "run_id": r["run_id"], "pipeline": r["pipeline"]}
        if summary.get("extracted") is None:
            console.print(escape(f"{r['pipeline']} run {run_id}: {r['status']} {r['message'] or ''}"))
            continue
        console.print(render(summary), highlight=False, soft_wrap=True)
        if r["pipeline"] == "erasures":
            from etl.report_erasures import render_requests

            with _store() as store:
                console.print(render_requests(store, run_id), highlight=False, soft_wrap=True)


rejects_app = typer.Typer(help="Rejected rows and values.", invoke_without_command=True)
app.add_typer(rejects_app, name="rejects")


@rejects_app.callback()
def rejects(
    ctx: typer.Context,
    pipeline: Annotated[str, typer.Option(help="Only this pipeline.")] = "",
    keys: Annotated[int, typer.Option(help="Show up to N row keys per reason.")] = 0,
) -> None:
    """Rejected rows and values, grouped by reason (open and dead; resolved ones are history).

    Data rejects go out by themselves once the row is fixed in the warehouse; transient and API
    rejects are re-driven by the next runs until max_reject_attempts, then dead.

    Examples:
      webengage-sync rejects
      webengage-sync rejects --pipeline users --keys 5
      webengage-sync rejects retry --pipeline users
    """
    if ctx.invoked_subcommand:
        return
    from rich.table import Table

    with _store() as store:
        groups = store.reject_groups(pipeline or None, sample=keys)
    table = Table(
        "pipeline",
        "reason",
        "column",
        "kind",
        "status",
        "rows",
        "max attempts",
        "last seen",
        *(("keys",) if keys else ()),
        title="webengage-sync rejects",
    )
    for g in groups:
        cells = [
            g["pipeline"],
            g["reason"],
            g["column_name"],
            g["kind"],
            g["status"],
            f"{g['rows']:,}",
            str(g["max_attempts"]),
            f"{g['last_seen']:%Y-%m-%d %H:%M}",
        ]
        if keys:
            cells.append(", ".join(g["keys"]))
        table.add_row(*cells)
    table_console().print(table)


@rejects_app.command("retry")
def rejects_retry(pipeline: Annotated[str, typer.Option(help="Only this pipeline.")] = "") -> None:
    """Reopen dead rejects (attempts reset): the next run sends those rows again."""
    with _store() as store:
        count = store.reopen_dead(pipeline or None)
    console.print(f"reopened {count:,} dead rejects")


def main() -> None:
    """The console script: every failure is one line and an exit code, never a traceback (set
    WEBENGAGE_TRACEBACK=1 to see one when reporting a bug)."""
    import os
    import sys

    try:
        app()
    except Exception as exc:  # the last resort: the commands handle what they expect themselves
        if os.environ.get("WEBENGAGE_TRACEBACK"):
            raise
        console.print(f"[red]error:[/red] {escape(f'{type(exc).__name__}: {exc}')}", soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
