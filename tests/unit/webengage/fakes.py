"""In-process WebEngage stand-ins for unit tests: a scripted httpx transport and settings/client builders."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any

import httpx

from etl.config import Settings
from etl.engine.frame import client_for
from etl.webengage import Clock, FakeClock, SendRequest, WebEngageClient
from tests.helpers.requests import user_request

KEY = "sk-test-SECRET-0001"
BASE = {"license_code": "~2024bb40", "api_key": KEY, "api_url": "http://we.test"}
# High default budgets so scenario tests see no pacing sleeps; pacing tests lower them explicitly.
FAST = {"users_rpm": 60_000, "events_rpm": 60_000, "bulk_users_rpm": 60_000, "bulk_events_rpm": 60_000}

Reply = Callable[[httpx.Request], httpx.Response]


def make_settings(**overrides: Any) -> Settings:
    return Settings.from_mapping({**BASE, **FAST, "max_retries": 3, **overrides})


def reply(
    status: int = 201,
    json: Any = None,
    *,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """A fresh response per call (httpx responses cannot be replayed)."""
    if json is None and content is None:
        json = {"response": {"status": "queued"}}

    def make(request: httpx.Request) -> httpx.Response:
        if content is not None:
            return httpx.Response(status, content=content, headers=headers)
        return httpx.Response(status, json=json, headers=headers)

    return make


def error_body(message: str) -> dict[str, Any]:
    return {"response": {"status": "error", "message": message}}


def fail(exc_type: type[httpx.TransportError], message: str = "boom") -> Reply:
    def make(request: httpx.Request) -> httpx.Response:
        raise exc_type(message, request=request)

    return make


class FakeAPI:
    """Answers from a script, in order; the last entry repeats. Records every request it saw."""

    def __init__(self, *script: Reply) -> None:
        self._script = list(script) or [reply()]
        self._lock = threading.Lock()
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            step = self._script.pop(0) if len(self._script) > 1 else self._script[0]
        return step(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def make_client(
    api: FakeAPI | Callable[[httpx.Request], httpx.Response],
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    **overrides: Any,
) -> WebEngageClient:
    return client_for(
        make_settings(**overrides),
        transport=httpx.MockTransport(api),
        clock=clock or FakeClock(),
        rng=rng or random.Random(1),
    )


def a_user(n: int = 1, request_id: str | None = "rid-1") -> SendRequest:
    return user_request({"userId": f"u{n}", "email": f"u{n}@example.com"}, request_id, key=n)
