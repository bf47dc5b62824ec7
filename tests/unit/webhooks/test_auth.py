"""licenseCode + secret = MD5 hex of "{licenseCode}:{secret key}", compared in constant time."""

from __future__ import annotations

import hashlib

import pytest

from etl.config import Secret
from etl.webhooks.auth import WebhookAuth, expected_secret

KEY = "s3cr3t-key"


def test_secret_is_md5_of_license_colon_key() -> None:
    # Independently computed: md5("lic:s3cr3t-key").
    assert expected_secret("~99199077", Secret(KEY)) == hashlib.md5(b"~99199077:s3cr3t-key").hexdigest()
    assert expected_secret("~99199077", Secret(KEY)) != expected_secret("~99199077", Secret(KEY + "x"))


@pytest.mark.parametrize(
    ("license_code", "secret", "ok"),
    [
        ("~99199077", hashlib.md5(b"~99199077:s3cr3t-key").hexdigest(), True),
        ("~99199077", hashlib.md5(b"~99199077:s3cr3t-key").hexdigest().upper(), True),
        ("~99199077", hashlib.md5(b"~99199077:other").hexdigest(), False),
        ("other", hashlib.md5(b"other:s3cr3t-key").hexdigest(), False),  # right pair for another license
        (None, hashlib.md5(b"~99199077:s3cr3t-key").hexdigest(), False),
        ("~99199077", None, False),
        ("~99199077", "", False),
        ("~99199077", "é" * 32, False),
    ],
)
def test_verify(license_code: str | None, secret: str | None, ok: bool) -> None:
    auth = WebhookAuth(license_code="~99199077", secret_key=Secret(KEY))
    assert auth.verify(license_code=license_code, secret=secret) is ok


def test_repr_hides_everything() -> None:
    auth = WebhookAuth(license_code="~99199077", secret_key=Secret(KEY))
    text = repr(auth) + str(auth)
    assert KEY not in text and expected_secret("~99199077", Secret(KEY)) not in text
