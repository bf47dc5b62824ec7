"""WebEngage webhooks end to end: the seed's payloads posted to a running receiver (real uvicorn on
loopback) and found in ``webengage_events`` on DuckDB and PostgreSQL; ``kill -9`` of the receiver while a
client posts and retries each delivery until its 200 (as WebEngage does) loses and doubles nothing; the
``replay`` command lands and loads a file once however often it runs."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from etl.config import Secret
from etl.webhooks import loader
from etl.webhooks.config import WebhookSettings
from etl.webhooks.examples import CUSTOM_EVENT, EXAMPLES, JOURNEY_ACTIVATED, PUSH_ACCEPTED
from etl.webhooks.runner import WebhookProcess, WebhookServer

pytestmark = pytest.mark.timeout(120)

LICENSE = "~99199077"
KEY = "integration-webhook-key"
AUTH = {"licenseCode": LICENSE, "secret": hashlib.md5(f"{LICENSE}:{KEY}".encode()).hexdigest()}


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql)).all()]
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_seed_payloads_posted_to_the_server_reach_the_warehouse_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}" if backend == "duckdb" else request.getfixturevalue("pg_db")
    settings = WebhookSettings(
        license_code=LICENSE, secret_key=Secret(KEY), landing_dir=tmp_path / "landing", warehouse_url=url
    )
    with WebhookServer(settings) as server, httpx.Client(base_url=server.url) as http:
        for i, (event_type, body) in enumerate(EXAMPLES):
            for _ in range(2):  # every delivery twice: a redelivery is stored once
                r = http.post(
                    "/webhooks",
                    params={**AUTH, "eventType": event_type},
                    content=orjson.dumps(body),
                    headers={"x-request-id": f"seed-{i}"},
                )
                assert r.status_code == 200
        assert http.post("/webhooks", params={**AUTH, "secret": "0" * 32}, content=b"{}").status_code == 401
        assert (
            http.post("/webhooks", params=AUTH, content=b"{not json", headers={"x-request-id": "bad"}).status_code
            == 400
        )
    first = loader.run(settings)
    assert (first["events_loaded"], first["quarantined"], first["duplicates"]) == (4, 1, 0)
    got = rows(
        url,
        "SELECT request_id, event_name, category, event_type, user_id, event_time, event_data "
        "FROM webengage_events ORDER BY request_id",
    )
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in got] == [
        (f"seed-{i}", b["event_name"], b["category"], et, b["user_id"]) for i, (et, b) in enumerate(EXAMPLES)
    ]
    for r, (_, body) in zip(got, EXAMPLES, strict=True):
        assert r[5] == datetime.strptime(body["event_time"], "%Y-%m-%dT%H:%M:%S%z")
        event_data = r[6] if isinstance(r[6], dict) else json.loads(r[6])
        assert event_data == body["event_data"]
    assert rows(url, "SELECT request_id, reason, body FROM webengage_webhook_quarantine") == [
        ("bad", "malformed_json", "{not json")
    ]
    # Incremental: a new delivery and a replayed old one later load one row.
    with WebhookServer(settings) as server, httpx.Client(base_url=server.url) as http:
        r = http.post("/webhooks", params=AUTH, content=orjson.dumps(CUSTOM_EVENT), headers={"x-request-id": "new"})
        assert r.status_code == 200
    second = loader.run(settings)
    assert (second["lines"], second["events_loaded"]) == (1, 1)
    assert rows(url, "SELECT count(*), count(DISTINCT request_id) FROM webengage_events") == [(5, 5)]


def test_kill_9_mid_stream_loses_and_doubles_nothing(tmp_path: Path) -> None:
    n, threads = 400, 8
    env = {
        "WEBENGAGE_LICENSE_CODE": LICENSE,
        "WEBENGAGE_WEBHOOK_SECRET": KEY,
        "WEBENGAGE_WEBHOOK_DIR": str(tmp_path / "landing"),
        "WAREHOUSE_URL": f"duckdb:///{tmp_path / 'w.duckdb'}",
    }
    server = WebhookProcess(env).start()
    port = server.port
    acked: set[str] = set()
    statuses: list[int] = []
    lock = threading.Lock()
    kill_after = n // 3

    def client(worker: int) -> None:
        with httpx.Client(timeout=httpx.Timeout(5.0, connect=1.0)) as http:
            for i in range(worker, n, threads):
                rid = f"kill-{i:04d}"
                body = orjson.dumps({**CUSTOM_EVENT, "event_data": {"i": i}})
                deadline = time.monotonic() + 60
                while True:  # WebEngage's behaviour: until a 200
                    try:
                        r = http.post(
                            f"http://127.0.0.1:{port}/webhooks",
                            params=AUTH,
                            content=body,
                            headers={"x-request-id": rid},
                        )
                    except httpx.TransportError:
                        r = None
                        with lock:
                            statuses.append(0)  # connection refused/reset: the server is down
                    if r is not None:
                        with lock:
                            statuses.append(r.status_code)
                        if r.status_code == 200:
                            break
                        assert r.status_code >= 500, r.text
                    assert time.monotonic() < deadline, "delivery never acknowledged"
                    time.sleep(0.01)
                with lock:
                    acked.add(rid)

    workers = [threading.Thread(target=client, args=(w,)) for w in range(threads)]
    for w in workers:
        w.start()
    while len(acked) < kill_after:
        time.sleep(0.002)
    server.kill()  # kill -9 mid-stream: no drain, no close
    # Answers the killed server had already written are still reaching the clients: count acknowledgements
    # once they have landed, before the new server can give any.
    time.sleep(0.2)
    acked_at_kill = len(acked)
    server = WebhookProcess(env, port=port).start()
    for w in workers:
        w.join(timeout=90)
    stats = server.stats()
    server.stop()
    assert server.returncode == 0
    assert len(acked) == n and acked_at_kill < n, "the kill happened mid-stream"
    assert statuses.count(0) > 0, "clients saw the server die and retried"

    summary = loader.run(WebhookSettings.from_env(env, require_auth=False))
    url = env["WAREHOUSE_URL"]
    assert rows(url, "SELECT count(*), count(DISTINCT request_id) FROM webengage_events") == [(n, n)]
    assert {r[0] for r in rows(url, "SELECT request_id FROM webengage_events")} == acked
    assert summary["quarantined"] == 0 and summary["events_loaded"] == n
    # Nothing un-acknowledged was lost either: the payloads are the ones sent, one each.
    got = rows(url, "SELECT CAST(event_data->>'i' AS INTEGER) FROM webengage_events ORDER BY 1")
    assert [r[0] for r in got] == list(range(n))
    assert stats["accepted"] + stats["duplicates"] >= n - acked_at_kill


def test_replay_lands_and_loads_a_file_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from etl.cli_webhooks import webhooks_app

    warehouse = f"duckdb:///{tmp_path / 'w.duckdb'}"
    monkeypatch.setenv("WEBENGAGE_WEBHOOK_DIR", str(tmp_path / "landing"))
    monkeypatch.setenv("WAREHOUSE_URL", warehouse)
    monkeypatch.delenv("WEBENGAGE_WEBHOOK_SECRET", raising=False)
    lines = [orjson.dumps(body) for _, body in EXAMPLES]  # bodies as WebEngage posts them
    lines += [
        orjson.dumps(
            {
                "request_id": "env-1",
                "event_type": "JOURNEY",
                "received_at": "2026-11-20T08:00:00Z",
                "body": {**JOURNEY_ACTIVATED, "event_name": "journey_deactivated"},
            }
        ),
        orjson.dumps({"request_id": "env-2", "body": orjson.dumps(PUSH_ACCEPTED).decode()}),  # raw text body
        b"",
        b"{this line is not json",
    ]
    file = tmp_path / "deliveries.jsonl"
    file.write_bytes(b"\n".join(lines) + b"\n")
    runner = CliRunner()
    first = runner.invoke(webhooks_app, ["replay", str(file), "--json"])
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert out["landed"] == {"deliveries": 7, "events": 6, "quarantined": 1, "reasons": {"malformed_json": 1}}
    assert (out["load"]["events_loaded"], out["load"]["quarantined"]) == (6, 1)
    again = runner.invoke(webhooks_app, ["replay", str(file), "--json"])
    assert again.exit_code == 0, again.output
    assert (json.loads(again.stdout)["load"]["events_loaded"], json.loads(again.stdout)["load"]["duplicates"]) == (0, 6)
    assert rows(warehouse, "SELECT count(*) FROM webengage_events") == [(6,)]
    assert rows(warehouse, "SELECT event_type, received_at FROM webengage_events WHERE request_id = 'env-1'") == [
        ("JOURNEY", datetime(2026, 11, 20, 8, tzinfo=UTC))
    ]
    assert rows(warehouse, "SELECT count(*) FROM webengage_webhook_quarantine") == [(1,)]
    nothing = runner.invoke(webhooks_app, ["load"])
    assert nothing.exit_code == 0 and "0 events loaded" in nothing.output.replace("\n", " ")


def test_serve_fails_fast_naming_the_missing_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from etl.cli_webhooks import webhooks_app

    monkeypatch.setenv("WEBENGAGE_LICENSE_CODE", LICENSE)
    monkeypatch.delenv("WEBENGAGE_WEBHOOK_SECRET", raising=False)
    result = CliRunner().invoke(webhooks_app, ["serve", "--port", "0"])
    assert result.exit_code == 2 and "WEBENGAGE_WEBHOOK_SECRET" in result.output
    monkeypatch.setenv("WEBENGAGE_WEBHOOK_SECRET", KEY)
    monkeypatch.setenv("WEBENGAGE_WEBHOOK_MAX_BODY", "lots")
    result = CliRunner().invoke(webhooks_app, ["serve", "--port", "0"])
    assert result.exit_code == 2 and "WEBENGAGE_WEBHOOK_MAX_BODY" in result.output and KEY not in result.output
