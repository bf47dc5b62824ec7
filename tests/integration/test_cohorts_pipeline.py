"""Cohort syncs end to end: demo warehouse (DuckDB file) -> real sandbox server on loopback.

Most tests drive a hand-controlled cohort (``SELECT user_id FROM test_cohort``) so the exact members are
known; others run the shipped demo cohorts over the demo tables.
"""

from __future__ import annotations

import math
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson
import pandas as pd
import pytest
from typer.testing import CliRunner

from etl.cli_cohorts import cohort_app
from etl.config import Settings
from etl.errors import ConfigError
from etl.mappings.cohorts import load_cohort_config
from etl.pipelines import cohorts
from etl.state import cohorts as cstate
from etl.state.store import StateStore
from etl.transform.cohorts import GuardError
from etl.warehouse.engine import make_engine
from tests.helpers.kill import kill_at, requests_to, start_cli
from tests.helpers.runs import failed_delivery
from tests.helpers.sandbox import sandbox_fixture, sandbox_settings
from tests.helpers.warehouse import AS_OF, COHORT_TABLE, warehouse_fixture
from webengage_dev.sandbox import SandboxServer

ROOT = Path(__file__).resolve().parents[2]
KEY = "cohort-test-key-not-logged-7"
RPM = 60_000
ATTR = "cohort_ctl"


def uid(i: int) -> str:
    return f"usr_{i:07d}"


def ids(*ranges: range) -> list[str]:
    return [uid(i) for r in ranges for i in r]


warehouse = warehouse_fixture(1500, setup=COHORT_TABLE)


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    (tmp_path / "ctl.sql").write_text("-- the test decides who is in\nSELECT user_id FROM test_cohort\n")
    path = tmp_path / "cohorts.toml"
    path.write_text(
        f"""
[cohorts.ctl]
sql = "{tmp_path / "ctl.sql"}"
attribute = "{ATTR}"
mode = "dynamic"

[cohorts.ctl_lenient]
sql = "{tmp_path / "ctl.sql"}"
attribute = "cohort_ctl_lenient"
mode = "one_time"
max_exit_share = 1.0

[cohorts.vip]
sql = "{ROOT / "etl/defaults/sql/cohorts/vip_buyers_30d.sql"}"
attribute = "cohort_vip"
mode = "dynamic"
params = {{ days = 30, min_revenue_usd = 300 }}

[cohorts.cart]
sql = "{ROOT / "etl/defaults/sql/cohorts/cart_abandoners_7d.sql"}"
mode = "dynamic"
params = {{ days = 7 }}
"""
    )
    return path


sandbox = sandbox_fixture(KEY, bulk_users_rpm=RPM, bulk_events_rpm=RPM)


def settings_for(sandbox: SandboxServer | str, warehouse: Path, config_path: Path, **extra: Any) -> Settings:
    values = {
        "cohorts_config": str(config_path),
        "bulk_users_rpm": RPM,
        "bulk_events_rpm": RPM,
        "expected_latency_s": 0.05,
    }
    return sandbox_settings(sandbox, warehouse, KEY, **(values | extra))


def set_members(warehouse: Path, members: list[str | None]) -> None:
    with duckdb.connect(str(warehouse)) as con:
        con.execute("DELETE FROM test_cohort")
        if members:
            con.execute("INSERT INTO test_cohort SELECT unnest(?::VARCHAR[])", [members])


def attribute_values(sandbox: SandboxServer, attribute: str) -> dict[str, bool]:
    _, users = sandbox.store.list_users(limit=1_000_000)
    return {
        u["id"]: u["profile"]["attributes"][attribute] for u in users if attribute in u["profile"].get("attributes", {})
    }


def updates(sandbox: SandboxServer, user_id: str) -> int:
    record = sandbox.store.get_user(user_id)
    return int(record["updates"]) if record else 0


def bulk_users(sandbox: SandboxServer) -> int:
    return int(sandbox.stats()["requests"].get("bulk-users", 0))


def state_of(warehouse: Path, cohort: str = "ctl") -> cstate.Snapshot:
    with StateStore(make_engine(f"duckdb:///{warehouse}")) as store:
        return cstate.snapshot(store, cohort)


