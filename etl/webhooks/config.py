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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from etl.config import DEFAULT_DEMO_DIR, DEFAULT_WAREHOUSE_URL, Secret, check_license_code
from etl.errors import ConfigError

DEFAULT_LANDING_DIR: Final = DEFAULT_DEMO_DIR / "webhooks"

LICENSE_VAR: Final = "WEBENGAGE_LICENSE_CODE"
SECRET_VAR: Final = "WEBENGAGE_WEBHOOK_SECRET"  # noqa: S105 - a variable name
DIR_VAR: Final = "WEBENGAGE_WEBHOOK_DIR"
WAREHOUSE_VAR: Final = "WAREHOUSE_URL"
MAX_BODY_VAR: Final = "WEBENGAGE_WEBHOOK_MAX_BODY"
#: Optional tuning variables -> field name.
_INT_VARS: Final = {
    MAX_BODY_VAR: "max_body_bytes",
    "WEBENGAGE_WEBHOOK_SEGMENT_BYTES": "segment_max_bytes",
    "WEBENGAGE_WEBHOOK_SEEN_IDS": "seen_ids_max",
    "WEBENGAGE_WEBHOOK_LOAD_CHUNK": "load_chunk_rows",
}
_FLOAT_VARS: Final = {
    "WEBENGAGE_WEBHOOK_SEGMENT_SECONDS": "segment_max_age_s",
    "WEBENGAGE_WEBHOOK_RETAIN_HOURS": "retain_hours",
}


@dataclass(frozen=True, kw_only=True)
class WebhookSettings:
    """What the receiver (``serve``) and the loader (``load``, the DAG) need."""

    #: Empty only for the loader, which never checks credentials.
    license_code: str = ""
    secret_key: Secret = field(default_factory=lambda: Secret(""), repr=False)
    landing_dir: Path = DEFAULT_LANDING_DIR
    warehouse_url: str = DEFAULT_WAREHOUSE_URL
    max_body_bytes: int = 1_000_000
    segment_max_bytes: int = 64 * 2**20
    segment_max_age_s: float = 600.0
    #: Size bound of the receiver's in-memory request-id set (about 150 bytes per id).
    seen_ids_max: int = 1_000_000
    retain_hours: float = 24.0
    load_chunk_rows: int = 5_000
    #: Deliveries waiting for a group commit before the receiver answers 503 (back-pressure on a slow disk).
    max_pending: int = 50_000

    def __post_init__(self) -> None:
        if not isinstance(self.secret_key, Secret):
            object.__setattr__(self, "secret_key", Secret(str(self.secret_key)))
        if "://" not in self.warehouse_url:
            raise ConfigError(WAREHOUSE_VAR, "must be an SQLAlchemy URL such as duckdb:///path.duckdb")
        for var, name in {**_INT_VARS, **_FLOAT_VARS, "max_pending": "max_pending"}.items():
            value = getattr(self, name)
            if name == "retain_hours" and value < 0:
                raise ConfigError(var, "must not be negative")
            if name != "retain_hours" and value <= 0:
                raise ConfigError(var, "must be greater than 0")
        if self.max_body_bytes > self.segment_max_bytes:
            raise ConfigError(MAX_BODY_VAR, "must not exceed WEBENGAGE_WEBHOOK_SEGMENT_BYTES")

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
        """Read the variables above; ``require_auth=False`` for the loader (no credentials needed)."""
        env = os.environ if env is None else env

        def get(var: str) -> str:
            return env.get(var, "").strip()

        values: dict[str, object] = {}
        license_code = env.get(LICENSE_VAR, "")
        if license_code:
            try:
                check_license_code(license_code)  # the same rule as the sync's: codes are compared as text
            except ConfigError as exc:
                raise ConfigError(LICENSE_VAR, exc.reason) from None
            values["license_code"] = license_code
        # The secret is taken as given (no strip): it is hashed byte for byte, as WebEngage does.
        secret = env.get(SECRET_VAR, "")
        if secret:
            values["secret_key"] = Secret(secret)
        if get(DIR_VAR):
            values["landing_dir"] = Path(get(DIR_VAR))
        if get(WAREHOUSE_VAR):
            values["warehouse_url"] = get(WAREHOUSE_VAR)
        for var, name in _INT_VARS.items():
            if get(var):
                values[name] = _number(var, get(var), int)
        for var, name in _FLOAT_VARS.items():
            if get(var):
                values[name] = _number(var, get(var), float)
        settings = cls(**values)  # type: ignore[arg-type]
        return settings.require_auth() if require_auth else settings


def _number(var: str, text: str, kind: type[int] | type[float]) -> int | float:
    try:
        value = kind(text.replace("_", ""))
    except ValueError:
        raise ConfigError(var, f"not a valid {kind.__name__}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(var, "must be finite")
    return value
