"""The webhook receiver against hostile clients: a client that never finishes its request head loses its
socket; a body claiming another license is stored under the license that was authenticated."""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import duckdb
import httpx
import orjson

from etl.config import Secret
from etl.webhooks import loader
from etl.webhooks.config import WebhookSettings
from etl.webhooks.runner import WebhookServer

LICENSE = "~99199077"
KEY = "hardening-secret-0123"
AUTH = {"licenseCode": LICENSE, "secret": hashlib.md5(f"{LICENSE}:{KEY}".encode()).hexdigest()}


def settings_for(tmp_path: Path) -> WebhookSettings:
    return WebhookSettings(
        license_code=LICENSE,
        secret_key=Secret(KEY),
        landing_dir=tmp_path / "landing",
        warehouse_url=f"duckdb:///{tmp_path / 'w.duckdb'}",
    )


def test_a_client_that_never_finishes_its_headers_is_disconnected(tmp_path: Path) -> None:
    server = WebhookServer(settings_for(tmp_path))
    server.header_timeout_s = 0.5
    with server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as slow:
            slow.sendall(b"POST /webhooks HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and then nothing more
            started = time.monotonic()
            closed = slow.recv(1024) == b""  # blocks until the server closes the connection
            waited = time.monotonic() - started
        # The receiver still serves everybody else.
        ok = httpx.post(f"{server.url}/webhooks", params=AUTH, content=b'{"event_name": "x"}', timeout=5)
    assert closed and waited < 4.5
    assert ok.status_code in (200, 422)


def test_the_authenticated_license_is_stored_not_the_one_the_body_claims(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    body = {
        "event_name": "email_open",
        "event_time": "2016-06-01T15:53:59+0000",
        "category": "system",
        "license_code": "OTHERLIC",
        "user_id": "u1",
        "event_data": {},
        "system_data": {},
    }
    with WebhookServer(settings) as server:
        r = httpx.post(
            f"{server.url}/webhooks",
            params=AUTH,
            content=orjson.dumps(body),
            headers={"x-request-id": "lic-1"},
            timeout=5,
        )
    assert r.status_code == 200
    loader.run(settings)
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as con:
        stored = con.execute("SELECT license_code FROM webengage_events WHERE request_id = 'lic-1'").fetchall()
    assert stored == [(LICENSE,)]
