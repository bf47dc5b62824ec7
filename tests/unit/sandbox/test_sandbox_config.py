"""SandboxConfig validation and JSON round trip."""

from __future__ import annotations

import pytest

from webengage_dev.sandbox.config import SandboxConfig


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


def test_errors_are_config_errors_naming_the_setting() -> None:
    from etl.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        SandboxConfig.from_mapping({"error_5xx_rate": 2})
    assert isinstance(caught.value, ValueError) and caught.value.setting == "error_5xx_rate"
    with pytest.raises(ConfigError, match="nope: unknown setting"):
        SandboxConfig().replace(nope=1)
    with pytest.raises(ValueError, match="seed"):
        SandboxConfig(seed="x")  # type: ignore[arg-type]


def test_json_like_values_are_read_with_the_shared_rules() -> None:
    config = SandboxConfig.from_mapping(
        {"users_rpm": "60", "retry_after": "off", "dedupe_request_ids": 0, "latency_ms": "2.5", "bulk_users_rpm": None}
    )
    assert (config.users_rpm, config.retry_after, config.dedupe_request_ids) == (60, False, False)
    assert (config.latency_ms, config.rpm_for("bulk-users")) == (2.5, None)
    assert SandboxConfig.from_mapping(config.to_dict()) == config and hash(config) == hash(config.replace())
