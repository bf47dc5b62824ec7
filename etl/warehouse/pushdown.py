"""Where a sync's diff against its state runs (issue 16): in the warehouse, so that only new or changed rows
leave it, or in the worker, which reads every row and compares there.

SQL can only join the state when it lives in the warehouse's database (``STATE_URL`` empty or the same
database). ``diff_mode`` (``auto`` | ``warehouse`` | ``python``) chooses; ``auto`` takes the warehouse when
it can. Forcing ``warehouse`` checks first that the warehouse's connection sees the state tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from etl.config import Settings
from etl.errors import ConfigError
from etl.warehouse.engine import connect_with_retry

Where = Literal["warehouse", "python"]


def same_database(warehouse_url: str, state_url: str) -> bool:
    """Whether both URLs reach one database, so one SQL statement can join tables of both. DuckDB: the same
    file (query options such as ``memory_limit`` aside; ``:memory:`` never: each engine gets its own);
    others: the same server, user, database and options."""
    a, b = sa.make_url(warehouse_url), sa.make_url(state_url)
    if a.get_backend_name() != b.get_backend_name():
        return False
    if a.get_backend_name() == "duckdb":
        da, db = _duckdb_file(a.database), _duckdb_file(b.database)
        return da is not None and da == db
    return (a.host, a.port, a.username, a.database, dict(a.query)) == (
        b.host,
        b.port,
        b.username,
        b.database,
        dict(b.query),
    )


def _duckdb_file(database: str | None) -> Path | None:
    if not database or database.startswith(":memory:"):
        return None
    return Path(database).expanduser().resolve()


def diff_location(settings: Settings, warehouse: Engine, *, state_tables: Sequence[str]) -> Where:
    """Where this run's diff runs (see the module doc); raises :class:`ConfigError` when ``warehouse`` is
    forced but the warehouse's connection cannot see ``state_tables``."""
    mode = settings.diff_mode
    if mode == "python":
        return "python"
    if mode == "auto":
        return "warehouse" if same_database(settings.warehouse_url, settings.effective_state_url) else "python"
    with connect_with_retry(warehouse) as conn:
        inspector = sa.inspect(conn)
        missing = [t for t in state_tables if not inspector.has_table(t)]
    if missing:
        raise ConfigError(
            "diff_mode",
            f"warehouse: the warehouse's database has no {', '.join(missing)} table; keep the state there "
            "(STATE_URL empty) or use diff_mode auto/python",
        )
    return "warehouse"
