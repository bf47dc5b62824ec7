"""The WebEngage page's views: read the state database through :class:`etl.state.store.StateStore` (no SQL
here) and render HTML. Row keys, columns and counts only: never a payload value (as ``webengage-sync rejects``).
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from etl.config import Settings
from etl.plan import PlanLine, effective_rpm, render_plan, total_minutes
from etl.report import render
from etl.state.store import REGISTRY, RUNS, StateStore
from etl.ui.html import Bar, Column, bar_chart, esc, href, kv, number, page, pre, table, tag, when

#: Our DAGs and the pipelines their runs write (``cohort:`` = every cohort). A DAG not listed here (your own
#: sync's) matches every pipeline with the DAG run's id.
DAG_PIPELINES: Final[dict[str, str]] = {
    "webengage_users_sync": "users",
    "webengage_events_sync": "events",
    "webengage_cohort_export": "cohort:",
    "webengage_cohorts_sync": "cohort:",
}
#: Attributes WebEngage keeps per type (account-wide for users, per event name for events).
SLOTS_PER_TYPE: Final = 25
SAMPLE_KEYS: Final = 5

_COUNT_COLUMNS: Final = (
    ("extracted", "extracted"),
    ("unchanged", "unchanged"),
    ("accepted", "accepted"),
    ("rejected", "rejected"),
    ("requests", "requests"),
    ("throttled", "429s"),
)


def _counts(run: Mapping[str, Any]) -> dict[str, Any]:
    counts = run.get("counts") or {}
    return counts if isinstance(counts, dict) else {}


def _status(run: Mapping[str, Any]) -> str:
    dry = " " + tag("dry run", "dry") if run.get("dry_run") else ""
    return tag(str(run["status"])) + dry


def _window(run: Mapping[str, Any]) -> str:
    start, end = run.get("window_start"), run.get("window_end")
    if start is None and end is None:
        return ""
    return f"{when(start)} → {when(end)}" if start is not None else f"until {when(end)}"


def _run_link(run: Mapping[str, Any], root: str) -> str:
    return f'<a href="{href(root + "run", pipeline=run["pipeline"], run_id=run["run_id"])}">{esc(run["run_id"])}</a>'


def _no_state(root: str, active: str, title: str) -> str:
    return page(
        title,
        '<p class="muted">No sync has run against this state database yet (no <code>we_runs</code> table).</p>',
        active=active,
        root=root,
    )


# -- runs -------------------------------------------------------------------------------------------
def runs_page(store: StateStore, *, pipeline: str, last: int, root: str = "./") -> str:
    if not store.has_table(RUNS.name):
        return _no_state(root, "runs", "Runs")
    pipelines = store.pipelines()
    runs = store.runs(pipeline=pipeline or None, last=last)
    options = "".join(
        f'<option value="{esc(p)}"{" selected" if p == pipeline else ""}>{esc(p or "every pipeline")}</option>'
        for p in ["", *pipelines]
    )
    form = (
        f'<form method="get" action="{esc(root)}"><label>pipeline <select name="pipeline">{options}</select></label> '
        f'<label>last <input name="last" type="number" min="1" max="5000" value="{last}" style="width:5em"></label> '
        "<button>show</button></form>"
    )
    real = [r for r in reversed(runs) if not r.get("dry_run")]
    charts = ""
    if real:
        bars = [(r, _counts(r)) for r in real]
        labels = _labels(real)
        charts = bar_chart(
            "accepted rows per run (oldest first; dry runs left out)",
            [
                Bar(label, int(c.get("accepted", 0)), _bar_title(r, c, "accepted"))
                for label, (r, c) in zip(labels, bars, strict=True)
            ],
            color="#38a169",
        ) + bar_chart(
            "rejected rows per run",
            [
                Bar(label, int(c.get("rejected", 0)), _bar_title(r, c, "rejected"))
                for label, (r, c) in zip(labels, bars, strict=True)
            ],
            color="#e53e3e",
        )
    columns: list[Column | str] = [
        "started (UTC)",
        "pipeline",
        "run id",
        "status",
        "window",
        *(Column(title, numeric=True) for _, title in _COUNT_COLUMNS),
        Column("seconds", numeric=True),
    ]
    rows = []
    for r in runs:
        c = _counts(r)
        rows.append(
            [
                when(r["started_at"]),
                esc(r["pipeline"]),
                _run_link(r, root),
                _status(r),
                _window(r),
                *(number(c.get(key, "")) for key, _ in _COUNT_COLUMNS),
                esc(f"{c['duration_s']:.1f}") if isinstance(c.get("duration_s"), int | float) else "",
            ]
        )
    body = form + charts + table(columns, rows, empty="no run of this pipeline yet")
    return page("Runs", body, active="runs", root=root)


def _labels(charted: Sequence[Mapping[str, Any]]) -> list[str]:
    """Bar labels: the time when every charted run is of one day, else the day."""
    fmt = "%H:%M" if len({r["started_at"].date() for r in charted}) == 1 else "%m-%d"
    return [r["started_at"].strftime(fmt) for r in charted]


def _bar_title(run: Mapping[str, Any], counts: Mapping[str, Any], key: str) -> str:
    return f"{run['pipeline']} {run['run_id']} ({run['started_at']:%Y-%m-%d %H:%M}): {key} {counts.get(key, 0):,}"


# -- one run ----------------------------------------------------------------------------------------
def run_page(store: StateStore, *, pipeline: str, run_id: str, root: str = "./") -> str | None:
    """The run's page, or None when there is no such run."""
    if not store.has_table(RUNS.name):
        return None
    found = store.runs(pipeline=pipeline, run_id=run_id, last=1)
    if not found:
        return None
    return page(f"{pipeline} run {run_id}", run_body(store, found[0], root=root), active="runs", root=root)


