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


class QueryError(WebEngageSyncError):
    """The warehouse refused a query (a wrong column or table, a type it cannot cast): names the query, the
    database's own message (its first line) and the fix. Raised before anything of it is sent."""

    def __init__(self, query: str, message: str) -> None:
        self.query = query
        first = next((line.strip() for line in message.splitlines() if line.strip()), "no message")
        super().__init__(
            f"{query}: the warehouse refused the query: {first[:500]}. Fix: check the table and column names "
            f"in {query} against the warehouse (run it in a SQL client)"
        )


class GuardStop(WebEngageSyncError):
    """A blast-radius guard stopped the run before it sent anything (too many cohort exits, too many
    deletions): a person decides, so retrying is pointless until someone overrides or fixes the source."""


class DeliveryError(WebEngageSyncError):
    """The run finished its work, but WebEngage accepted none of what it sent, or refused more than
    ``max_reject_share`` of it: the run is failed (red task, non-zero exit) so that someone looks. Carries the
    run's summary (also stored in ``we_runs``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.summary: dict[str, object] = {}
