"""Cohort config validation and the pure membership logic (screening, diff, guard)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from etl.errors import ConfigError, WebEngageSyncError
from etl.mappings import cohorts as cfg
from etl.transform import cohorts as tx

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def query(tmp_path: Path) -> Path:
    path = tmp_path / "q.sql"
    path.write_text("SELECT user_id FROM t WHERE ts <= :as_of AND amount >= :min_amount -- casts stay: x::INT\n")
    return path


def config(sql_file: Path, **entry: Any) -> cfg.CohortConfig:
    base: dict[str, Any] = {"query": str(sql_file), "mode": "dynamic", "params": {"min_amount": 10}}
    base.update(entry)
    return cfg.cohort_config_from_dict({"cohorts": {"vip": {k: v for k, v in base.items() if v is not None}}})


def test_repository_config_is_valid_and_ships_realistic_cohorts() -> None:
    loaded = cfg.load_cohort_config(ROOT / "etl/defaults/mappings/cohorts.toml")
    assert len(loaded.cohorts) >= 3
    assert loaded.names_by_mode("dynamic") and loaded.names_by_mode("one_time")
    for spec in loaded.cohorts:
        assert (ROOT / "etl/defaults/sql" / spec.sql).is_file() and spec.sql.startswith("cohorts/")
        assert len(spec.attribute) < 50 and not spec.attribute.lower().startswith("we_")
        assert "as_of" in cfg.sql_binds((ROOT / "etl/defaults/sql" / spec.sql).read_text())


def test_defaults_apply_and_attribute_defaults_to_cohort_prefix(query: Path) -> None:
    doc = {
        "defaults": {"events": True, "max_exit_share": 0.3},
        "cohorts": {"vip": {"query": str(query), "mode": "one_time", "params": {"min_amount": 5}}},
    }
    [spec] = cfg.cohort_config_from_dict(doc).cohorts
    assert (spec.attribute, spec.events, spec.max_exit_share, spec.mode) == ("cohort_vip", True, 0.3, "one_time")
    assert spec.owner == "cohort:vip" and spec.params == {"min_amount": 5}


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"attribute": "we_vip"}, "reserved"),
        ({"attribute": "x" * 50}, "1-49 characters"),
        ({"attribute": "vip buyers"}, "letters, digits"),
        ({"attribute": "1vip"}, "starting with a letter"),
        ({"mode": "hourly"}, "one_time or dynamic"),
        ({"mode": None}, "one_time or dynamic"),
        ({"max_exit_share": 0}, "(0, 1]"),
        ({"max_exit_share": 1.5}, "(0, 1]"),
        ({"max_exit_share": True}, "(0, 1]"),
        ({"events": "yes"}, "true or false"),
        ({"query": "cohorts/missing.sql"}, "not found"),
        ({"params": {}}, "needs values for: min_amount"),
        ({"params": {"min_amount": 1, "extra": 2}}, "not used"),
        ({"params": {"min_amount": 1, "as_of": "2026-01-01"}}, "set by the sync"),
        ({"params": {"min_amount": [1, 2]}}, "string, number or boolean"),
        ({"colour": "red"}, "unknown keys: colour"),
    ],
)
def test_invalid_entries_are_refused_naming_the_cohort(query: Path, entry: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(query, **entry)
    assert "vip" in str(err.value) and fragment in str(err.value)


@pytest.mark.parametrize("name", ["VIP", "1vip", "vip-buyers", "x" * 61, "vip;drop"])
def test_cohort_names_are_plain_identifiers(query: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="cohort names"):
        cfg.cohort_config_from_dict({"cohorts": {name: {"query": str(query), "mode": "dynamic"}}})


def test_long_name_needs_an_explicit_attribute(query: Path) -> None:
    name = "a" * 45  # cohort_ + 45 = 52 characters: over WebEngage's limit
    with pytest.raises(ConfigError, match="set it explicitly"):
        cfg.cohort_config_from_dict(
            {"cohorts": {name: {"query": str(query), "mode": "dynamic", "params": {"min_amount": 1}}}}
        )
    ok = cfg.cohort_config_from_dict(
        {
            "cohorts": {
                name: {"query": str(query), "mode": "dynamic", "attribute": "c_long", "params": {"min_amount": 1}}
            }
        }
    )
    assert ok.cohorts[0].attribute == "c_long"


def test_two_cohorts_cannot_share_an_attribute_and_at_most_25_cohorts(query: Path) -> None:
    entry = {"query": str(query), "mode": "dynamic", "params": {"min_amount": 1}}
    with pytest.raises(ConfigError, match="same attribute: c_x"):
        cfg.cohort_config_from_dict(
            {"cohorts": {"a": {**entry, "attribute": "c_x"}, "b": {**entry, "attribute": "C_X"}}}
        )
    many = {f"c{i}": entry for i in range(26)}
    with pytest.raises(ConfigError, match="25 boolean"):
        cfg.cohort_config_from_dict({"cohorts": many})


def test_unknown_cohort_lookup_never_echoes_odd_text(query: Path) -> None:
    loaded = config(query)
    assert loaded.get("vip").name == "vip"
    with pytest.raises(ConfigError) as err:
        loaded.get("x'; DROP TABLE users; --")
    assert "DROP" not in str(err.value) and "configured: vip" in str(err.value)


def test_load_reports_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        cfg.load_cohort_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[cohorts.x\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        cfg.load_cohort_config(bad)


def test_sql_binds_ignore_casts_and_escapes() -> None:
    assert cfg.sql_binds("SELECT a::INT, :b, x = :c_d, '\\:e' FROM t WHERE f = :as_of") == {"b", "c_d", "as_of"}


def test_screen_ids_excludes_and_counts_by_reason() -> None:
    values = pd.Series(["u1", None, "", "   ", "x" * 101, " u2 ", "x" * 100, "u1"], dtype="string")
    ids, excluded = tx.screen_ids(values)
    assert ids.tolist() == ["u1", "u2", "x" * 100, "u1"]  # duplicates are the pipeline's to count
    assert excluded == {"anonymous": 1, "empty_user_id": 2, "user_id_too_long": 1}


def test_screen_ids_turns_whole_numbers_into_integer_text() -> None:
    ids, excluded = tx.screen_ids(pd.Series([42.0, None, 7.0]))
    assert ids.tolist() == ["42", "7"] and excluded == {"anonymous": 1}


def test_diff_members_entered_exited_unchanged() -> None:
    d = tx.diff_members(["a", "b", "c", "d"], members=["c", "d", "e"])
    assert (d.entered, d.exited, d.unchanged, d.resend_true, d.resend_false) == (["a", "b"], ["e"], 2, [], [])
    assert d.flips == 3


def test_diff_members_resends_users_whose_last_flip_is_unconfirmed() -> None:
    # p1: member whose false was sent but unconfirmed, back in the cohort -> true again;
    # p2: true sent but unconfirmed, no longer in the cohort -> false; p3: unconfirmed true, still in -> entered.
    d = tx.diff_members(["a", "p1", "p3"], members=["a", "p1"], in_doubt=["p1", "p2", "p3"])
    assert d.entered == ["p3"] and d.exited == [] and d.unchanged == 1
    assert d.resend_true == ["p1"] and d.resend_false == ["p2"]


@pytest.mark.parametrize(
    ("previous", "members", "exited", "share", "stops"),
    [
        (0, 0, 0, 0.5, False),  # first export: nothing to protect
        (100, 50, 50, 0.5, False),  # exactly the share is allowed
        (100, 49, 51, 0.5, True),
        (100, 0, 100, 1.0, True),  # no member at all trips even with share 1.0
        (100, 10, 90, 0.95, False),
    ],
)
def test_guard_problem(previous: int, members: int, exited: int, share: float, stops: bool) -> None:
    problem = tx.guard_problem(cohort="vip", previous=previous, members=members, exited=exited, max_exit_share=share)
    assert (problem is not None) == stops
    if problem:
        assert "vip" in problem


def test_guard_error_is_a_sync_error_naming_the_override() -> None:
    err = tx.GuardError("vip", "too many leave")
    assert isinstance(err, WebEngageSyncError) and "override_guard" in str(err) and err.cohort == "vip"


def test_payloads_carry_only_the_attribute_or_the_cohort_name() -> None:
    assert tx.attribute_payload("u1", "cohort_vip", False) == {"userId": "u1", "attributes": {"cohort_vip": False}}
    event = tx.event_payload("u1", "vip", "entered", "2026-11-01T00:00:00+0000")
    assert event == {
        "userId": "u1",
        "eventName": "Cohort Entered",
        "eventTime": "2026-11-01T00:00:00+0000",
        "eventData": {"cohort": "vip"},
    }


def test_configured_names_by_mode(query: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[cohorts.a]\nquery = "{query}"\nmode = "dynamic"\nparams = {{ min_amount = 1 }}\n'
        f'[cohorts.b]\nquery = "{query}"\nmode = "one_time"\nparams = {{ min_amount = 1 }}\n'
    )
    assert cfg.configured_names(path) == ["a", "b"]
    assert cfg.configured_names(path, mode="dynamic") == ["a"]
