"""``webengage-sync sync events``: the event sync for one window. Mounted on ``sync`` by :mod:`etl.cli`
(``sync_app.add_typer(events_app)``); also runnable alone: ``python -m etl.cli_events --start .. --end ..``."""

from __future__ import annotations

from typing import Annotated

import typer

from etl.cli_common import parse_instant

events_app = typer.Typer(help="Sync warehouse events to WebEngage.", no_args_is_help=True)


@events_app.command("events")
def sync_events(
    start: Annotated[str, typer.Option(help="Window start, ISO 8601 (UTC when no offset), inclusive.")],
    end: Annotated[str, typer.Option(help="Window end, exclusive.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Send nothing; show what would be sent.")] = False,
    mapping: Annotated[str, typer.Option(help="Events mapping file (TOML).")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Sync the events of [START, END) (widened by the mapping's lookback), each exactly once.

    Events WebEngage already accepted are skipped whatever window is re-run, so overlapping and
    repeated windows are safe.

    Examples:
      webengage-sync sync events --start 2026-10-31T00:00 --end 2026-11-01T00:00 --dry-run
      WEBENGAGE_API_URL=http://127.0.0.1:8765 webengage-sync sync events --start 2026-10-31 --end 2026-11-01
    """
    from etl.cli_common import Progress, fail, load_settings, print_summary, setup_logging
    from etl.errors import WebEngageSyncError
    from etl.pipelines import events

    window = (parse_instant(start, option="--start"), parse_instant(end, option="--end"))
    setup_logging(verbose)
    settings = load_settings(credentials=not dry_run, events_mapping=mapping or None)
    try:
        summary = events.run(settings, window=window, dry_run=dry_run, progress=Progress("events"))
    except WebEngageSyncError as exc:
        raise fail("events sync", exc) from None
    print_summary(summary, as_json)


if __name__ == "__main__":
    events_app()
