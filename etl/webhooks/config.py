"""Settings of the webhook receiver and loader, from environment variables.

Bad or missing values fail before the server starts, naming the variable and never echoing its value
(the secret key could have been pasted into the wrong variable).

| variable | default | meaning |
|---|---|---|
| ``WEBENGAGE_LICENSE_CODE`` | (required to serve) | the license code WebEngage sends as ``licenseCode`` |
| ``WEBENGAGE_WEBHOOK_SECRET`` | (required to serve) | the webhook secret key set in WebEngage's dashboard |
| ``WEBENGAGE_WEBHOOK_DIR`` | ``.demo/webhooks`` | landing directory (append-only JSON-lines segments) |
| ``WAREHOUSE_URL`` | ``duckdb:///.demo/warehouse.duckdb`` | where the loader writes ``webengage_events`` |
| ``WEBENGAGE_WEBHOOK_MAX_BODY`` | 1000000 | largest accepted body in bytes (larger: 413) |
| ``WEBENGAGE_WEBHOOK_SEGMENT_BYTES`` | 67108864 | a segment is closed once it is this big |
| ``WEBENGAGE_WEBHOOK_SEGMENT_SECONDS`` | 600 | ... or this old (checked when writing) |
| ``WEBENGAGE_WEBHOOK_SEEN_IDS`` | 1000000 | request ids the receiver remembers for de-duplication |
| ``WEBENGAGE_WEBHOOK_RETAIN_HOURS`` | 24 | fully loaded, closed segments are deleted after this |
| ``WEBENGAGE_WEBHOOK_LOAD_CHUNK`` | 5000 | landed deliveries per loader transaction |
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, ClassVar, Final, Literal, Self

from pydantic import BeforeValidator, Field, model_validator

from etl.config import DEFAULT_DEMO_DIR, DEFAULT_WAREHOUSE_URL, Secret, check_license_code
from etl.errors import ConfigError
from etl.settings_base import Int, Number, SettingsModel, Text, checked, stripped

DEFAULT_LANDING_DIR: Final = DEFAULT_DEMO_DIR / "webhooks"

LICENSE_VAR: Final = "WEBENGAGE_LICENSE_CODE"
SECRET_VAR: Final = "WEBENGAGE_WEBHOOK_SECRET"  # noqa: S105 - a variable name
DIR_VAR: Final = "WEBENGAGE_WEBHOOK_DIR"
WAREHOUSE_VAR: Final = "WAREHOUSE_URL"
MAX_BODY_VAR: Final = "WEBENGAGE_WEBHOOK_MAX_BODY"


def _check_license_code_if_set(code: str) -> None:
    if code:
        check_license_code(code)  # the same rule as the sync's: codes are compared as text


class WebhookSettings(SettingsModel):
    """What the receiver (``serve``) and the loader (``load``, the DAG) need. Errors name the variable."""

    error_names: ClassVar[Literal["field", "env"]] = "env"

    #: Empty only for the loader, which never checks credentials.
    license_code: Annotated[str, checked(_check_license_code_if_set)] = Field("", validation_alias=LICENSE_VAR)
    #: Taken as given (no strip): it is hashed byte for byte, as WebEngage does.
    secret_key: Secret = Field(default_factory=lambda: Secret(""), repr=False, validation_alias=SECRET_VAR)
    landing_dir: Annotated[Path, BeforeValidator(stripped)] = Field(DEFAULT_LANDING_DIR, validation_alias=DIR_VAR)
    warehouse_url: Text = Field(DEFAULT_WAREHOUSE_URL, validation_alias=WAREHOUSE_VAR)
    #: Largest accepted body in bytes (larger: 413).
    max_body_bytes: Int = Field(1_000_000, validation_alias=MAX_BODY_VAR)
    #: A segment is closed once it is this big ...
    segment_max_bytes: Int = Field(64 * 2**20, validation_alias="WEBENGAGE_WEBHOOK_SEGMENT_BYTES")
    #: ... or this old (checked when writing).
    segment_max_age_s: Number = Field(600.0, validation_alias="WEBENGAGE_WEBHOOK_SEGMENT_SECONDS")
    #: Size bound of the receiver's in-memory request-id set (about 150 bytes per id).
    seen_ids_max: Int = Field(1_000_000, validation_alias="WEBENGAGE_WEBHOOK_SEEN_IDS")
    #: Fully loaded, closed segments are deleted after this.
    retain_hours: Number = Field(24.0, validation_alias="WEBENGAGE_WEBHOOK_RETAIN_HOURS")
    #: Landed deliveries per loader transaction.
    load_chunk_rows: Int = Field(5_000, validation_alias="WEBENGAGE_WEBHOOK_LOAD_CHUNK")
    #: Deliveries waiting for a group commit before the receiver answers 503 (back-pressure on a slow disk).
    max_pending: Int = 50_000

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        if "://" not in self.warehouse_url:
            raise self.invalid("warehouse_url", "must be an SQLAlchemy URL such as duckdb:///path.duckdb")
        if self.retain_hours < 0:
            raise self.invalid("retain_hours", "must not be negative")
        for name in (
            "max_body_bytes",
            "segment_max_bytes",
            "segment_max_age_s",
            "seen_ids_max",
            "load_chunk_rows",
            "max_pending",
        ):
            if getattr(self, name) <= 0:
                raise self.invalid(name, "must be greater than 0")
        if self.max_body_bytes > self.segment_max_bytes:
            raise self.invalid("max_body_bytes", "must not exceed WEBENGAGE_WEBHOOK_SEGMENT_BYTES")
        return self

    @property
    def can_serve(self) -> bool:
        return bool(self.license_code and self.secret_key.reveal())

    def require_auth(self) -> WebhookSettings:
        """Fail fast, naming the variable, unless both credentials are set (the receiver needs them)."""
        if not self.license_code:
            raise ConfigError(LICENSE_VAR, "missing: the license code WebEngage sends as licenseCode")
        if not self.secret_key.reveal():
            raise ConfigError(SECRET_VAR, "missing: the webhook secret key from WebEngage's dashboard")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, require_auth: bool = True) -> WebhookSettings:
        """Read the variables above (``os.environ`` unless ``env`` is given; empty ones count as unset);
        ``require_auth=False`` for the loader (no credentials needed)."""
        settings = cls._load(env=os.environ if env is None else env)
        return settings.require_auth() if require_auth else settings
