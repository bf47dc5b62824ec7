"""DuckDB engines bound the buffer pool by default (issue 16); the user's value (URL or setting) wins."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from etl.config import Settings
from etl.engine.frame import state_engine_for, warehouse_engine_for
from etl.errors import ConfigError
from etl.warehouse.engine import DEFAULT_DUCKDB_MEMORY_LIMIT, make_engine


def _limit(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(sa.text("SELECT current_setting('memory_limit')")).scalar_one())


def _rendered(value: str) -> str:
    """How DuckDB itself reports ``value`` (``256MB`` -> ``244.1 MiB``), from a separate in-memory instance."""
    con = duckdb.connect()
    con.execute("SET memory_limit = ?", [value])
    shown = con.execute("SELECT current_setting('memory_limit')").fetchone()
    con.close()
    assert shown is not None
    return str(shown[0])


def _duckdb_default() -> str:
    con = duckdb.connect()
    shown = con.execute("SELECT current_setting('memory_limit')").fetchone()
    con.close()
    assert shown is not None
    return str(shown[0])


def test_file_engine_gets_the_default_limit(tmp_path: Path) -> None:
    engine = make_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    assert _limit(engine) == _rendered(DEFAULT_DUCKDB_MEMORY_LIMIT)
    assert _rendered(DEFAULT_DUCKDB_MEMORY_LIMIT) != _duckdb_default()  # the default really bounds it


def test_the_urls_memory_limit_wins(tmp_path: Path) -> None:
    engine = make_engine(f"duckdb:///{tmp_path / 'w.duckdb'}?memory_limit=1GB", memory_limit="128MB")
    assert _limit(engine) == _rendered("1GB")


def test_the_setting_wins_over_the_default_and_reaches_both_engines(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    settings = Settings.from_env({"WAREHOUSE_URL": url, "WEBENGAGE_DUCKDB_MEMORY_LIMIT": "96MB"}, credentials=False)
    assert settings.duckdb_memory_limit == "96MB"
    for engine in (warehouse_engine_for(settings), state_engine_for(settings)):
        assert _limit(engine) == _rendered("96MB")
        engine.dispose()


def test_empty_setting_leaves_duckdbs_own_default(tmp_path: Path) -> None:
    engine = make_engine(f"duckdb:///{tmp_path / 'w.duckdb'}", memory_limit="")
    assert _limit(engine) == _duckdb_default()


def test_in_memory_database_is_not_capped() -> None:
    # Its tables live in the buffer pool: a cap would bound the database itself.
    assert _limit(make_engine("duckdb:///:memory:")) == _duckdb_default()


def test_a_value_duckdb_refuses_is_a_config_error(tmp_path: Path) -> None:
    engine = make_engine(f"duckdb:///{tmp_path / 'w.duckdb'}", memory_limit="lots")
    with pytest.raises(ConfigError, match="duckdb_memory_limit"):
        _limit(engine)
