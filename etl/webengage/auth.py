"""Bearer authentication that keeps the REST API key out of every repr, log and exception."""

from __future__ import annotations

from collections.abc import Generator

import httpx

from etl.webengage.options import SecretValue


class BearerAuth(httpx.Auth):
    """Sets ``Authorization: Bearer <key>`` on each request; the key is revealed only there."""

    def __init__(self, key: SecretValue) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._key.reveal()}"
        yield request

    def scrub(self, text: str) -> str:
        """``text`` with the key masked, for server messages that might echo it back."""
        key = self._key.reveal()
        return text.replace(key, "**********") if key else text

    def __repr__(self) -> str:
        return "BearerAuth(key='**********')"

    __str__ = __repr__
