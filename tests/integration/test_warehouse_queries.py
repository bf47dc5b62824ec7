from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.errors import ConfigError
from etl.warehouse.engine import make_engine, retry_on_lock
from etl.warehouse.queries import load_sql, read_chunks, split_statements

SETUP = """
CREATE TABLE t (id INTEGER, name VARCHAR(20), ts TIMESTAMP);
INSERT INTO t SELECT g, 'n' || g, TIMESTAMP '2026-01-01 00:00:00' FROM generate_series(1, 250) AS s(g);
"""


def _fill(url: str) -> sa.Engine:
    engine = make_engine(url)
    with engine.begin() as conn:
        for stmt in split_statements(SETUP):
            conn.execute(sa.text(stmt))
    return engine


def _check_chunks(engine: sa.Engine) -> None:
    # A name containing SQL proves the value is bound, not spliced.
    sql = "SELECT id, name FROM t WHERE id > :lo AND name <> :bad ORDER BY id"
    chunks = list(read_chunks(engine, sql, {"lo": 10, "bad": "x'; DROP TABLE t; --"}, chunk_rows=100))
    assert [len(c) for c in chunks] == [100, 100, 40]
    assert chunks[0]["id"].iloc[0] == 11 and chunks[-1]["id"].iloc[-1] == 250
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM t")).scalar() == 250


def test_duckdb_chunked_read_with_bound_params(tmp_path: Path) -> None:
    _check_chunks(_fill(f"duckdb:///{tmp_path / 'w.duckdb'}"))


@pytest.mark.postgres
def test_postgres_chunked_read_with_bound_params(pg_db: str) -> None:
    _check_chunks(_fill(pg_db))


def test_load_sql_missing_file_is_config_error() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_sql("nope/missing.sql")


def test_bad_url_is_config_error() -> None:
    with pytest.raises(ConfigError, match="warehouse_url"):
        make_engine("not a url")


def test_retry_on_lock_waits_then_succeeds() -> None:
    calls: list[int] = []
    sleeps: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("IO Error: Could not set lock on file")
        return "ok"

    assert retry_on_lock(flaky, sleep=sleeps.append) == "ok"
    assert len(calls) == 3 and len(sleeps) == 2


def test_retry_on_lock_reraises_other_errors() -> None:
    def broken() -> None:
        raise RuntimeError("syntax error")

    with pytest.raises(RuntimeError, match="syntax"):
        retry_on_lock(broken, sleep=lambda _: None)


def test_duckdb_lock_from_other_process_is_waited_out(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "locked.duckdb"
    engine = _fill(f"duckdb:///{db}")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb,time; c=duckdb.connect({str(db)!r}); print('held', flush=True); time.sleep(1.5)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    chunks = list(read_chunks(engine, "SELECT count(*) AS n FROM t"))
    holder.wait(timeout=10)
    assert int(chunks[0]["n"].iloc[0]) == 250
