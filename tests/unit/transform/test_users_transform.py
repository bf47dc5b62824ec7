from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from etl.errors import ConfigError
from etl.mappings.users import user_mapping_from_dict
from etl.transform import users as tx

MAPPING = user_mapping_from_dict(
    {
        "source": {"user_id": "id", "updated_at": "updated_at"},
        "options": {"phone_region_column": "cc", "on_null": "clear"},
        "system": {"firstName": "first", "phone": "phone", "gender": "gender", "emailOptIn": "optin"},
        "attributes": {
            "plan": "plan",
            "ltv": {"column": "ltv", "type": "number"},
            "signup": {"column": "signup", "type": "date"},
            "prefs": {"column": "prefs", "type": "json"},
        },
    }
)
TODAY = dt.date(2026, 11, 1)


def frame(**overrides: list[object]) -> pd.DataFrame:
    base: dict[str, list[object]] = {
        "id": ["u1", "u2"],
        "updated_at": [pd.Timestamp("2026-01-01"), pd.Timestamp("2026-01-02")],
        "first": ["Ann", "Bob"],
        "phone": ["98765 43210", "(415) 555-2671"],
        "cc": ["IN", "US"],
        "gender": ["F", "male"],
        "optin": ["yes", "0"],
        "plan": ["pro", "free"],
        "ltv": [1.5, float("nan")],
        "signup": [pd.Timestamp("2026-03-01 10:00:00"), None],
        "prefs": ['{"b": 1, "a": [1, 2]}', None],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def build(df: pd.DataFrame, masks: list[str | None] | None = None) -> tx.Built:
    keys = tx.normalise_keys(df, "id")
    types, _new, _notes = tx.resolve_types(MAPPING, df, {})
    return tx.build_payloads(df, keys, MAPPING, types, masks or [None] * len(df), today=TODAY)


def test_payloads_have_wire_formats() -> None:
    built = build(frame())
    u1, u2 = built.payloads
    assert u1 == {
        "userId": "u1",
        "firstName": "Ann",
        "phone": "+919876543210",
        "gender": "female",
        "emailOptIn": True,
        "attributes": {
            "plan": "pro",
            "ltv": 1.5,
            "signup": "2026-03-01T10:00:00+0000",
            "prefs": {"a": [1, 2], "b": 1},
        },
    }
    assert u2["phone"] == "+14155552671" and u2["emailOptIn"] is False
    assert "ltv" not in u2["attributes"] and "signup" not in u2["attributes"]
    assert built.rejects == []


def test_invalid_value_is_dropped_and_reported_rest_of_row_goes() -> None:
    built = build(frame(phone=["call me", "(415) 555-2671"]))
    assert "phone" not in built.payloads[0] and built.payloads[0]["firstName"] == "Ann"
    [reject] = built.rejects
    assert (reject.row_key, reject.column, reject.reason) == ("u1", "phone", "invalid_phone")
    assert built.stats.dropped["invalid_phone"] == 1


def test_clear_policy_sends_typed_empty_only_where_a_value_was_sent_before() -> None:
    df = frame(first=[None, None], plan=[None, "free"])
    fields = MAPPING.fields
    all_sent = "1" * len(fields)
    built = build(df, masks=[all_sent, None])
    assert built.payloads[0]["firstName"] == "" and built.payloads[0]["attributes"]["plan"] == ""
    assert "firstName" not in built.payloads[1]  # never sent before: nothing to clear
    assert built.masks[0][fields.index("firstName")] == "0"


def test_screen_keys_rejects_missing_and_long_ids() -> None:
    df = frame(id=[None, "x" * 101])
    keys = tx.normalise_keys(df, "id")
    ok, rejects = tx.screen_keys(df, keys, MAPPING)
    assert not ok.any()
    assert sorted(r.reason for r in rejects) == ["missing_user_id", "user_id_too_long"]


def test_numeric_ids_become_integer_text() -> None:
    df = pd.DataFrame({"id": [1.0, 22.0, np.nan]})
    assert tx.normalise_keys(df, "id").tolist()[:2] == ["1", "22"]


def test_dedupe_latest_updated_wins_independent_of_order() -> None:
    df = frame(id=["u1", "u1"], plan=["old", "new"])
    for order in ([0, 1], [1, 0]):
        d = df.iloc[order].reset_index(drop=True)
        keys = tx.normalise_keys(d, "id")
        hashes = tx.row_hashes(d, MAPPING, "salt")
        keep, rejects = tx.dedupe(d, keys, hashes, MAPPING)
        assert d[keep]["plan"].tolist() == ["new"]
        assert [r.reason for r in rejects] == ["duplicate_user_id"]


def test_row_hash_changes_only_with_mapped_values_and_salt() -> None:
    a = tx.row_hashes(frame(), MAPPING, "s1")
    assert a.equals(tx.row_hashes(frame(), MAPPING, "s1"))
    b = tx.row_hashes(frame(plan=["pro", "enterprise"]), MAPPING, "s1")
    assert a[0] == b[0] and a[1] != b[1]
    assert not a.equals(tx.row_hashes(frame(), MAPPING, "s2"))
    c = tx.row_hashes(frame().assign(unmapped=[1, 2]), MAPPING, "s1")
    assert a.equals(c)


def test_registry_type_wins_and_budget_is_enforced() -> None:
    types, new, notes = tx.resolve_types(MAPPING, frame(), {"plan": ("number", "users")})
    assert types["plan"] == "number" and "plan" not in new and notes
    full = {f"s{i}": ("string", "users") for i in range(25)}
    with pytest.raises(ConfigError, match="25"):
        tx.resolve_types(MAPPING, frame(), full)


def test_infer_type_from_dtype_not_values() -> None:
    assert tx.infer_type(pd.Series([1, 2])) == "integer"
    assert tx.infer_type(pd.Series([1.0, None])) == "number"
    assert tx.infer_type(pd.Series([True, False])) == "boolean"
    assert tx.infer_type(pd.Series(["1", "2"])) == "string"
    assert tx.infer_type(pd.Series(pd.to_datetime(["2026-01-01"]))) == "date"
