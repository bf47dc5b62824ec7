"""Demo warehouses built once per session and copied per test, and independent readers of the profile side:
the users the state store holds, the users the warehouse holds that WebEngage should get."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa

from etl.state.store import USER_STATE
from etl.warehouse.engine import make_engine
from webengage_dev.demo.warehouse import build_demo_warehouse

#: The day the tests' demo warehouses are built for (the demo's data is relative to it).
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
#: A table the test decides the members of (``SELECT user_id FROM test_cohort``).
COHORT_TABLE = "CREATE TABLE test_cohort (user_id VARCHAR)"


class DemoTemplates:
    """Demo warehouses built once (per size, as-of day and extra setup SQL) and copied for each test."""

    def __init__(self, base: Path) -> None:
        self._base = base
        self._built: dict[tuple[int, datetime, str], Path] = {}

    def template(self, users: int, *, as_of: datetime = AS_OF, setup: str = "") -> Path:
        """The shared template: read it, never write it (copy it with :meth:`copy`)."""
        key = (users, as_of, setup)
        if key not in self._built:
            path = self._base / f"demo-{len(self._built)}.duckdb"
            build_demo_warehouse(path, users=users, as_of=as_of)
            if setup:
                with duckdb.connect(str(path)) as con:
                    con.execute(setup)
            self._built[key] = path
        return self._built[key]

    def copy(self, directory: Path, users: int, *, as_of: datetime = AS_OF, setup: str = "") -> Path:
        """A private copy of the template in ``directory`` (``warehouse.duckdb``)."""
        path = directory / "warehouse.duckdb"
        path.write_bytes(self.template(users, as_of=as_of, setup=setup).read_bytes())
        return path


def warehouse_fixture(users: int, *, setup: str = "") -> Any:
    """A ``warehouse`` fixture for a module (``warehouse = warehouse_fixture(600)``): a private copy of the demo
    template of ``users`` users in the test's ``tmp_path``."""

    @pytest.fixture
    def warehouse(demo_templates: DemoTemplates, tmp_path: Path) -> Path:
        return demo_templates.copy(tmp_path, users, setup=setup)

    return warehouse


def duck(warehouse: Path | str) -> str:
    """The URL of a DuckDB file (a URL is returned as it is)."""
    return f"duckdb:///{warehouse}" if isinstance(warehouse, Path) else warehouse


def user_state_ids(warehouse: Path | str) -> set[str]:
    """The users the state store says WebEngage accepted (none before the first run made the table)."""
    engine = make_engine(duck(warehouse))
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("we_user_state"):
                return set()
            return {r[0] for r in conn.execute(sa.select(USER_STATE.c.user_id))}
    finally:
        engine.dispose()


def valid_user_ids(warehouse: Path) -> set[str]:
    """What WebEngage should end up with: distinct non-blank ids of at most 100 characters."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        ids = pd.Series([r[0] for r in con.execute("SELECT user_id FROM users").fetchall()], dtype="string")
    ids = ids.str.strip()
    return set(ids[ids.notna() & (ids != "") & (ids.str.len() <= 100)].tolist())
