"""Garbage WebEngage would keep forever (issue 14, section 1), through both syncs into the strict sandbox:
null-like and control-character ids and event names, control characters in keys and values, null-like string
values, objects over 16 KB, blank property names, events years in the future. Nothing of it reaches the
sandbox (0 violations), every bad row and value is in the rejects table with its reason, the counts add up,
and the good values around the garbage still go.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from etl.config import Settings
from etl.pipelines import events, users
from etl.state.store import ROW, StateStore
from etl.warehouse.engine import make_engine
from tests.helpers.sandbox import FAST, sandbox_fixture, sandbox_settings
from webengage_dev.sandbox import SandboxServer

KEY = "hostile-data-key-not-logged-14"
AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
WINDOW = (AS_OF - timedelta(days=1), AS_OF)
ARRIVED = datetime(2026, 10, 31, 12, 0)  # naive UTC, inside WINDOW
HAPPENED = datetime(2026, 10, 31, 11, 0)


#: A JSON text of about ``size`` bytes (one long string inside an object).
def blob(size: int, key: str = "blob") -> str:
    return json.dumps({key: "x" * (size - len(key) - 8)})


BIG_USER_JSON = blob(64_890)
BIG_EVENT_JSON = blob(61_890)

# -- users ------------------------------------------------------------------------------------------------
USER_COLUMNS = {
    "user_id": "VARCHAR",
    "updated_at": "TIMESTAMP",
    "first_name": "VARCHAR",
    "city": "VARCHAR",
    "prefs": "VARCHAR",
    "extra": "VARCHAR",
}
#: (user id, values); row labels (row:N) follow the extract's order by user id.
USER_ROWS: list[tuple[str, dict[str, Any]]] = [
    ("good_1", {"first_name": "Asha", "city": "Pune", "prefs": '{"lang": "hi"}', "extra": '{"n": 1}'}),
    ("null", {"first_name": "Null"}),
    ("None", {"first_name": "None id"}),
    ("nan", {"first_name": "NaN id"}),
    (" NULL ", {"first_name": "Padded"}),
    ("u\x00nul", {"first_name": "NUL id"}),
    ("city_null", {"first_name": "City", "city": "null"}),
    ("city_nan", {"first_name": "City2", "city": " NaN "}),
    ("city_undefined", {"city": "undefined", "prefs": '{"ok": true}'}),
    ("ctrl_value", {"first_name": "Ct\x00rl\x07", "city": "Mum\x1bbai"}),
    ("json_keys", {"prefs": '{"k\\u0000ey": "v\\u0001al", "fine": 1}'}),
    ("big_json", {"first_name": "Big", "prefs": BIG_USER_JSON}),
    ("two_objects", {"first_name": "Two", "prefs": blob(10_000), "extra": blob(9_000)}),
]
#: Rejected rows: (user id as in the warehouse, reason). Keyed by position in the rejects table.
USER_ROW_REJECTS = {
    "null": "null_like_id",
    "None": "null_like_id",
    "nan": "null_like_id",
    " NULL ": "null_like_id",
    "u\x00nul": "control_character_in_id",
}
USER_VALUE_REJECTS = {
    ("city_null", "city", "null_like_value"),
    ("city_nan", "city", "null_like_value"),
    ("city_undefined", "city", "null_like_value"),
    ("big_json", "prefs", "object_too_large"),
    ("two_objects", "prefs", "object_too_large"),
}

USERS_MAPPING = """
[source]
query = "{query}"
user_id = "user_id"
updated_at = "updated_at"

[options]
{options}

[system_attributes]
first_name = "firstName"
city = "city"

