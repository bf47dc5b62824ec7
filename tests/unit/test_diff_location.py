"""Where a sync's diff runs (issue 16): the ``diff_mode`` setting and the state's location decide."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from etl.config import Settings
from etl.errors import ConfigError
from etl.warehouse.pushdown import diff_location


def _settings(tmp_path: Path, **values: str) -> Settings:
    env = {"WAREHOUSE_URL": f"duckdb:///{tmp_path / 'w.duckdb'}", **values}
    return Settings.from_env(env, credentials=False)


def test_default_is_auto(tmp_path: Path) -> None:
    assert _settings(tmp_path).diff_mode == "auto"


def test_auto_follows_the_state(tmp_path: Path) -> None:
    engine = sa.create_engine("duckdb:///:memory:")  # never touched in auto or python mode
    assert diff_location(_settings(tmp_path), engine, state_tables=()) == "warehouse"
    elsewhere = _settings(tmp_path, STATE_URL=f"duckdb:///{tmp_path / 'state.duckdb'}")
    assert diff_location(elsewhere, engine, state_tables=()) == "python"
    forced = _settings(tmp_path, WEBENGAGE_DIFF_MODE="python")
    assert diff_location(forced, engine, state_tables=()) == "python"


def test_forced_warehouse_checks_the_tables_are_visible(tmp_path: Path) -> None:
    settings = _settings(tmp_path, WEBENGAGE_DIFF_MODE="warehouse")
    engine = sa.create_engine(settings.warehouse_url)
    with pytest.raises(ConfigError, match=r"diff_mode.*we_x"):
        diff_location(settings, engine, state_tables=("we_x",))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE we_x (a INTEGER)"))
    assert diff_location(settings, engine, state_tables=("we_x",)) == "warehouse"
    engine.dispose()


def test_unknown_mode_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="diff_mode"):
        _settings(tmp_path, WEBENGAGE_DIFF_MODE="sql")
