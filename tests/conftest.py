"""Shared fixtures and the ``fast`` marker. Airflow reads its environment at import, so it is set here before
anything imports it."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.postgres import pg_bindir, throwaway_cluster
from tests.helpers.warehouse import DemoTemplates

ROOT = Path(__file__).resolve().parents[1]
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="we-airflow-")
os.environ.setdefault("AIRFLOW_HOME", _AIRFLOW_HOME)
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(ROOT / "dags"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")


#: tests/dags tests that only import and parse the DAG files (no run): fast. A test is one of them when it asks
#: for no fixture beyond the DagBag's own.
DAG_PARSE_FIXTURES = frozenset({"dagbag", "airflow_db", "monkeypatch", "request"})


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``fast`` (``pytest -m fast``, ``make test-fast``) every unit test and the DAG parse tests."""
    tests = Path(__file__).resolve().parent
    for item in items:
        try:
            area = item.path.resolve().relative_to(tests).parts[0]
        except ValueError:
            continue
        fixtures = set(getattr(item, "fixturenames", ()))
        if area == "unit" or (area == "dags" and fixtures <= DAG_PARSE_FIXTURES):
            item.add_marker(pytest.mark.fast)


@pytest.fixture(scope="session")
def demo_templates(tmp_path_factory: pytest.TempPathFactory) -> DemoTemplates:
    """Demo warehouses built once per session (per size and setup), copied per test with ``.copy(tmp_path, n)``."""
    return DemoTemplates(tmp_path_factory.mktemp("demo-templates"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port (runs as `postgres` when we are root)."""
    if pg_bindir() is None:
        pytest.skip("PostgreSQL server binaries (initdb/pg_ctl) not found on this machine")
    with throwaway_cluster(timeout_s=60) as url:
        yield url


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[str]:
    """A fresh database per test inside the session cluster."""
    import uuid

    import sqlalchemy as sa

    name = "t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))  # name is generated here, not user input
    try:
        yield pg_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
