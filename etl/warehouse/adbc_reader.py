"""A columnar PostgreSQL reader (issue 16): ADBC's PostgreSQL driver streams a result as Arrow record batches
(binary COPY), about 5x psycopg's row-by-row path (171k vs ~31k rows/s, 1M rows x 30 columns; notes-databases.md).

Optional: used when ``adbc-driver-postgresql`` is installed (extra ``postgres-fast``); without it, or when it
cannot run a query (connection options libpq does not know, a parameter type it cannot bind), the reader falls
back to psycopg before any row is read. Frames come out as the psycopg path makes them (the transform, hashes
and diffs must not see which reader ran): integers int64 (float64 with NULLs), ``numeric`` as ``Decimal``,
``json``/``jsonb`` parsed, ``real`` as its shortest decimal text reads, arrays as lists, an all-NULL column
as ``None`` objects; timestamps keep pandas' microsecond dtypes (``timestamptz`` in UTC).

Parameters stay bound: the statement is compiled by SQLAlchemy's psycopg dialect with positional ``$n``
placeholders, and the values travel separately.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
from collections.abc import Iterator
from decimal import Decimal
from functools import cache
from typing import Any, cast

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

_DIALECT = pg_psycopg.dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]


@cache
def installed() -> bool:
    """Whether the ADBC PostgreSQL driver can be imported (the ``postgres-fast`` extra)."""
    return importlib.util.find_spec("adbc_driver_postgresql") is not None


def usable(engine: Engine) -> bool:
    """ADBC reads this engine's queries: a PostgreSQL URL and the driver installed."""
    return engine.url.get_backend_name() == "postgresql" and installed()


def libpq_uri(url: sa.URL) -> str:
    """The engine's URL as a libpq URI (``postgresql://…``; query options such as ``sslmode`` kept)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def compile_positional(stmt: sa.Executable, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """``stmt`` as PostgreSQL SQL with ``$1, $2, …`` placeholders and their values in order."""
    assert isinstance(stmt, sa.ClauseElement)
    compiled = stmt.params(**params).compile(dialect=_DIALECT)
    order: list[str] = list(getattr(compiled, "positiontup", None) or [])
    return compiled.string, [compiled.params[name] for name in order]


class _Open:
    """An ADBC connection, cursor and the result's batch reader (closed together)."""

    def __init__(self, engine: Engine, stmt: sa.Executable, params: dict[str, Any]) -> None:
        import adbc_driver_postgresql.dbapi as adbc

        sql, values = compile_positional(stmt, params)
        self.conn = adbc.connect(libpq_uri(engine.url))
        try:
            self.cursor = self.conn.cursor()
            self.cursor.execute("SET TIME ZONE 'UTC'")  # as the psycopg engines: naive instants are UTC
            self.cursor.execute(sql, parameters=values or None)
            self.reader: pa.RecordBatchReader = self.cursor.fetch_record_batch()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.cursor.close()
        with contextlib.suppress(Exception):
            self.conn.rollback()  # read only; nothing to keep
        with contextlib.suppress(Exception):
            self.conn.close()


def open_batches(engine: Engine, stmt: sa.Executable, params: dict[str, Any]) -> Iterator[pa.RecordBatch] | None:
    """The result's record batches, or None when ADBC cannot run this query here (the caller falls back to
    psycopg; nothing was read). A query the database refuses falls back too, so its error comes from the
    usual path."""
    import adbc_driver_manager

    try:
        opened = _Open(engine, stmt, params)
    except (adbc_driver_manager.Error, ValueError, TypeError, pa.ArrowException) as exc:
        # The class only: a libpq message may quote the connection string.
        log.info("ADBC reader not used for this query (%s); reading with psycopg", exc.__class__.__name__)
        return None
    return _stream(opened)


def _stream(opened: _Open) -> Iterator[pa.RecordBatch]:
    import adbc_driver_manager

    try:
        yield from opened.reader
    except adbc_driver_manager.Error as exc:
        # As SQLAlchemy wraps psycopg's: callers handle one family of errors whichever reader ran.
        wrapper = _SA_ERRORS.get(type(exc).__name__, sa.exc.DBAPIError)
        raise wrapper("ADBC record-batch stream", None, exc) from exc
    finally:
        opened.close()


