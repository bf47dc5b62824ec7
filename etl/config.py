"""Typed settings, built from environment variables or from the Airflow connection's fields.

A pydantic-settings model (:class:`etl.settings_base.SettingsModel`, shared with the webhook and sandbox
settings). Validation happens here, once, before any request: a bad value raises :class:`ConfigError` naming the
setting, never echoing the value. The API key is held in :class:`Secret`, whose repr and str never show it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self, cast

from pydantic import AliasGenerator, BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from etl.errors import ConfigError
from etl.settings_base import Flag, Int, Number, Secret, SettingsModel, Text, TextList, checked, stripped
from etl.webengage.options import MAX_BULK_ITEMS  # WebEngage's per-call item cap

__all__ = [
    "DATA_CENTER_HOSTS",
    "DEFAULT_DEMO_DIR",
    "DEFAULT_WAREHOUSE_URL",
    "MAX_BULK_ITEMS",
    "ConfigError",
    "DataCenter",
    "Secret",
    "Settings",
    "UsersDiff",
    "check_api_key",
    "check_license_code",
    "data_center_hint",
    "env_values",
    "env_var_for",
]

log = logging.getLogger("etl.config")

DataCenter = Literal["global", "in", "ksa"]
#: Where the profile sync finds changed users: ``warehouse`` (hash and diff in SQL, only changed rows leave
#: the warehouse; needs the state in the warehouse database), ``python`` (read every row, diff in the worker),
#: ``auto`` (warehouse when possible, else python).
UsersDiff = Literal["auto", "warehouse", "python"]

DATA_CENTER_HOSTS: Final[dict[str, str]] = {
    "global": "https://api.webengage.com",
    "in": "https://api.in.webengage.com",
    "ksa": "https://api.ksa.webengage.com",
}

DEFAULT_DEMO_DIR: Final = Path(".demo")
DEFAULT_WAREHOUSE_URL: Final = f"duckdb:///{DEFAULT_DEMO_DIR / 'warehouse.duckdb'}"


def _env_var(name: str) -> str:
    # WAREHOUSE_URL and STATE_URL are shared with the webhook loader and other tools; every other setting is
    # WEBENGAGE_<NAME>, e.g. WEBENGAGE_BULK_USERS_RPM.
    return {"warehouse_url": "WAREHOUSE_URL", "state_url": "STATE_URL"}.get(name, f"WEBENGAGE_{name.upper()}")


def _as_text(value: object) -> object:
    # A license code is text, never a number: 82618947.0 from a spreadsheet or YAML is refused with the fix.
    return value if isinstance(value, str | SecretStr) or value is None else str(value)


def _check_license_code_if_set(code: str) -> None:
    if code:
        check_license_code(code)


def _check_api_key(key: Secret) -> None:
    check_api_key(key)  # defined below, with the other checks


class Settings(SettingsModel):
    """Everything a run needs. Limits default to WebEngage's documented account defaults.

    Each field is read from the environment variable :func:`env_var_for` names (its validation alias)."""

    model_config = SettingsConfigDict(alias_generator=AliasGenerator(validation_alias=_env_var))

    #: Empty only for commands that send nothing (``runs``, ``rejects``, ``plan``, dry runs); the client
    #: refuses to start without it (:meth:`require_credentials`). Not stripped: whitespace is refused.
    license_code: Annotated[str, BeforeValidator(_as_text), checked(_check_license_code_if_set)] = ""
    #: Not stripped: a key with whitespace or a newline is refused by :func:`check_api_key` with the fix.
    api_key: Annotated[Secret, BeforeValidator(_as_text), checked(_check_api_key)] = Field(
        default_factory=lambda: Secret(""), repr=False
    )
    data_center: Annotated[DataCenter, BeforeValidator(stripped)] = "global"
    api_url: Text = ""  # resolved from data_center when empty
    warehouse_url: Text = DEFAULT_WAREHOUSE_URL
    state_url: Text = ""  # empty: the warehouse holds the state too
    #: Where the profile sync computes its diff (see :data:`UsersDiff` and README "How the diff works").
    users_diff: Annotated[UsersDiff, BeforeValidator(stripped)] = "auto"
    #: The user mapping file (TOML); empty: ``mappings/users.toml`` of this repository.
    users_mapping: Text = ""
    #: The event source and name/property mapping (TOML); empty: ``mappings/events.toml``.
    events_mapping: Text = ""
    #: The cohort definitions (TOML); empty: ``mappings/cohorts.toml``.
    cohorts_config: Text = ""

    # Rate budgets in requests per minute; WebEngage can raise them per account, so never constants.
    bulk_users_rpm: Number = 500
    bulk_events_rpm: Number = 500
    users_rpm: Number = 5000
    events_rpm: Number = 5000
    #: Whether /bulk-users and /bulk-events draw from one budget (unconfirmed by WebEngage).
    shared_bulk_budget: Flag = False
    #: This process's share of the account budget when several Airflow tasks send at once (e.g. 1/slots of
    #: the ``webengage_api`` pool); the client paces at rpm × budget_share × rate_headroom.
    budget_share: Number = 1.0
    #: PostgreSQL URL holding the rate budgets shared by every worker of the account (table
    #: ``we_rate_budget``); empty: each process paces on its own buckets (see ``budget_share``).
    shared_budget_url: Text = ""
    #: Profile sync: while /bulk-users is saturated, also send users one per request through /users on its
    #: own budget. Safe only if WebEngage keeps the two budgets apart (unconfirmed).
    overflow_lane: Flag = False
    #: Pace at this share of each budget, so a sliding-window limiter never sees us over it.
    rate_headroom: Number = 0.98
    #: Seconds of budget a client may spend in one burst (token-bucket capacity).
    burst_seconds: Number = 1.0

    batch_size: Int = MAX_BULK_ITEMS
    max_batch_bytes: Int = 512_000
    connect_timeout_s: Number = 10.0
    read_timeout_s: Number = 30.0
    #: Attempts for 5xx/transport failures (429 waits are not attempts).
    max_retries: Int = 6
    backoff_base_s: Number = 0.5
    backoff_max_s: Number = 60.0
    #: Longest total time one request may spend waiting out 429s before it counts as transient.
    max_throttle_wait_s: Number = 900.0
    #: Requests in flight; 0 = derived from the budget and ``expected_latency_s``.
    concurrency: Int = 0
    expected_latency_s: Number = 1.0
    #: At most this many requests in flight (caps ``concurrency``). It is also a crash's cost: a run killed
    #: mid-send re-sends at most this many batches (de-duplicated by WebEngage only where it honours
    #: x-request-id, which for bulk calls is unconfirmed).
    max_in_flight: Int = 64
    #: Send x-request-id on bulk calls too (honoured by WebEngage only on /users and /events: unconfirmed).
    request_id_on_bulk: Flag = True
    #: Warn before a sync whose planned duration at the configured rates exceeds this (0: no check).
    max_run_minutes: Number = 0.0
    #: Runs that re-drive a transient or API-rejected row before it is marked dead.
    max_reject_attempts: Int = 5
    #: A run whose share of rows sent but not accepted (refused, or failed after retries) is above this fails
    #: once it has finished (a red task, an alert); a run that had rows to send and got none accepted always
    #: fails. 1.0 turns the share check off.
    max_reject_share: Number = 0.5
    #: Seconds to wait for another process's DuckDB file lock before giving up with a clear error.
    lock_timeout_s: Number = 120.0
    #: A cohort export that finds no member at all (a broken query, an empty table) warns; true: it fails
    #: instead (before sending), so the task turns red.
    fail_on_empty_cohort: Flag = False
    #: ``response.status`` values of a 2xx body that count as accepted (``queued,success`` in the environment).
    accepted_statuses: TextList = ("queued", "success")
    #: String values read as "no value" (upstream bugs: ``str(None)``, pandas' NaN as text, JavaScript's
    #: undefined), compared case-insensitively after trimming: ids and event names that are one are rejected,
    #: string values that are one are left out (unless the mapping keeps them). ``null,none`` in the environment.
    null_tokens: TextList = ("null", "none", "nan", "undefined", "nil")
    #: Events whose time is more than this many seconds after the run's clock are rejected
    #: (``event_time_in_future``): WebEngage would keep them, dated years ahead, forever.
    event_future_tolerance_s: Number = 86_400.0

    @model_validator(mode="after")
    def _cross_checks(self) -> Self:
        _validate(self)
        return self

    # -- derived ---------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return (self.api_url or DATA_CENTER_HOSTS[self.data_center]).rstrip("/")

    @property
    def account_url(self) -> str:
        return f"{self.base_url}/v1/accounts/{self.license_code}"

    @property
    def effective_state_url(self) -> str:
        return self.state_url or self.warehouse_url

    def require_credentials(self) -> None:
        """Raise :class:`ConfigError` unless both credentials are set (anything that sends calls this)."""
        if not self.license_code:
            raise ConfigError("license_code", f"missing (set {_ENV_VARS['license_code']} or the Airflow connection)")
        if not self.api_key.reveal():
            raise ConfigError("api_key", f"missing (set {_ENV_VARS['api_key']} or the Airflow connection)")

    # -- constructors ----------------------------------------------------------------------------
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, credentials: bool = True, **overrides: Any) -> Settings:
        """Build from ``WEBENGAGE_*``, ``WAREHOUSE_URL`` and ``STATE_URL`` variables (``os.environ`` unless
        ``env`` is given; empty ones count as unset); ``overrides`` (by setting name, None ignored) win.
        ``credentials=False`` for commands that only read the state or the warehouse (the credentials are
        checked if given)."""
        given = {k: v for k, v in overrides.items() if v is not None}
        settings = cls._load(given, env=os.environ if env is None else env)
        return settings._loaded(credentials=credentials)

    @classmethod
    def from_connection(
        cls,
        *,
        host: str | None,
        login: str | None,
        password: str | None,
        extra: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Build from an Airflow connection's fields: host = API URL or data-centre name,
        login = license code, password = REST API key, extras = any other setting by name."""
        raw: dict[str, Any] = {}
        for key, value in (extra or {}).items():
            if key not in _EXTRAS:
                raise ConfigError(f"extra.{key}", f"unknown extra; allowed: {', '.join(_EXTRAS)}")
            raw[key] = value
        host = (host or "").strip()
        if host:
            if host.lower() in DATA_CENTER_HOSTS:
                raw["data_center"] = host.lower()
            else:
                raw["api_url"] = host if "://" in host else f"https://{host}"
        if login:
            raw["license_code"] = login
        if password:
            raw["api_key"] = password
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_mapping(raw)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, credentials: bool = True) -> Settings:
        """Build from settings by name, loosely typed (strings from env or JSON extras) as well as typed."""
        return cls._load(raw)._loaded(credentials=credentials)

    def _loaded(self, *, credentials: bool) -> Settings:
        if credentials:
            self.require_credentials()
        hinted = data_center_hint(self.license_code)
        if hinted and "data_center" not in self.model_fields_set and not self.api_url:
            # WebEngage does not document the prefix, so it is a hint, never a rewrite of the code or the host.
            log.warning(
                "license code starts with %r: the account is probably in the %r data centre, but data_center "
                "is not set (requests go to %s); set %s=%s or the connection host to %r if so",
                f"{hinted}~",
                hinted,
                self.base_url,
                _ENV_VARS["data_center"],
                hinted,
                hinted,
            )
        return self