def check_invariant(summary: dict[str, Any]) -> None:
    """Query rows + users only the snapshot knows = excluded + unchanged + accepted + rejected (+ to send)."""
    decisions = summary["extracted"] + summary["exited"] + summary["resent_false"]
    buckets = summary["excluded_total"] + summary["unchanged"] + summary["accepted"] + summary["rejected"]
    assert decisions == buckets + (summary["sent"] if summary["dry_run"] else 0)


# -- membership changes ---------------------------------------------------------------------------------
def test_export_then_membership_change_overwrites_exactly(
    sandbox: SandboxServer, warehouse: Path, config_path: Path
) -> None:
    settings = settings_for(sandbox, warehouse, config_path)
    first = ids(range(1, 121))
    set_members(warehouse, list(first))
    one = cohorts.export(settings, cohort="ctl", as_of=AS_OF, run_id="r1")
    assert (one["entered"], one["exited"], one["unchanged"], one["accepted"]) == (120, 0, 0, 120)
    assert one["requests"] == bulk_users(sandbox) == math.ceil(120 / 25)
    assert attribute_values(sandbox, ATTR) == dict.fromkeys(first, True)

    second = ids(range(31, 121), range(201, 241))  # 30 leave, 40 join, 90 stay
    set_members(warehouse, list(second))
    before = bulk_users(sandbox)
    two = cohorts.export(settings, cohort="ctl", as_of=AS_OF, run_id="r2")
    assert (two["entered"], two["exited"], two["unchanged"], two["previous_members"]) == (40, 30, 90, 120)
    assert two["requests"] == bulk_users(sandbox) - before == math.ceil(70 / 25)
    values = attribute_values(sandbox, ATTR)
    assert {u for u, v in values.items() if v} == set(second)
    assert {u for u, v in values.items() if not v} == set(ids(range(1, 31)))
    assert all(updates(sandbox, u) == 1 for u in ids(range(31, 121)))  # untouched: sent once, in r1
    assert all(updates(sandbox, u) == 2 for u in ids(range(1, 31)))
    assert all(updates(sandbox, u) == 1 for u in ids(range(201, 241)))
    assert updates(sandbox, uid(500)) == 0  # never in the cohort: never sent
    snap = state_of(warehouse)
    assert snap.members == sorted(second) and snap.in_doubt == []
    assert sandbox.stats()["violations"] == 0

    before = bulk_users(sandbox)
    three = cohorts.export(settings, cohort="ctl", as_of=AS_OF, run_id="r3")
    assert three["requests"] == 0 and bulk_users(sandbox) == before
    assert (three["entered"], three["exited"], three["unchanged"], three["sent"]) == (0, 0, 130, 0)
    for summary in (one, two, three):
        check_invariant(summary)


def test_demo_vip_cohort_follows_orders_in_the_warehouse(
    sandbox: SandboxServer, warehouse: Path, config_path: Path
) -> None:
    settings = settings_for(sandbox, warehouse, config_path)
    expected = vip_members(warehouse, threshold=300)
    assert 10 < len(expected) < 1500
    one = cohorts.export(settings, cohort="vip", as_of=AS_OF)
    assert one["members"] == len(expected)
    assert set(attribute_values(sandbox, "cohort_vip")) == expected

    outsider = sorted({uid(i) for i in range(1, 1501)} - expected)[0]
    insider = sorted(expected)[0]
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "INSERT INTO main.orders VALUES ('ORD-TEST-1', ?, ?::TIMESTAMPTZ - INTERVAL 1 DAY, 999.0, 'USD', "
            "'completed', NULL)",
            [outsider, AS_OF],
        )
        con.execute("UPDATE main.orders SET status = 'refunded', refunded_at = ordered_at WHERE user_id = ?", [insider])
    before = bulk_users(sandbox)
    two = cohorts.export(settings, cohort="vip", as_of=AS_OF)
    assert (two["entered"], two["exited"]) == (1, 1)
    assert two["requests"] == bulk_users(sandbox) - before == 1
    values = attribute_values(sandbox, "cohort_vip")
    assert values[outsider] is True and values[insider] is False
    assert {u for u, v in values.items() if v} == vip_members(warehouse, threshold=300)


def frame(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None) -> pd.DataFrame:
    cur = con.execute(sql, params or {})
    return pd.DataFrame(cur.fetchall(), columns=[d[0] for d in cur.description or []])


