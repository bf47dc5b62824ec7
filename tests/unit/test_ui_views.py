"""The WebEngage page's pure parts: the re-drive commands, escaping, the events window."""

from __future__ import annotations

from datetime import UTC, datetime

from etl.ui.html import Bar, bar_chart, href, table
from etl.ui.views import events_window, redrive_commands


def run(pipeline: str, **extra: object) -> dict[str, object]:
    return {"pipeline": pipeline, "run_id": "r1", "status": "success", "dry_run": False, **extra}


def test_redrive_commands_name_the_pipeline_and_its_window() -> None:
    events = redrive_commands(
        run("events", window_start=datetime(2026, 11, 30, 1), window_end=datetime(2026, 11, 30, 2))
    )
    assert "webengage-sync sync events --start 2026-11-30T01:00:00 --end 2026-11-30T02:00:00" in events
    cohort = redrive_commands(
        run("cohort:vip_buyers_30d", counts={"guard": "3 of 4 members would leave", "as_of": "2026-11-30T00:00:00"})
    )
    assert any(line.startswith("webengage-sync cohort export vip_buyers_30d --as-of") for line in cohort)
    assert any("--override-guard" in line for line in cohort)
    assert "webengage-sync cohort retire churn_risk" in redrive_commands(
        run("cohort:churn_risk", counts={"operation": "retire"})
    )
    dry = redrive_commands(run("users", dry_run=True))
    assert "# this was a dry run: the same run for real" in dry and "webengage-sync sync users" in dry
    # A pipeline name from the database is quoted for the shell.
    odd = redrive_commands(run("crm; rm -rf /"))
    assert "webengage-sync rejects retry --pipeline 'crm; rm -rf /'" in " ".join(odd)


def test_values_are_escaped_in_cells_links_and_charts() -> None:
    evil = '<script>alert("x")</script>'
    assert "<script>" not in table(["run"], [[href("run", run_id=evil)]])
    assert "<script>" not in bar_chart(evil, [Bar(evil, 3, evil)], color="red")
    assert href("run", pipeline="cohort:a b", run_id="manual__2026-11-30T00:00:00+00:00") == (
        "run?pipeline=cohort%3Aa+b&amp;run_id=manual__2026-11-30T00%3A00%3A00%2B00%3A00"
    )


def test_the_events_plan_covers_the_last_complete_hour() -> None:
    start, end = events_window(datetime(2027, 1, 5, 10, 42, 7, tzinfo=UTC))
    assert (start, end) == (datetime(2027, 1, 5, 9, tzinfo=UTC), datetime(2027, 1, 5, 10, tzinfo=UTC))
