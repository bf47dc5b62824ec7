"""SandboxConfig validation and JSON round trip."""

from __future__ import annotations

import pytest

from etl.sandbox.config import SandboxConfig


def test_round_trip_and_replace() -> None:
    config = SandboxConfig(users_rpm=5, error_5xx_rate=0.5)
    assert SandboxConfig.from_mapping(config.to_dict()) == config
    assert config.replace(users_rpm=None).rpm_for("users") is None
    assert config.rpm_for("bulk-events") == 500
    assert SandboxConfig(bulk_users_rpm=0).rpm_for("bulk-users") is None


@pytest.mark.parametrize(
    "changes",
    [
        {"nope": 1},
        {"error_5xx_rate": 1.5},
        {"users_rpm": -1},
        {"oversize_bulk": "ignore"},
        {"latency_ms": -1},
    ],
)
def test_bad_settings_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SandboxConfig().replace(**changes)
    with pytest.raises(ValueError):
        SandboxConfig.from_mapping(changes)