def vip_members(warehouse: Path, *, threshold: float) -> set[str]:
    """The VIP rule recomputed in pandas (independently of the SQL file): completed orders in the 30
    days before AS_OF worth >= threshold USD, ids of at most 100 characters."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        orders = frame(con, "SELECT user_id, ordered_at, revenue::DOUBLE AS revenue, currency, status FROM main.orders")
        fx = frame(con, "SELECT currency, fx_usd FROM main.countries")
    orders = orders.merge(fx, on="currency")
    at = pd.to_datetime(orders["ordered_at"], utc=True)
    window = (at > pd.Timestamp(AS_OF - timedelta(days=30))) & (at <= pd.Timestamp(AS_OF))
    ok = orders[window & (orders["status"] == "completed") & orders["user_id"].notna()]
    usd = (ok["revenue"] / ok["fx_usd"]).groupby(ok["user_id"]).sum()
    return {u for u in usd[usd >= threshold].index if len(u) <= 100}


# -- identified users only --------------------------------------------------------------------------------
def test_anonymous_and_invalid_ids_are_excluded_and_counted(
    sandbox: SandboxServer, warehouse: Path, config_path: Path
) -> None:
    settings = settings_for(sandbox, warehouse, config_path)
    long_id = "u" * 101
    set_members(warehouse, [uid(1), uid(2), uid(2), uid(2), None, None, None, "", "   ", long_id, f" {uid(3)} "])
    summary = cohorts.export(settings, cohort="ctl", as_of=AS_OF)
    assert summary["excluded"] == {"anonymous": 3, "empty_user_id": 2, "user_id_too_long": 1, "duplicate_user_id": 2}
    assert summary["extracted"] == 11 and summary["members"] == 3 and summary["accepted"] == 3
    assert set(attribute_values(sandbox, ATTR)) == {uid(1), uid(2), uid(3)}
    assert summary["extracted"] == summary["excluded_total"] + summary["members"]
    assert sandbox.stats()["violations"] == 0


def test_demo_cart_cohort_never_exports_anonymous_visitors(
    sandbox: SandboxServer, warehouse: Path, config_path: Path
) -> None:
    settings = settings_for(sandbox, warehouse, config_path)
    summary = cohorts.export(settings, cohort="cart", as_of=AS_OF)
    sql = (
        (ROOT / "etl/defaults/sql/cohorts/cart_abandoners_7d.sql")
        .read_text()
        .replace(":as_of", "$as_of")
        .replace(":days", "$days")
    )
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = frame(con, sql, {"as_of": AS_OF.replace(tzinfo=None), "days": 7})
    assert summary["extracted"] == len(rows)
    assert summary["excluded"]["anonymous"] == int(rows["user_id"].isna().sum()) > 0
    sent = set(attribute_values(sandbox, "cohort_cart"))
    assert sent == {u for u in rows["user_id"].dropna() if len(u) <= 100}
    assert not any(u.startswith("anon:") for u in sent)


# -- blast-radius guard -------------------------------------------------------------------------------------
def test_guard_stops_mass_exit_before_sending_and_override_lets_it_through(
    sandbox: SandboxServer, warehouse: Path, config_path: Path
) -> None:
    settings = settings_for(sandbox, warehouse, config_path)
    set_members(warehouse, ids(range(1, 101)))
    cohorts.export(settings, cohort="ctl", as_of=AS_OF)
    set_members(warehouse, ids(range(1, 41)))  # 60 of 100 would leave: over the 50% share
    before = bulk_users(sandbox)

    dry = cohorts.export(settings, cohort="ctl", as_of=AS_OF, dry_run=True)
    assert dry["guard"] and "60 of 100" in dry["guard"] and dry["sent"] == 60

    with pytest.raises(GuardError) as err:
        cohorts.export(settings, cohort="ctl", as_of=AS_OF, run_id="guarded")
    assert "60 of 100" in str(err.value) and "override" in str(err.value)
    assert bulk_users(sandbox) == before
    assert len(state_of(warehouse).members) == 100
    with StateStore(make_engine(f"duckdb:///{warehouse}")) as store:
        [run] = [r for r in store.runs(pipeline="cohort:ctl") if r["run_id"] == "guarded"]
    assert run["status"] == "failed" and "GuardError" in run["message"]

    forced = cohorts.export(settings, cohort="ctl", as_of=AS_OF, override_guard=True)
    assert forced["exited"] == 60 and forced["requests"] == math.ceil(60 / 25)
    assert any("guard overridden" in n for n in forced["notes"])
    assert sum(1 for v in attribute_values(sandbox, ATTR).values() if not v) == 60


def test_guard_stops_an_empty_result_for_a_cohort_that_had_members(
    sandbox: SandboxServer, warehouse: Path, config_path: Path
) -> None:
    settings = settings_for(sandbox, warehouse, config_path)
    set_members(warehouse, ids(range(1, 11)))
    cohorts.export(settings, cohort="ctl_lenient", as_of=AS_OF)
    set_members(warehouse, [])  # a broken upstream table, say: max_exit_share = 1.0 alone would allow it
    before = bulk_users(sandbox)
    with pytest.raises(GuardError, match="no members"):
        cohorts.export(settings, cohort="ctl_lenient", as_of=AS_OF)
    assert bulk_users(sandbox) == before
    forced = cohorts.export(settings, cohort="ctl_lenient", as_of=AS_OF, override_guard=True)
    assert forced["extracted"] == 0 and forced["exited"] == 10
    assert set(attribute_values(sandbox, "cohort_ctl_lenient").values()) == {False}


# -- attribute slots ---------------------------------------------------------------------------------------
def test_slot_budget_refuses_a_new_cohort_before_sending(
    sandbox: SandboxServer, warehouse: Path, config_path: Path
) -> None:
    settings = settings_for(sandbox, warehouse, config_path)
    set_members(warehouse, ids(range(1, 6)))
    engine = make_engine(f"duckdb:///{warehouse}")
    with StateStore(engine) as store:
        # 24 booleans held elsewhere + the profile mapping's is_test_user (declared boolean) = 25 taken.
        store.register_attributes("users", {f"flag_{i}": "boolean" for i in range(24)}, owner="other")
    with pytest.raises(ConfigError) as err:
        cohorts.export(settings, cohort="ctl", as_of=AS_OF)
    assert "ctl" in str(err.value) and "25" in str(err.value) and "retire" in str(err.value)
    assert sandbox.stats()["requests"] == {}
    with StateStore(engine) as store:
        assert ATTR not in store.registry("users")
        store.release_attributes("users", "other")
        store.register_attributes("users", {f"flag_{i}": "boolean" for i in range(23)}, owner="other")
    summary = cohorts.export(settings, cohort="ctl", as_of=AS_OF)
    assert summary["accepted"] == 5 and summary["attribute_slot"] == "registered"
    with StateStore(engine) as store:
        assert store.registry("users")[ATTR] == ("boolean", "cohort:ctl")


def test_attribute_clashes_are_refused(
    sandbox: SandboxServer, warehouse: Path, config_path: Path, tmp_path: Path
) -> None:
    set_members(warehouse, ids(range(1, 6)))
    with StateStore(make_engine(f"duckdb:///{warehouse}")) as store:
        store.register_attributes("users", {ATTR: "string"}, owner="users")
    with pytest.raises(ConfigError, match="already a string attribute of users"):
        cohorts.export(settings_for(sandbox, warehouse, config_path), cohort="ctl", as_of=AS_OF)
    clash = tmp_path / "clash.toml"
    clash.write_text(
        f'[cohorts.test_flag]\nsql = "{tmp_path / "ctl.sql"}"\nattribute = "is_test_user"\nmode = "dynamic"\n'
    )
    with pytest.raises(ConfigError, match="profile mapping"):
        cohorts.export(settings_for(sandbox, warehouse, clash), cohort="test_flag", as_of=AS_OF)
    assert sandbox.stats()["requests"] == {}


def test_attribute_renamed_in_config_needs_a_retire_first(
    sandbox: SandboxServer, warehouse: Path, config_path: Path, tmp_path: Path
) -> None:
    set_members(warehouse, ids(range(1, 6)))
    cohorts.export(settings_for(sandbox, warehouse, config_path), cohort="ctl", as_of=AS_OF)
    renamed = tmp_path / "renamed.toml"
    renamed.write_text(
        f'[cohorts.ctl]\nsql = "{tmp_path / "ctl.sql"}"\nattribute = "cohort_ctl_v2"\nmode = "dynamic"\n'
    )
    with pytest.raises(ConfigError, match="retire it first"):
        cohorts.export(settings_for(sandbox, warehouse, renamed), cohort="ctl", as_of=AS_OF)


# -- retire --------------------------------------------------------------------------------------------------
def test_retire_sets_every_last_member_false_and_frees_the_slot(
    sandbox: SandboxServer, warehouse: Path, config_path: Path
) -> None:
    settings = settings_for(sandbox, warehouse, config_path)
    set_members(warehouse, ids(range(1, 61)))
    # Distinct clocks per operation: event times have one-second resolution, and an entry, exit and re-entry
    # within one wall-clock second would be identical events.
    cohorts.export(settings, cohort="ctl", as_of=AS_OF, emit_events=True, clock=lambda: AS_OF)
    before = bulk_users(sandbox)
    summary = cohorts.retire(settings, cohort="ctl", emit_events=True, clock=lambda: AS_OF + timedelta(hours=1))
    assert summary["operation"] == "retire" and summary["exited"] == 60 and summary["accepted"] == 60
    assert summary["requests"] == bulk_users(sandbox) - before == math.ceil(60 / 25)
    assert summary["attribute_slot"] == "released" and summary["snapshot_members"] == 0
    assert attribute_values(sandbox, ATTR) == dict.fromkeys(ids(range(1, 61)), False)
    assert len(sandbox.store.events(event_name="Cohort Exited")) == 60
    snap = state_of(warehouse)
    assert snap.members == [] and snap.in_doubt == []
    with StateStore(make_engine(f"duckdb:///{warehouse}")) as store:
        assert ATTR not in store.registry("users")
    [row] = [r for r in cohorts.list_cohorts(settings) if r["name"] == "ctl"]
    assert (row["status"], row["members"]) == ("retired", 0)

    again = cohorts.retire(settings, cohort="ctl")
    assert again["sent"] == 0 and bulk_users(sandbox) - before == math.ceil(60 / 25)

    back = cohorts.export(
        settings, cohort="ctl", as_of=AS_OF, emit_events=True, clock=lambda: AS_OF + timedelta(hours=2)
    )  # a new life for the cohort
    assert back["entered"] == 60 and back["attribute_slot"] == "registered"
    assert len(sandbox.store.events(event_name="Cohort Entered")) == 120
    assert sandbox.stats()["duplicate_events"] == 0


def test_cohorts_removed_from_config_are_retired_and_an_empty_config_is_guarded(
    sandbox: SandboxServer, warehouse: Path, config_path: Path, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, warehouse, config_path)
    set_members(warehouse, ids(range(1, 11)))
    cohorts.export(settings, cohort="ctl", as_of=AS_OF)
    cohorts.export(settings, cohort="ctl_lenient", as_of=AS_OF)
    assert cohorts.retire_removed(settings) == []  # both still configured

    only_ctl = tmp_path / "only_ctl.toml"
    only_ctl.write_text(f'[cohorts.ctl]\nsql = "{tmp_path / "ctl.sql"}"\nattribute = "{ATTR}"\nmode = "dynamic"\n')
    listed = {r["name"]: r["status"] for r in cohorts.list_cohorts(settings_for(sandbox, warehouse, only_ctl))}
    assert listed == {"ctl": "active", "ctl_lenient": "removed from config"}
    [retired] = cohorts.retire_removed(settings_for(sandbox, warehouse, only_ctl))
    assert retired["cohort"] == "ctl_lenient" and retired["exited"] == 10
    assert set(attribute_values(sandbox, "cohort_ctl_lenient").values()) == {False}
    assert set(attribute_values(sandbox, ATTR).values()) == {True}

    empty = tmp_path / "empty.toml"
    empty.write_text("[defaults]\nevents = false\n")
    with pytest.raises(GuardError, match="lists no cohorts"):
        cohorts.retire_removed(settings_for(sandbox, warehouse, empty))
    assert set(attribute_values(sandbox, ATTR).values()) == {True}


# -- events --------------------------------------------------------------------------------------------------
class _FailEvents(httpx.BaseTransport):
    """Forwards to the sandbox, except /bulk-events calls, which fail with 503."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/bulk-events"):
            return httpx.Response(503, json={"response": {"status": "error", "message": "down"}})
        return self.inner.handle_request(request)


