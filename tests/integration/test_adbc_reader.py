"""The columnar PostgreSQL reader (ADBC, issue 16) gives the same frames as the psycopg reader: dtypes, NULLs,
time zones, parsed JSON, Decimals; with bound parameters; and falls back to psycopg when it cannot run."""

from __future__ import annotations

import decimal
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from etl.errors import QueryError
from etl.warehouse import adbc_reader, queries
from etl.warehouse.engine import make_engine

pytestmark = pytest.mark.postgres
pytest.importorskip("adbc_driver_postgresql")

DDL = """CREATE TABLE mix (
    id int PRIMARY KEY, i int, b bigint, s smallint, n numeric(12, 2), nn numeric, t text, v varchar(20),
    f bool, fnull bool, r real, d double precision, ts timestamp, tz timestamptz, dt date, j json, jb jsonb,
    u uuid, by bytea, arr int[], only_null text, pct text)"""
INSERT = sa.text(
    "INSERT INTO mix VALUES (:id, :i, :b, :s, :n, :nn, :t, :v, :f, :fnull, :r, :d, :ts, :tz, :dt, "
    "CAST(:j AS json), CAST(:jb AS jsonb), :u, :by, :arr, NULL, :pct)"
)


def _row(k: int) -> dict[str, Any]:
    """Row ``k``: every 7th value NULL, varied values otherwise (big ints, long JSON integers, unicode)."""
    null = k % 7 == 3
    base = datetime(2026, 3, 1, 12, 0) + timedelta(minutes=37 * k, microseconds=k)
    return {
        "id": k,
        "i": None if null else k * 3 - 50,
        "b": None if k % 5 == 1 else 9_007_199_254_740_000 + k,
        "s": k % 300,
        "n": None if null else decimal.Decimal(k) / 4,
        "nn": decimal.Decimal("NaN") if k == 8 else decimal.Decimal(f"{k}.{k:03d}1"),
        "t": None if null else f"text {k} ünïcødé '%s' %% $1",
        "v": f"v{k}",
        "f": k % 2 == 0,
        "fnull": None if null else k % 3 == 0,
        "r": None if null else k / 10,
        "d": k / 3,
        "ts": None if null else base,
        "tz": None if null else (base + timedelta(hours=5)).replace(tzinfo=UTC),
        "dt": None if null else date(2026, 1, 1) + timedelta(days=k),
        "j": None if null else f'{{"k": {k}, "big": 123456789012345678901234, "list": [1, "a", null]}}',
        "jb": '{"nested": {"x": [1.5, true]}}' if k % 2 else "[1, 2, 3]",
        "u": None if null else uuid.UUID(int=k * 7919),
        "by": None if null else bytes([k % 256, 0, 255]),
        "arr": None if null else [k, k + 1],
        "pct": "50%",
    }


@pytest.fixture
def pg(pg_db: str) -> Iterator[sa.Engine]:
    engine = make_engine(pg_db)
    with engine.begin() as conn:
        conn.execute(sa.text(DDL))
        conn.execute(INSERT, [_row(k) for k in range(240)])
    yield engine
    engine.dispose()


def _read(
    engine: sa.Engine, sql: str | sa.Select[Any], params: dict[str, Any], *, fast: bool, **kw: Any
) -> list[pd.DataFrame]:
    with pytest.MonkeyPatch.context() as mp:
        if not fast:
            mp.setattr(adbc_reader, "usable", lambda _engine: False)
        else:
            mp.setattr(adbc_reader, "open_batches", _must_open(adbc_reader.open_batches))
        return list(queries.read_chunks(engine, sql, params, **kw))


def _must_open(real: Any) -> Any:
    def opened(*args: Any) -> Any:
        batches = real(*args)
        assert batches is not None, "the ADBC reader fell back"
        return batches

    return opened


