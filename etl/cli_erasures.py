"""``webengage-sync sync erasures``: GDPR erasure requests for users deleted in the warehouse. Mounted on
``sync`` by :mod:`etl.cli` (``sync_app.add_typer(erasures_app)``); also runnable alone:
``python -m etl.cli_erasures``."""

from __future__ import annotations

from typing import Annotated

import typer

erasures_app = typer.Typer(help="Erase deleted users in WebEngage.", no_args_is_help=False)


@erasures_app.command("erasures")
def sync_erasures(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Send nothing; show what would be erased.")] = False,
    override_guard: Annotated[
        bool, typer.Option("--override-guard", help="Send even when more than max_erasure_share look deleted.")
    ] = False,
    mapping: Annotated[str, typer.Option(help="Users mapping file (TOML) with its [deletions] rules.")] = "",
    as_of: Annotated[str, typer.Option("--as-of", help="Bound as the users query's :as_of (ISO); default now.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("-v", "--verbose")] = False,
) -> None:
    """One GDPR erasure request per user synced before and deleted in the warehouse (users mapping:
    deletions = "erase"), each exactly once; then check the status of earlier requests.

    Examples:
      webengage-sync sync erasures --dry-run
      WEBENGAGE_API_URL=http://127.0.0.1:8765 webengage-sync sync erasures
      webengage-sync sync erasures --override-guard   # the deletions are real
    """
    from etl.cli_common import (
        Progress,
        as_of_or_now,
        fail,
        load_settings,
        print_summary,
        setup_logging,
    )
    from etl.errors import WebEngageSyncError
    from etl.pipelines import erasures

    setup_logging(verbose)
    instant = as_of_or_now(as_of)
    settings = load_settings(credentials=not dry_run, users_mapping=mapping or None)
    try:
        summary = erasures.run(
            settings, as_of=instant, dry_run=dry_run, override_guard=override_guard, progress=Progress("erasures")
        )
    except WebEngageSyncError as exc:
        raise fail("erasures", exc) from None
    print_summary(summary, as_json)


if __name__ == "__main__":
    erasures_app()