def test_events_follow_accepted_flips_exactly_once_even_when_their_send_fails(
    sandbox: SandboxServer, warehouse: Path, config_path: Path
) -> None:
    settings = settings_for(sandbox, warehouse, config_path, max_retries=1, backoff_base_s=0.001, backoff_max_s=0.002)
    set_members(warehouse, ids(range(1, 31)))
    first = cohorts.export(settings, cohort="ctl", as_of=AS_OF, emit_events=True, transport=_FailEvents())
    assert first["accepted"] == 30 and first["events"]["queued"] == 30 and first["events"]["failed"] == 30
    assert sandbox.store.events() == []  # the attribute is set; the events wait in the outbox

    set_members(warehouse, ids(range(11, 41)))  # 10 leave, 10 join
    second = cohorts.export(settings, cohort="ctl", as_of=AS_OF, emit_events=True)
    assert second["events"]["sent"] == 30 + 20  # the backlog first, then this run's transitions
    third = cohorts.export(settings, cohort="ctl", as_of=AS_OF, emit_events=True)
    assert third["events"]["sent"] == 0 and third["requests"] == 0 and third["events"]["requests"] == 0

    entered = [e["event"] for e in sandbox.store.events(event_name="Cohort Entered")]
    exited = [e["event"] for e in sandbox.store.events(event_name="Cohort Exited")]
    assert sorted(e["userId"] for e in entered) == ids(range(1, 41))
    assert sorted(e["userId"] for e in exited) == ids(range(1, 11))
    assert {e["eventData"]["cohort"] for e in entered + exited} == {"ctl"}
    assert sandbox.stats()["duplicate_events"] == 0 and sandbox.stats()["violations"] == 0


