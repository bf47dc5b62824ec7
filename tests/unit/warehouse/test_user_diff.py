"""The in-warehouse diff's statement: composed, never spliced; which SQL types it hashes; where it can run."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from etl.config import Settings
from etl.errors import ConfigError
from etl.mappings.users import user_mapping_from_dict
from etl.warehouse import user_diff

MAPPING = user_mapping_from_dict(
    {
        "source": {"query": "users/users.sql", "user_id": "user_id", "updated_at": "updated_at"},
        "system_attributes": {"email": "email"},
        "custom_attributes": {"plan": {"type": "string"}},
    }
)


def _source() -> sa.Subquery:
    raw = sa.text("SELECT * FROM users WHERE name = :who").columns(sa.column("user_id")).subquery("we_raw")
    return user_diff.source_of(raw, ["user_id", "email", "plan", "updated_at"])


@pytest.mark.parametrize(
    ("sql_type", "ok"),
    [
        ("VARCHAR", True),
        ("character varying", True),
        ("DECIMAL(12,2)", True),
        ("numeric", True),
        ("TIMESTAMP WITH TIME ZONE", True),
        ("timestamp without time zone", True),
        ("INTEGER[]", True),
        ("jsonb", True),
        ("STRUCT(a INTEGER)", True),
        ("BLOB", False),
        ("bytea", False),
        ("MAP(VARCHAR, INTEGER)", False),
        ("UNION(a INTEGER, b VARCHAR)", False),
        ("geometry", False),
    ],
)
def test_types_the_hash_covers(sql_type: str, ok: bool) -> None:
    assert user_diff._family_ok(sql_type) is ok


def test_only_text_and_integer_ids() -> None:
    assert user_diff._is_key_type("BIGINT") and user_diff._is_key_type("text")
    assert not user_diff._is_key_type("DOUBLE") and not user_diff._is_key_type("uuid")


@pytest.mark.parametrize("dialect", ["duckdb", "postgresql"])
def test_statement_binds_the_salt_and_keeps_the_query_parameters(dialect: str) -> None:
    probe = user_diff.Probe(  # PostgreSQL before 14: md5 over text
        types={"user_id": "VARCHAR", "email": "VARCHAR", "plan": "VARCHAR", "updated_at": "TIMESTAMP"}
    )
    salt = "mapping'); DROP TABLE we_user_state; --"
    stmt = user_diff.diff_select(_source(), MAPPING, probe, salt, dialect=dialect)
    target = sa.create_engine("duckdb:///:memory:").dialect if dialect == "duckdb" else postgresql.dialect()
    compiled = stmt.compile(dialect=target)
    text = str(compiled)
    assert "DROP TABLE" not in text and "we_hash_salt" in compiled.params and "who" in compiled.params
    assert salt in compiled.params["we_hash_salt"]
    assert "IS DISTINCT FROM" in text and "LEFT OUTER JOIN we_user_state" in text and "GROUP BY" in text
    assert ("md5" in text) is (dialect == "postgresql") and ("hash(" in text) is (dialect == "duckdb")


def test_postgresql_14_hashes_typed_rows_with_json_as_text() -> None:
    types = {"user_id": "text", "email": "json", "plan": "character varying", "updated_at": "timestamp with time zone"}
    probe = user_diff.Probe(types=types, record_hash=True)
    stmt = user_diff.diff_select(_source(), MAPPING, probe, "salt", dialect="postgresql")
    compiled = stmt.compile(dialect=postgresql.dialect())
    text = str(compiled)
    assert "hash_record_extended(row(we_src.user_id, CAST(we_src.email AS TEXT), we_src.plan)" in text
    assert "md5" not in text and isinstance(compiled.params["we_hash_seed"], int)


def test_full_refresh_moves_every_row() -> None:
    probe = user_diff.Probe(types={"user_id": "VARCHAR", "email": "VARCHAR", "plan": "VARCHAR"})
    stmt = user_diff.diff_select(_source(), MAPPING, probe, "s", dialect="postgresql", full_refresh=True)
    text = str(stmt.compile(dialect=postgresql.dialect()))
    assert "IS DISTINCT FROM" not in text and "WHERE" not in text.split("HAVING")[-1]


def test_where_it_can_run() -> None:
    engine = sa.create_engine("duckdb:///:memory:")
    base = {"warehouse_url": "duckdb:///w.duckdb"}
    assert user_diff.check_mode(Settings.from_mapping(base, credentials=False), engine) is None
    assert user_diff.check_mode(Settings.from_mapping(base | {"diff_mode": "python"}, credentials=False), engine)
    elsewhere = base | {"state_url": "duckdb:///s.duckdb"}
    assert "another database" in str(user_diff.check_mode(Settings.from_mapping(elsewhere, credentials=False), engine))
    forced = Settings.from_mapping(elsewhere | {"diff_mode": "warehouse"}, credentials=False)
    with pytest.raises(ConfigError, match="diff_mode"):
        user_diff.check_mode(forced, engine)
    sqlite = sa.create_engine("sqlite://")
    assert "sqlite" in str(user_diff.check_mode(Settings.from_mapping(base, credentials=False), sqlite))
