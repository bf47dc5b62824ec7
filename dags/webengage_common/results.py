"""The end of every WebEngage task, in one place: the readable summary block in the task log, the asset
events, and the XCom value.

* The block is **logged** line by line while the task runs, so the Airflow UI shows it in the task's own log
  section. (``print`` goes through the task's stdout pipe, which is block-buffered: its lines arrived after the
  task had returned, inside the collapsed "Post Execute" group.) A dry run's block starts with ``== DRY RUN ==``.
* Asset events go through an :class:`~airflow.sdk.AssetAlias` outlet, so a **dry run publishes none** (a plain
  outlet emits on every success) and DAGs scheduled on the assets run only after a run that could send. The
  event's ``extra`` carries the run's counts.
* The XCom ``return_value`` is the summary **flattened** (``rejected_by_reason.invalid_phone``, ``events.sent``):
  one level of scalars, readable in the UI's XCom view and by downstream tasks.

Airflow 3's task SDK offers no way for a task to set its own task-instance or DAG-run note (only the REST API
with a user's token can), so the counts live in the log block, the XCom and the asset events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from etl.report import render as render_report
from webengage_common.assets import COHORT_ALIAS, COHORTS_ASSET, cohort_asset, counts_extra

log = logging.getLogger("webengage.summary")


def flat(summary: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """One level of scalars: nested mappings become ``parent.child`` keys, lists of scalars one text."""
    out: dict[str, Any] = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat(value, f"{name}."))
        elif isinstance(value, list | tuple):
            out[name] = "; ".join(str(v) for v in value)
        else:
            out[name] = value
    return out


def log_block(text: str) -> None:
    """A summary block in the task log, a record per line (the UI shows one line per record)."""
    for line in text.splitlines():
        log.info("%s", line)


def finish(
    summary: Mapping[str, Any],
    *,
    outlet_events: Any = None,
    alias: Any = None,
    assets: Iterable[Any] = (),
    render: Callable[[dict[str, Any]], str] = render_report,
) -> dict[str, Any]:
    """Log the summary block, publish ``assets`` through ``alias`` with the counts unless it was a dry run,
    and return the flat summary (the task's XCom)."""
    log_block(render(dict(summary)))
    published = flat(summary)
    if alias is not None and outlet_events is not None:
        if summary.get("dry_run"):
            log.info("dry run: no asset event (DAGs scheduled on %s do not run)", ", ".join(a.uri for a in assets))
        else:
            for asset in assets:
                outlet_events[alias].add(asset, extra=counts_extra(published))
    return published


def finish_cohort(summary: Mapping[str, Any], outlet_events: Any) -> dict[str, Any]:
    """:func:`finish` for a cohort run: publishes ``webengage://cohorts`` and ``webengage://cohorts/<name>``."""
    assets = [COHORTS_ASSET, cohort_asset(str(summary["cohort"]))]
    return finish(summary, outlet_events=outlet_events, alias=COHORT_ALIAS, assets=assets)