def test_unconfirmed_flips_are_resent_with_their_current_value(
    sandbox: SandboxServer, warehouse: Path, config_path: Path
) -> None:
    """WebEngage stores a batch but the answer never arrives (timeout after store): the flips stay in doubt
    and the next sync sends each user's current value, even to users who have left in the meantime."""
    flaky = settings_for(sandbox, warehouse, config_path, max_retries=0, read_timeout_s=0.2)
    set_members(warehouse, ids(range(1, 21)))
    sandbox.update_config(timeout_after_store_rate=1.0, timeout_sleep_s=0.5)
    lost = failed_delivery(cohorts.export, flaky, cohort="ctl", as_of=AS_OF)
    sandbox.update_config(timeout_after_store_rate=0.0)
    assert lost["accepted"] == 0 and lost["rejected_by_reason"] == {"transient_failure": 20}
    assert set(attribute_values(sandbox, ATTR).values()) == {True}  # stored although never acknowledged
    assert state_of(warehouse).members == [] and len(state_of(warehouse).in_doubt) == 20

    settings = settings_for(sandbox, warehouse, config_path)
    set_members(warehouse, ids(range(1, 11)))  # half of them left before the next sync
    fixed = cohorts.export(settings, cohort="ctl", as_of=AS_OF)
    assert (fixed["entered"], fixed["resent_false"], fixed["accepted"]) == (10, 10, 20)
    values = attribute_values(sandbox, ATTR)
    assert values == {**dict.fromkeys(ids(range(1, 11)), True), **dict.fromkeys(ids(range(11, 21)), False)}
    assert state_of(warehouse) == cstate.Snapshot(members=ids(range(1, 11)), in_doubt=[])

    # The same for a member whose false was lost: back in the cohort, it gets true again.
    set_members(warehouse, ids(range(1, 10)))
    sandbox.update_config(timeout_after_store_rate=1.0)
    failed_delivery(cohorts.export, flaky, cohort="ctl", as_of=AS_OF)
    sandbox.update_config(timeout_after_store_rate=0.0)
    assert attribute_values(sandbox, ATTR)[uid(10)] is False
    set_members(warehouse, ids(range(1, 11)))
    back = cohorts.export(settings, cohort="ctl", as_of=AS_OF)
    assert (back["entered"], back["unchanged"], back["resent_true"]) == (0, 9, 1)
    assert attribute_values(sandbox, ATTR)[uid(10)] is True
    check_invariant(back)


