"""Webhook authentication: WebEngage appends ``licenseCode`` and ``secret`` (MD5 hex of
``{licenseCode}:{webhook secret key}``) to the configured URL. Both are compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from etl.config import Secret


def expected_secret(license_code: str, secret_key: Secret) -> str:
    """The ``secret`` query parameter WebEngage sends for this license and secret key."""
    material = f"{license_code}:{secret_key.reveal()}".encode()
    return hashlib.md5(material, usedforsecurity=False).hexdigest()


class WebhookAuth:
    """Checks a delivery's query parameters; holds the expected values without ever printing them."""

    __slots__ = ("_license", "_secret")

    def __init__(self, *, license_code: str, secret_key: Secret) -> None:
        self._license = license_code.encode()
        self._secret = expected_secret(license_code, secret_key).encode()

    def verify(self, *, license_code: str | None, secret: str | None) -> bool:
        """True only when both parameters are present and right. Both comparisons always run, so the
        time taken does not tell which one was wrong."""
        lic_ok = hmac.compare_digest(self._license, (license_code or "").encode())
        # MD5 hex is case-insensitive; WebEngage sends lower case, accept either.
        secret_ok = hmac.compare_digest(self._secret, (secret or "").lower().encode())
        return lic_ok and secret_ok and license_code is not None and secret is not None

    def __repr__(self) -> str:
        return "WebhookAuth(license='***', secret='***')"

    __str__ = __repr__
