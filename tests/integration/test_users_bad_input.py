"""A catalogue of bad warehouse values through the whole profile sync: nothing crashes, nothing
invalid reaches the (strict) sandbox, every bad value is in the rejects table with its reason, and the
rest of each row still goes.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from etl.config import Settings
from etl.pipelines import users
from etl.state.store import ROW, StateStore
from etl.transform.formats import sanitize_attribute_name
from etl.warehouse.engine import make_engine
from tests.helpers.sandbox import sandbox_fixture, sandbox_settings
from webengage_dev.sandbox import SandboxServer

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
KEY = "bad-input-key-not-logged-7"
LONG_NAME = "lifetime_value_in_home_currency_including_refunds_and_credits"
LONG_ID = "x" * 101
ID_100 = "y" * 100

COLUMNS = {
    "user_id": "VARCHAR",
    "updated_at": "TIMESTAMP",
    "first_name": "VARCHAR",
    "email": "VARCHAR",
    "phone": "VARCHAR",
    "country_code": "VARCHAR",
    "birth_date": "VARCHAR",
    "gender": "VARCHAR",
    "sms_opt_in": "VARCHAR",
    "score": "DOUBLE",
    "score_text": "VARCHAR",
    "bio": "VARCHAR",
    "prefs": "VARCHAR",
    "seen_text": "VARCHAR",
    "signup_ts": "TIMESTAMP",
    "last_seen_tz": "TIMESTAMPTZ",
    "login_epoch": "BIGINT",
    "tier": "VARCHAR",
    "ltv": "DOUBLE",
}

GOOD = {
    "first_name": "Asha",
    "email": "Asha@Example.COM",
    "phone": "+91 98765 43210",
    "birth_date": "1990-05-17",
    "gender": "F",
    "sms_opt_in": "yes",
    "score": 12.5,
    "score_text": " 42 ",
    "bio": "hello",
    "prefs": '{"lang": "hi"}',
    "seen_text": "2026-03-01 10:00:00",
    "signup_ts": datetime(2026, 1, 15, 12, 0),
    "tier": "gold",
    "ltv": 99.5,
    "last_seen_tz": datetime(2026, 3, 1, 4, 30, tzinfo=UTC),
}

#: (user id, values) per row; one or two bad values each, next to good ones.
ROWS: list[tuple[str | None, dict[str, Any]]] = [
    ("good_1", GOOD),
    (None, {"first_name": "NoId"}),
    ("   ", {"first_name": "Blank id"}),
    (LONG_ID, {"first_name": "Long id"}),
    (ID_100, {"first_name": "Exactly 100"}),
    ("dup_1", {"first_name": "Old", "updated_at": datetime(2026, 1, 1), "tier": "silver"}),
    ("dup_1", {"first_name": "New", "updated_at": datetime(2026, 2, 1), "tier": "gold"}),
    ("phone_a", {"first_name": "Phone A", "phone": "12345", "tier": "bronze"}),
    ("phone_b", {"first_name": "Phone B", "phone": "call me"}),
    ("phone_c", {"first_name": "Phone C", "phone": "+1 555"}),
    ("phone_d", {"first_name": "Phone D", "phone": "98765abcde"}),
    ("phone_local", {"phone": "98765 43210"}),  # no country_code: the default region (IN)
    ("phone_us", {"phone": "(415) 555-2671", "country_code": "us"}),
    ("bday_bad", {"birth_date": "not a date", "first_name": "Bday"}),
    ("bday_future", {"birth_date": "2030-01-01"}),
    ("bday_old", {"birth_date": "1850-05-05"}),
    ("gender_unknown", {"gender": "unknown", "first_name": "G"}),
    ("gender_m", {"gender": "M"}),
    ("gender_xyz", {"gender": "xyz", "first_name": "G2"}),
    ("optin_maybe", {"sms_opt_in": "maybe", "first_name": "Maybe"}),
    # NaN reaches pandas as NULL (a float64 column cannot tell them apart): left out, like a NULL.
    ("score_nan", {"score": math.nan, "first_name": "NaN"}),
    ("score_inf", {"score": math.inf, "first_name": "Inf"}),
    ("score_ninf", {"score": -math.inf, "first_name": "-Inf"}),
    ("score_text", {"score_text": "twelve", "first_name": "Text"}),
    ("bio_5000", {"bio": "b" * 5000}),
    ("bio_1000", {"bio": "c" * 1000}),
    ("bio_999", {"bio": "d" * 999}),
    ("emoji", {"first_name": "Zoë 🎉🚀"}),
    ("control", {"first_name": "Ctrl\x00A\x07B\x1b"}),
    ("json_bad", {"prefs": '{"unclosed": ', "first_name": "J"}),
    ("json_nan", {"prefs": '{"a": NaN}', "first_name": "J2"}),
    ("email_noat", {"email": "no-at-sign.example.com", "first_name": "E1"}),
    ("email_twoat", {"email": "a@b@example.com", "first_name": "E2"}),
    ("email_space", {"email": "john smith@example.com", "first_name": "E3"}),
    ("seen_offset", {"seen_text": "2026-03-01T10:00:00-05:00"}),
    ("seen_epoch", {"seen_text": "1700000000", "first_name": "Epoch"}),
    ("login_epoch", {"login_epoch": 1_700_000_000, "first_name": "Epoch2"}),
    ("all_nulls", {"updated_at": None}),
]

#: Every value that must be reported: (row key, column, reason).
EXPECTED_VALUE_REJECTS = {
    ("phone_a", "phone", "invalid_phone"),
    ("phone_b", "phone", "invalid_phone"),
    ("phone_c", "phone", "invalid_phone"),
    ("phone_d", "phone", "invalid_phone"),
    ("bday_bad", "birth_date", "invalid_date"),
    ("bday_future", "birth_date", "birth_date_in_future"),
    ("bday_old", "birth_date", "date_out_of_range"),
    ("gender_xyz", "gender", "invalid_gender"),
    ("optin_maybe", "sms_opt_in", "invalid_boolean"),
    ("score_inf", "score", "non_finite_number"),
    ("score_ninf", "score", "non_finite_number"),
    ("score_text", "score_text", "invalid_number"),
    ("score_nan", "first_name", "null_like_value"),  # the text "NaN" (issue 14): left out, as a NULL would be
    ("json_bad", "prefs", "invalid_json"),
    ("json_nan", "prefs", "invalid_json"),
    ("email_noat", "email", "invalid_email"),
    ("email_twoat", "email", "invalid_email"),
    ("email_space", "email", "invalid_email"),
    ("seen_epoch", "seen_text", "invalid_date"),
    ("login_epoch", "login_epoch", "invalid_date"),
}
EXPECTED_ROW_REJECTS = {
    (LONG_ID[:60] + "…", "user_id", "user_id_too_long"),
    ("dup_1", "user_id", "duplicate_user_id"),
}

MAPPING = f"""
[source]
query = "{{query}}"
user_id = "user_id"
updated_at = "updated_at"

