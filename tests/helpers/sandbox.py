"""The sandbox as the tests run it: servers with a test's key, settings that point a run at one, and
readers of what it holds."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from etl.config import Settings
from webengage_dev.sandbox import SandboxConfig, SandboxProcess, SandboxServer

from .warehouse import duck

#: The license code the tests' sandboxes answer to.
LICENSE = "~99199077"
#: A rate no test run reaches (requests per minute): pacing off.
FAST = 60_000

Sandbox = SandboxServer | SandboxProcess


def sandbox_server(key: str, **config: Any) -> SandboxServer:
    """The sandbox in this process, answering ``key`` (``with sandbox_server(KEY) as server: …``)."""
    return SandboxServer(SandboxConfig(license_code=LICENSE, api_key=key, **config))


def sandbox_process(key: str, **config: Any) -> SandboxProcess:
    """The sandbox in its own process (no shared GIL, a real ``kill -9``), answering ``key``."""
    return SandboxProcess(SandboxConfig(license_code=LICENSE, api_key=key, **config))


def sandbox_fixture(key: str, **config: Any) -> Any:
    """A ``sandbox`` fixture for a module (``sandbox = sandbox_fixture(KEY, bulk_users_rpm=FAST)``): a fresh
    sandbox in this process for each test."""

    @pytest.fixture
    def sandbox() -> Iterator[SandboxServer]:
        with sandbox_server(key, **config) as server:
            yield server

    return sandbox


def shared_sandbox_fixtures(defaults: SandboxConfig) -> tuple[Any, Any, Any]:
    """A module's ``server, sandbox, client = shared_sandbox_fixtures(DEFAULTS)``: one sandbox per module
    (``server``), reset to ``defaults`` before each test once every answer in flight has landed (``sandbox``;
    an earlier test's request may still be answering, e.g. sleeping through a simulated timeout, and its answer
    would count after the reset), and an authorised HTTP ``client`` to it."""

    @pytest.fixture(scope="module")
    def server() -> Iterator[SandboxServer]:
        with SandboxServer(defaults) as running:
            yield running

    @pytest.fixture
    def sandbox(server: SandboxServer) -> SandboxServer:
        quiesce(server)
        server.update_config(**defaults.to_dict())
        server.reset()
        return server

    @pytest.fixture
    def client(sandbox: SandboxServer) -> Iterator[httpx.Client]:
        headers = {"Authorization": f"Bearer {defaults.api_key}"}
        with httpx.Client(base_url=sandbox.url, headers=headers, timeout=5.0) as http:
            yield http

    return server, sandbox, client


def sandbox_settings(sandbox: Sandbox | str, warehouse: Path | str, key: str, **values: Any) -> Settings:
    """Settings sending to ``sandbox`` (a server or its URL) from ``warehouse`` (a DuckDB file or a URL)."""
    url = sandbox if isinstance(sandbox, str) else sandbox.url
    base = {"license_code": LICENSE, "api_key": key, "api_url": url, "warehouse_url": duck(warehouse)}
    return Settings.from_mapping({**base, **values})


def data_requests(stats: dict[str, Any]) -> int:
    """HTTP requests that carried data: all the sandbox answered but the key checks of runs that had nothing to
    send (an empty ``POST /users``, ``credential_checks``)."""
    return sum(stats["requests"].values()) - int(stats["credential_checks"])


def profiles(source: httpx.Client | SandboxServer) -> dict[str, Any]:
    """Every profile the sandbox holds, by user id (over HTTP with a client, else read from the store)."""
    if isinstance(source, httpx.Client):
        body = source.get("/_sandbox/users", params={"limit": 1_000_000}).raise_for_status().json()
        total, page = body["total"], body["users"]
    else:
        total, page = source.store.list_users(limit=1_000_000)
    found = {u["id"]: u["profile"] for u in page}
    assert len(found) == total
    return found


def reconfigure(http: httpx.Client, *, reset: bool = False, **config: Any) -> None:
    """Change the sandbox's limits, faults or latency at run time; ``reset`` first forgets all it holds."""
    if reset:
        http.post("/_sandbox/reset").raise_for_status()
    http.post("/_sandbox/config", json=config).raise_for_status()


def quiesce(sandbox: SandboxServer, timeout_s: float = 30.0) -> None:
    """Wait until every request the sandbox has counted is answered, so a later ``reset()`` cannot be followed
    by a late answer from before it (a request still sleeping through a simulated timeout, say)."""
    deadline = time.monotonic() + timeout_s
    while True:
        stats = sandbox.stats()
        if sum(stats["requests"].values()) == sum(stats["responses"].values()):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"sandbox requests still unanswered after {timeout_s:.0f} s: {stats['requests']}")
        time.sleep(0.005)
