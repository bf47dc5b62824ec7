"""Settings of the sandbox server: credentials, per-endpoint limits, latency and the fault profile."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self

from pydantic import model_validator

from etl.errors import ConfigError
from etl.settings_base import Flag, Int, Number, SettingsModel

OversizeBulk = Literal["reject", "accept"]
BulkInvalidItem = Literal["drop", "reject_batch"]

_RATE_FIELDS = (
    "error_5xx_rate",
    "timeout_rate",
    "timeout_after_store_rate",
    "error_body_2xx_rate",
    "throttle_storm_rate",
)
_RPM_FIELDS = ("users_rpm", "events_rpm", "bulk_users_rpm", "bulk_events_rpm", "gdpr_rpm")
_NON_NEGATIVE = ("latency_ms", "jitter_ms", "timeout_sleep_s", "max_body_bytes", "gdpr_completion_s")


class SandboxConfigError(ConfigError, ValueError):
    """A bad sandbox setting: a :class:`ConfigError`, and the ValueError the sandbox's callers catch."""


class SandboxConfig(SettingsModel):
    """How the sandbox behaves. Limits are requests per minute; 0 or None means unlimited.

    Fault rates are probabilities per admitted request, drawn from one seeded RNG so a run is repeatable.
    """

    config_error: ClassVar[type[ConfigError]] = SandboxConfigError

    license_code: str = "~99199077"  # WebEngage codes often start with "~": the sandbox default is one
    api_key: str = "sandbox-key"
    users_rpm: Int | None = 5000
    events_rpm: Int | None = 5000
    bulk_users_rpm: Int | None = 500
    bulk_events_rpm: Int | None = 500
    #: GDPR requests and their status checks (``opengdpr_requests``): WebEngage's default 100/min.
    gdpr_rpm: Int | None = 100
    #: Seconds until an accepted GDPR request reports ``completed`` (``pending`` before).
    gdpr_completion_s: Number = 0.0
    # WebEngage does not say whether the two bulk endpoints share a budget; when shared, the
    # bulk-users limit is the budget of both.
    shared_bulk_budget: Flag = False
    retry_after: Flag = True
    latency_ms: Number = 0.0
    jitter_ms: Number = 0.0
    seed: Int = 0
    error_5xx_rate: Number = 0.0
    timeout_rate: Number = 0.0
    timeout_sleep_s: Number = 30.0
    timeout_after_store_rate: Number = 0.0
    error_body_2xx_rate: Number = 0.0
    throttle_storm_rate: Number = 0.0
    oversize_bulk: OversizeBulk = "reject"
    bulk_invalid_item: BulkInvalidItem = "drop"
    dedupe_request_ids: Flag = True
    dedupe_bulk_request_ids: Flag = True
    max_body_bytes: Int = 5_000_000
    # A single /users call with userId and anonymousId merges the anonymous profile into the user (WebEngage's
    # documented merge; whether REST single calls do it is unconfirmed): false ignores anonymousId there too.
    merge_on_users: Flag = True

    @model_validator(mode="after")
    def _ranges(self) -> Self:
        for name in _RATE_FIELDS:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise self.invalid(name, "must be between 0 and 1")
        for name in _RPM_FIELDS:
            value = getattr(self, name)
            if value is not None and value < 0:
                raise self.invalid(name, "must be >= 0 or None")
        for name in _NON_NEGATIVE:
            if getattr(self, name) < 0:
                raise self.invalid(name, "must be >= 0")
        return self

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SandboxConfig:
        """Build from a JSON-like mapping (e.g. ``--config-json``); unknown keys or bad values raise
        :class:`SandboxConfigError` (a ValueError)."""
        return cls._load(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, JSON-serialisable; the inverse of :meth:`from_mapping`."""
        return self.model_dump()

    def rpm_for(self, endpoint: str) -> int | None:
        """Per-minute limit of an endpoint (``users``, ``events``, ``bulk-users``, ``bulk-events``)."""
        value: int | None = getattr(self, endpoint.replace("-", "_") + "_rpm")
        return value or None