[options]
source_timezone = "Asia/Kolkata"
default_phone_region = "IN"
phone_region_column = "country_code"

[system]
firstName = "first_name"
email = "email"
phone = "phone"
birthDate = "birth_date"
gender = "gender"
smsOptIn = "sms_opt_in"

[attributes]
score = {{ column = "score", type = "number" }}
score_text = {{ column = "score_text", type = "number" }}
bio = {{ column = "bio", type = "string" }}
prefs = {{ column = "prefs", type = "json" }}
seen_text = {{ column = "seen_text", type = "date" }}
signup_ts = "signup_ts"
last_seen_tz = "last_seen_tz"
login_epoch = {{ column = "login_epoch", type = "date" }}
we_tier = "tier"
{LONG_NAME} = {{ column = "ltv", type = "number" }}
"""


def create_bad_users(path: Path) -> None:
    names = list(COLUMNS)
    with duckdb.connect(str(path)) as con:
        # Column names and types are this module's constants; values are bound parameters.
        con.execute(f"CREATE TABLE bad_users ({', '.join(f'{c} {t}' for c, t in COLUMNS.items())})")
        rows = []
        for user_id, values in ROWS:
            row = {c: None for c in names} | {"updated_at": datetime(2026, 3, 1)} | values | {"user_id": user_id}
            rows.append([row[c] for c in names])
        con.executemany(f"INSERT INTO bad_users VALUES ({', '.join('?' for _ in names)})", rows)


sandbox = sandbox_fixture(KEY, bulk_users_rpm=60_000)


@pytest.fixture
def settings(tmp_path: Path, sandbox: SandboxServer) -> Settings:
    warehouse = tmp_path / "bad.duckdb"
    create_bad_users(warehouse)
    query = tmp_path / "bad_users.sql"
    query.write_text("SELECT * FROM bad_users\n", encoding="utf-8")
    mapping = tmp_path / "bad_users.toml"
    mapping.write_text(MAPPING.replace("{query}", str(query)), encoding="utf-8")
    return sandbox_settings(sandbox, warehouse, KEY, bulk_users_rpm=60_000, users_mapping=str(mapping))


def open_rejects(settings: Settings) -> list[dict[str, Any]]:
    with StateStore(make_engine(settings.warehouse_url)) as store:
        return store.open_rejects("users")


def profile(sandbox: SandboxServer, user_id: str) -> dict[str, Any]:
    found = sandbox.store.get_profile(user_id)
    assert found is not None, f"{user_id} not in the sandbox"
    return found


def test_every_bad_value_is_reported_and_the_rest_of_the_row_goes(sandbox: SandboxServer, settings: Settings) -> None:
    summary = users.run(settings, run_id="bad1", clock=lambda: AS_OF)
    stats = sandbox.stats()
    assert stats["violations"] == 0, stats["violations_by_rule"]

    # Counts add up; the row-level rejects are the id problems only.
    assert summary["extracted"] == len(ROWS)
    assert summary["extracted"] == summary["unchanged"] + summary["accepted"] + summary["rejected"]
    assert summary["rejected_by_reason"] == {"duplicate_user_id": 1, "missing_user_id": 2, "user_id_too_long": 1}
    valid_ids = {u.strip() for u, _ in ROWS if u and u.strip() and len(u) <= 100}
    assert summary["accepted"] == len(valid_ids) == stats["users"]
    assert summary["values_dropped_by_reason"] == dict(Counter(r for _k, _c, r in EXPECTED_VALUE_REJECTS))
    assert summary["trimmed"] == 2  # 5,000 and 1,000 characters; 999 stays as it is
    assert summary["renamed_attributes"] == {"we_tier": "attr_tier", LONG_NAME: sanitize_attribute_name(LONG_NAME)}

    # Every bad value, and every rejected row, is in the rejects table with its reason.
    rejects = open_rejects(settings)
    triples = {(r["row_key"], r["column_name"], r["reason"]) for r in rejects}
    assert triples >= EXPECTED_VALUE_REJECTS | EXPECTED_ROW_REJECTS
    missing = [r for r in rejects if r["reason"] == "missing_user_id"]
    assert len(missing) == 2 and all(r["column_name"] == "user_id" for r in missing)
    assert len(rejects) == len(EXPECTED_VALUE_REJECTS) + len(EXPECTED_ROW_REJECTS) + 2
    assert all(r["kind"] == "data" and r["column_name"] != ROW for r in rejects)

    # What is left of each row still went; the bad value did not.
    good = profile(sandbox, "good_1")
    assert good == {
        "userId": "good_1",
        "firstName": "Asha",
        "email": "Asha@example.com",
        "phone": "+919876543210",
        "birthDate": "1990-05-17T00:00:00+0000",
        "gender": "female",
        "smsOptIn": True,
        "attributes": {
            "score": 12.5,
            "score_text": 42.0,
            "bio": "hello",
            "prefs": {"lang": "hi"},
            "seen_text": "2026-03-01T04:30:00+0000",  # naive, Asia/Kolkata -> UTC
            "signup_ts": "2026-01-15T06:30:00+0000",  # naive TIMESTAMP, Asia/Kolkata -> UTC
            "last_seen_tz": "2026-03-01T04:30:00+0000",  # already an instant: unchanged
            "attr_tier": "gold",
            sanitize_attribute_name(LONG_NAME): 99.5,
        },
    }
    phone_a = profile(sandbox, "phone_a")
    assert (
        phone_a["firstName"] == "Phone A" and "phone" not in phone_a and phone_a["attributes"]["attr_tier"] == "bronze"
    )
    for user_id in ("phone_b", "phone_c", "phone_d"):
        assert "phone" not in profile(sandbox, user_id) and profile(sandbox, user_id)["firstName"]
    assert profile(sandbox, "phone_local")["phone"] == "+919876543210"
    assert profile(sandbox, "phone_us")["phone"] == "+14155552671"
    assert (
        profile(sandbox, "dup_1")["firstName"] == "New"
        and profile(sandbox, "dup_1")["attributes"]["attr_tier"] == "gold"
    )
    assert profile(sandbox, ID_100)["firstName"] == "Exactly 100"
    for user_id in ("bday_bad", "bday_future", "bday_old"):
        assert "birthDate" not in profile(sandbox, user_id)
    assert "gender" not in profile(sandbox, "gender_unknown")  # a spelling of "not given": missing, not an error
    assert profile(sandbox, "gender_m")["gender"] == "male"
    assert "gender" not in profile(sandbox, "gender_xyz") and profile(sandbox, "gender_xyz")["firstName"] == "G2"
    assert "smsOptIn" not in profile(sandbox, "optin_maybe")
    for user_id in ("score_nan", "score_inf", "score_ninf"):
        assert "score" not in profile(sandbox, user_id).get("attributes", {})
        assert profile(sandbox, user_id).get("firstName") == {"score_inf": "Inf", "score_ninf": "-Inf"}.get(user_id)
    assert "score_text" not in profile(sandbox, "score_text").get("attributes", {})
    bios = {u: profile(sandbox, u)["attributes"]["bio"] for u in ("bio_5000", "bio_1000", "bio_999")}
    assert bios == {"bio_5000": "b" * 999, "bio_1000": "c" * 999, "bio_999": "d" * 999}
    assert profile(sandbox, "emoji")["firstName"] == "Zoë 🎉🚀"
    assert profile(sandbox, "control")["firstName"] == "CtrlAB"
    for user_id in ("json_bad", "json_nan"):
        assert "prefs" not in profile(sandbox, user_id).get("attributes", {})
    for user_id in ("email_noat", "email_twoat", "email_space"):
        assert "email" not in profile(sandbox, user_id) and profile(sandbox, user_id)["firstName"]
    assert profile(sandbox, "seen_offset")["attributes"]["seen_text"] == "2026-03-01T15:00:00+0000"
    assert "seen_text" not in profile(sandbox, "seen_epoch").get("attributes", {})
    assert "login_epoch" not in profile(sandbox, "login_epoch").get("attributes", {})
    assert profile(sandbox, "all_nulls") == {"userId": "all_nulls"}


def test_rejects_stay_open_until_the_row_is_fixed(sandbox: SandboxServer, settings: Settings) -> None:
    users.run(settings, run_id="bad1", clock=lambda: AS_OF)
    again = users.run(settings, run_id="bad2", clock=lambda: AS_OF)
    assert again["requests"] == 0 and again["unchanged"] == again["extracted"] - again["rejected"]
    before = {(r["row_key"], r["column_name"], r["reason"]) for r in open_rejects(settings)}
    assert before >= EXPECTED_VALUE_REJECTS | EXPECTED_ROW_REJECTS

    with duckdb.connect(settings.warehouse_url.removeprefix("duckdb:///")) as con:
        con.execute("UPDATE bad_users SET phone = ? WHERE user_id = ?", ["+91 91234 56789", "phone_a"])
    fixed = users.run(settings, run_id="bad3", clock=lambda: AS_OF)
    assert fixed["accepted"] == 1 and fixed["requests"] == 1
    assert profile(sandbox, "phone_a")["phone"] == "+919123456789"
    after = {(r["row_key"], r["column_name"], r["reason"]) for r in open_rejects(settings)}
    assert after == before - {("phone_a", "phone", "invalid_phone")}
    assert sandbox.stats()["violations"] == 0