def _same(fast: list[pd.DataFrame], slow: list[pd.DataFrame]) -> None:
    assert [len(f) for f in fast] == [len(s) for s in slow]
    for a, b in zip(fast, slow, strict=True):
        assert list(a.columns) == list(b.columns)
        assert a.dtypes.to_dict() == b.dtypes.to_dict()
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        # NULLs where they were, and the same Python types in object columns (Decimal, dict, date, UUID...)
        for col in a.columns:
            if a[col].dtype == object:
                assert [type(x) for x in a[col]] == [type(x) for x in b[col]], col


SQL = "SELECT * FROM mix WHERE id >= :lo AND (tz IS NULL OR tz < :until) AND t IS DISTINCT FROM :bad ORDER BY id"
PARAMS = {"lo": 2, "until": datetime(2026, 3, 9), "bad": "x'; DROP TABLE mix; --"}


def test_both_readers_give_identical_frames(pg: sa.Engine) -> None:
    slow = _read(pg, SQL, PARAMS, fast=False, chunk_rows=100)
    fast = _read(pg, SQL, PARAMS, fast=True, chunk_rows=100)
    assert sum(len(f) for f in slow) == 238 and len(slow) == 3
    _same(fast, slow)
    first = fast[0]
    assert str(first["tz"].dtype) == "datetime64[us, UTC]" and str(first["ts"].dtype) == "datetime64[us]"
    assert first["i"].dtype == "float64" and first["s"].dtype == "int64" and first["only_null"].isna().all()
    assert first.loc[0, "j"]["big"] == 123456789012345678901234 and isinstance(first.loc[0, "n"], decimal.Decimal)
    assert first.loc[0, "r"] == 0.2  # real read as its text reads, not as float32's nearest double
    with pg.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM mix")).scalar_one() == 240  # bound, not spliced


def test_ordered_statement_with_key_ranges_matches(pg: sa.Engine) -> None:
    stmt = queries.ordered_by("SELECT * FROM mix WHERE id < :hi", "v")
    slow = _read(pg, stmt, {"hi": 200}, fast=False, chunk_rows=64, order_key="v")
    fast = _read(pg, stmt, {"hi": 200}, fast=True, chunk_rows=64, order_key="v")
    # Chunks may be cut elsewhere (each reader keeps a key's rows in one chunk its own way): same rows, in order.
    _same([pd.concat(fast, ignore_index=True)], [pd.concat(slow, ignore_index=True)])
    seen = [set(f["v"]) for f in fast]
    assert all(not (a & b) for i, a in enumerate(seen) for b in seen[i + 1 :])


def test_uuid_key_ranges_match(pg: sa.Engine) -> None:
    # An extension-typed key (arrow.uuid) is cut on its storage.
    stmt = queries.ordered_by("SELECT * FROM mix", "u")
    slow = _read(pg, stmt, {}, fast=False, chunk_rows=50, order_key="u")
    fast = _read(pg, stmt, {}, fast=True, chunk_rows=50, order_key="u")
    _same([pd.concat(fast, ignore_index=True)], [pd.concat(slow, ignore_index=True)])


def test_a_refused_query_is_a_query_error(pg: sa.Engine) -> None:
    with pytest.raises(QueryError, match="no_such_column"):
        list(queries.read_chunks(pg, "SELECT no_such_column FROM mix", label="bad.sql"))


def test_falls_back_to_psycopg_when_adbc_cannot_connect(pg: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adbc_reader, "libpq_uri", lambda _url: "postgresql://127.0.0.1:1/none")
    frames = list(queries.read_chunks(pg, "SELECT id, j FROM mix WHERE id < :n ORDER BY id", {"n": 5}))
    assert frames[0]["id"].tolist() == [0, 1, 2, 3, 4] and frames[0].loc[0, "j"]["k"] == 0


def test_parameters_compile_to_positional_placeholders() -> None:
    sql, values = adbc_reader.compile_positional(sa.text("SELECT :a, :b, :a, '50%' AS pct"), {"a": 1, "b": "x'--"})
    assert sql == "SELECT $1, $2, $1, '50%' AS pct" and values == [1, "x'--"]
