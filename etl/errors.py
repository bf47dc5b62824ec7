"""Exception vocabulary shared by every layer.

Messages never carry the API key or personal data: they name settings, endpoints, status codes and
request ids only.
"""

from __future__ import annotations


class WebEngageSyncError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigError(WebEngageSyncError):
    """Invalid or missing configuration; raised before any request is sent."""

    def __init__(self, setting: str, reason: str) -> None:
        self.setting = setting
        self.reason = reason
        super().__init__(f"invalid setting {setting}: {reason}")


class TerminalAPIError(WebEngageSyncError):
    """The API refused in a way retrying cannot fix (auth, wrong host or license). Stop the run."""

    def __init__(self, message: str, *, status_code: int | None, endpoint: str, hint: str = "") -> None:
        self.status_code = status_code
        self.endpoint = endpoint
        self.hint = hint
        full = f"{endpoint}: {message}"
        if hint:
            full = f"{full}. Fix: {hint}"
        super().__init__(full)


class TransientExhaustedError(WebEngageSyncError):
    """Retries for a transient failure ran out; the batch stays unsent and is re-driven next run."""
