from __future__ import annotations

from pathlib import Path

import pytest

from etl.errors import ConfigError
from etl.mappings.users import load_user_mapping, user_mapping_from_dict

ROOT = Path(__file__).resolve().parents[3]
# These cases are written in the old spelling ([system], [attributes]) on purpose: it must keep loading.
pytestmark = pytest.mark.filterwarnings("ignore::etl.mappings.base.MappingFormatWarning")


def test_repo_mapping_loads_and_is_valid() -> None:
    m = load_user_mapping(ROOT / "etl/defaults/mappings" / "users.toml")
    assert m.user_id == "user_id"
    assert m.system["phone"] == "phone"
    assert {a.name for a in m.attributes} >= {"plan", "lifetime_value", "preferences"}
    assert m.fields[0] == "firstName" and m.fields[-1].startswith("attributes.")


def test_reserved_and_long_names_are_renamed_and_reported() -> None:
    long = "a_very_long_attribute_name_that_is_over_fifty_characters_long"
    m = user_mapping_from_dict({"attributes": {"we_score": "score", long: "x"}})
    names = {a.source_name: a.name for a in m.attributes}
    assert not names["we_score"].lower().startswith("we_")
    assert len(names[long]) < 50
    assert m.renamed == {"we_score": names["we_score"], long: names[long]}


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"sources": {}}, "unknown sections"),
        ({"source": {"tabel": "x"}}, "unknown keys"),
        ({"system": {"firstname": "x"}}, "not WebEngage system fields"),
        ({"attributes": {"a": {"column": "a", "type": "text"}}}, "unknown type"),
        ({"attributes": {"a": 3}}, "expected"),
        ({"options": {"on_null": "erase"}}, "on_null"),
        ({"options": {"max_string_length": 1000}}, "max_string_length"),
        ({"attributes": {f"s{i}": {"column": "c", "type": "string"} for i in range(26)}}, "25"),
    ],
)
def test_bad_mapping_fails_fast_with_location(doc: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        user_mapping_from_dict(doc)


def test_fingerprint_changes_with_mapping() -> None:
    a = user_mapping_from_dict({"attributes": {"plan": "plan"}})
    b = user_mapping_from_dict({"attributes": {"plan": {"column": "plan", "type": "string"}}})
    assert a.fingerprint() == user_mapping_from_dict({"attributes": {"plan": "plan"}}).fingerprint()
    assert a.fingerprint() != b.fingerprint()