def run_body(store: StateStore, run: Mapping[str, Any], *, root: str) -> str:
    """One run's report: the summary block, rejects by reason with sample keys, values left out, renamed
    attributes and the command that re-drives it."""
    counts = _counts(run)
    summary = {**counts, "status": run["status"], "run_id": run["run_id"], "pipeline": run["pipeline"]}
    facts = kv(
        [
            ("pipeline", run["pipeline"]),
            ("status", run["status"] + (" (dry run: nothing was sent)" if run.get("dry_run") else "")),
            ("started (UTC)", when(run["started_at"])),
            ("finished (UTC)", when(run.get("finished_at"))),
            ("window", _window(run) or "none"),
        ]
    )
    parts = [facts]
    if run.get("message"):
        parts.append(f'<p class="warn">{esc(run["message"])}</p>')
    parts.append(pre(render(summary)) if counts.get("extracted") is not None else "")
    parts.append("<h2>Rejected rows by reason</h2>")
    by_reason = counts.get("rejected_by_reason") or {}
    parts.append(
        table(
            ["reason", Column("rows", numeric=True)],
            ([esc(k), number(v)] for k, v in by_reason.items()),
            empty="none",
        )
    )
    groups = store.reject_groups(str(run["pipeline"]), sample=SAMPLE_KEYS, run_id=str(run["run_id"]))
    if groups:
        parts.append(
            "<p>Still open (last seen in this run), with up to "
            f"{SAMPLE_KEYS} row keys each (<code>webengage-sync rejects --pipeline "
            f"{esc(shlex.quote(str(run['pipeline'])))} --keys {SAMPLE_KEYS}</code> shows the same):</p>"
        )
        parts.append(
            table(
                ["reason", "column", "kind", "status", Column("rows", numeric=True), "attempts", "sample row keys"],
                (
                    [
                        esc(g["reason"]),
                        esc(g["column_name"]),
                        esc(g["kind"]),
                        tag(str(g["status"])),
                        number(g["rows"]),
                        number(g["max_attempts"]),
                        esc(", ".join(g.get("keys", []))),
                    ]
                    for g in groups
                ),
            )
        )
    parts.append("<h2>Values left out</h2>")
    parts.append(
        table(
            ["reason", Column("values", numeric=True)],
            ([esc(k), number(v)] for k, v in (counts.get("values_dropped_by_reason") or {}).items()),
            empty="none",
        )
    )
    renamed = counts.get("renamed_attributes") or {}
    parts.append("<h2>Attributes renamed for WebEngage</h2>")
    parts.append(table(["in the mapping", "sent as"], ([esc(k), esc(v)] for k, v in renamed.items()), empty="none"))
    parts.append("<h2>Re-drive</h2>")
    parts.append(pre("\n".join(redrive_commands(run))))
    return "".join(parts)


