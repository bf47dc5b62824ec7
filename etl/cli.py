"""The ``webengage-sync`` command line (typer). Long runs show a progress bar on a terminal and plain
log lines elsewhere (CI, Airflow)."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from etl.config import Settings
from etl.errors import WebEngageSyncError
from etl.report import RunReport, render

app = typer.Typer(
    help="Keep WebEngage in step with your data warehouse: profiles, events and cohorts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
sync_app = typer.Typer(help="Run one sync now.", no_args_is_help=True)
app.add_typer(sync_app, name="sync")
console = Console(stderr=True)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _settings(**overrides: Any) -> Settings:
    try:
        return Settings.from_env(**overrides)
    except WebEngageSyncError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


class _Progress:
    """Progress for a run: a live line on a terminal, a log line every few seconds otherwise."""

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


def _finish(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        console.print(render(summary), highlight=False, soft_wrap=True)


@sync_app.command("users")
def sync_users(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Send nothing; show what would be sent.")] = False,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="Re-send every user.")] = False,
    mapping: Annotated[str, typer.Option(help="Mapping file (TOML).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Sync warehouse users to WebEngage profiles (only new or changed ones).

    Examples:
      webengage-sync sync users --dry-run
      WEBENGAGE_API_URL=http://127.0.0.1:8765 webengage-sync sync users
    """
    from etl.pipelines import users

    _setup_logging(verbose)
    settings = _settings(users_mapping=mapping or None)
    try:
        summary = users.run(settings, dry_run=dry_run, full_refresh=full_refresh, progress=_Progress("users"))
    except WebEngageSyncError as exc:
        console.print(f"[red]users sync failed:[/red] {exc}")
        raise typer.Exit(1) from None
    _finish(summary, as_json)


@app.command()
def sandbox(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765,
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default).")] = "127.0.0.1",
    license_code: Annotated[str, typer.Option("--license", help="License code it accepts.")] = "sandbox",
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
    from etl.sandbox import SandboxConfig, serve

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
        console.print(f"[red]invalid sandbox configuration:[/red] {exc}")
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
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Build the embedded demo warehouse, start the sandbox, and sync users three times:
    everything, then nothing (unchanged), then only the users changed in between.

    Example:
      webengage-sync demo --users 5000
    """
    from etl.demo.run import run_demo

    _setup_logging(verbose)
    try:
        ok = run_demo(users=users, directory=directory, rpm=rpm, change_share=change_share, console=console)
    except WebEngageSyncError as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        raise typer.Exit(1) from None
    if not ok:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