def test_a_refused_user_is_isolated_kept_as_a_reject_and_retried(warehouse: Path, config_path: Path) -> None:
    poisoned = uid(7)
    seen: list[int] = []

    def refuse_one(request: httpx.Request) -> httpx.Response:
        users = orjson.loads(request.content)["users"]
        seen.append(len(users))
        if any(u["userId"] == poisoned for u in users):
            return httpx.Response(400, json={"response": {"status": "error", "message": "bad user"}})
        return httpx.Response(201, json={"response": {"status": "queued"}})

    settings = settings_for("http://we.test", warehouse, config_path)
    set_members(warehouse, ids(range(1, 31)))
    first = cohorts.export(settings, cohort="ctl", as_of=AS_OF, transport=httpx.MockTransport(refuse_one))
    assert first["accepted"] == 29 and first["rejected_by_reason"] == {"api_rejected": 1} and 1 in seen
    check_invariant(first)
    snap = state_of(warehouse)
    assert poisoned not in snap.members and snap.in_doubt == []  # refused: WebEngage's value did not change
    with StateStore(make_engine(f"duckdb:///{warehouse}")) as store:
        [reject] = store.open_rejects("cohort:ctl")
    assert (reject["row_key"], reject["reason"], reject["kind"]) == (poisoned, "api_rejected", "api")

    ok = httpx.MockTransport(lambda _: httpx.Response(201, json={"response": {"status": "queued"}}))
    second = cohorts.export(settings, cohort="ctl", as_of=AS_OF, transport=ok)
    assert (second["entered"], second["unchanged"], second["accepted"]) == (1, 29, 1)
    with StateStore(make_engine(f"duckdb:///{warehouse}")) as store:
        assert store.open_rejects("cohort:ctl") == []