[custom_attributes]
prefs = {{ type = "json" }}
extra = {{ type = "json" }}
"""

# -- events -----------------------------------------------------------------------------------------------
EVENT_COLUMNS = {
    "event_id": "VARCHAR",
    "user_id": "VARCHAR",
    "anonymous_id": "VARCHAR",
    "event_name": "VARCHAR",
    "event_time": "TIMESTAMP",
    "received_at": "TIMESTAMP",
    "properties": "VARCHAR",
    "city": "VARCHAR",
}
BAD_NAMES = {
    "null": "null_like_event_name",
    "NULL": "null_like_event_name",
    "None": "null_like_event_name",
    "nan": "null_like_event_name",
    "NaN": "null_like_event_name",
    "undefined": "null_like_event_name",
    "\x00": "control_character_in_event_name",
    "a\x00b": "control_character_in_event_name",
}
BAD_IDS = {"null": "null_like_id", "None": "null_like_id", "nan": "null_like_id", "u\x00nul": "control_character_in_id"}
#: event id -> values (user_id "good_1", event_name "Order Placed", a time in the window unless given).
EVENT_ROWS: dict[str, dict[str, Any]] = {
    "e_good": {"properties": '{"amount": 5, "note": "ok", "nested": {"a": [1, 2]}}', "city": "Pune"},
    **{f"e_name_{i}": {"event_name": name} for i, name in enumerate(BAD_NAMES)},
    **{f"e_uid_{i}": {"user_id": uid} for i, uid in enumerate(BAD_IDS)},
    "e_anon_null": {"user_id": None, "anonymous_id": "undefined"},
    "e_nul_key": {"properties": '{"k\\u0000ey": 1, "text": "a\\u0000b"}'},
    "e_blank_keys": {"properties": '{"": 1, " ": 2, "ok": 3}'},
    "e_big": {"properties": json.dumps({"blob": json.loads(BIG_EVENT_JSON), "small": 1})},
    "e_future": {"event_time": AS_OF.replace(tzinfo=None) + timedelta(days=5 * 365)},
    "e_tomorrow": {"event_time": AS_OF.replace(tzinfo=None) + timedelta(hours=23)},  # within the tolerance
    "e_city_null": {"city": "null", "properties": '{"label": "None", "count": 2}'},
    "e_bad_json": {"properties": '{"unclosed": '},
}
EVENT_ROW_REJECTS = {
    **{f"e_name_{i}": reason for i, reason in enumerate(BAD_NAMES.values())},
    **{f"e_uid_{i}": reason for i, reason in enumerate(BAD_IDS.values())},
    "e_anon_null": "null_like_id",
    "e_future": "event_time_in_future",
}
EVENT_VALUE_REJECTS = {
    ("e_blank_keys", '""', "empty_property_name"),
    ("e_blank_keys", " ", "empty_property_name"),
    ("e_big", "blob", "object_too_large"),
    ("e_city_null", "city", "null_like_value"),
    ("e_city_null", "label", "null_like_value"),
    ("e_bad_json", "properties", "invalid_json"),
}

EVENTS_MAPPING = """
[source]
query = "{query}"
lookback = "0s"

