"""SQL files by name, bound parameters only, and chunked reads with flat memory.

DuckDB is read through its Arrow record-batch reader (about 80x ``pandas.read_sql`` here, see
notes-databases.md); PostgreSQL through ADBC's Arrow stream when ``adbc-driver-postgresql`` is installed
(:mod:`etl.warehouse.adbc_reader`); every other database through a server-side cursor in ``fetchmany`` chunks.
Both paths compile the same SQLAlchemy ``text()`` statement, so parameters are always bound by the
driver, never spliced into the SQL.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from etl.errors import ConfigError, QueryError
from etl.resources import sql_path
from etl.warehouse import adbc_reader
from etl.warehouse.engine import connect_with_retry, is_duckdb

DEFAULT_CHUNK_ROWS = 100_000
_LONG_DIGITS = re.compile(r"[0-9]{19}")
_LONG_DIGITS_B = re.compile(rb"[0-9]{19}")
_SUB_ROWS = 10_000  # rows turned into a DataFrame at a time on the cursor path


def load_sql(name_or_path: str | Path) -> str:
    """Read a query: an existing path as given, else a name under ``WEBENGAGE_SQL_DIR`` or the packaged
    defaults (:func:`etl.resources.sql_path`)."""
    path = sql_path(name_or_path)
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
    order_key: str | None = None,
    label: str = "query",
    key_ranges: bool = True,
) -> Iterator[pd.DataFrame]:
    """Run ``sql`` (text or a SQLAlchemy statement) with bound ``params``; yield DataFrames of about
    ``chunk_rows`` rows.

    ``order_key``: ``sql`` is a SELECT ordered by this column (e.g. from :func:`ordered_by`). Then all rows
    of one key come in one chunk (a chunk grows by the rest of a key's run rather than split it), so
    duplicates can be resolved chunk by chunk. DuckDB runs inside this process, so one ORDER BY over the
    whole result would hold all of it in our memory (about +600 MB per million 30-column rows); with
    ``order_key`` DuckDB reads it in key ranges of about ``chunk_rows`` rows, each sorted on its own, in one
    transaction: the same rows in the same order, with memory bounded by the chunk size. Other databases
    sort on their server. ``key_ranges=False``: one ordered query instead, for a result that is small next
    to its inputs (the in-warehouse diff: each key range would re-run the whole diff).

    A query the database refuses raises :class:`QueryError` naming ``label`` (the query file) with the
    database's message, not the driver's traceback."""
    stmt = sa.text(sql) if isinstance(sql, str) else sql
    params = dict(params or {})
    try:
        if adbc_reader.usable(engine):
            batches = adbc_reader.open_batches(engine, stmt, params)
            if batches is not None:
                for table in _recut(batches, chunk_rows, order_key):
                    yield adbc_reader.to_frame(table)
                return
        with connect_with_retry(engine) as conn:
            if is_duckdb(engine) and order_key is not None and key_ranges and isinstance(stmt, sa.Select):
                yield from _duckdb_key_ranges(conn, stmt, params, chunk_rows, order_key)
            elif is_duckdb(engine):
                yield from _recut_frames(_duckdb_batches(conn, stmt, params, chunk_rows), chunk_rows, order_key)
            else:
                yield from _cursor_chunks(conn, stmt, params, chunk_rows, order_key)
    except (sa.exc.ProgrammingError, sa.exc.DataError, duckdb.ProgrammingError, duckdb.DataError) as exc:
        # The query's own fault (names, types); connection and lock errors keep their own handling.
        raise QueryError(label, str(getattr(exc, "orig", None) or exc)) from None


def _duckdb_batches(
    conn: Connection, stmt: sa.Executable, params: dict[str, Any], chunk_rows: int
) -> Iterator[pa.RecordBatch]:
    assert isinstance(stmt, sa.ClauseElement)
    compiled = stmt.params(**params).compile(dialect=conn.dialect)
    # duckdb-engine compiles to positional ("?") parameters; positiontup gives their order.
    order: list[str] = getattr(compiled, "positiontup", None) or []
    positional = [compiled.params[name] for name in order]
    raw = conn.connection.driver_connection
    assert raw is not None
    # Relation.to_arrow_reader streams record batches: flat memory, no per-row Python objects.
    yield from raw.sql(compiled.string, params=positional or None).to_arrow_reader(chunk_rows)


def _duckdb_key_ranges(
    conn: Connection, stmt: sa.Select[Any], params: dict[str, Any], chunk_rows: int, key: str
) -> Iterator[pd.DataFrame]:
    # Our parameters are named we_range_* so they cannot collide with the query's own.
    source = stmt.order_by(None).subquery("we_src")
    k: sa.ColumnClause[Any] = sa.column(key)
    # Every chunk_rows-th key in key order: only the keys are sorted for this, not the rows.
    numbered = (
        sa.select(k.label("k"), sa.func.row_number().over(order_by=k).label("rn"))
        .select_from(source)
        .where(k.is_not(None))
        .subquery("we_keys")
    )
    starts_q = (
        sa.select(numbered.c.k).where((numbered.c.rn - 1) % sa.bindparam("we_range_every") == 0).order_by(numbered.c.k)
    )
    rows: sa.Select[Any] = sa.select(sa.literal_column("*")).select_from(source)
    raw = conn.connection.driver_connection
    assert raw is not None
    raw.begin()  # one snapshot for the boundaries and every range
    try:
        batches = _duckdb_batches(conn, starts_q, {**params, "we_range_every": chunk_rows}, chunk_rows)
        starts = [value for batch in batches for value in batch.column(0).to_pylist()]
        yield from _recut_frames(_range_batches(conn, rows, k, params, starts, chunk_rows), chunk_rows, key)
    except BaseException:
        # Best effort: a run that failed mid-extract may close this generator only once the connection
        # is already gone, and the rollback must not mask the original error.
        with contextlib.suppress(Exception):
            raw.rollback()
        raise
    raw.commit()


def _range_batches(
    conn: Connection,
    rows: sa.Select[Any],
    k: sa.ColumnClause[Any],
    params: dict[str, Any],
    starts: list[Any],
    chunk_rows: int,
) -> Iterator[pa.RecordBatch]:
    for lo, hi in zip(starts, [*starts[1:], None], strict=False):  # the last range is open-ended
        if hi is None:
            part = rows.where(k >= sa.bindparam("we_range_lo"))
        elif lo == hi:
            continue  # one key fills more than a chunk: its rows are all in the range that starts at it
        else:
            part = rows.where(k >= sa.bindparam("we_range_lo"), k < sa.bindparam("we_range_hi"))
        yield from _duckdb_batches(conn, part.order_by(k), {**params, "we_range_lo": lo, "we_range_hi": hi}, chunk_rows)
    # NULL keys sort last under ORDER BY, as here.
    yield from _duckdb_batches(conn, rows.where(k.is_(None)), params, chunk_rows)


def _recut_frames(batches: Iterable[pa.RecordBatch], rows: int, key: str | None = None) -> Iterator[pd.DataFrame]:
    yield from (table.to_pandas() for table in _recut(batches, rows, key))


def _recut(batches: Iterable[pa.RecordBatch], rows: int, key: str | None = None) -> Iterator[pa.Table]:
    """Arrow tables of ``rows`` rows (the last one shorter; with ``key``, longer by the rest of the run of
    the key at the cut, so no key straddles two tables). DuckDB hands out uneven batches (e.g. 100,000 then
    22,880); every chunk pays fixed costs downstream (a state lookup, coercion set-up), so uneven batches
    nearly double them. Slicing is zero-copy."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for batch in batches:
        if not batch.num_rows:
            continue
        pending.append(batch)
        held += batch.num_rows
        while held >= rows:
            table = pa.Table.from_batches(pending)
            cut = rows if key is None else _run_end(table.column(key), rows)
            if cut >= held:
                break  # the key at the cut may go on in the next batch
            yield table.slice(0, cut)
            rest = table.slice(cut)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def _run_end(keys: pa.ChunkedArray, at: int) -> int:
    """Index of the first row from ``at`` on whose key differs from the key at ``at - 1`` (or the end)."""
    if isinstance(keys.type, pa.BaseExtensionType):  # e.g. arrow.uuid from ADBC: compared on its storage
        keys = pa.chunked_array([c.storage for c in keys.chunks], type=keys.type.storage_type)
    last = keys[at - 1]
    if not last.is_valid:
        return at  # rows without a key are not grouped (each is rejected on its own)
    differs = pc.fill_null(pc.not_equal(keys.slice(at), last), True)
    pos = pc.index(differs, True).as_py()
    return at + pos if pos >= 0 else len(keys)


def _cursor_chunks(
    conn: Connection, stmt: sa.Executable, params: dict[str, Any], chunk_rows: int, key: str | None
) -> Iterator[pd.DataFrame]:
    # Rows arrive as Python objects; turning every _SUB_ROWS of them into a frame at once keeps only that
    # many alive (peak RSS on 100k-row chunks: 620 -> 350 MB) and is faster too. Plain tuples: handed Row
    # objects, from_records probes each for mapping keys (two failed lookups per row).
    step = min(chunk_rows, _SUB_ROWS)
    _fast_json(conn)
    result = conn.execution_options(stream_results=True, max_row_buffer=step).execute(stmt, params)
    columns = list(result.keys())
    frames: list[pd.DataFrame] = []
    held = 0
    # Fetch up to chunk_rows exactly; only a single key longer than a chunk makes one grow past it.
    while rows := result.fetchmany(min(step, chunk_rows - held) if held < chunk_rows else step):
        frames.append(pd.DataFrame.from_records([tuple(row) for row in rows], columns=columns))
        held += len(rows)
        if held >= chunk_rows:
            chunk = _concat(frames)
            # With a key, the run of the last key waits for the next chunk (it may go on there).
            cut = len(chunk) if key is None else _run_start(chunk[key])
            if cut:
                yield chunk.iloc[:cut]
                frames, held = [chunk.iloc[cut:]], len(chunk) - cut
            else:
                frames = [chunk]  # one key so far: keep reading
    if held:
        yield _concat(frames)


def _run_start(keys: pd.Series) -> int:
    """Where the trailing run of the last key starts (the length when that key is missing)."""
    last = keys.iloc[-1]
    if last is None or last is pd.NA or last != last:
        return len(keys)  # rows without a key are not grouped (each is rejected on its own)
    others = np.flatnonzero((keys != last).to_numpy(dtype=bool, na_value=True))
    return int(others[-1]) + 1 if len(others) else 0


def _json_loads(data: bytes | bytearray | memoryview | str) -> Any:
    raw = bytes(data) if isinstance(data, memoryview) else data
    # orjson turns integers beyond 64 bits into floats; leave any long digit run to the stdlib.
    long_digits = _LONG_DIGITS.search(raw) if isinstance(raw, str) else _LONG_DIGITS_B.search(raw)
    if long_digits:
        return json.loads(raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:  # what orjson refuses (e.g. lone surrogates): the stdlib decides
        return json.loads(raw)


def _fast_json(conn: Connection) -> None:
    """Parse json/jsonb with orjson on psycopg: the same values as the stdlib's ``json.loads`` (psycopg's
    default), 1.5x faster; JSON parsing was ~8% of a PostgreSQL extract. Other drivers are left alone."""
    raw = conn.connection.driver_connection
    if type(raw).__module__.startswith("psycopg."):
        from psycopg.types.json import set_json_loads

        set_json_loads(_json_loads, raw)


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    # A sub-batch may infer another dtype than its neighbours (a column of only NULLs is object, one with
    # a NULL int is float64); concat widens to a common dtype, which can be looser (object) than one
    # from_records over the whole chunk. The transform and row hashes accept either (same values).
    return frames[0].reset_index(drop=True) if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def ordered_by(sql: str | sa.Select[Any], key: str) -> sa.Select[Any]:
    """``SELECT * FROM (<sql>) AS src ORDER BY <key>``, composed by SQLAlchemy (the key is quoted as an
    identifier by the dialect; the query's own ``:params`` stay bound)."""
    return ordered_key(sql, key)[0]


def ordered_key(sql: str | sa.Select[Any], key: str) -> tuple[sa.Select[Any], sa.ColumnElement[Any]]:
    """:func:`ordered_by` and its key column (``src.<key>``), for conditions added to the statement later
    (e.g. an anti-join against the sync state)."""
    src = (sa.text(sql).columns(sa.column(key)) if isinstance(sql, str) else sql).subquery("src")
    if key not in src.c:
        src = sa.select(sa.literal_column("*"), sa.column(key)).select_from(src).subquery("src2")
    return sa.select(sa.literal_column("src.*")).select_from(src).order_by(src.c[key]), src.c[key]
