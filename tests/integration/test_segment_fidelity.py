"""The Segment/RudderStack presets lose nothing real SDKs write: custom properties on page and screen calls,
location traits as WebEngage's location system fields, traits that only ride on the context
(``context_traits_*``), and loaders that store times as text or leave out the snake_case ``event`` column."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from etl.config import Settings
from etl.errors import ConfigError
from etl.mappings.events import event_mapping_from_dict
from etl.mappings.users import user_mapping_from_dict
from etl.pipelines import events, users
from etl.warehouse.engine import make_engine
from webengage_dev.sandbox import SandboxConfig, SandboxServer

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
HOUR = (datetime(2026, 10, 31, 10, tzinfo=UTC), datetime(2026, 10, 31, 11, tzinfo=UTC))
KEY = "segment-fidelity-key-0123"
_TS = '"timestamp" TIMESTAMPTZ, received_at TIMESTAMPTZ'

SCHEMA = [
    "CREATE SCHEMA seg",
    # A tracking plan with custom page and screen properties (Segment keeps them as columns of pages/screens).
    f"CREATE TABLE seg.pages (id VARCHAR, user_id VARCHAR, anonymous_id VARCHAR, {_TS}, name VARCHAR, path VARCHAR, "
    "url VARCHAR, order_id VARCHAR, cart_total DOUBLE, product_id VARCHAR, context_page_path VARCHAR, "
    "context_ip VARCHAR)",
    f"CREATE TABLE seg.screens (id VARCHAR, user_id VARCHAR, anonymous_id VARCHAR, {_TS}, name VARCHAR, "
    "level_id VARCHAR, context_app_version VARCHAR)",
    f"CREATE TABLE seg.tracks (id VARCHAR, user_id VARCHAR, anonymous_id VARCHAR, {_TS}, event VARCHAR, "
    "event_text VARCHAR)",
    "INSERT INTO seg.pages VALUES ('p1', 'u1', NULL, '2026-10-31 10:01:00+00', '2026-10-31 10:01:01+00', 'Checkout', "
    "'/checkout', 'https://shop.example.com/checkout', 'ORD-9', 129.5, 'SKU-7', '/checkout', '10.0.0.1')",
    "INSERT INTO seg.screens VALUES ('s1', 'u1', NULL, '2026-10-31 10:02:00+00', '2026-10-31 10:02:01+00', 'Level', "
    "'L-42', '4.1.8')",
    # RudderStack-style: no snake_case event column, and times stored as ISO text with offsets.
    "CREATE SCHEMA rud",
    'CREATE TABLE rud.tracks (id VARCHAR, user_id VARCHAR, anonymous_id VARCHAR, "timestamp" VARCHAR, '
    "received_at VARCHAR, event_text VARCHAR)",
    "INSERT INTO rud.tracks VALUES ('r1', 'u1', NULL, '2026-10-31T15:35:00+05:30', '2026-10-31T10:05:01.000Z', "
    "'Signed Up'), ('r2', 'u2', NULL, '2026-10-31T07:00:00Z', '2026-10-31T07:00:01Z', 'Too Early')",
    # A table that is not a tracks table at all.
    "CREATE SCHEMA bad",
    f"CREATE TABLE bad.tracks (id VARCHAR, user_id VARCHAR, {_TS})",
    # Identify traits: top-level location columns, and a source whose traits only ride on the context.
    "CREATE TABLE seg.users (id VARCHAR, received_at TIMESTAMPTZ, email VARCHAR, region VARCHAR, locality VARCHAR, "
    "postal_code VARCHAR, address_state VARCHAR, context_traits_plan VARCHAR, plan VARCHAR)",
    "INSERT INTO seg.users VALUES ('u1', '2026-10-31 10:00:00+00', 'u1@example.com', 'Maharashtra', 'Bandra', "
    "'400050', 'MH', 'context-plan', 'gold')",
    "CREATE SCHEMA ctx",
    "CREATE TABLE ctx.users (id VARCHAR, received_at TIMESTAMPTZ, context_traits_email VARCHAR, "
    "context_traits_first_name VARCHAR, context_traits_postal_code VARCHAR, context_traits_plan VARCHAR, "
    "context_ip VARCHAR)",
    "INSERT INTO ctx.users VALUES ('u9', '2026-10-31 10:00:00+00', 'u9@example.com', 'Asha', '560001', 'silver', "
    "'10.0.0.9')",
]


@pytest.fixture
def warehouse(tmp_path: Path) -> str:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        for statement in SCHEMA:
            conn.execute(sa.text(statement))
    engine.dispose()
    return url


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    config = SandboxConfig(license_code="~99199077", api_key=KEY, bulk_users_rpm=60_000, bulk_events_rpm=60_000)
    with SandboxServer(config) as server:
        yield server


def settings_for(sandbox: SandboxServer, url: str) -> Settings:
    return Settings.from_mapping(
        {
            "license_code": "~99199077",
            "api_key": KEY,
            "api_url": sandbox.url,
            "warehouse_url": url,
            "bulk_users_rpm": 60_000,
            "bulk_events_rpm": 60_000,
            "expected_latency_s": 0.05,
        }
    )


def sent_events(sandbox: SandboxServer) -> dict[str, dict[str, Any]]:
    return {e["event"]["eventName"]: e["event"] for e in sandbox.store.events()}


def test_custom_page_and_screen_properties_are_sent(sandbox: SandboxServer, warehouse: str) -> None:
    mapping = event_mapping_from_dict({"source": {"preset": "segment", "segment_schema": "seg"}})
    summary = events.run(settings_for(sandbox, warehouse), window=HOUR, mapping=mapping, clock=lambda: AS_OF)
    sent = sent_events(sandbox)
    assert summary["accepted"] == 2 and sandbox.stats()["violations"] == 0
    page = sent["Page Viewed"]["eventData"]
    assert (page["orderId"], page["cartTotal"], page["productId"], page["path"]) == (
        "ORD-9",
        129.5,
        "SKU-7",
        "/checkout",
    )
    assert not any(k.startswith("context") for k in page)  # bookkeeping stays out
    assert sent["Screen Viewed"]["eventData"] == {"name": "Level", "levelId": "L-42"}


def test_text_timestamps_and_a_missing_event_column_are_read(sandbox: SandboxServer, warehouse: str) -> None:
    mapping = event_mapping_from_dict({"source": {"preset": "segment", "segment_schema": "rud"}})
    summary = events.run(settings_for(sandbox, warehouse), window=HOUR, mapping=mapping, clock=lambda: AS_OF)
    sent = sent_events(sandbox)
    # Text instants compared as instants: r1 arrived 10:05Z (inside), r2 at 07:00Z (before the 2 h lookback).
    assert summary["extracted"] == 1 and list(sent) == ["Signed Up"]
    assert sent["Signed Up"]["eventTime"] == "2026-10-31T10:05:00+0000"  # 15:35 at +05:30


def test_a_tracks_table_without_event_names_is_a_clear_error(sandbox: SandboxServer, warehouse: str) -> None:
    mapping = event_mapping_from_dict({"source": {"preset": "segment", "segment_schema": "bad"}})
    with pytest.raises(ConfigError, match="neither an event nor an event_text column"):
        events.run(settings_for(sandbox, warehouse), window=HOUR, mapping=mapping, clock=lambda: AS_OF)


def test_location_traits_become_webengage_location_fields(sandbox: SandboxServer, warehouse: str) -> None:
    mapping = user_mapping_from_dict(
        {"source": {"preset": "segment", "segment_schema": "seg", "segment_table": "users"}}
    )
    summary = users.run(settings_for(sandbox, warehouse), mapping=mapping, clock=lambda: AS_OF)
    profile = sandbox.store.get_profile("u1")
    assert summary["accepted"] == 1 and profile is not None
    assert (profile["region"], profile["locality"], profile["postalCode"]) == ("Maharashtra", "Bandra", "400050")
    attributes = profile.get("attributes", {})
    assert attributes["plan"] == "gold"  # the top-level trait wins over context_traits_plan
    assert not {"region", "locality", "postal_code", "address_state"} & set(attributes)


def test_traits_that_only_ride_on_the_context_are_used(sandbox: SandboxServer, warehouse: str) -> None:
    mapping = user_mapping_from_dict(
        {"source": {"preset": "segment", "segment_schema": "ctx", "segment_table": "users"}}
    )
    summary = users.run(settings_for(sandbox, warehouse), mapping=mapping, clock=lambda: AS_OF)
    profile = sandbox.store.get_profile("u9")
    assert summary["accepted"] == 1 and profile is not None
    assert (profile["email"], profile["firstName"], profile["postalCode"]) == ("u9@example.com", "Asha", "560001")
    assert profile["attributes"] == {"plan": "silver"}  # context_ip is about the call, not the user


@pytest.mark.postgres
def test_text_timestamps_on_postgresql(sandbox: SandboxServer, pg_db: str) -> None:
    engine = make_engine(pg_db)
    with engine.begin() as conn:
        for statement in SCHEMA:
            if statement.startswith(("CREATE SCHEMA rud", "CREATE TABLE rud.", "INSERT INTO rud.")):
                conn.execute(sa.text(statement))
    engine.dispose()
    mapping = event_mapping_from_dict({"source": {"preset": "segment", "segment_schema": "rud"}})
    summary = events.run(settings_for(sandbox, pg_db), window=HOUR, mapping=mapping, clock=lambda: AS_OF)
    assert summary["extracted"] == 1 and sent_events(sandbox)["Signed Up"]["eventTime"] == "2026-10-31T10:05:00+0000"
