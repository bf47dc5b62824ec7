"""``webengage-sync sync merges``: anonymous -> known merges from identify data. Mounted on ``sync`` by
:mod:`etl.cli` (``sync_app.add_typer(merges_app)``)."""

from __future__ import annotations

from typing import Annotated

import typer

merges_app = typer.Typer(help="Merge anonymous visitors into known users.", no_args_is_help=True)


@merges_app.command("merges")
def sync_merges(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Send nothing; show what would be merged.")] = False,
    mapping: Annotated[str, typer.Option(help="Events mapping file (TOML) with a [merges] table.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """Send each new (anonymous_id, user_id) pair of the identify data once, as a /users call carrying
    both ids, so WebEngage merges the anonymous profile and its pre-login events into the user.

    Examples:
      webengage-sync sync merges --dry-run
      WEBENGAGE_API_URL=http://127.0.0.1:8765 webengage-sync sync merges
    """
    from etl.cli_common import Progress, fail, load_settings, print_summary, setup_logging
    from etl.errors import WebEngageSyncError
    from etl.pipelines import merges

    setup_logging(verbose)
    settings = load_settings(credentials=not dry_run, events_mapping=mapping or None)
    try:
        summary = merges.run(settings, dry_run=dry_run, progress=Progress("merges"))
    except WebEngageSyncError as exc:
        raise fail("merges sync", exc) from None
    print_summary(summary, as_json)


if __name__ == "__main__":
    merges_app()
