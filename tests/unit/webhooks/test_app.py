"""The receiver over real HTTP (uvicorn on loopback in a thread): 200 only once landed, auth, caps,
quarantine, de-duplication (concurrent and across a restart), 503 on a failed write, and clean logs."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from etl.config import Secret
from etl.webhooks.config import WebhookSettings
from etl.webhooks.examples import CUSTOM_EVENT, EXAMPLES
from etl.webhooks.landing import LandingError, decode, list_segments
from etl.webhooks.runner import WebhookServer

pytestmark = pytest.mark.timeout(60)

LICENSE = "~99199077"
KEY = "webhook-key-never-logged"
SECRET = hashlib.md5(f"{LICENSE}:{KEY}".encode()).hexdigest()
AUTH = {"licenseCode": LICENSE, "secret": SECRET}


def settings(landing: Path, **changes: Any) -> WebhookSettings:
    return WebhookSettings(license_code=LICENSE, secret_key=Secret(KEY), landing_dir=landing, **changes)


def landed(landing: Path) -> list[Any]:
    return [decode(line) for seg in list_segments(landing) for line in seg.path.read_bytes().splitlines(keepends=True)]


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    return tmp_path / "landing"


@pytest.fixture
def server(landing: Path) -> Iterator[WebhookServer]:
    with WebhookServer(settings(landing, max_body_bytes=10_000)) as srv:
        yield srv


_HTTP = httpx.Client(timeout=10.0)  # one pool for the module: building a client per call costs ~50 ms of CPU


def post(url: str, body: bytes, *, rid: str | None = None, params: dict[str, str] | None = None) -> httpx.Response:
    headers = {"x-request-id": rid} if rid else {}
    return _HTTP.post(f"{url}/webhooks", params=AUTH if params is None else params, content=body, headers=headers)


def test_every_seed_shape_is_landed_before_its_200(server: WebhookServer, landing: Path) -> None:
    for i, (event_type, body) in enumerate(EXAMPLES):
        response = post(server.url, orjson.dumps(body), rid=f"rid-{i}", params={**AUTH, "eventType": event_type})
        assert (response.status_code, response.json()) == (200, {"status": "ok"})
        # Already durable when the 200 arrives: on disk, complete, nothing pending.
        assert [r.request_id for r in landed(landing)][-1] == f"rid-{i}"
    records = landed(landing)
    assert [(r.kind, r.event_type, r.body) for r in records] == [("event", e, b) for e, b in EXAMPLES]
    assert server.state.stats()["accepted"] == len(EXAMPLES)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"licenseCode": LICENSE},
        {"secret": SECRET},
        {"licenseCode": LICENSE, "secret": hashlib.md5(f"{LICENSE}:wrong".encode()).hexdigest()},
        {"licenseCode": "other", "secret": SECRET},
    ],
)
def test_bad_credentials_are_401_and_store_nothing(
    server: WebhookServer, landing: Path, params: dict[str, str]
) -> None:
    response = post(server.url, orjson.dumps(CUSTOM_EVENT), rid="r1", params=params)
    assert (response.status_code, response.json()["reason"]) == (401, "unauthorized")
    assert landed(landing) == [] and server.state.stats()["unauthorized"] == 1


def test_oversize_bodies_are_413_declared_or_streamed(server: WebhookServer, landing: Path) -> None:
    big = b'{"pad": "' + b"x" * 20_000 + b'"}'
    assert post(server.url, big, rid="big").status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap is enforced while reading
        for _ in range(20):
            yield b"x" * 1_000

    response = _HTTP.post(f"{server.url}/webhooks", params=AUTH, content=chunks())
    assert (response.status_code, response.json()["reason"]) == (413, "body_too_large")
    assert landed(landing) == [] and server.state.stats()["too_large"] == 2
    assert post(server.url, orjson.dumps(CUSTOM_EVENT), rid="small").status_code == 200  # still serving


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b'{"event_name": "x", "event_time": ', 400, "malformed_json"),
        (b"[1, 2, 3]", 422, "not_an_object"),
        (orjson.dumps({**CUSTOM_EVENT, "event_time": None}), 422, "missing_event_time"),
        (orjson.dumps({**CUSTOM_EVENT, "category": None}), 422, "missing_category"),
    ],
)
def test_bad_deliveries_are_4xx_and_quarantined_once(
    server: WebhookServer, landing: Path, body: bytes, status: int, reason: str
) -> None:
    for _ in range(3):  # WebEngage retries anything but a 200
        response = post(server.url, body, rid="bad-1")
        assert (response.status_code, response.json()["reason"]) == (status, reason)
    records = landed(landing)
    assert [(r.kind, r.request_id, r.reason, r.body) for r in records] == [
        ("quarantine", "bad-1", reason, body.decode())
    ]
    assert server.state.stats()["rejected_again"] == 2


def test_same_request_id_is_landed_once_even_concurrently(server: WebhookServer, landing: Path) -> None:
    body = orjson.dumps(CUSTOM_EVENT)
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda _: post(server.url, body, rid="same"), range(32)))
    assert {r.status_code for r in responses} == {200}
    assert [r.request_id for r in landed(landing)] == ["same"]
    assert sum(r.json().get("duplicate", False) for r in responses) == 31
    assert (server.state.stats()["accepted"], server.state.stats()["duplicates"]) == (1, 31)


def test_without_request_id_the_body_hash_is_the_id(server: WebhookServer, landing: Path) -> None:
    body = orjson.dumps(CUSTOM_EVENT)
    assert post(server.url, body).json() == {"status": "ok"}
    assert post(server.url, body).json() == {"status": "ok", "duplicate": True}
    assert post(server.url, orjson.dumps({**CUSTOM_EVENT, "user_id": "other"})).status_code == 200
    ids = [r.request_id for r in landed(landing)]
    assert len(ids) == 2 and ids[0] == "body-" + hashlib.blake2b(body, digest_size=16).hexdigest()


def test_a_failed_write_is_503_and_nothing_is_acknowledged(
    server: WebhookServer, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(lines: list[bytes]) -> None:
        raise LandingError("disk full")

    monkeypatch.setattr(server.state.writer, "append", broken)
    response = post(server.url, orjson.dumps(CUSTOM_EVENT), rid="r-503")
    assert (response.status_code, response.json()["reason"]) == (503, "landing_unavailable")
    monkeypatch.undo()
    # Not remembered as landed: WebEngage's retry is stored.
    assert post(server.url, orjson.dumps(CUSTOM_EVENT), rid="r-503").json() == {"status": "ok"}
    assert [r.request_id for r in landed(landing)] == ["r-503"]


def test_a_restart_remembers_landed_ids(landing: Path) -> None:
    body = orjson.dumps(CUSTOM_EVENT)
    with WebhookServer(settings(landing)) as first:
        assert post(first.url, body, rid="r-restart").json() == {"status": "ok"}
    assert all(seg.closed for seg in list_segments(landing)), "a graceful stop closes its segment"
    with WebhookServer(settings(landing)) as second:
        assert second.state.stats()["remembered_ids"] == 1
        assert post(second.url, body, rid="r-restart").json() == {"status": "ok", "duplicate": True}
    assert [r.request_id for r in landed(landing)] == ["r-restart"]


def test_logs_never_carry_secrets_queries_or_personal_data(landing: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with WebhookServer(settings(landing)) as srv:
        post(srv.url, orjson.dumps(CUSTOM_EVENT), rid="r-log")
        post(srv.url, b"{broken " + CUSTOM_EVENT["user_id"].encode(), rid="r-bad")
        post(srv.url, b"{}", params={"licenseCode": LICENSE, "secret": "wrong-" + KEY})
        health = _HTTP.get(f"{srv.url}/healthz").text
    # The test's own client (httpx) logs its URLs; everything else is the server's.
    server_logs = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert "r-bad" in server_logs, "quarantines are logged, by request id"
    for forbidden in (KEY, SECRET, CUSTOM_EVENT["user_id"], "secret=", "licenseCode="):
        assert forbidden not in server_logs + health
    reprs = repr(srv.state.settings) + repr(srv.state.auth)
    assert KEY not in reprs and SECRET not in reprs
