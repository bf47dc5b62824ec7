"""``webengage-sync plan``: what each pipeline would send now, the API budget it uses and how long it
takes at the configured rate limits — computed by dry runs, so the figures are what a real run sends.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from etl.config import Settings
from etl.webengage.models import Endpoint


@dataclass(frozen=True, kw_only=True)
class PlanLine:
    pipeline: str
    noun: str  # "changed users", "events", "cohort changes"
    rows: int
    requests: int
    endpoint: Endpoint
    rpm: float
    rejects: dict[str, int] = field(default_factory=dict)
    warning: str = ""

    @property
    def minutes(self) -> float:
        return self.requests / self.rpm if self.rpm else 0.0

    def describe(self) -> str:
        return (
            f"{self.pipeline}: {self.rows:,} {self.noun} → {self.requests:,} requests → "
            f"{_duration(self.minutes)} at {self.rpm:,.0f} req/min"
        )


def _duration(minutes: float) -> str:
    if minutes < 1:
        return f"{math.ceil(minutes * 60)} s"
    if minutes < 120:
        return f"{round(minutes)} min"
    return f"{minutes / 60:.1f} h"


def effective_rpm(settings: Settings, endpoint: Endpoint) -> float:
    """Requests/minute the client really paces at (the budget times the headroom)."""
    budget = {
        "bulk-users": settings.bulk_users_rpm,
        "bulk-events": settings.bulk_events_rpm,
        "users": settings.users_rpm,
        "events": settings.events_rpm,
        "opengdpr_requests": settings.gdpr_rpm,
    }[endpoint]
    if settings.shared_bulk_budget and endpoint in ("bulk-users", "bulk-events"):
        budget = min(settings.bulk_users_rpm, settings.bulk_events_rpm)
    return budget * settings.rate_headroom * settings.budget_share


def line_from_summary(
    summary: dict[str, Any], *, settings: Settings, noun: str, endpoint: Endpoint, requests_key: str = "batches"
) -> PlanLine:
    return PlanLine(
        pipeline=str(summary["pipeline"]),
        noun=noun,
        rows=int(summary["sent"]),
        requests=int(summary.get(requests_key, 0)),
        endpoint=endpoint,
        rpm=effective_rpm(settings, endpoint),
        rejects=dict(summary.get("rejected_by_reason", {})),
    )


def total_minutes(lines: Iterable[PlanLine], settings: Settings) -> float:
    """Minutes for all lines: endpoints with their own budget run side by side, a shared one adds up."""
    per_budget: dict[str, float] = {}
    for line in lines:
        shared = settings.shared_bulk_budget and line.endpoint in ("bulk-users", "bulk-events")
        key = "bulk" if shared else line.endpoint
        per_budget[key] = per_budget.get(key, 0.0) + line.minutes
    return max(per_budget.values(), default=0.0)


def plan(
    settings: Settings,
    *,
    users: bool = True,
    cohorts: bool = True,
    events_window: tuple[datetime, datetime] | None = None,
    as_of: datetime,
    clock: Callable[[], datetime] | None = None,
    erasures: bool = True,
) -> list[PlanLine]:
    """Dry-run each selected pipeline (nothing is sent or written but the run history) and plan it. Erasures
    are planned when the users mapping says ``deletions = "erase"``."""
    from etl.pipelines import cohorts as cohort_pipeline
    from etl.pipelines import users as users_pipeline

    extra: dict[str, Any] = {"clock": clock} if clock else {}
    lines: list[PlanLine] = []
    if users:
        summary = users_pipeline.run(settings, dry_run=True, window=(None, as_of), **extra)
        lines.append(line_from_summary(summary, settings=settings, noun="changed users", endpoint="bulk-users"))
    if erasures and users_pipeline.load_mapping(settings).deletions.erase:
        from etl.pipelines import erasures as erasure_pipeline

        summary = erasure_pipeline.run(settings, dry_run=True, as_of=as_of, **extra)
        line = line_from_summary(summary, settings=settings, noun="deleted users", endpoint="opengdpr_requests")
        if summary.get("guard"):
            line = dataclasses.replace(line, warning=f"a real run stops here (guard): {summary['guard']}")
        lines.append(line)
    if events_window is not None:
        from etl.pipelines import events as events_pipeline

        summary = events_pipeline.run(settings, window=events_window, dry_run=True, **extra)
        lines.append(line_from_summary(summary, settings=settings, noun="new events", endpoint="bulk-events"))
    lines.extend(_merges(settings, extra))
    if cohorts:
        config = cohort_pipeline.load_config(settings)
        for spec in config.cohorts:
            if spec.mode != "dynamic":
                continue
            summary = cohort_pipeline.export(
                settings, cohort=spec.name, as_of=as_of, dry_run=True, config=config, **extra
            )
            lines.append(
                line_from_summary(summary, settings=settings, noun="membership changes", endpoint="bulk-users")
            )
    return lines


def _merges(settings: Settings, extra: dict[str, Any]) -> list[PlanLine]:
    """Anonymous -> known merges, when the events mapping turns them on (one /users call per pair)."""
    from etl.pipelines import merges as merges_pipeline

    if not merges_pipeline.load_config(settings).enabled:
        return []
    summary = merges_pipeline.run(settings, dry_run=True, **extra)
    return [line_from_summary(summary, settings=settings, noun="new merges", endpoint="users")]


def render_plan(lines: list[PlanLine], settings: Settings) -> str:
    out = [line.describe() for line in lines]
    for line in lines:
        if line.rejects:
            out.append(f"  {line.pipeline} would reject: " + ", ".join(f"{r} {n:,}" for r, n in line.rejects.items()))
        if line.warning:
            out.append(f"  {line.pipeline}: {line.warning}")
    total = total_minutes(lines, settings)
    out.append(f"total: {sum(x.requests for x in lines):,} requests, about {_duration(total)} at the configured limits")
    if settings.max_run_minutes and total > settings.max_run_minutes:
        out.append(
            f"WARNING: this is longer than max_run_minutes={settings.max_run_minutes:g}; raise the WebEngage rate "
            "limits, split the back-fill, or expect the sync to run past its window"
        )
    return "\n".join(out)


def eta_warning(settings: Settings, *, as_of: datetime, clock: Callable[[], datetime] | None = None) -> str | None:
    """Before a profile sync: a warning when its plan is longer than ``max_run_minutes`` (None when shorter or
    the check is off). Costs one extra read of the source, so it only runs when the setting is set."""
    if not settings.max_run_minutes:
        return None
    [line] = plan(settings, users=True, cohorts=False, erasures=False, as_of=as_of, clock=clock)
    if line.minutes <= settings.max_run_minutes:
        return None
    return (
        f"{line.describe()}: longer than max_run_minutes={settings.max_run_minutes:g}. It will run past its window "
        "unless WebEngage raises the rate limit or the back-fill is split."
    )
