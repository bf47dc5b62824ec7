"""Failures under Airflow: a permanent one (wrong key, license or host, bad configuration, a query the
warehouse refuses, a guard stop, counts that do not add up) fails the task at once instead of going "up for
retry", and its fix names what an Airflow user edits: the connection, not environment variables."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final, ParamSpec, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from etl.airflow.wording import airflow_wording
from etl.errors import ConfigError, GuardStop, QueryError, TerminalAPIError
from etl.report import InvariantError

__all__ = ["PERMANENT", "airflow_wording", "fail_fast"]

P = ParamSpec("P")
R = TypeVar("R")

#: Retrying cannot fix these: the next attempt would fail the same way (and cost requests).
PERMANENT: Final = (TerminalAPIError, ConfigError, QueryError, GuardStop, InvariantError)


def fail_fast(task: Callable[P, R]) -> Callable[P, R]:
    """Decorate a task function: permanent failures raise AirflowFailException (no retries)."""

    @functools.wraps(task)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return task(*args, **kwargs)
        except PERMANENT as exc:
            raise AirflowFailException(airflow_wording(f"{type(exc).__name__}: {exc}")) from exc

    return run
