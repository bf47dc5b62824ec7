"""Settings of the sandbox server: credentials, per-endpoint limits, latency and the fault profile."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

OversizeBulk = Literal["reject", "accept"]
BulkInvalidItem = Literal["drop", "reject_batch"]

_RATE_FIELDS = (
    "error_5xx_rate",
    "timeout_rate",
    "timeout_after_store_rate",
    "error_body_2xx_rate",
    "throttle_storm_rate",
)
_RPM_FIELDS = ("users_rpm", "events_rpm", "bulk_users_rpm", "bulk_events_rpm")
_NON_NEGATIVE = ("latency_ms", "jitter_ms", "timeout_sleep_s", "max_body_bytes")


@dataclass(frozen=True, kw_only=True)
class SandboxConfig:
    """How the sandbox behaves. Limits are requests per minute; 0 or None means unlimited.

    Fault rates are probabilities per admitted request, drawn from one seeded RNG so a run is repeatable.
    """

    license_code: str = "~99199077"  # WebEngage codes often start with "~": the sandbox default is one
    api_key: str = "sandbox-key"
    users_rpm: int | None = 5000
    events_rpm: int | None = 5000
    bulk_users_rpm: int | None = 500
    bulk_events_rpm: int | None = 500
    # WebEngage does not say whether the two bulk endpoints share a budget; when shared, the
    # bulk-users limit is the budget of both.
    shared_bulk_budget: bool = False
    retry_after: bool = True
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int = 0
    error_5xx_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_sleep_s: float = 30.0
    timeout_after_store_rate: float = 0.0
    error_body_2xx_rate: float = 0.0
    throttle_storm_rate: float = 0.0
    oversize_bulk: OversizeBulk = "reject"
    bulk_invalid_item: BulkInvalidItem = "drop"
    dedupe_request_ids: bool = True
    dedupe_bulk_request_ids: bool = True
    max_body_bytes: int = 5_000_000

    def __post_init__(self) -> None:
        for name in _RATE_FIELDS:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        for name in _RPM_FIELDS:
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None, got {value!r}")
        for name in _NON_NEGATIVE:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.oversize_bulk not in get_args(OversizeBulk):
            raise ValueError(f"oversize_bulk must be one of {get_args(OversizeBulk)}")
        if self.bulk_invalid_item not in get_args(BulkInvalidItem):
            raise ValueError(f"bulk_invalid_item must be one of {get_args(BulkInvalidItem)}")

    def replace(self, **changes: Any) -> SandboxConfig:
        """A copy with ``changes`` applied; unknown names raise ValueError."""
        _reject_unknown(changes)
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SandboxConfig:
        """Build from a JSON-like mapping (e.g. ``--config-json``); unknown keys raise ValueError."""
        _reject_unknown(data)
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, JSON-serialisable; the inverse of :meth:`from_mapping`."""
        return dataclasses.asdict(self)

    def rpm_for(self, endpoint: str) -> int | None:
        """Per-minute limit of an endpoint (``users``, ``events``, ``bulk-users``, ``bulk-events``)."""
        value: int | None = getattr(self, endpoint.replace("-", "_") + "_rpm")
        return value or None


def _reject_unknown(keys: Mapping[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(SandboxConfig)}
    unknown = sorted(set(keys) - known)
    if unknown:
        raise ValueError(f"unknown sandbox setting(s): {', '.join(unknown)}")
