"""``webengage-sync webhooks``: receive WebEngage's webhooks (``serve``), land a file of deliveries
(``replay``) and load what was landed into the warehouse (``load``). Mounted by :mod:`etl.cli`
(``app.add_typer(webhooks_app, name="webhooks")``); also runnable alone: ``python -m etl.cli_webhooks``.

Configuration comes from the environment (:mod:`etl.webhooks.config`): ``WEBENGAGE_LICENSE_CODE``,
``WEBENGAGE_WEBHOOK_SECRET``, ``WEBENGAGE_WEBHOOK_DIR``, ``WAREHOUSE_URL``, ``WEBENGAGE_WEBHOOK_MAX_BODY``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

webhooks_app = typer.Typer(help="WebEngage webhooks into the warehouse: receive, replay, load.", no_args_is_help=True)


def _settings(*, require_auth: bool) -> Any:
    from etl import cli_common as base
    from etl.errors import ConfigError
    from etl.webhooks.config import WebhookSettings

    try:
        return WebhookSettings.from_env(require_auth=require_auth)
    except ConfigError as exc:
        raise base.fail("webhook settings", exc) from None


def _load(settings: Any) -> dict[str, Any]:
    from etl import cli_common as base
    from etl.errors import WebEngageSyncError
    from etl.webhooks import loader

    try:
        summary: dict[str, Any] = loader.run(settings)
    except WebEngageSyncError as exc:
        raise base.fail("webhook load", exc) from None
    return summary


def _print_load(summary: dict[str, Any]) -> None:
    from etl import cli_common as base
    from etl.webhooks.loader import render

    base.console.print(render(summary), highlight=False, soft_wrap=True)


@webhooks_app.command("serve")
def serve(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8766,
    host: Annotated[str, typer.Option(help="Interface to bind (loopback by default; put TLS in front).")] = "127.0.0.1",
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Receive WebEngage webhooks; each delivery is fsynced to the landing directory before its 200.

    `load` (or the hourly DAG webengage_webhooks_load) moves landed deliveries into the warehouse.
    In WebEngage (Data Platform > Integrations > Webhooks) set the URL of this server's /webhooks path;
    WebEngage adds licenseCode, secret and eventType itself. Put TLS in front when exposing it.

    Example:
      WEBENGAGE_LICENSE_CODE=va1w264d WEBENGAGE_WEBHOOK_SECRET=... webengage-sync webhooks serve --port 8766
    """
    from etl import cli_common as base

    base.require_extra("webhooks", "webhooks serve")
    from etl.webhooks.runner import bind_socket
    from etl.webhooks.runner import serve as run_server

    base.setup_logging(verbose)
    settings = _settings(require_auth=True)
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        base.console.print(f"[red]cannot listen on {host}:{port}:[/red] {exc.strerror}")
        raise typer.Exit(1) from None
    bound = sock.getsockname()[1]
    base.console.print(
        f"webhook receiver on http://{host}:{bound}/webhooks, landing in {settings.landing_dir} "
        "(Ctrl-C stops; queued deliveries are written first)"
    )
    run_server(settings, host=host, port=bound, sock=sock)


@webhooks_app.command("replay")
def replay(
    file: Annotated[Path, typer.Argument(help="JSON-lines file: one delivery body, or envelope, per line.")],
    load: Annotated[bool, typer.Option("--load/--no-load", help="Run the loader after landing.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summaries as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Land a JSON-lines file of deliveries through the receiver's landing log, then load it.

    Each line is a delivery body as WebEngage posts it, or an envelope (only body is required):
    {"request_id": "...", "body": {...} or "<raw text>", "event_type": "...", "received_at": "<ISO>"}

    Without a request id the id is a hash of the body's bytes, so replaying a file twice stores each delivery once.
    Bad lines are quarantined with their reason.

    Example:
      webengage-sync webhooks replay backfill.jsonl
    """
    from etl import cli_common as base
    from etl.errors import WebEngageSyncError
    from etl.webhooks.replay import land_file

    base.setup_logging(verbose)
    settings = _settings(require_auth=False)
    try:
        landed = land_file(file, settings)
    except (OSError, WebEngageSyncError) as exc:
        base.console.print(f"[red]replay failed:[/red] {exc.__class__.__name__}: {file}")
        raise typer.Exit(1) from None
    loaded = _load(settings) if load else None
    if as_json:
        typer.echo(json.dumps({"landed": landed, "load": loaded}, indent=2, default=str))
        return
    base.console.print(
        f"landed {landed['deliveries']:,} deliveries: {landed['events']:,} events, "
        f"{landed['quarantined']:,} quarantined {landed['reasons'] or ''}",
        highlight=False,
    )
    if loaded is not None:
        _print_load(loaded)


@webhooks_app.command("load")
def load_now(
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Load every landed delivery not loaded yet into webengage_events, exactly once (what the DAG runs).

    Example:
      WAREHOUSE_URL=postgresql+psycopg://... webengage-sync webhooks load
    """
    from etl import cli_common as base

    base.setup_logging(verbose)
    summary = _load(_settings(require_auth=False))
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    else:
        _print_load(summary)


if __name__ == "__main__":
    webhooks_app()
