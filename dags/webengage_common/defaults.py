"""Task defaults shared by the WebEngage DAGs: retries (safe: every pipeline checkpoints after
acceptance), the API pool, and the failure hook where users plug their alerting."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

#: Airflow pool the WebEngage tasks run in (create it: `airflow pools set webengage_api 2 "WebEngage API"`).
POOL_ENV = "WEBENGAGE_AIRFLOW_POOL"
#: "module:attribute" of a callable (e.g. an Airflow notifier) called with the context of a failed task.
CALLBACK_ENV = "WEBENGAGE_ON_FAILURE_CALLBACK"

log = logging.getLogger("webengage.alerts")


def _user_callback() -> Callable[[Any], Any] | None:
    target = os.environ.get(CALLBACK_ENV, "").strip()
    if not target:
        return None
    module, _, attr = target.partition(":")
    hook = getattr(importlib.import_module(module), attr or "on_failure")
    if not callable(hook):
        raise TypeError(f"{CALLBACK_ENV}={target} is not callable")
    return hook  # type: ignore[no-any-return]


def on_failure(context: Any) -> None:
    """Log the failure reason in one line (counts and ids only), then call the user's hook if configured."""
    ti = context.get("ti") or context.get("task_instance")
    exc = context.get("exception")
    log.error(
        "webengage task failed: dag=%s task=%s run=%s reason=%s",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        context.get("run_id"),
        exc,
    )
    hook = _user_callback()
    if hook is not None:
        hook(context)


def task_defaults(*, retries: int = 2) -> dict[str, Any]:
    """default_args for every WebEngage DAG."""
    args: dict[str, Any] = {
        "retries": retries,
        "retry_delay": timedelta(minutes=2),
        "on_failure_callback": on_failure,
    }
    pool = os.environ.get(POOL_ENV, "").strip()
    if pool:
        args["pool"] = pool
    return args


def schedule(variable: str, default: str) -> str:
    """A DAG's cron schedule: the environment variable when set (read at parse time), else the default."""
    return os.environ.get(variable, "").strip() or default