def test_dry_run_sends_nothing_and_writes_no_state(sandbox: SandboxServer, warehouse: Path, config_path: Path) -> None:
    settings = settings_for(sandbox, warehouse, config_path)
    set_members(warehouse, ids(range(1, 52)))
    summary = cohorts.export(settings, cohort="ctl", as_of=AS_OF, dry_run=True)
    assert summary["sent"] == 51 and summary["batches"] == 3 and summary["accepted"] == 0
    assert sandbox.stats()["requests"] == {}
    assert state_of(warehouse).members == []
    with StateStore(make_engine(f"duckdb:///{warehouse}")) as store:
        assert ATTR not in store.registry("users")
    check_invariant(summary)


# -- crash safety ----------------------------------------------------------------------------------------------
def start_export(sandbox: SandboxServer, warehouse: Path, config_path: Path) -> subprocess.Popen[bytes]:
    return start_cli(
        ["etl.cli_cohorts", "export", "ctl", "--events"],
        sandbox.url,
        warehouse,
        KEY,
        WEBENGAGE_COHORTS_CONFIG=str(config_path),
        WEBENGAGE_CONCURRENCY="2",
    )


def kill_when(proc: subprocess.Popen[bytes], sandbox: SandboxServer, endpoint: str, requests: int) -> None:
    kill_at(proc, sandbox, endpoint, requests, poll_s=0.002)


@pytest.mark.parametrize(("endpoint", "kill_at"), [("bulk-users", 5), ("bulk-events", 3)])
def test_kill_mid_export_then_rerun_gives_exact_state(
    sandbox: SandboxServer, warehouse: Path, config_path: Path, endpoint: str, kill_at: int
) -> None:
    settings = settings_for(sandbox, warehouse, config_path)
    set_members(warehouse, ids(range(1, 301)))
    cohorts.export(settings, cohort="ctl", as_of=AS_OF, emit_events=True)
    final = ids(range(101, 301), range(1001, 1301))  # 100 leave, 300 join: 16 attribute batches
    set_members(warehouse, list(final))

    sandbox.update_config(latency_ms=25)
    kill_when(
        start_export(sandbox, warehouse, config_path), sandbox, endpoint, kill_at + requests_to(sandbox, endpoint)
    )
    sandbox.update_config(latency_ms=0)
    after_kill = state_of(warehouse)
    accepted_true = {u for u, v in attribute_values(sandbox, ATTR).items() if v}
    # The snapshot never runs ahead of WebEngage: every member it records is true in the sandbox.
    assert set(after_kill.members) - set(after_kill.in_doubt) <= accepted_true

    rerun = cohorts.export(settings, cohort="ctl", as_of=AS_OF, emit_events=True)
    assert rerun["status"] == "success"
    values = attribute_values(sandbox, ATTR)
    assert {u for u, v in values.items() if v} == set(final)
    assert {u for u, v in values.items() if not v} == set(ids(range(1, 101)))
    snap = state_of(warehouse)
    assert snap.members == sorted(final) and snap.in_doubt == []
    again = cohorts.export(settings, cohort="ctl", as_of=AS_OF, emit_events=True)
    assert again["requests"] == 0 and again["events"]["sent"] == 0
    # Each transition's event exactly once, across the first export, the killed one and the re-run.
    entered = sorted(e["event"]["userId"] for e in sandbox.store.events(event_name="Cohort Entered"))
    exited = sorted(e["event"]["userId"] for e in sandbox.store.events(event_name="Cohort Exited"))
    assert entered == sorted(ids(range(1, 301), range(1001, 1301)))
    assert exited == ids(range(1, 101))
    stats = sandbox.stats()
    assert stats["duplicate_events"] == 0 and stats["violations"] == 0
    print(
        f"FIGURES kill {endpoint}@{kill_at}: in_doubt={len(after_kill.in_doubt)} rerun_sent={rerun['sent']} "
        f"rerun_events={rerun['events']['sent']} dedup={stats['deduplicated_requests']}"
    )


