"""The readable run summary: what a task log or the CLI shows first."""

from __future__ import annotations

from etl.report import RunReport, render


def summary_of(*, dry_run: bool, pipeline: str = "users") -> dict[str, object]:
    report = RunReport(pipeline=pipeline, run_id="r1", dry_run=dry_run, extracted=3, unchanged=1, sent=2)
    report.status = "success"
    return report.summary()


def test_a_dry_run_says_so_before_anything_else() -> None:
    text = render(summary_of(dry_run=True))
    assert text.startswith("== DRY RUN == webengage-sync users run r1: SUCCESS (dry run: nothing was sent)")
    assert "would send 2 rows" in text


def test_a_real_run_does_not() -> None:
    text = render(summary_of(dry_run=False))
    assert text.startswith("== webengage-sync users run r1: SUCCESS") and "DRY RUN" not in text


def test_empty_reason_counts_are_left_out() -> None:
    report = RunReport(pipeline="events", run_id="r2", extracted=1, accepted=1)
    report.rejected["dead_after_retries"] += 0  # touched, never counted
    assert report.summary()["rejected_by_reason"] == {}
