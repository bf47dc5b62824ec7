"""The credential check (etl.engine.credentials), against the real sandbox on loopback: the Airflow connection
test, and a sending run with nothing to send, which must still fail on a revoked key."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from etl.engine.credentials import VERIFIED_NOTE, check_connection
from etl.errors import TerminalAPIError
from etl.pipelines import users
from tests.helpers.sandbox import LICENSE, sandbox_fixture, sandbox_settings
from tests.helpers.warehouse import AS_OF, warehouse_fixture
from webengage_dev.sandbox import SandboxServer

KEY = "credentials-test-key-0451"

warehouse = warehouse_fixture(300)
sandbox = sandbox_fixture(KEY, bulk_users_rpm=60_000)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_check_connection_against_the_sandbox_sends_no_data(sandbox: SandboxServer, warehouse: Path) -> None:
    ok, message = check_connection(sandbox_settings(sandbox, warehouse, KEY))
    assert ok is True, message
    assert LICENSE in message and sandbox.url in message and "nothing was ingested" in message
    assert KEY not in message
    stats = sandbox.stats()
    assert stats["credential_checks"] == 1 and stats["requests"] == {"users": 1}
    assert stats["users"] == 0 and stats["violations"] == 0  # refused by design, not a client bug


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"api_key": "revoked-key-999"}, "HTTP 401"),
        ({"license_code": "~11111111"}, "HTTP 404"),
    ],
)
def test_check_connection_refused_says_why_and_the_fix(
    sandbox: SandboxServer, warehouse: Path, change: dict[str, str], expected: str
) -> None:
    ok, message = check_connection(sandbox_settings(sandbox, warehouse, KEY, **change))
    assert ok is False and expected in message and "Fix:" in message
    assert "revoked-key-999" not in message and KEY not in message


def test_check_connection_to_a_closed_port_or_a_plain_http_host_over_tls(
    warehouse: Path, sandbox: SandboxServer
) -> None:
    ok, message = check_connection(sandbox_settings(f"http://127.0.0.1:{closed_port()}", warehouse, KEY))
    assert ok is False and "refused the connection" in message and "Fix:" in message
    tls_url = sandbox.url.replace("http://", "https://")
    ok, message = check_connection(sandbox_settings(tls_url, warehouse, KEY))
    assert ok is False and "TLS" in message
    assert sandbox.stats()["requests"] == {}  # the handshake failed before any HTTP


def test_check_connection_to_a_name_that_does_not_resolve(warehouse: Path) -> None:
    # .invalid never resolves (RFC 2606): no query leaves this machine's resolver for a real host.
    ok, message = check_connection(sandbox_settings("https://webengage-sync-test.invalid", warehouse, KEY))
    assert ok is False and "does not resolve" in message


def test_check_connection_without_the_key_check(sandbox: SandboxServer, warehouse: Path) -> None:
    ok, message = check_connection(sandbox_settings(sandbox, warehouse, KEY, verify_credentials=False))
    assert ok is True and "key not checked" in message and "WEBENGAGE_VERIFY_CREDENTIALS" in message
    assert sandbox.stats()["requests"] == {}


def test_a_run_with_nothing_to_send_fails_on_a_revoked_key(sandbox: SandboxServer, warehouse: Path) -> None:
    settings = sandbox_settings(sandbox, warehouse, KEY)
    users.run(settings, run_id="r1", clock=lambda: AS_OF)
    second = users.run(settings, run_id="r2", clock=lambda: AS_OF)
    assert second["requests"] == 0 and VERIFIED_NOTE in second["notes"]
    assert sandbox.stats()["credential_checks"] == 1

    sandbox.update_config(api_key="rotated-key-777")  # the key in the settings is revoked
    with pytest.raises(TerminalAPIError) as err:
        users.run(settings, run_id="r3", clock=lambda: AS_OF)
    assert "401" in str(err.value) and "credential check" in str(err.value) and KEY not in str(err.value)


def test_no_check_in_a_dry_run_or_when_switched_off(sandbox: SandboxServer, warehouse: Path) -> None:
    settings = sandbox_settings(sandbox, warehouse, KEY)
    users.run(settings, run_id="r1", clock=lambda: AS_OF)
    before = sandbox.stats()["requests"]
    users.run(settings, run_id="dry", dry_run=True, clock=lambda: AS_OF)
    off = sandbox_settings(sandbox, warehouse, KEY, verify_credentials=False)
    quiet = users.run(off, run_id="r2", clock=lambda: AS_OF)
    assert VERIFIED_NOTE not in quiet["notes"]
    assert sandbox.stats()["requests"] == before and sandbox.stats()["credential_checks"] == 0


def test_the_check_command(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from etl.cli import app

    monkeypatch.setenv("WEBENGAGE_LICENSE_CODE", LICENSE)
    monkeypatch.setenv("WEBENGAGE_API_URL", sandbox.url)
    monkeypatch.setenv("WEBENGAGE_API_KEY", KEY)
    good = CliRunner().invoke(app, ["check"])
    assert good.exit_code == 0 and "ok:" in good.output and KEY not in good.output
    monkeypatch.setenv("WEBENGAGE_API_KEY", "revoked-key-999")
    bad = CliRunner().invoke(app, ["check"])
    assert bad.exit_code == 1 and "401" in " ".join(bad.output.split()) and "revoked-key-999" not in bad.output
