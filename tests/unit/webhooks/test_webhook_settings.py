"""Webhook settings: from the environment, failing fast by variable name, never echoing the secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from etl.errors import ConfigError
from etl.webhooks.config import WebhookSettings

SECRET = "webhook-secret-never-printed"
BASE = {"WEBENGAGE_LICENSE_CODE": "~99199077", "WEBENGAGE_WEBHOOK_SECRET": SECRET}


def test_reads_every_variable() -> None:
    env = {
        **BASE,
        "WEBENGAGE_WEBHOOK_DIR": "/srv/landing",
        "WAREHOUSE_URL": "postgresql+psycopg://u@h/db",
        "WEBENGAGE_WEBHOOK_MAX_BODY": "2_000_000",
        "WEBENGAGE_WEBHOOK_RETAIN_HOURS": "0",
    }
    s = WebhookSettings.from_env(env)
    assert (s.license_code, s.secret_key.reveal(), s.landing_dir) == ("~99199077", SECRET, Path("/srv/landing"))
    assert (s.warehouse_url, s.max_body_bytes, s.retain_hours) == ("postgresql+psycopg://u@h/db", 2_000_000, 0.0)
    assert SECRET not in repr(s) and SECRET not in str(s)


def test_defaults() -> None:
    s = WebhookSettings.from_env(BASE)
    assert s.landing_dir == Path(".demo/webhooks") and s.max_body_bytes == 1_000_000
    assert s.warehouse_url.startswith("duckdb:///")


@pytest.mark.parametrize(
    ("missing", "var"),
    [("WEBENGAGE_WEBHOOK_SECRET", "WEBENGAGE_WEBHOOK_SECRET"), ("WEBENGAGE_LICENSE_CODE", "WEBENGAGE_LICENSE_CODE")],
)
def test_receiver_needs_both_credentials(missing: str, var: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError) as caught:
        WebhookSettings.from_env(env)
    assert caught.value.setting == var


def test_loader_needs_no_credentials() -> None:
    s = WebhookSettings.from_env({"WAREHOUSE_URL": "duckdb:///x.duckdb"}, require_auth=False)
    assert not s.can_serve and s.warehouse_url == "duckdb:///x.duckdb"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("WEBENGAGE_WEBHOOK_MAX_BODY", SECRET),
        ("WEBENGAGE_WEBHOOK_MAX_BODY", "-12345"),
        ("WAREHOUSE_URL", SECRET),
        ("WEBENGAGE_LICENSE_CODE", "has space"),
        ("WEBENGAGE_WEBHOOK_RETAIN_HOURS", "-1"),
        ("WEBENGAGE_WEBHOOK_SEGMENT_SECONDS", "inf"),
    ],
)
def test_bad_values_name_the_variable_without_echoing_it(var: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        WebhookSettings.from_env({**BASE, var: value})
    assert caught.value.setting == var
    assert value not in str(caught.value)


def test_direct_construction_is_checked_and_names_the_variable() -> None:
    from etl.config import Secret

    s = WebhookSettings(license_code="~99199077", secret_key=Secret(SECRET), landing_dir=Path("/l"))
    assert s.can_serve and s.secret_key.reveal() == SECRET
    with pytest.raises(ConfigError) as caught:
        WebhookSettings(max_body_bytes=0)
    assert caught.value.setting == "WEBENGAGE_WEBHOOK_MAX_BODY"
    with pytest.raises(ConfigError) as caught:
        WebhookSettings(max_pending=0)  # no variable: named by field
    assert caught.value.setting == "max_pending"
    with pytest.raises(ConfigError) as caught:
        WebhookSettings(max_body_bytes=10, segment_max_bytes=5)
    assert caught.value.setting == "WEBENGAGE_WEBHOOK_MAX_BODY"


def test_secret_is_taken_as_given_and_other_values_stripped() -> None:
    s = WebhookSettings.from_env(
        {
            **BASE,
            "WEBENGAGE_WEBHOOK_SECRET": " s p ",
            "WEBENGAGE_WEBHOOK_DIR": " /srv/x\n",
            "WEBENGAGE_WEBHOOK_SEGMENT_SECONDS": " 60 ",
        }
    )
    assert (s.secret_key.reveal(), s.landing_dir, s.segment_max_age_s) == (" s p ", Path("/srv/x"), 60.0)


def test_empty_variables_are_unset_and_only_the_documented_ones_are_read() -> None:
    s = WebhookSettings.from_env(
        {"WEBENGAGE_WEBHOOK_DIR": "", "max_body_bytes": "5", "landing_dir": "/x"}, require_auth=False
    )
    assert s.landing_dir == Path(".demo/webhooks") and s.max_body_bytes == 1_000_000


def test_settings_are_frozen_and_replace_validates() -> None:
    import dataclasses

    s = WebhookSettings.from_env(BASE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.max_body_bytes = 5  # type: ignore[misc]
    assert s.replace(retain_hours=1).retain_hours == 1.0 and s.replace().secret_key.reveal() == SECRET
    with pytest.raises(ConfigError) as caught:
        s.replace(retain_hours=-1)
    assert caught.value.setting == "WEBENGAGE_WEBHOOK_RETAIN_HOURS"
