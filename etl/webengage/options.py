"""What the client needs to know, and nothing else: the account (license code, key, host), the rate limits
and the retry policy, with WebEngage's documented defaults. The client stands alone: it never reads the
application's settings (the engine builds these options from them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Protocol

#: WebEngage's hard per-call item cap on the bulk endpoints.
MAX_BULK_ITEMS: Final = 25
DEFAULT_BASE_URL: Final = "https://api.webengage.com"


class SecretValue(Protocol):
    """A credential that prints masked and gives its value only when asked (``etl.config.Secret``)."""

    def reveal(self) -> str: ...


@dataclass(frozen=True, kw_only=True)
class ClientOptions:
    """The account, its limits (requests per minute; every one can be raised by WebEngage, so none is a
    constant) and the retry policy. See ``etl.config.Settings`` for what each one means."""

    license_code: str
    api_key: SecretValue = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    # rate limits
    bulk_users_rpm: float = 500
    bulk_events_rpm: float = 500
    users_rpm: float = 5000
    events_rpm: float = 5000
    gdpr_rpm: float = 100
    shared_bulk_budget: bool = False
    budget_share: float = 1.0
    overflow_lane: bool = False
    rate_headroom: float = 0.98
    burst_seconds: float = 1.0
    concurrency: int = 0
    expected_latency_s: float = 1.0
    max_in_flight: int = 64
    # requests
    max_batch_bytes: int = 512_000
    request_id_on_bulk: bool = True
    accepted_statuses: tuple[str, ...] = ("queued", "success")
    #: Where the ``opengdpr_requests`` endpoint lives under the account URL (unconfirmed: configurable).
    gdpr_path: str = "opengdpr_requests"
    # retries and timeouts
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    max_retries: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 60.0
    max_throttle_wait_s: float = 900.0

    def __post_init__(self) -> None:
        if not self.license_code or not self.api_key.reveal():
            raise ValueError("a WebEngage client needs a license code and an API key")

    @property
    def account_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/v1/accounts/{self.license_code}"