[options]
camel_case = false
{options}
"""


def create_warehouse(path: Path) -> None:
    with duckdb.connect(str(path)) as con:
        # Table and column names are this module's constants; values are bound parameters.
        con.execute(f"CREATE TABLE hostile_users ({', '.join(f'{c} {t}' for c, t in USER_COLUMNS.items())})")
        names = list(USER_COLUMNS)
        rows = [
            {c: None for c in names} | {"updated_at": datetime(2026, 3, 1)} | v | {"user_id": u} for u, v in USER_ROWS
        ]
        con.executemany(
            f"INSERT INTO hostile_users VALUES ({', '.join('?' for _ in names)})", [[r[c] for c in names] for r in rows]
        )
        con.execute(f"CREATE TABLE hostile_events ({', '.join(f'{c} {t}' for c, t in EVENT_COLUMNS.items())})")
        names = list(EVENT_COLUMNS)
        base = {c: None for c in names} | {
            "user_id": "good_1",
            "event_name": "Order Placed",
            "event_time": HAPPENED,
            "received_at": ARRIVED,
        }
        rows = [base | v | {"event_id": e} for e, v in EVENT_ROWS.items()]
        con.executemany(
            f"INSERT INTO hostile_events VALUES ({', '.join('?' for _ in names)})",
            [[r[c] for c in names] for r in rows],
        )


sandbox = sandbox_fixture(KEY, bulk_users_rpm=FAST, bulk_events_rpm=FAST)


def make_settings(tmp_path: Path, sandbox: SandboxServer, *, keep_null_like: bool = False) -> Settings:
    warehouse = tmp_path / "hostile.duckdb"
    if not warehouse.exists():
        create_warehouse(warehouse)
    options = "keep_null_like_values = true" if keep_null_like else ""
    users_sql = tmp_path / "hostile_users.sql"
    users_sql.write_text("SELECT * FROM hostile_users\n", encoding="utf-8")
    users_toml = tmp_path / "hostile_users.toml"
    users_toml.write_text(USERS_MAPPING.format(query=users_sql, options=options), encoding="utf-8")
    events_sql = tmp_path / "hostile_events.sql"
    events_sql.write_text(
        "SELECT * FROM hostile_events WHERE received_at >= :start AND received_at < :end\n", encoding="utf-8"
    )
    events_toml = tmp_path / "hostile_events.toml"
    events_toml.write_text(EVENTS_MAPPING.format(query=events_sql, options=options), encoding="utf-8")
    return sandbox_settings(
        sandbox,
        warehouse,
        KEY,
        bulk_users_rpm=FAST,
        bulk_events_rpm=FAST,
        expected_latency_s=0.05,
        users_mapping=str(users_toml),
        events_mapping=str(events_toml),
    )


@pytest.fixture
def settings(tmp_path: Path, sandbox: SandboxServer) -> Settings:
    return make_settings(tmp_path, sandbox)


def rejects_of(settings: Settings, pipeline: str) -> list[dict[str, Any]]:
    with StateStore(make_engine(settings.warehouse_url)) as store:
        return store.open_rejects(pipeline)


def groups_of(settings: Settings, pipeline: str) -> Counter[tuple[str, str]]:
    with StateStore(make_engine(settings.warehouse_url)) as store:
        return Counter({(g["reason"], g["column_name"]): g["rows"] for g in store.reject_groups(pipeline)})


def profile(sandbox: SandboxServer, user_id: str) -> dict[str, Any]:
    found = sandbox.store.get_profile(user_id)
    assert found is not None, f"{user_id} not in the sandbox"
    return found


def test_hostile_users_leave_no_garbage_and_every_drop_is_reported(sandbox: SandboxServer, settings: Settings) -> None:
    summary = users.run(settings, run_id="hostile-u1", clock=lambda: AS_OF)
    stats = sandbox.stats()
    assert stats["violations"] == 0, stats["violations_by_rule"]

    assert summary["extracted"] == len(USER_ROWS)
    assert summary["extracted"] == summary["unchanged"] + summary["accepted"] + summary["rejected"]
    assert summary["rejected_by_reason"] == dict(Counter(USER_ROW_REJECTS.values()))
    assert summary["accepted"] == len(USER_ROWS) - len(USER_ROW_REJECTS) == stats["users"]
    assert summary["values_dropped_by_reason"] == dict(Counter(r for _k, _c, r in USER_VALUE_REJECTS))
    assert summary["cleaned"] == 4  # first_name and city of ctrl_value; a key and a string inside json_keys

    rejects = rejects_of(settings, "users")
    triples = {(r["row_key"], r["column_name"], r["reason"]) for r in rejects}
    assert triples >= USER_VALUE_REJECTS
    row_rejects = [r for r in rejects if r["row_key"].startswith("row:")]
    assert Counter(r["reason"] for r in row_rejects) == Counter(USER_ROW_REJECTS.values())
    assert all(r["column_name"] == "user_id" and r["kind"] == "data" for r in row_rejects)
    assert all("\x00" not in r["detail"] and "\x00" not in r["row_key"] for r in rejects)
    assert len(rejects) == len(USER_VALUE_REJECTS) + len(USER_ROW_REJECTS)
    assert groups_of(settings, "users")[("object_too_large", "prefs")] == 2

    # No profile for a null-like or NUL id; the good values around the garbage went.
    assert all(sandbox.store.get_profile(u.strip()) is None for u in USER_ROW_REJECTS)
    assert profile(sandbox, "good_1") == {
        "userId": "good_1",
        "firstName": "Asha",
        "city": "Pune",
        "attributes": {"prefs": {"lang": "hi"}, "extra": {"n": 1}},
    }
    assert profile(sandbox, "city_null") == {"userId": "city_null", "firstName": "City"}
    assert profile(sandbox, "city_nan") == {"userId": "city_nan", "firstName": "City2"}
    assert profile(sandbox, "city_undefined") == {"userId": "city_undefined", "attributes": {"prefs": {"ok": True}}}
    assert profile(sandbox, "ctrl_value") == {"userId": "ctrl_value", "firstName": "Ctrl", "city": "Mumbai"}
    assert profile(sandbox, "json_keys")["attributes"]["prefs"] == {"key": "val", "fine": 1}
    assert profile(sandbox, "big_json") == {"userId": "big_json", "firstName": "Big"}
    two = profile(sandbox, "two_objects")
    assert "prefs" not in two["attributes"] and two["attributes"]["extra"] == json.loads(blob(9_000))

    # A re-run sends nothing new and adds no rejects.
    again = users.run(settings, run_id="hostile-u2", clock=lambda: AS_OF)
    assert again["requests"] == 0 and again["accepted"] == 0
    assert len(rejects_of(settings, "users")) == len(rejects)


def test_hostile_events_leave_no_garbage_and_every_drop_is_reported(sandbox: SandboxServer, settings: Settings) -> None:
    summary = events.run(settings, window=WINDOW, run_id="hostile-e1", clock=lambda: AS_OF)
    stats = sandbox.stats()
    assert stats["violations"] == 0, stats["violations_by_rule"]

    assert summary["extracted"] == len(EVENT_ROWS)
    assert summary["extracted"] == summary["unchanged"] + summary["accepted"] + summary["rejected"]
    assert summary["rejected_by_reason"] == dict(Counter(EVENT_ROW_REJECTS.values()))
    assert summary["accepted"] == len(EVENT_ROWS) - len(EVENT_ROW_REJECTS) == stats["events"]
    assert summary["values_dropped_by_reason"] == dict(Counter(r for _e, _c, r in EVENT_VALUE_REJECTS))
    assert summary["cleaned"] == 2  # the key k\0ey and the value a\0b of e_nul_key

    # Whole events and left-out values alike are in the rejects table (what `rejects --pipeline events` shows).
    rejects = rejects_of(settings, "events")
    rows = {r["row_key"]: r["reason"] for r in rejects if r["column_name"] == ROW}
    assert rows == EVENT_ROW_REJECTS
    values = {(r["row_key"], r["column_name"], r["reason"]) for r in rejects if r["column_name"] != ROW}
    assert values == EVENT_VALUE_REJECTS
    assert all(r["kind"] == "data" for r in rejects)
    groups = groups_of(settings, "events")
    assert groups[("empty_property_name", '""')] == 1 and groups[("object_too_large", "blob")] == 1

    # Nothing null-like or with a control character went; the good events went whole.
    got = [e["event"] for e in sandbox.store.events()]
    assert {e["eventName"] for e in got} == {"Order Placed"}
    assert {e.get("userId") for e in got} == {"good_1"}
    data = [e.get("eventData", {}) for e in got]
    assert {"amount": 5, "note": "ok", "nested": {"a": [1, 2]}, "city": "Pune"} in data
    assert {"key": 1, "text": "ab"} in data
    assert {"ok": 3} in data
    assert {"small": 1} in data
    assert {"count": 2} in data
    assert any(e["eventTime"] == "2026-11-01T23:00:00+0000" for e in got)  # 23 hours ahead: within tolerance

    # Events go once: a re-run skips them all and records nothing new.
    again = events.run(settings, window=WINDOW, run_id="hostile-e2", clock=lambda: AS_OF)
    assert again["requests"] == 0 and again["already_sent"] == summary["accepted"]
    assert len(rejects_of(settings, "events")) == len(rejects)


def test_keep_null_like_values_sends_them_as_they_are(tmp_path: Path, sandbox: SandboxServer) -> None:
    settings = make_settings(tmp_path, sandbox, keep_null_like=True)
    summary = users.run(settings, run_id="keep-u1", clock=lambda: AS_OF)
    assert "null_like_value" not in summary["values_dropped_by_reason"]
    assert summary["rejected_by_reason"] == dict(Counter(USER_ROW_REJECTS.values()))  # ids are never kept
    assert profile(sandbox, "city_null")["city"] == "null"
    assert profile(sandbox, "city_nan")["city"].strip() == "NaN"
    ran = events.run(settings, window=WINDOW, run_id="keep-e1", clock=lambda: AS_OF)
    assert "null_like_value" not in ran["values_dropped_by_reason"]
    assert {"city": "null", "label": "None", "count": 2} in [
        e["event"].get("eventData") for e in sandbox.store.events()
    ]
    assert sandbox.stats()["violations"] == 0


def test_the_token_list_is_a_setting(tmp_path: Path, sandbox: SandboxServer) -> None:
    settings = make_settings(tmp_path, sandbox).replace(null_tokens=("null", "n/a"))
    summary = users.run(settings, run_id="tokens-u1", clock=lambda: AS_OF)
    # "None" and "nan" are ids now (and the sandbox, with its fixed default list, says so).
    assert summary["rejected_by_reason"] == {"null_like_id": 2, "control_character_in_id": 1}
    assert profile(sandbox, "None")["firstName"] == "None id"
    assert profile(sandbox, "city_nan")["city"].strip() == "NaN"
    assert {v.rule for v in sandbox.store.violations()} == {"null_like_id"}
