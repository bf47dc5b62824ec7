"""Checking an account's settings without sending data, in one place for the Airflow connection test and
for sending runs that had nothing to send.

WebEngage has no documented "who am I" call. The check sends ``POST …/users`` with an empty object: WebEngage
looks up the account (404 for a wrong license code or host), checks the key (401/403) and then refuses the
empty body with "userId and anonymousId cannot be empty", so nothing is ingested. Which answer a wrong key
gets before body validation is not documented (**unconfirmed**), so the check can be switched off with
``verify_credentials = false`` (``WEBENGAGE_VERIFY_CREDENTIALS``).
"""

from __future__ import annotations

import logging

import httpx

from etl.config import Settings, env_var_for
from etl.errors import ConfigError, TerminalAPIError, WebEngageSyncError
from etl.webengage.client import WebEngageClient
from etl.webengage.probe import unreachable_reason
from etl.webengage.retry import HOST_HINT

log = logging.getLogger("etl.credentials")

#: What a run's notes say after the check passed (nothing was ingested).
VERIFIED_NOTE = "nothing to send: credentials verified with one empty POST /users call (nothing ingested)"


def verify_credentials(client: WebEngageClient) -> str:
    """For a sending run that made no request: prove the key still works. Raises
    :class:`~etl.errors.TerminalAPIError` (with the fix) when WebEngage refuses it; returns the run's note,
    which says so when WebEngage could not be asked (5xx, 429, timeout: the run had nothing to send, so it
    does not fail for that)."""
    status, verdict = client.check_credentials()
    if verdict.kind in ("accepted", "rejected"):
        return VERIFIED_NOTE
    if verdict.kind == "terminal":
        shown = f"HTTP {status}" if status is not None else "no answer"
        raise TerminalAPIError(
            f"{shown} to the credential check (an empty call; nothing to send): {verdict.message}",
            status_code=status,
            endpoint=f"POST {client.account_url}/users",
            hint=verdict.hint,
        )
    note = f"nothing to send; credentials not verified: WebEngage did not judge the check ({verdict.message})"
    log.warning("%s", note)
    return note


def check_connection(settings: Settings, *, transport: httpx.BaseTransport | None = None) -> tuple[bool, str]:
    """Airflow's *Test* button: credentials present and well-formed, the host reachable (DNS, TCP, TLS) and,
    unless ``verify_credentials`` is off, the license code and key accepted by WebEngage. Sends no data and
    never shows the key. ``transport`` (tests) skips the socket-level reachability step."""
    from etl.engine.frame import client_for  # the frame imports this module

    try:
        settings.require_credentials()
    except ConfigError as exc:
        return False, str(exc)
    where = f"license code {settings.license_code} at {settings.base_url}"
    if transport is None:
        reason = unreachable_reason(settings.base_url, timeout_s=settings.connect_timeout_s)
        if reason is not None:
            return False, f"cannot reach the WebEngage API: {reason}. Fix: {HOST_HINT}"
    if not settings.verify_credentials:
        return True, (
            f"{where}: settings valid and host reachable; key not checked ({env_var_for('verify_credentials')} "
            "is off). Nothing was sent"
        )
    try:
        with client_for(settings, transport=transport) as client:
            note = verify_credentials(client)
    except WebEngageSyncError as exc:
        return False, str(exc)
    if note != VERIFIED_NOTE:
        return False, f"{where}: host reachable, but {note}"
    return True, (
        f"WebEngage accepted the API key for {where} (checked with an empty POST /users call that WebEngage "
        "refuses by design: nothing was ingested)"
    )
