"""Airflow fixtures: a metadata DB per session (in-process resetdb) and fresh DagBags per test.

conftest.py at the tests root sets AIRFLOW_HOME / DAGS_FOLDER before anything imports Airflow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def airflow_db() -> None:
    from airflow.utils import db

    db.resetdb()


@pytest.fixture
def dagbag(airflow_db: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    # Airflow's DAG processor puts the bundle (dags/) on sys.path so DAG files can share modules
    # (webengage_common); a bare DagBag does not.
    monkeypatch.syspath_prepend(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    # A fresh DagBag per test: dag.test(run_conf=...) mutates task params in place.
    return DagBag(dag_folder=os.environ["AIRFLOW__CORE__DAGS_FOLDER"])


@pytest.fixture
def webengage_connection(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Point the `webengage_default` connection (and the warehouse) somewhere for one test."""

    def set_conn(*, url: str, license_code: str, api_key: str, **extra: Any) -> None:
        conn = {"conn_type": "http", "host": url, "login": license_code, "password": api_key, "extra": extra}
        monkeypatch.setenv("AIRFLOW_CONN_WEBENGAGE_DEFAULT", json.dumps(conn))

    return set_conn


def run_dag(dagbag: Any, dag_id: str, conf: dict[str, Any] | None = None, **test_kwargs: Any) -> Any:
    """Run a DAG with dag.test() (``logical_date=`` etc. passed on); retries off (Airflow would really wait
    between them)."""
    dag = dagbag.get_dag(dag_id)
    assert dag is not None, dagbag.import_errors
    for t in dag.tasks:
        t.retries = 0
    return dag.test(run_conf=conf or {}, **test_kwargs)


@pytest.fixture
def dag_runner() -> Iterator[Callable[..., Any]]:
    yield run_dag