_SA_ERRORS: dict[str, type[sa.exc.DBAPIError]] = {
    "OperationalError": sa.exc.OperationalError,
    "ProgrammingError": sa.exc.ProgrammingError,
    "DataError": sa.exc.DataError,
    "IntegrityError": sa.exc.IntegrityError,
    "InternalError": sa.exc.InternalError,
}


# -- Arrow -> the psycopg path's frame ----------------------------------------------------------------
def to_frame(table: pa.Table) -> pd.DataFrame:
    """A DataFrame as ``pandas.DataFrame.from_records`` over psycopg's rows would build it."""
    columns = [_column(table.column(i), table.schema.field(i)) for i in range(table.num_columns)]
    frame = pd.DataFrame(dict(enumerate(columns)), index=pd.RangeIndex(table.num_rows))
    frame.columns = pd.Index(table.column_names)
    return frame


def _pg_type(field: pa.Field) -> str:
    meta = field.metadata or {}
    return (meta.get(b"POSTGRESQL:type") or meta.get(b"ADBC:postgresql:typname") or b"").decode()


def _column(column: pa.ChunkedArray, field: pa.Field) -> pd.Series:
    kind, pg = column.type, _pg_type(field)
    n = len(column)
    if n and column.null_count == n:
        return pd.Series([None] * n, dtype=object)  # from_records: an all-None column stays object
    if pa.types.is_integer(kind):
        return pd.Series(
            column.to_numpy().astype(np.float64) if column.null_count else column.to_numpy().astype(np.int64)
        )
    if pa.types.is_float32(kind):
        # psycopg parses real's text output (shortest form: 1.1), not the binary float32 (1.100000023841858).
        values = pc.cast(pc.cast(column, pa.string()), pa.float64())
        return pd.Series(values.to_numpy(zero_copy_only=False), dtype=np.float64)
    if pa.types.is_boolean(kind) and column.null_count:
        return pd.Series(column.to_pylist(), dtype=object)
    if pg in ("json", "jsonb"):
        return pd.Series(_json_values(_storage(column)), dtype=object)
    if pg == "numeric":
        texts = _storage(column).to_pylist()
        values = [None if v is None else Decimal(v) for v in texts] if column.null_count else list(map(Decimal, texts))
        return pd.Series(values, dtype=object)
    if isinstance(kind, pa.BaseExtensionType) and not _is_uuid(kind):
        return pd.Series(_storage(column).to_pylist())  # other PostgreSQL types: their text, as psycopg's
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_interval(kind):
        return pd.Series(column.to_pylist(), dtype=object)
    return cast(pd.Series, column.to_pandas())


def _json_values(texts: pa.ChunkedArray) -> list[Any]:
    """Parsed JSON values (None for NULL), as psycopg's loader gives them: the column is joined into one JSON
    array and parsed in one call (~5x per value); values that need the per-value rules (integers beyond
    64 bits, text orjson refuses) take them."""
    from etl.warehouse.queries import _LONG_DIGITS, _json_loads

    filled = pc.fill_null(texts.combine_chunks(), "null")
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array([0, len(filled)], pa.int32()), filled), ",")
    body = joined[0].as_py() or ""
    if not _LONG_DIGITS.search(body):
        with contextlib.suppress(orjson.JSONDecodeError):
            parsed: list[Any] = orjson.loads("[" + body + "]")
            if len(parsed) == len(texts):
                return parsed
    return [None if v is None else _json_loads(v) for v in texts.to_pylist()]


def _is_uuid(kind: pa.DataType) -> bool:
    return getattr(kind, "extension_name", "") == "arrow.uuid"


def _storage(column: pa.ChunkedArray) -> pa.ChunkedArray:
    kind = column.type
    if isinstance(kind, pa.BaseExtensionType):
        return pa.chunked_array([c.storage for c in column.chunks], type=kind.storage_type)
    return column
