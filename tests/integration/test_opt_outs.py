"""Channel opt-outs back in the warehouse: unsubscribe system events, posted as WebEngage posts them (the seed's
envelope) to a running receiver and loaded, are queryable as the view ``webengage_opt_outs`` (user, channel,
time) on DuckDB and PostgreSQL; which event names count is data (``webengage_opt_out_events``)."""

from __future__ import annotations

import copy
import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from etl.config import Secret
from etl.warehouse.webhook_tables import ensure_tables
from etl.webhooks import loader
from etl.webhooks.config import WebhookSettings
from etl.webhooks.examples import PUSH_ACCEPTED
from etl.webhooks.runner import WebhookServer

pytestmark = pytest.mark.timeout(120)

LICENSE = "~99199077"
KEY = "opt-out-webhook-key"
AUTH = {"licenseCode": LICENSE, "secret": hashlib.md5(f"{LICENSE}:{KEY}".encode()).hexdigest()}


def unsubscribe(
    name: str, when: str, user_id: str | None, anonymous_id: str | None = "0000014a-a2da"
) -> dict[str, Any]:
    """A system event in the envelope of seed 003 (event_data/system_data as a campaign event carries them)."""
    body: dict[str, Any] = {
        "event_data": {"campaign_type": name.split("_")[0].upper(), "reason": "user_request"},
        "system_data": {"variation_id": "1if30if", "sdk": "WEB", "scope": "~7l798ci", "id": "20hlgbg"},
        "event_time": when,
        "event_name": name,
        "license_code": LICENSE,
        "category": "system",
        "anonymous_id": anonymous_id,
    }
    if user_id is not None:
        body["user_id"] = user_id
    return body


DELIVERIES: list[tuple[str, dict[str, Any]]] = [
    ("u1-email-1", unsubscribe("email_unsubscribe", "2026-11-01T10:00:00+0000", "user.one@example.com")),
    ("u1-email-2", unsubscribe("email_unsubscribe", "2026-11-03T10:00:00+0530", "user.one@example.com")),
    ("u1-sms", unsubscribe("sms_unsubscribe", "2026-11-02T10:00:00+0000", "user.one@example.com")),
    ("u1-sms-again", unsubscribe("sms_resubscribe", "2026-11-04T10:00:00+0000", "user.one@example.com")),
    ("u2-whatsapp", unsubscribe("WhatsApp Unsubscribe", "2026-11-05T08:00:00+0000", "user.two@example.com")),
    ("anon-email", unsubscribe("email_unsubscribe", "2026-11-06T08:00:00+0000", None, "0000014a-ffff")),
    ("push", PUSH_ACCEPTED),
]


def post_and_load(url: str, tmp_path: Path) -> None:
    settings = WebhookSettings(
        license_code=LICENSE, secret_key=Secret(KEY), landing_dir=tmp_path / "landing", warehouse_url=url
    )
    with WebhookServer(settings) as server, httpx.Client(base_url=server.url) as http:
        for request_id, body in DELIVERIES:
            for _ in range(2):  # WebEngage redelivers until it sees a 200: stored once
                r = http.post(
                    "/webhooks",
                    params={**AUTH, "eventType": "GLOBAL_SYSTEM_EVENTS"},
                    content=orjson.dumps(copy.deepcopy(body)),
                    headers={"x-request-id": request_id},
                )
                assert r.status_code == 200
    summary = loader.run(settings)
    assert summary["events_loaded"] == len(DELIVERIES) and summary["quarantined"] == 0


def opt_outs(url: str) -> set[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    view = sa.table(
        "webengage_opt_outs",
        *(sa.column(c) for c in ("user_id", "anonymous_id", "channel", "opted_out_at", "event_name", "opt_outs")),
    )
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(view)).all()
    finally:
        engine.dispose()
    return {(r[0], r[1], r[2], _instant(r[3]), r[4], int(r[5])) for r in rows}


def _instant(value: Any) -> str:
    assert isinstance(value, datetime) and value.tzinfo is not None
    return value.strftime("%Y-%m-%dT%H:%M:%S%z").replace("+0000", "Z")


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_unsubscribes_are_queryable_as_opt_outs(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}" if backend == "duckdb" else request.getfixturevalue("pg_db")
    post_and_load(url, tmp_path)
    got = opt_outs(url)
    assert got == {
        # the latest of two e-mail opt-outs (10:00 +0530 = 04:30 UTC), both counted
        ("user.one@example.com", None, "email", "2026-11-03T04:30:00Z", "email_unsubscribe", 2),
        ("user.one@example.com", None, "sms", "2026-11-02T10:00:00Z", "sms_unsubscribe", 1),
        # case and separators of the name do not matter
        ("user.two@example.com", None, "whatsapp", "2026-11-05T08:00:00Z", "WhatsApp Unsubscribe", 1),
        # a visitor WebEngage knew by device only
        (None, "0000014a-ffff", "email", "2026-11-06T08:00:00Z", "email_unsubscribe", 1),
    }

    # Event names are data: a resubscribe event the account sends lifts the earlier sms opt-out.
    engine = sa.create_engine(url)
    names = sa.table("webengage_opt_out_events", sa.column("event_name"), sa.column("channel"), sa.column("action"))
    with engine.begin() as conn:
        conn.execute(sa.insert(names).values(event_name="sms_resubscribe", channel="sms", action="opt_in"))
    engine.dispose()
    after = opt_outs(url)
    assert {(r[0], r[2]) for r in after} == {
        ("user.one@example.com", "email"),
        ("user.two@example.com", "whatsapp"),
        (None, "email"),
    }
    engine = sa.create_engine(url)
    ensure_tables(engine)  # created again with the webhook tables: the added name is kept
    engine.dispose()
    assert opt_outs(url) == after
