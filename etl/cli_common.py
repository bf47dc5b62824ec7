"""What every ``webengage-sync`` command shares: the console, logging, settings from the environment,
progress reporting, ISO times and summary printing."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from etl import instants
from etl.config import Settings
from etl.errors import ConfigError, QueryError, WebEngageSyncError
from etl.report import RunReport, render

console = Console(stderr=True)


def table_console() -> Console:
    """Tables go to stdout; when it is not a terminal (pipes, CI) don't squeeze them into 80 columns."""
    return Console() if sys.stdout.isatty() else Console(width=200)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(what: str, exc: BaseException) -> typer.Exit:
    """Print one line for a failed command (the message escaped: ids and SQL may hold "[...]") and return the
    exit to raise: 2 for what the user must fix (configuration, a query), 1 for a failed run."""
    summary = getattr(exc, "summary", None)
    if summary:  # a run that finished but failed (DeliveryError): its counts first
        console.print(render(summary), highlight=False, soft_wrap=True)
    console.print(f"[red]{escape(what)} failed:[/red] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(2 if isinstance(exc, ConfigError | QueryError) else 1)


def load_settings(*, credentials: bool = True, **overrides: Any) -> Settings:
    """Settings from the environment; a bad one exits 2 naming it (never its value). Commands that send
    nothing pass ``credentials=False``: they need the database URLs only."""
    try:
        return Settings.from_env(credentials=credentials, **overrides)
    except WebEngageSyncError as exc:
        console.print(f"[red]configuration error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None


#: Help text of every ``--as-of`` option.
AS_OF_HELP = "The time the run is computed at (ISO 8601, UTC when no offset); default: now."


def as_of_or_now(value: str) -> datetime:
    """The ``--as-of`` option, else the wall clock: the one place a command reads it. Everything below takes
    the instant as an argument, so a run can be reproduced for any date."""
    return parse_instant(value, option="--as-of") if value else datetime.now(UTC)


def require_extra(extra: str, feature: str) -> None:
    """Exit 2 with the install command when an optional part's extra is missing."""
    from etl.extras import require

    try:
        require(extra, feature)
    except WebEngageSyncError as exc:
        console.print(f"[red]{escape(str(exc))}[/red]")  # escaped: "[webhooks]" is not rich markup
        raise typer.Exit(2) from None


def parse_instant(value: str, *, option: str) -> datetime:
    """An ISO 8601 date or date-time; without an offset it is UTC."""
    try:
        return instants.parse_instant(value)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 date-time: {value!r}", param_hint=option) from None


class Progress:
    """Progress of a run: a live line on a terminal, a log line every few seconds otherwise (CI, Airflow)."""

    def __init__(self, label: str, *, every_s: float = 5.0) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self.every_s = every_s
        self.last = 0.0
        self.started = time.monotonic()

    def __call__(self, report: RunReport) -> None:
        now = time.monotonic()
        if now - self.last < (0.2 if self.tty else self.every_s):
            return
        self.last = now
        elapsed = now - self.started
        rate = report.accepted / elapsed if elapsed > 0 else 0.0
        text = (
            f"{self.label}: extracted {report.extracted:,}, unchanged {report.unchanged:,}, sent {report.sent:,}, "
            f"accepted {report.accepted:,} ({rate:,.0f}/s), batches {report.batches:,}"
        )
        if self.tty:
            console.print(text, end="\r", soft_wrap=True, highlight=False)
        else:
            logging.getLogger("etl.progress").info("%s", text)


def print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        console.print(render(summary), highlight=False, soft_wrap=True)
