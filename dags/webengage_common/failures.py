"""Failures under Airflow: a permanent one (wrong key, license or host, bad configuration, a query the
warehouse refuses, a guard stop, counts that do not add up) fails the task at once instead of going "up for
retry", and its fix names what an Airflow user edits: the connection, not environment variables."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final, ParamSpec, TypeVar

from airflow.sdk.exceptions import AirflowFailException

from etl.errors import ConfigError, GuardStop, QueryError, TerminalAPIError
from etl.report import InvariantError

P = ParamSpec("P")
R = TypeVar("R")

#: Retrying cannot fix these: the next attempt would fail the same way (and cost requests).
PERMANENT: Final = (TerminalAPIError, ConfigError, QueryError, GuardStop, InvariantError)
_CONN = "the Airflow connection webengage_default"
#: Environment wording -> connection wording (longest first: the combined one before its parts).
_WORDING: Final = (
    ("WEBENGAGE_DATA_CENTER/WEBENGAGE_API_URL", f"the host of {_CONN}"),
    ("WEBENGAGE_API_KEY", f"the password (API key) of {_CONN}"),
    ("WEBENGAGE_LICENSE_CODE", f"the login (license code) of {_CONN}"),
    ("WEBENGAGE_DATA_CENTER", f"the host of {_CONN}"),
    ("WEBENGAGE_API_URL", f"the host of {_CONN}"),
)


def airflow_wording(message: str) -> str:
    for env, conn in _WORDING:
        message = message.replace(env, conn)
    return message


def fail_fast(task: Callable[P, R]) -> Callable[P, R]:
    """Decorate a task function: permanent failures raise AirflowFailException (no retries)."""

    @functools.wraps(task)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return task(*args, **kwargs)
        except PERMANENT as exc:
            raise AirflowFailException(airflow_wording(f"{type(exc).__name__}: {exc}")) from exc

    return run