_ENV_VARS: Final = Settings.env_vars()
_EXTRAS: Final = sorted(set(Settings.model_fields) - {"api_key", "license_code"})


def env_values(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Settings given by environment variables, by setting name (unset or empty ones left out)."""
    env = os.environ if env is None else env
    return {name: env[var] for name, var in _ENV_VARS.items() if env.get(var, "") != ""}


def env_var_for(setting: str) -> str:
    """The environment variable that sets ``setting`` (for messages and docs)."""
    return _ENV_VARS[setting]


#: Characters a license code may hold: RFC 3986 "unreserved" without the dot, so the code goes into the URL
#: path unchanged. Real codes: ``~99199077``, ``~2024bb40``, ``82617894``, ``in~58adcc11``, ``ksa~~47b66537``.
_LICENSE_CODE = re.compile(r"[A-Za-z0-9~_-]{1,64}")
_FLOAT_CODE = re.compile(r"[0-9]+\.[0-9]*|[0-9.]+[eE][+-]?[0-9]+")
#: ``in~58adcc11``, ``ksa~~47b66537``: a prefix that appears to name the data centre (unconfirmed by WebEngage).
_DC_PREFIX = re.compile(r"(in|ksa)~", re.IGNORECASE)


def data_center_hint(license_code: str) -> str | None:
    """The data centre a license code's prefix suggests (``in~…`` → ``in``), if any."""
    found = _DC_PREFIX.match(license_code)
    return found.group(1).lower() if found else None


def check_license_code(code: str) -> None:
    """Raise :class:`ConfigError` with the fix for a code WebEngage would answer 404 to. Never echoes the code
    for the whitespace/control cases (it might be something else pasted into the wrong variable)."""
    if code != code.strip():
        raise ConfigError("license_code", "has leading or trailing whitespace (a newline?); remove it")
    if _FLOAT_CODE.fullmatch(code):
        fixed = code.split(".")[0] if "." in code and code.split(".")[1].strip("0") == "" else None
        hint = f"use {fixed!r}" if fixed else "copy the code from the WebEngage dashboard"
        raise ConfigError(
            "license_code",
            f"{code!r} looks like a number a spreadsheet or YAML turned into a float; {hint} and keep it as text",
        )
    if not _LICENSE_CODE.fullmatch(code) or not any(c.isalnum() for c in code):
        raise ConfigError(
            "license_code",
            "may hold only letters, digits, '~', '-' and '_' (as shown in the WebEngage dashboard, e.g. "
            "~99199077 or in~58adcc11; keep a leading '~')",
        )


def check_api_key(key: Secret) -> None:
    """A key that cannot be sent in an HTTP header is a configuration error, not a transient one."""
    value = key.reveal()
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigError(
            "api_key", "contains a control character (a newline from the file or secret it was read from?); remove it"
        )
    if value != value.strip():
        raise ConfigError("api_key", "has leading or trailing whitespace; remove it")
    if not value.isascii():
        raise ConfigError("api_key", "contains non-ASCII characters (a typographic quote or dash?); re-copy it")


def _validate(s: Settings) -> None:
    """Checks of values against each other and ranges (the types are checked by then)."""
    if s.api_url and not s.api_url.startswith(("http://", "https://")):
        raise ConfigError("api_url", "must start with http:// or https://")
    if not 1 <= s.batch_size <= MAX_BULK_ITEMS:
        raise ConfigError("batch_size", f"must be between 1 and {MAX_BULK_ITEMS} (WebEngage's bulk cap)")
    positive = (
        "bulk_users_rpm",
        "bulk_events_rpm",
        "users_rpm",
        "events_rpm",
        "burst_seconds",
        "connect_timeout_s",
        "read_timeout_s",
        "backoff_base_s",
        "backoff_max_s",
        "expected_latency_s",
        "max_batch_bytes",
        "max_in_flight",
        "lock_timeout_s",
    )
    for name in positive:
        if cast(float, getattr(s, name)) <= 0:
            raise ConfigError(name, "must be greater than 0")
    if not 0 < s.rate_headroom <= 1:
        raise ConfigError("rate_headroom", "must be in (0, 1]")
    if not 0 < s.budget_share <= 1:
        raise ConfigError("budget_share", "must be in (0, 1]")
    if s.shared_budget_url:
        if not s.shared_budget_url.startswith(("postgresql://", "postgresql+")):
            raise ConfigError("shared_budget_url", "must be a PostgreSQL URL such as postgresql+psycopg://host/db")
        if s.budget_share != 1:
            # A static split on top of the shared bucket would only waste budget.
            raise ConfigError("budget_share", "leave at 1 with shared_budget_url: the workers share the budget")
    if s.max_run_minutes < 0:
        raise ConfigError("max_run_minutes", "must not be negative")
    if s.max_reject_attempts < 1:
        raise ConfigError("max_reject_attempts", "must be at least 1")
    if not 0 < s.max_reject_share <= 1:
        raise ConfigError("max_reject_share", "must be in (0, 1] (1 turns the check off)")
    if s.max_retries < 0 or s.concurrency < 0 or s.max_throttle_wait_s < 0:
        raise ConfigError("max_retries/concurrency/max_throttle_wait_s", "must not be negative")
    if s.max_batch_bytes < 1024:
        raise ConfigError("max_batch_bytes", "must be at least 1024 bytes")
    if s.event_future_tolerance_s < 0:
        raise ConfigError("event_future_tolerance_s", "must not be negative")
    if not s.accepted_statuses:
        raise ConfigError("accepted_statuses", "must list at least one status")
    for name in ("warehouse_url", "state_url"):
        url = cast(str, getattr(s, name))
        if url and "://" not in url:
            raise ConfigError(name, "must be an SQLAlchemy URL such as duckdb:///path.duckdb")
