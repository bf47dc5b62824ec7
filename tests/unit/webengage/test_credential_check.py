"""WebEngageClient.check_credentials and etl.engine.credentials.verify_credentials: one call carrying no data
(an empty POST /users), classified like any answer, counted apart from the data requests."""

from __future__ import annotations

import httpx
import pytest

from etl.config import Settings
from etl.engine.credentials import VERIFIED_NOTE, check_connection, verify_credentials
from etl.errors import TerminalAPIError
from etl.webengage.retry import AUTH_HINT, HOST_HINT, NOT_FOUND_HINT, NOT_WEBENGAGE_HINT

from .fakes import BASE, KEY, FakeAPI, error_body, fail, make_client, make_settings, reply

NO_ID = error_body("Error: userId and anonymousId cannot be empty.")


def test_the_check_sends_an_empty_object_and_counts_apart_from_requests() -> None:
    api = FakeAPI(reply(400, NO_ID))
    client = make_client(api)
    status, verdict = client.check_credentials()
    assert (status, verdict.kind) == (400, "rejected")  # the API judged the body: account and key are good
    [request] = api.requests
    assert request.method == "POST" and request.url.path == "/v1/accounts/~2024bb40/users"
    assert request.content == b"{}" and request.headers["authorization"] == f"Bearer {KEY}"
    snapshot = client.stats.snapshot()
    assert snapshot["credential_checks"] == 1 and snapshot["requests"] == 0
    assert verify_credentials(make_client(FakeAPI(reply(400, NO_ID)))) == VERIFIED_NOTE


@pytest.mark.parametrize(
    ("answer", "status", "hint"),
    [
        (reply(401, error_body(f"bad token {KEY}")), 401, AUTH_HINT),
        (reply(403, error_body("forbidden")), 403, AUTH_HINT),
        (reply(404, error_body("Invalid license code")), 404, NOT_FOUND_HINT),
        (reply(400, error_body("Invalid licenseCode")), 400, NOT_FOUND_HINT),
        (reply(200, content=b"<html>captive portal</html>"), 200, NOT_WEBENGAGE_HINT),
        (fail(httpx.ConnectError, "name or service not known"), None, HOST_HINT),
    ],
)
def test_a_refused_check_raises_with_the_fix_and_never_the_key(answer: object, status: int | None, hint: str) -> None:
    api = FakeAPI(answer)  # type: ignore[arg-type]
    with pytest.raises(TerminalAPIError) as caught:
        verify_credentials(make_client(api))
    err = caught.value
    assert err.status_code == status and err.hint == hint and "credential check" in str(err)
    assert len(api.requests) == 1 and KEY not in str(err)


@pytest.mark.parametrize("answer", [reply(503, error_body("unavailable")), reply(429), fail(httpx.ReadTimeout, "slow")])
def test_an_unanswered_check_only_adds_a_note(answer: object) -> None:
    api = FakeAPI(answer)  # type: ignore[arg-type]
    note = verify_credentials(make_client(api))
    assert note.startswith("nothing to send; credentials not verified") and len(api.requests) == 1


def test_check_connection_with_a_transport_and_a_bad_license_format() -> None:
    ok, message = check_connection(make_settings(), transport=httpx.MockTransport(FakeAPI(reply(400, NO_ID))))
    assert ok is True and "~2024bb40" in message and KEY not in message
    no_key = Settings.from_mapping({**BASE, "api_key": ""}, credentials=False)
    ok, message = check_connection(no_key, transport=httpx.MockTransport(FakeAPI()))
    assert ok is False and "api_key: missing" in message