def _iso(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S") if value is not None else ""


def redrive_commands(run: Mapping[str, Any]) -> list[str]:
    """The commands that run this sync again (rejected rows are re-driven by the next run of the pipeline;
    dead ones need reopening first). Values are shell-quoted."""
    pipeline = str(run["pipeline"])
    counts = _counts(run)
    lines = ["# rows refused or failed in transit are re-driven by the next run; fixed data rows go out by themselves"]
    if pipeline == "users":
        command = "webengage-sync sync users"
    elif pipeline == "events":
        start, end = run.get("window_start"), run.get("window_end")
        command = "webengage-sync sync events"
        if start is not None and end is not None:
            command += f" --start {_iso(start)} --end {_iso(end)}"
    elif pipeline.startswith("cohort:"):
        name = shlex.quote(pipeline.split(":", 1)[1])
        if counts.get("operation") == "retire":
            command = f"webengage-sync cohort retire {name}"
        else:
            command = f"webengage-sync cohort export {name}"
            if counts.get("as_of"):
                command += f" --as-of {shlex.quote(str(counts['as_of']))}"
            if counts.get("guard"):
                command += "   # stopped by the guard: add --override-guard if the drop is real"
    else:
        command = f"# re-run the {pipeline} sync (its DAG or its command)"
    if run.get("dry_run"):
        lines.append("# this was a dry run: the same run for real")
    lines.append(command)
    lines.append(
        f"webengage-sync rejects retry --pipeline {shlex.quote(pipeline)}   # reopens rows marked dead after "
        "max_reject_attempts, for the next run"
    )
    lines.append("# in Airflow: trigger the DAG again (Trigger, with the same params)")
    return lines


# -- the DAG run tab --------------------------------------------------------------------------------
def dag_run_runs(store: StateStore, *, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """Our runs for an Airflow DAG run: the syncs store Airflow's run id as theirs, and the DAG says which
    pipelines (two DAGs may share a run id such as ``scheduled__2026-12-02T02:00:00+00:00``)."""
    if not store.has_table(RUNS.name):
        return []
    prefix = DAG_PIPELINES.get(dag_id)
    runs = store.runs(run_id=run_id, last=500, pipeline_prefix=prefix)
    return sorted(runs, key=lambda r: str(r["pipeline"]))


def dag_run_page(store: StateStore, *, dag_id: str, run_id: str, root: str = "./") -> str:
    runs = dag_run_runs(store, dag_id=dag_id, run_id=run_id)
    if not runs:
        body = (
            f'<p class="muted">No WebEngage run recorded for DAG run {esc(run_id)} of {esc(dag_id)}: it has not '
            "started its sync yet, failed before it (see the task log), or this DAG does not write the run "
            "history (the webhook loader).</p>"
        )
    else:
        body = "".join(f"<h2>{esc(r['pipeline'])}</h2>" + run_body(store, r, root=root) for r in runs)
    return page(f"{dag_id} · {run_id}", body, active="runs", root=root)


# -- cohorts ----------------------------------------------------------------------------------------
def cohorts_page(settings: Settings, store: StateStore, *, root: str = "./") -> str:
    from etl.pipelines.cohorts import USERS_SCOPE, list_cohorts

    cohorts = list_cohorts(settings, store=store)
    has_runs = store.has_table(RUNS.name)
    registry = store.registry(USERS_SCOPE) if store.has_table(REGISTRY.name) else {}
    rows = []
    sections = []
    for c in cohorts:
        history = store.runs(pipeline=f"cohort:{c['name']}", last=60) if has_runs else []
        latest = history[0] if history else None
        slot = registry.get(str(c["attribute"]))
        rows.append(
            [
                f"<b>{esc(c['name'])}</b><br><span class=muted>{esc(c.get('description') or '')}</span>",
                f"<code>{esc(c['attribute'])}</code>",
                esc(c["mode"]),
                tag(str(c["status"]), "success" if c["status"] == "active" else ""),
                number(c["members"]),
                _guard(latest),
                esc(f"{slot[0]} slot held" if slot else "no slot yet (taken at its first export)"),
                when(c.get("last_synced_at")),
                number(c.get("events_pending", 0)),
            ]
        )
        sent = [r for r in reversed(history) if not r.get("dry_run") and _counts(r).get("entered") is not None]
        if sent:
            sections.append(f"<h2>{esc(c['name'])}</h2>" + _cohort_history(sent, root))
    columns: list[Column | str] = [
        "cohort",
        "attribute",
        "mode",
        "status",
        Column("members now", numeric=True),
        "guard (last run)",
        "attribute slot",
        "last synced (UTC)",
        Column("events pending", numeric=True),
    ]
    body = table(columns, rows, empty="no cohort configured") + "".join(sections)
    return page("Cohorts", body, active="cohorts", root=root)


def _guard(run: Mapping[str, Any] | None) -> str:
    if run is None:
        return '<span class="muted">never run</span>'
    problem = _counts(run).get("guard")
    if problem:
        held = run["status"] == "failed"
        return tag("stopped" if held else "overridden", "failed" if held else "dry") + " " + esc(problem)
    return tag("ok", "success")


def _cohort_history(runs: Sequence[Mapping[str, Any]], root: str) -> str:
    labels = _labels(runs)
    chart = bar_chart(
        "entered per export",
        [
            Bar(label, int(_counts(r)["entered"]), _bar_title(r, _counts(r), "entered"))
            for label, r in zip(labels, runs, strict=True)
        ],
        color="#38a169",
        height=80,
    ) + bar_chart(
        "exited per export",
        [
            Bar(label, int(_counts(r)["exited"]), _bar_title(r, _counts(r), "exited"))
            for label, r in zip(labels, runs, strict=True)
        ],
        color="#dd6b20",
        height=80,
    )
    rows = [
        [
            when(r["started_at"]),
            _run_link(r, root),
            _status(r),
            number(_counts(r).get("members")),
            number(_counts(r).get("entered")),
            number(_counts(r).get("exited")),
            number(_counts(r).get("requests")),
        ]
        for r in reversed(runs[-10:])
    ]
    cols: list[Column | str] = [
        "started (UTC)",
        "run id",
        "status",
        *(Column(t, numeric=True) for t in ("members", "entered", "exited", "requests")),
    ]
    return chart + table(cols, rows)


# -- budget -----------------------------------------------------------------------------------------
def budget_page(
    settings: Settings,
    store: StateStore,
    *,
    plan: list[PlanLine] | None,
    plan_error: str | None,
    root: str = "./",
) -> str:
    usage = store.registry_usage() if store.has_table(REGISTRY.name) else []
    users: dict[str, dict[str, int]] = {}
    events: dict[str, dict[str, int]] = {}
    for u in usage:
        scope, data_type, owner, n = str(u["scope"]), str(u["data_type"]), str(u["owner"]), int(u["attributes"])
        if scope == "users":
            users.setdefault(data_type, {})[owner] = n
        elif scope.startswith("event:"):
            events.setdefault(data_type, {})
            events[data_type][scope.split(":", 1)[1]] = events[data_type].get(scope.split(":", 1)[1], 0) + n
    parts = ["<h2>User attribute slots (WebEngage keeps 25 custom attributes per type)</h2>"]
    parts.append(
        table(
            ["type", Column("used", numeric=True), Column("free", numeric=True), "held by"],
            (
                [
                    esc(t),
                    f"{sum(o.values())} of {SLOTS_PER_TYPE}",
                    number(max(SLOTS_PER_TYPE - sum(o.values()), 0)),
                    esc(", ".join(f"{owner} {n}" for owner, n in sorted(o.items()))),
                ]
                for t, o in sorted(users.items())
            ),
            empty="no attribute sent yet",
        )
    )
    if events:
        parts.append("<h2>Event attribute slots (25 per type per event name): the fullest event</h2>")
        parts.append(
            table(
                ["type", "event", Column("used", numeric=True)],
                (
                    [esc(t), esc(max(o, key=lambda k: o[k])), f"{max(o.values())} of {SLOTS_PER_TYPE}"]
                    for t, o in sorted(events.items())
                ),
            )
        )
    parts.append("<h2>Plan: what would be sent now</h2>")
    limits = "<h2>Rate limits as paced (budget × headroom × share), requests/min</h2>" + kv(
        (f"/{endpoint}", f"{effective_rpm(settings, endpoint):,.0f}")
        for endpoint in ("bulk-users", "bulk-events", "users", "events")
    )
    if plan is None and plan_error is None:
        parts.append(
            "<p>Dry-runs the profile sync, the dynamic cohorts and the last hour of events against the warehouse "
            "(nothing is sent; each dry run is recorded in the run history, as <code>webengage-sync plan</code> "
            "does). It reads the warehouse, so it takes a moment.</p>"
            f'<form method="get" action="{esc(root + "budget")}"><input type="hidden" name="plan" value="1">'
            "<button>compute the plan now</button></form>"
        )
    elif plan_error is not None:
        parts.append(f'<p class="warn">the plan could not be computed: {esc(plan_error)}</p>')
    else:
        assert plan is not None
        parts.append(
            table(
                [
                    "pipeline",
                    Column("rows to send", numeric=True),
                    Column("requests", numeric=True),
                    "endpoint",
                    "ETA at the limit",
                    "would reject",
                ],
                (
                    [
                        esc(line.pipeline),
                        number(line.rows),
                        number(line.requests),
                        esc(line.endpoint),
                        esc(line.describe().rsplit("→ ", 1)[-1]),
                        esc(", ".join(f"{r} {n:,}" for r, n in line.rejects.items())),
                    ]
                    for line in plan
                ),
            )
        )
        parts.append(pre(render_plan(plan, settings)))
        parts.append(f"<p class=muted>total about {total_minutes(plan, settings):.1f} min at the limits below</p>")
    parts.append(limits)
    return page("Budget", "".join(parts), active="budget", root=root)


def events_window(now: datetime) -> tuple[datetime, datetime]:
    """The last complete hour (the hourly events DAG's latest data interval)."""
    end = now.replace(minute=0, second=0, microsecond=0)
    return end - timedelta(hours=1), end
