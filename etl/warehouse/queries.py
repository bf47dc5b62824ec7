"""SQL files by name, bound parameters only, and chunked reads with flat memory.

DuckDB is read through its Arrow record-batch reader (about 80x ``pandas.read_sql`` here, see
notes-databases.md); every other database through a server-side cursor in ``fetchmany`` chunks.
Both paths compile the same SQLAlchemy ``text()`` statement, so parameters are always bound by the
driver, never spliced into the SQL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.errors import ConfigError
from etl.warehouse.engine import connect_with_retry, is_duckdb

DEFAULT_CHUNK_ROWS = 100_000


def sql_dir() -> Path:
    """The ``sql/`` folder: ``WEBENGAGE_SQL_DIR`` or the one beside the ``etl`` package."""
    override = os.environ.get("WEBENGAGE_SQL_DIR")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "sql"


def load_sql(name_or_path: str | Path) -> str:
    """Read a query: an existing path as given, else a name relative to :func:`sql_dir`."""
    path = Path(name_or_path)
    if not path.is_file():
        path = sql_dir() / path
    if not path.is_file():
        raise ConfigError("sql", f"query file not found: {name_or_path}")
    return path.read_text(encoding="utf-8")


def split_statements(script: str) -> list[str]:
    """Split a DDL script on ``;`` at line ends (our DDL files keep one statement per block)."""
    parts = [p.strip() for p in script.split(";\n")]
    return [p.rstrip(";").strip() for p in parts if p.strip() and not _only_comments(p)]


def _only_comments(block: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in block.splitlines())


def read_chunks(
    engine: Engine,
    sql: str | sa.Executable,
    params: Mapping[str, Any] | None = None,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Iterator[pd.DataFrame]:
    """Run ``sql`` (text or a SQLAlchemy statement) with bound ``params``; yield DataFrames of at most
    ``chunk_rows`` rows."""
    stmt = sa.text(sql) if isinstance(sql, str) else sql
    params = dict(params or {})
    with connect_with_retry(engine) as conn:
        if is_duckdb(engine):
            yield from _duckdb_chunks(conn, stmt, params, chunk_rows)
        else:
            yield from _cursor_chunks(conn, stmt, params, chunk_rows)


def _duckdb_chunks(
    conn: Connection, stmt: sa.Executable, params: dict[str, Any], chunk_rows: int
) -> Iterator[pd.DataFrame]:
    assert isinstance(stmt, sa.ClauseElement)
    compiled = stmt.params(**params).compile(dialect=conn.dialect)
    # duckdb-engine compiles to positional ("?") parameters; positiontup gives their order.
    order: list[str] = getattr(compiled, "positiontup", None) or []
    positional = [compiled.params[name] for name in order]
    raw = conn.connection.driver_connection
    assert raw is not None
    # Relation.to_arrow_reader streams record batches: flat memory, no per-row Python objects.
    reader = raw.sql(compiled.string, params=positional or None).to_arrow_reader(chunk_rows)
    for batch in reader:
        if batch.num_rows:
            yield batch.to_pandas()


def _cursor_chunks(
    conn: Connection, stmt: sa.Executable, params: dict[str, Any], chunk_rows: int
) -> Iterator[pd.DataFrame]:
    result = conn.execution_options(stream_results=True, max_row_buffer=chunk_rows).execute(stmt, params)
    columns = list(result.keys())
    while rows := result.fetchmany(chunk_rows):
        yield pd.DataFrame.from_records(rows, columns=columns)


def ordered_by(sql: str | sa.Select[Any], key: str) -> sa.Select[Any]:
    """``SELECT * FROM (<sql>) AS src ORDER BY <key>``, composed by SQLAlchemy (the key is quoted as an
    identifier by the dialect; the query's own ``:params`` stay bound)."""
    src = (sa.text(sql).columns(sa.column(key)) if isinstance(sql, str) else sql).subquery("src")
    if key not in src.c:
        src = sa.select(sa.literal_column("*"), sa.column(key)).select_from(src).subquery("src2")
    return sa.select(sa.literal_column("src.*")).select_from(src).order_by(src.c[key])
