"""The erasure run's summary block and its requests (for task logs, the CLI and ``runs show``): counts,
statuses and request ids; user ids only in ``runs show``, which reads the state database anyway."""

from __future__ import annotations

from typing import Any

from etl.report import closing, counts, heading
from etl.state import erasures as journal
from etl.state.store import StateStore


def _minutes(requests: int, rpm: float) -> str:
    if not requests or not rpm:
        return "0 s"
    minutes = requests / rpm
    return f"{minutes * 60:.0f} s" if minutes < 1 else f"{minutes:.1f} min"


def render_summary(summary: dict[str, Any]) -> str:
    dry = summary.get("dry_run")
    rules = ", ".join(summary.get("deletion_rules") or []) or "none"
    found = counts(summary.get("detected_by", {})) or "none"
    verb = "would send" if dry else "sent"
    rpm = float(summary.get("gdpr_rpm") or 0)
    lines = [
        heading(summary, "erasures"),
        f"   deletions = {summary['deletions']} (rules: {rules}); users synced before: {summary['synced_users']:,}",
        f"   deleted users found {summary['extracted']:,} (by rule: {found}) = already requested "
        f"{summary['unchanged']:,} + accepted {summary['accepted']:,} + rejected {summary['rejected']:,}"
        + (f" (+ {summary['sent'] - summary['accepted']:,} to send)" if dry else ""),
        f"   {verb} {summary['sent']:,} erasure requests (one user each): about "
        f"{_minutes(int(summary['sent']), rpm)} at {rpm:,.0f} req/min; HTTP requests {summary['requests']:,}, "
        f"429s {summary['throttled']:,}, retries {summary['retries']:,}; {summary['duration_s']:.1f}s",
    ]
    if summary.get("replayed_requests"):
        lines.append(
            f"   replayed {summary['replayed_requests']:,} journaled requests: accepted "
            f"{summary['replayed_accepted']:,}, not accepted {summary['replay_failed']:,}"
        )
    if summary.get("status_checks"):
        lines.append(f"   status checks {summary['status_checks']:,}: {counts(summary.get('statuses_seen', {}))}")
    statuses = summary.get("request_statuses") or {}
    if statuses:
        lines.append(
            "   requests by status (all runs): "
            + counts(statuses)
            + f"; not finished in WebEngage: {summary.get('pending', 0):,}"
        )
    if summary.get("rejected_by_reason"):
        lines.append("   rejected: " + counts(summary["rejected_by_reason"]))
    if summary.get("guard"):
        lines.append(f"   guard: {summary['guard']} (max_erasure_share={summary['max_erasure_share']:g})")
    return "\n".join(lines + closing(summary))


def render_requests(store: StateStore, run_id: str, *, limit: int = 50) -> str:
    """The requests a run journaled, with their current status (checked by later runs)."""
    total, rows = journal.of_run(store, run_id, limit=limit)
    if not total:
        return "   no erasure request was journaled by this run"
    lines = [f"   erasure requests journaled by this run: {total:,} (current status; later runs check pending ones)"]
    for r in rows:
        checked = f", checked {r['checked_at']:%Y-%m-%d %H:%M}" if r["checked_at"] else ""
        note = f" ({r['message']})" if r["message"] else ""
        lines.append(f"     {r['request_id']}  {r['user_id']}  {r['status']}{checked}{note}")
    if total > len(rows):
        lines.append(f"     … and {total - len(rows):,} more")
    return "\n".join(lines)