# -- PostgreSQL state and the CLI ---------------------------------------------------------------------------------
@pytest.mark.postgres
def test_state_on_postgresql(sandbox: SandboxServer, warehouse: Path, config_path: Path, pg_db: str) -> None:
    settings = settings_for(sandbox, warehouse, config_path, state_url=pg_db)
    set_members(warehouse, ids(range(1, 41)))
    cohorts.export(settings, cohort="ctl", as_of=AS_OF, emit_events=True)
    set_members(warehouse, ids(range(11, 51)))
    two = cohorts.export(settings, cohort="ctl", as_of=AS_OF, emit_events=True)
    assert (two["entered"], two["exited"], two["unchanged"], two["events"]["sent"]) == (10, 10, 30, 20)
    with StateStore(make_engine(pg_db, setting="state_url")) as store:
        assert cstate.snapshot(store, "ctl").members == ids(range(11, 51))
    retired = cohorts.retire(settings, cohort="ctl")
    assert retired["exited"] == 40 and retired["attribute_slot"] == "released"


def test_cli_list_export_and_exit_codes(
    sandbox: SandboxServer, warehouse: Path, config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "WEBENGAGE_LICENSE_CODE": "~99199077",
        "WEBENGAGE_API_KEY": KEY,
        "WEBENGAGE_API_URL": sandbox.url,
        "WAREHOUSE_URL": f"duckdb:///{warehouse}",
        "WEBENGAGE_COHORTS_CONFIG": str(config_path),
        "WEBENGAGE_BULK_USERS_RPM": str(RPM),
    }.items():
        monkeypatch.setenv(name, value)
    set_members(warehouse, ids(range(1, 21)))
    runner = CliRunner()
    listed = runner.invoke(cohort_app, ["list", "--json"])
    assert listed.exit_code == 0 and "ctl" in listed.stdout and KEY not in listed.output
    dry = runner.invoke(cohort_app, ["export", "ctl", "--dry-run", "--json"])
    assert dry.exit_code == 0 and '"sent": 20' in dry.stdout and sandbox.stats()["requests"] == {}
    done = runner.invoke(cohort_app, ["export", "ctl"])
    assert done.exit_code == 0 and len(attribute_values(sandbox, ATTR)) == 20
    set_members(warehouse, ids(range(1, 3)))
    assert runner.invoke(cohort_app, ["export", "ctl"]).exit_code == 3  # guard
    assert runner.invoke(cohort_app, ["export", "no_such_cohort"]).exit_code == 2
    retired = runner.invoke(cohort_app, ["retire", "ctl"])
    assert retired.exit_code == 0 and set(attribute_values(sandbox, ATTR).values()) == {False}
    assert KEY not in retired.output


def test_shipped_config_runs_every_demo_cohort(sandbox: SandboxServer, warehouse: Path) -> None:
    settings = settings_for(sandbox, warehouse, ROOT / "etl/defaults/mappings/cohorts.toml")
    for spec in load_cohort_config(ROOT / "etl/defaults/mappings/cohorts.toml").cohorts:
        summary = cohorts.export(settings, cohort=spec.name, as_of=AS_OF)
        assert summary["members"] > 0 and summary["accepted"] == summary["members"], spec.name
        check_invariant(summary)
    assert sandbox.stats()["violations"] == 0
