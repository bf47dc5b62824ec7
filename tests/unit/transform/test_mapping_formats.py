"""The mapping files' one direction (source = WebEngage destination), one vocabulary (``query``), the old
spellings that still load (or say what to change), the published JSON Schemas, and the transform's purity."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from etl.errors import ConfigError
from etl.mappings import schema
from etl.mappings.base import MappingFormatWarning
from etl.mappings.cohorts import cohort_config_from_dict, load_cohort_config
from etl.mappings.events import load_event_mapping
from etl.mappings.users import load_user_mapping, user_mapping_from_dict
from etl.transform import formats
from etl.transform.events import convert, wire_value

ROOT = Path(__file__).resolve().parents[3]
DEFAULTS = ROOT / "etl/defaults/mappings"

OLD_USERS = """
[source]
query = "users/users.sql"
[options]
phone_region_column = "country_code"
[system]
firstName = "first_name"
email = "email"
phone = "phone_e164"
[attributes]
plan = "plan_code"
lifetime_value = { column = "ltv", type = "number" }
we_score = "score"
"""
NEW_USERS = """
[source]
query = "users/users.sql"
[options]
phone_region_column = "country_code"
[system_attributes]
first_name = "firstName"
email = "email"
phone_e164 = "phone"
[custom_attributes]
plan_code = "plan"
ltv = { name = "lifetime_value", type = "number" }
score = "we_score"
"""


# -- users: column = destination; the old destination = column still loads ---------------------------
def test_old_and_new_users_spelling_give_the_same_mapping(tmp_path: Path) -> None:
    (tmp_path / "old.toml").write_text(OLD_USERS)
    (tmp_path / "new.toml").write_text(NEW_USERS)
    with pytest.warns(MappingFormatWarning) as caught:
        old = load_user_mapping(tmp_path / "old.toml")
    new = load_user_mapping(tmp_path / "new.toml")
    assert old == new and old.fingerprint() == new.fingerprint() and old.fields == new.fields
    assert new.system == {"firstName": "first_name", "email": "email", "phone": "phone_e164"}
    assert new.renamed == {"we_score": "attr_score"}
    said = " ".join(str(w.message) for w in caught)
    assert "rename it [system_attributes]" in said and "rename it [custom_attributes]" in said
    assert str(tmp_path / "old.toml") in said


def test_shipped_users_mapping_uses_the_new_spelling_and_equals_the_old_one() -> None:
    old_doc = {
        "source": {"query": "users/users.sql", "user_id": "user_id", "updated_at": "updated_at", "chunk_rows": 100000},
        "options": {"phone_region_column": "country_code"},
        "system": {
            "firstName": "first_name",
            "lastName": "last_name",
            "email": "email",
            "phone": "phone",
            "birthDate": "birth_date",
            "gender": "gender",
            "company": "company",
            "emailOptIn": "email_opt_in",
            "smsOptIn": "sms_opt_in",
            "whatsappOptIn": "whatsapp_opt_in",
            "country": "country",
            "city": "city",
            "region": "region",
            "postalCode": "postal_code",
        },
        "attributes": {
            "plan": "plan",
            **{
                c: {"column": c, "type": t}
                for c, t in [
                    ("lifetime_value", "number"),
                    ("orders_count", "integer"),
                    ("signup_at", "date"),
                    ("last_seen_at", "date"),
                    ("preferences", "json"),
                    ("bio", "string"),
                    ("notes", "string"),
                    ("is_test_user", "boolean"),
                ]
            },
        },
    }
    doc = tomllib.loads((DEFAULTS / "users.toml").read_text())
    assert "system_attributes" in doc and "system" not in doc and "attributes" not in doc
    with pytest.warns(MappingFormatWarning):
        old = user_mapping_from_dict(old_doc)
    new = load_user_mapping(DEFAULTS / "users.toml")
    assert (new.system, new.attributes, new.fingerprint()) == (old.system, old.attributes, old.fingerprint())


@pytest.mark.parametrize(
    ("doc", "where", "needle"),
    [
        ({"system": {"firstName": "a"}, "system_attributes": {"b": "lastName"}}, "[system]", "old and new spelling"),
        ({"attributes": {"a": "a"}, "custom_attributes": {"b": "b"}}, "[attributes]", "old and new spelling"),
        (
            {"system_attributes": {"first_name": "firstname"}},
            "[system_attributes].first_name",
            "not a WebEngage system attribute",
        ),
        ({"system_attributes": {"a": "email", "b": "email"}}, "[system_attributes]", "email from a, b"),
        (
            {"custom_attributes": {"ltv": {"column": "ltv", "type": "number"}}},
            "[custom_attributes].ltv",
            "the key is the column",
        ),
        ({"custom_attributes": {"ltv": {"type": "money"}}}, "[custom_attributes].ltv.type", "unknown type 'money'"),
        ({"custom_attributes": {"a": "x", "b": "x"}}, "[custom_attributes].b", "already filled"),
        ({"custom_attributes": {"a": 3}}, "[custom_attributes].a", 'expected "name"'),
        ({"options": {"on_null": "erase"}}, "[options].on_null", "unknown on_null 'erase'; expected keep or clear"),
        ({"options": {"source_timezone": "Mars/Base"}}, "[options].source_timezone", "unknown IANA time zone"),
        ({"source": {"chunk_rows": "100"}}, "[source].chunk_rows", "must be positive"),
    ],
)
def test_users_problems_name_the_file_the_key_and_what_to_write(doc: dict[str, Any], where: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        user_mapping_from_dict(doc, origin="my/users.toml")
    assert f"my/users.toml {where}" in str(err.value) and needle in str(err.value)


def test_custom_attribute_name_defaults_to_the_column() -> None:
    m = user_mapping_from_dict({"custom_attributes": {"ltv": {"type": "number"}, "plan_code": "plan"}})
    assert [(a.name, a.column, a.type) for a in m.attributes] == [("ltv", "ltv", "number"), ("plan", "plan_code", None)]


def test_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text('[options]\non_null = "erase"\n')
    with pytest.raises(ConfigError, match=re.escape(f"{path} [options].on_null")):
        load_user_mapping(path)


# -- cohorts: query (sql still loads) --------------------------------------------------------------------
@pytest.fixture
def query(tmp_path: Path) -> Path:
    path = tmp_path / "q.sql"
    path.write_text("SELECT user_id FROM t WHERE ts <= :as_of\n")
    return path


def test_cohort_sql_is_an_old_name_of_query(query: Path) -> None:
    with pytest.warns(MappingFormatWarning, match=r"\[cohorts.a\].*rename the key to query"):
        old = cohort_config_from_dict({"cohorts": {"a": {"sql": str(query), "mode": "dynamic"}}})
    new = cohort_config_from_dict({"cohorts": {"a": {"query": str(query), "mode": "dynamic"}}})
    assert old == new and new.cohorts[0].query == new.cohorts[0].sql == str(query)
    with pytest.raises(ConfigError, match=r"\[cohorts.a\]: query and its old name sql are both set"):
        cohort_config_from_dict({"cohorts": {"a": {"sql": str(query), "query": str(query), "mode": "dynamic"}}})
    with pytest.raises(ConfigError, match=r"\[cohorts.a\].query: required"):
        cohort_config_from_dict({"cohorts": {"a": {"mode": "dynamic"}}})


def test_shipped_cohorts_use_query() -> None:
    doc = tomllib.loads((DEFAULTS / "cohorts.toml").read_text())
    assert all("query" in c and "sql" not in c for c in doc["cohorts"].values())


def test_cohorts_config_env_var_is_read_by_the_mappings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[cohorts]\n")
    monkeypatch.setenv("WEBENGAGE_COHORTS_CONFIG", str(path))
    assert load_cohort_config().origin == str(path)


def test_cohort_names_are_read_without_pandas() -> None:
    code = (
        "import sys; from etl.mappings.cohorts import configured_names; assert configured_names(); "
        "assert 'pandas' not in sys.modules, 'pandas imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# -- events: already source = destination ----------------------------------------------------------------
def test_events_default_loads_without_warnings() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", MappingFormatWarning)
        load_event_mapping(DEFAULTS / "events.toml")
        load_user_mapping(DEFAULTS / "users.toml")
        load_cohort_config(DEFAULTS / "cohorts.toml")


# -- booleans: one list for profiles and events ----------------------------------------------------------
@pytest.mark.parametrize("word", sorted(formats.TRUE_WORDS | formats.FALSE_WORDS | {"ON", " Off ", "maybe", "2"}))
def test_profile_and_event_booleans_read_the_same_words(word: str) -> None:
    profile = formats.to_bool(pd.Series([word], dtype=object)).values.iloc[0]
    event = convert(wire_value(word), "boolean")
    assert (None if profile is pd.NA else bool(profile)) == event
    assert event is not None or word in {"maybe", "2"}


# -- schemas ---------------------------------------------------------------------------------------------
def test_committed_schemas_equal_the_generated_ones() -> None:
    assert schema.stale() == [], "run: python -m etl.mappings.schema"
    assert schema.main(["--check"]) == 0


@pytest.mark.parametrize("name", ["users", "events", "cohorts"])
def test_shipped_files_point_at_and_satisfy_their_schema(name: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    text = (DEFAULTS / f"{name}.toml").read_text()
    assert text.startswith(f"#:schema ./schema/{name}.schema.json\n")
    jsonschema.validate(tomllib.loads(text), schema.schema_of(name))


def test_schema_marks_the_old_spellings_deprecated() -> None:
    users = schema.schema_of("users")["properties"]
    assert users["system"]["deprecated"] and users["attributes"]["deprecated"]
    cohort = schema.schema_of("cohorts")["$defs"]["Cohort"]["properties"]
    assert cohort["sql"]["deprecated"] and "query" in cohort


# -- the transform is pure ---------------------------------------------------------------------------
def test_transform_reads_no_files_settings_or_state() -> None:
    forbidden = re.compile(r"etl\.state|etl\.webengage|tomllib|os\.environ|\bopen\(|read_text|read_bytes|getenv")
    for path in (ROOT / "etl/transform").rglob("*.py"):
        hits = [line for line in path.read_text().splitlines() if forbidden.search(line)]
        assert not hits, f"{path.relative_to(ROOT)}: {hits}"
