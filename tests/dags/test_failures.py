"""Permanent failures fail the task at once (no retries) and speak of the connection, not env variables."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.environ["AIRFLOW__CORE__DAGS_FOLDER"])

from airflow.sdk.exceptions import AirflowFailException
from webengage_common.failures import airflow_wording, fail_fast

from etl.errors import ConfigError, TerminalAPIError, TransientExhaustedError
from etl.webengage.retry import AUTH_HINT, HOST_HINT, NOT_FOUND_HINT


@pytest.mark.parametrize(
    "exc",
    [
        TerminalAPIError("HTTP 401", status_code=401, endpoint="POST x", hint=AUTH_HINT),
        ConfigError("license_code", "missing (set WEBENGAGE_LICENSE_CODE or the Airflow connection)"),
    ],
)
def test_permanent_failures_fail_fast(exc: Exception) -> None:
    @fail_fast
    def task() -> None:
        raise exc

    with pytest.raises(AirflowFailException) as err:
        task()
    assert err.value.__cause__ is exc and "WEBENGAGE_" not in str(err.value)


def test_transient_failures_keep_airflow_retries() -> None:
    @fail_fast
    def task() -> None:
        raise TransientExhaustedError("retries ran out")

    with pytest.raises(TransientExhaustedError):
        task()


def test_the_hints_name_the_connection_fields() -> None:
    assert "password (API key) of the Airflow connection webengage_default" in airflow_wording(AUTH_HINT)
    assert "login (license code) of the Airflow connection" in airflow_wording(NOT_FOUND_HINT)
    assert "data centre / API URL of the Airflow connection webengage_default" in airflow_wording(HOST_HINT)
    assert "WEBENGAGE_" not in airflow_wording(AUTH_HINT + NOT_FOUND_HINT + HOST_HINT)
