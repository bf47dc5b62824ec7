"""``webengage-sync cohort ...``: export, list and retire cohorts (mounted on the main CLI by etl/cli.py).

Exit codes: 0 done, 1 the run failed, 2 configuration error (nothing sent), 3 stopped by the guard
(nothing sent).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from etl.cli_common import AS_OF_HELP, as_of_or_now, console, fail, load_settings, print_summary, setup_logging
from etl.errors import WebEngageSyncError
from etl.transform.cohorts import GuardError

cohort_app = typer.Typer(
    help="Cohorts: warehouse audiences as one boolean WebEngage attribute each.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _fail(what: str, exc: WebEngageSyncError) -> typer.Exit:
    if isinstance(exc, GuardError):
        console.print(f"[yellow]{escape(what)} stopped by the guard:[/yellow] {escape(str(exc))}", soft_wrap=True)
        return typer.Exit(3)
    return fail(what, exc)


def _finish(summary: dict[str, Any], as_json: bool) -> None:
    print_summary(summary, as_json)


@cohort_app.command("export")
def export_cohort(
    name: Annotated[str, typer.Argument(help="A cohort name from the cohort config (see `cohort list`).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Send nothing; show what would change.")] = False,
    override_guard: Annotated[
        bool, typer.Option("--override-guard", help="Send even if more members leave than max_exit_share allows.")
    ] = False,
    events: Annotated[
        bool | None,
        typer.Option("--events/--no-events", help="Send Cohort Entered/Exited events (default: as configured)."),
    ] = None,
    config: Annotated[str, typer.Option(help="Cohort config file (TOML).")] = "",
    as_of: Annotated[str, typer.Option("--as-of", help=AS_OF_HELP + " Bound as the query's :as_of.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Export one cohort now: members get true, users who left it get false, the rest is not sent.

    Examples:
      webengage-sync cohort export vip_buyers_30d --dry-run
      webengage-sync cohort export vip_buyers_30d --events
      webengage-sync cohort export vip_buyers_30d --as-of 2026-11-30T00:00 --dry-run
    """
    from etl.pipelines import cohorts

    setup_logging(verbose)
    instant = as_of_or_now(as_of)
    settings = load_settings(credentials=not dry_run, cohorts_config=config or None)
    try:
        summary = cohorts.export(
            settings, cohort=name, as_of=instant, dry_run=dry_run, emit_events=events, override_guard=override_guard
        )
    except WebEngageSyncError as exc:
        raise _fail(f"cohort {name} export", exc) from None
    _finish(summary, as_json)


@cohort_app.command("list")
def list_cohorts(
    config: Annotated[str, typer.Option(help="Cohort config file (TOML).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Configured cohorts (and retired or removed ones the state still knows), with members and last sync.

    Example:
      webengage-sync cohort list
    """
    from rich.table import Table

    from etl.pipelines import cohorts

    settings = load_settings(credentials=False, cohorts_config=config or None)
    try:
        rows = cohorts.list_cohorts(settings)
    except WebEngageSyncError as exc:
        raise _fail("cohort list", exc) from None
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    table = Table(
        "cohort",
        "attribute",
        "mode",
        "events",
        "status",
        "members",
        "last sync (UTC)",
        "events pending",
        title="webengage-sync cohorts",
    )
    for r in rows:
        table.add_row(
            r["name"],
            r["attribute"],
            r["mode"],
            "yes" if r["events"] else "no",
            r["status"],
            f"{r['members']:,}",
            (r["last_synced_at"] or "")[:19].replace("T", " "),
            f"{r['events_pending']:,}",
        )
    # Tables go to stdout; off a terminal (pipes, CI) they are not squeezed into 80 columns.
    (Console() if sys.stdout.isatty() else Console(width=200)).print(table)


@cohort_app.command("retire")
def retire_cohort(
    name: Annotated[str, typer.Argument(help="A configured cohort, or one removed from the config.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Send nothing; show how many users would change.")] = False,
    events: Annotated[
        bool | None,
        typer.Option("--events/--no-events", help="Send Cohort Exited events (default: as configured)."),
    ] = None,
    config: Annotated[str, typer.Option(help="Cohort config file (TOML).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Retire a cohort: every last member gets false and its attribute slot is freed.

    Remove it from the cohort config as well, or its next export brings it back.

    Example:
      webengage-sync cohort retire churn_risk
    """
    from etl.pipelines import cohorts

    setup_logging(verbose)
    settings = load_settings(credentials=not dry_run, cohorts_config=config or None)
    try:
        summary = cohorts.retire(settings, cohort=name, dry_run=dry_run, emit_events=events)
    except WebEngageSyncError as exc:
        raise _fail(f"cohort {name} retire", exc) from None
    _finish(summary, as_json)


if __name__ == "__main__":
    cohort_app()
