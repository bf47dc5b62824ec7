"""The REST API key never appears in a repr, an exception or a log record."""

from __future__ import annotations

import logging

import httpx
import pytest

from etl.config import Secret
from etl.errors import TerminalAPIError
from etl.webengage import BearerAuth

from .fakes import KEY, FakeAPI, a_user, error_body, fail, make_client, reply


def test_bearer_auth_sets_header_and_hides_key() -> None:
    auth = BearerAuth(Secret(KEY))
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(201)

    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as http:
        response = http.post("http://we.test/x")
    assert seen == [f"Bearer {KEY}"]
    assert KEY not in repr(auth) and KEY not in str(auth)
    assert KEY not in repr(response.request.headers)
    assert auth.scrub(f"bad key {KEY}!") == "bad key **********!"


def test_key_never_in_logs_reprs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api = FakeAPI(
        reply(201),
        reply(500, error_body(f"upstream said {KEY}")),
        reply(429, headers={"Retry-After": "1"}),
        reply(201),
        reply(400, error_body(f"Error: bad token {KEY}")),
        fail(httpx.ConnectError, "refused"),
        reply(200, error_body(f"Error: {KEY}")),
        reply(201),
        reply(401, error_body(f"invalid key {KEY}")),
    )
    client = make_client(api, max_retries=3)
    results = [client.send(a_user(n)) for n in range(4)]
    with pytest.raises(TerminalAPIError) as caught:
        client.send(a_user(9))
    assert [r.outcome for r in results] == ["accepted", "accepted", "rejected", "accepted"]
    assert len(api.requests) == 9, "every scripted answer was used"
    assert caplog.records, "the client logs at DEBUG"
    for record in caplog.records:
        assert KEY not in record.getMessage()
        assert KEY not in repr(record.args)
    texts = [repr(client), str(client), str(caught.value), repr(caught.value), repr(client.stats)]
    texts += [repr(r) for r in results] + [r.message or "" for r in results]
    for text in texts:
        assert KEY not in text
    assert "u1@example.com" not in caplog.text  # personal data stays out of logs too
