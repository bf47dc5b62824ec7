"""Run reports: the counters a run keeps, the invariant they must satisfy, and their rendering.

Every extracted row ends in exactly one bucket: ``unchanged`` (already in WebEngage), ``accepted`` or
``rejected`` (with a reason). :meth:`RunReport.check` fails the run loudly when they do not add up.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from etl.errors import WebEngageSyncError


class InvariantError(WebEngageSyncError):
    """Counts do not add up: some row is unaccounted for."""


@dataclass
class RunReport:
    pipeline: str
    run_id: str
    dry_run: bool = False
    window_start: datetime | None = None
    window_end: datetime | None = None
    status: str = "running"
    extracted: int = 0
    unchanged: int = 0
    sent: int = 0  # rows put in requests (a row re-sent after a split counts once)
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)  # reason -> rows
    values_dropped: Counter[str] = field(default_factory=Counter)  # reason -> values left out
    trimmed: int = 0
    coerced: int = 0
    cleared: int = 0
    cleaned: int = 0  # values and keys that lost control characters
    batches: int = 0
    http: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0
    message: str = ""

    @property
    def rejected_rows(self) -> int:
        return sum(self.rejected.values())

    def check(self) -> None:
        """Raise unless extracted = unchanged + accepted + rejected."""
        total = self.unchanged + self.accepted + self.rejected_rows
        if self.dry_run:
            total += self.sent - self.accepted  # a dry run "would send" without acceptance
        if total != self.extracted:
            raise InvariantError(
                f"{self.pipeline} run {self.run_id}: extracted {self.extracted} != unchanged {self.unchanged} + "
                f"accepted {self.accepted} + rejected {self.rejected_rows}; rows are unaccounted for"
            )

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly dict (the Airflow task's XCom and the runs table's counts)."""
        return {
            "pipeline": self.pipeline,
            "run_id": self.run_id,
            "status": self.status,
            "dry_run": self.dry_run,
            "window_start": self.window_start.isoformat() if self.window_start else None,
            "window_end": self.window_end.isoformat() if self.window_end else None,
            "extracted": self.extracted,
            "unchanged": self.unchanged,
            "sent": self.sent,
            "accepted": self.accepted,
            "rejected": self.rejected_rows,
            "rejected_by_reason": {k: v for k, v in sorted(self.rejected.items()) if v},
            "values_dropped_by_reason": {k: v for k, v in sorted(self.values_dropped.items()) if v},
            "trimmed": self.trimmed,
            "coerced": self.coerced,
            "cleared": self.cleared,
            "cleaned": self.cleaned,
            "batches": self.batches,
            "requests": self.http.get("requests", 0),
            "throttled": self.http.get("throttled", 0),
            "retries": self.http.get("retries", 0),
            "duration_s": round(self.duration_s, 3),
            "renamed_attributes": dict(self.renamed),
            "notes": list(self.notes),
            "message": self.message,
        }


def heading(summary: dict[str, Any], what: str) -> str:
    """A summary block's first line. A dry run says so before anything else (a task log shows it first)."""
    dry = summary.get("dry_run")
    return (
        f"{'== DRY RUN ==' if dry else '=='} webengage-sync {what} run {summary['run_id']}: "
        f"{summary['status'].upper()}" + (" (dry run: nothing was sent)" if dry else "")
    )


def counts(by_key: dict[str, Any]) -> str:
    """``key n, key n`` (counts by reason, rule or status)."""
    return ", ".join(f"{k} {n:,}" for k, n in by_key.items())


def closing(summary: dict[str, Any]) -> list[str]:
    """A summary block's last lines: the run's notes, then its failure message."""
    return [f"   note: {n}" for n in summary.get("notes", [])] + (
        [f"   {summary['message']}"] if summary.get("message") else []
    )


def render(summary: dict[str, Any]) -> str:
    """A readable block for task logs and the CLI (counts only: no personal data), for any sync's summary."""
    if str(summary.get("pipeline", "")).startswith("cohort:"):
        return _render_cohort(summary)
    if summary.get("pipeline") == "erasures" and "deletions" in summary:
        from etl.report_erasures import render_summary  # the erasure run's own lines

        return render_summary(summary)
    verb = "would send" if summary.get("dry_run") else "sent"
    lines = [
        heading(summary, str(summary["pipeline"])),
        f"   extracted {summary['extracted']:,} = unchanged {summary['unchanged']:,} + accepted "
        f"{summary['accepted']:,} + rejected {summary['rejected']:,}"
        + (f" (+ {summary['sent'] - summary['accepted']:,} to send)" if summary.get("dry_run") else ""),
        f"   {verb} {summary['sent']:,} rows in {summary['batches']:,} batches; HTTP requests "
        f"{summary['requests']:,}, 429s {summary['throttled']:,}, retries {summary['retries']:,}; "
        f"{summary['duration_s']:.1f}s",
        f"   values trimmed {summary['trimmed']:,}, coerced {summary['coerced']:,}, cleared {summary['cleared']:,}"
        + (f", cleaned of control characters {summary['cleaned']:,}" if summary.get("cleaned") else ""),
    ]
    if summary.get("pipeline") == "merges":
        lines.append(
            f"   merges: {summary['merged']:,} new, {summary['already_merged']:,} already merged "
            f"({summary['merged_total']:,} in all); shared devices {summary['shared_devices']:,}; "
            f"journaled pairs re-sent {summary['resent_pairs']:,} ({summary['resent_merged']:,} merged)"
        )
    for title, key in (
        ("rejected rows", "rejected_by_reason"),
        ("values left out", "values_dropped_by_reason"),
    ):
        if summary.get(key):
            lines.append(f"   {title}: " + counts(summary[key]))
    for old, new in summary.get("renamed_attributes", {}).items():
        lines.append(f"   attribute renamed for WebEngage: {old} -> {new}")
    return "\n".join(lines + closing(summary))


def _render_cohort(summary: dict[str, Any]) -> str:
    """A cohort run: members, entered/exited, attribute updates and events (counts only)."""
    excluded = counts(summary["excluded"]) or "none"
    verb = "would send" if summary.get("dry_run") else "sent"
    lines = [
        heading(summary, f"cohort {summary['cohort']} ({summary['attribute']}) {summary['operation']}"),
        f"   query rows {summary['extracted']:,} -> members {summary['members']:,} (excluded: {excluded})",
        f"   previous members {summary['previous_members']:,}: entered {summary['entered']:,}, exited "
        f"{summary['exited']:,}, unchanged {summary['unchanged']:,}, re-sent unconfirmed {summary['resent']:,}",
        f"   {verb} {summary['sent']:,} attribute updates in {summary['batches']:,} batches ({summary['requests']:,} "
        f"requests): accepted {summary['accepted']:,}, rejected {summary['rejected']:,}; {summary['duration_s']:.1f}s",
    ]
    ev = summary["events"]
    if ev["enabled"]:
        lines.append(
            f"   events: queued {ev['queued']:,}, sent {ev['sent']:,}, rejected {ev['rejected']:,}, still pending "
            f"{ev['failed']:,} ({ev['requests']:,} requests)"
        )
    if summary.get("rejected_by_reason"):
        lines.append("   rejected: " + counts(summary["rejected_by_reason"]))
    if summary.get("snapshot_members") is not None:
        lines.append(f"   members in WebEngage now: {summary['snapshot_members']:,}")
    if summary.get("guard"):
        lines.append(f"   guard: {summary['guard']}")
    return "\n".join(lines + closing(summary))
