"""Cohorts: the config model (``mappings/cohorts.toml``), its validation, and the pure membership logic.

A cohort is one SQL file returning user ids plus a config entry. It reaches WebEngage as one custom
boolean user attribute (``true`` for members, ``false`` for users who left). This module stays free of
pandas/SQLAlchemy imports at load time: the Airflow DAG files read the cohort names while being parsed.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from etl.errors import ConfigError, WebEngageSyncError
from etl.resources import DEFAULT_COHORTS_CONFIG, sql_path, user_file

if TYPE_CHECKING:
    import pandas as pd

CohortMode = Literal["one_time", "dynamic"]
Transition = Literal["entered", "exited"]
ParamValue = str | int | float | bool

#: WebEngage keeps at most 25 custom user attributes per type; every cohort is one boolean.
MAX_BOOLEANS: Final = 25
MAX_ID_LENGTH: Final = 100
ENTERED_EVENT: Final = "Cohort Entered"
EXITED_EVENT: Final = "Cohort Exited"
EVENT_NAMES: Final[dict[Transition, str]] = {"entered": ENTERED_EVENT, "exited": EXITED_EVENT}

# Names end up in Asset URIs, run/owner keys and event data: keep them plain identifiers.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
# Stricter than WebEngage's own rule (< 50 characters, no ``we_``): segment editors show these names.
_ATTRIBUTE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,48}$")
# How SQLAlchemy's text() finds bound parameters (``:name``, not ``::cast`` nor ``\:escaped``).
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")
_RESERVED_PARAMS: Final = frozenset({"as_of"})
_COHORT_KEYS: Final = frozenset(
    {"sql", "attribute", "mode", "events", "max_exit_share", "user_id", "params", "description"}
)
_DEFAULT_KEYS: Final = frozenset({"events", "max_exit_share", "user_id"})


class GuardError(WebEngageSyncError):
    """A sync would flip too many members to ``false`` at once; nothing was sent."""

    def __init__(self, cohort: str, reason: str) -> None:
        self.cohort = cohort
        self.reason = reason
        super().__init__(
            f"cohort {cohort}: stopped before sending: {reason}. If this is intended, re-run with override_guard "
            "(CLI --override-guard, DAG param override_guard)"
        )


@dataclass(frozen=True, kw_only=True)
class CohortSpec:
    """One configured cohort."""

    name: str
    sql: str  # a file under sql/ (e.g. "cohorts/vip_buyers_30d.sql") or an absolute path
    attribute: str
    mode: CohortMode
    events: bool = False
    max_exit_share: float = 0.5
    user_id: str = "user_id"
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    description: str = ""

    @property
    def owner(self) -> str:
        """Owner of the attribute's slot in the shared attribute registry."""
        return owner_of(self.name)

    @property
    def pipeline(self) -> str:
        """Key of this cohort's runs and rejects in the state store."""
        return pipeline_of(self.name)


@dataclass(frozen=True, kw_only=True)
class CohortConfig:
    cohorts: tuple[CohortSpec, ...] = ()
    origin: str = "cohorts"

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cohorts]

    def names_by_mode(self, mode: CohortMode) -> list[str]:
        return [c.name for c in self.cohorts if c.mode == mode]

    def find(self, name: str) -> CohortSpec | None:
        return next((c for c in self.cohorts if c.name == name), None)

    def get(self, name: str) -> CohortSpec:
        """The cohort called ``name``; the name only selects an entry, it never reaches SQL."""
        spec = self.find(name)
        if spec is None:
            shown = name if _NAME.match(name) else "(not a cohort name)"
            raise ConfigError("cohort", f"unknown cohort {shown}; configured: {', '.join(self.names) or 'none'}")
        return spec


def owner_of(name: str) -> str:
    return f"cohort:{name}"


def pipeline_of(name: str) -> str:
    return f"cohort:{name}"


# -- loading ----------------------------------------------------------------------------------------
def config_path(setting: str = "") -> Path:
    """The config file: the setting (``WEBENGAGE_COHORTS_CONFIG``), else the packaged
    ``mappings/cohorts.toml`` (:func:`etl.resources.user_file`)."""
    return user_file(setting or os.environ.get("WEBENGAGE_COHORTS_CONFIG", ""), DEFAULT_COHORTS_CONFIG)


def sql_binds(sql: str) -> set[str]:
    """Names of the ``:name`` parameters a query binds (as SQLAlchemy's text() finds them)."""
    return set(_BIND.findall(sql))


def load_cohort_config(path: str | Path | None = None) -> CohortConfig:
    """Parse and validate the cohort config; every problem raises :class:`ConfigError` naming the cohort."""
    path = Path(path) if path is not None else config_path()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("cohorts_config", f"cohort config not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("cohorts_config", f"{path}: invalid TOML: {exc}") from None
    return cohort_config_from_dict(doc, origin=str(path))


def configured_names(path: str | Path | None = None, *, mode: CohortMode | None = None) -> list[str]:
    """Cohort names (optionally of one mode) for the DAG files: reads the TOML and SQL files only."""
    config = load_cohort_config(path)
    return config.names if mode is None else config.names_by_mode(mode)


def cohort_config_from_dict(doc: Mapping[str, Any], *, origin: str = "cohorts") -> CohortConfig:
    unknown = set(doc) - {"defaults", "cohorts"}
    if unknown:
        raise ConfigError(
            origin, f"unknown sections: {', '.join(sorted(unknown))} (expected [defaults], [cohorts.NAME])"
        )
    defaults = dict(doc.get("defaults", {}))
    bad = set(defaults) - _DEFAULT_KEYS
    if bad:
        raise ConfigError(f"{origin} [defaults]", f"unknown keys: {', '.join(sorted(bad))}")
    entries = doc.get("cohorts", {})
    if not isinstance(entries, Mapping):
        raise ConfigError(f"{origin} [cohorts]", "expected tables [cohorts.NAME]")
    specs = [_spec(str(name), entry, defaults, origin) for name, entry in entries.items()]

    by_attribute = Counter(s.attribute.lower() for s in specs)
    clashes = sorted(a for a, n in by_attribute.items() if n > 1)
    if clashes:
        raise ConfigError(f"{origin} [cohorts]", f"two cohorts use the same attribute: {', '.join(clashes)}")
    if len(specs) > MAX_BOOLEANS:
        raise ConfigError(
            f"{origin} [cohorts]",
            f"{len(specs)} cohorts, but WebEngage keeps at most {MAX_BOOLEANS} boolean user attributes per account",
        )
    return CohortConfig(cohorts=tuple(specs), origin=origin)


def _spec(name: str, entry: Any, defaults: Mapping[str, Any], origin: str) -> CohortSpec:
    where = f"{origin} [cohorts.{name}]"
    if not _NAME.match(name):
        raise ConfigError(where, "cohort names are lower-case letters, digits and _, starting with a letter (max 60)")
    if not isinstance(entry, Mapping):
        raise ConfigError(where, "expected a table")
    bad = set(entry) - _COHORT_KEYS
    if bad:
        raise ConfigError(where, f"unknown keys: {', '.join(sorted(bad))}")
    values = {**defaults, **entry}

    sql = values.get("sql")
    if not isinstance(sql, str) or not sql.strip():
        raise ConfigError(f"{where}.sql", "required: the query file, e.g. cohorts/my_cohort.sql")
    path = sql_path(sql)
    if not path.is_file():
        raise ConfigError(f"{where}.sql", f"query file not found: {sql}")

    attribute = values.get("attribute", f"cohort_{name}")
    if not isinstance(attribute, str) or not _ATTRIBUTE.match(attribute):
        raise ConfigError(
            f"{where}.attribute",
            "must be 1-49 characters (WebEngage ignores names of 50 or more), letters, digits and _, "
            "starting with a letter"
            + ("; set it explicitly for a long cohort name" if "attribute" not in entry else ""),
        )
    if attribute.lower().startswith("we_"):
        raise ConfigError(f"{where}.attribute", "names starting with we_ are reserved by WebEngage (silently ignored)")

    mode: CohortMode
    if values.get("mode") == "one_time":
        mode = "one_time"
    elif values.get("mode") == "dynamic":
        mode = "dynamic"
    else:
        raise ConfigError(f"{where}.mode", "required: one_time or dynamic")
    events = values.get("events", False)
    if not isinstance(events, bool):
        raise ConfigError(f"{where}.events", "expected true or false")
    share = values.get("max_exit_share", 0.5)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
        raise ConfigError(f"{where}.max_exit_share", "expected a share in (0, 1], e.g. 0.5")
    user_id = values.get("user_id", "user_id")
    if not isinstance(user_id, str) or not user_id:
        raise ConfigError(f"{where}.user_id", "expected the name of the query's user id column")
    description = values.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{where}.description", "expected a string")

    params = values.get("params", {})
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where}.params", "expected a table of name = value")
    for key, value in params.items():
        if key in _RESERVED_PARAMS:
            raise ConfigError(f"{where}.params.{key}", "is set by the sync (the export time); do not configure it")
        if not re.fullmatch(r"[A-Za-z_]\w*", key) or isinstance(value, Mapping | list) or value is None:
            raise ConfigError(f"{where}.params.{key}", "expected an identifier = a string, number or boolean")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}.params.{key}", "must be finite")
    binds = sql_binds(path.read_text(encoding="utf-8"))
    missing = binds - set(params) - _RESERVED_PARAMS
    if missing:
        raise ConfigError(f"{where}.params", f"the query needs values for: {', '.join(sorted(missing))}")
    unused = set(params) - binds
    if unused:
        raise ConfigError(f"{where}.params", f"not used by {sql}: {', '.join(sorted(unused))}")

    return CohortSpec(
        name=name,
        sql=sql,
        attribute=attribute,
        mode=mode,
        events=events,
        max_exit_share=float(share),
        user_id=user_id,
        params=dict(params),
        description=description,
    )


# -- membership ---------------------------------------------------------------------------------------
def screen_ids(values: pd.Series) -> tuple[pd.Series, Counter[str]]:
    """Usable user ids (stripped strings) and the count of excluded rows by reason.

    Only identified users are exported: a NULL id (anonymous-only row) is ``anonymous``; a blank one
    ``empty_user_id``; one over 100 characters ``user_id_too_long`` (WebEngage's userId limit)."""
    import pandas as pd

    raw = values
    if pd.api.types.is_float_dtype(raw.dtype):
        whole = raw.dropna()
        if (whole == whole.round()).all():
            raw = raw.astype("Int64")  # 42.0 -> "42", as the profile sync keys it
    missing = raw.isna()
    text = raw.astype("string").str.strip()
    empty = ~missing & (text == "")
    too_long = ~missing & (text.str.len() > MAX_ID_LENGTH)
    excluded: Counter[str] = Counter()
    for reason, mask in (("anonymous", missing), ("empty_user_id", empty), ("user_id_too_long", too_long)):
        count = int(mask.sum())
        if count:
            excluded[reason] = count
    keep = ~(missing | empty | too_long)
    return text[keep].astype(str), excluded


@dataclass(frozen=True, kw_only=True)
class MembershipDiff:
    """What a sync sends. ``entered``/``exited`` are membership changes against the accepted snapshot;
    ``resend_true``/``resend_false`` repair users whose last flip was sent but never confirmed."""

    entered: list[str]
    exited: list[str]
    unchanged: int
    resend_true: list[str]
    resend_false: list[str]

    @property
    def flips(self) -> int:
        return len(self.entered) + len(self.exited) + len(self.resend_true) + len(self.resend_false)


def diff_members(current: Sequence[str], *, members: Sequence[str], in_doubt: Sequence[str] = ()) -> MembershipDiff:
    """Compare the current (deduplicated) members with the snapshot WebEngage accepted.

    ``in_doubt``: users with a flip sent but unconfirmed (a crash mid-send); their WebEngage value is
    unknown, so each gets its current value again: members ``true``, the others ``false``."""
    now, before, doubt = set(current), set(members), set(in_doubt)
    entered = sorted(now - before)
    exited = sorted(before - now)
    stay = now & before
    resend_true = sorted(stay & doubt)
    resend_false = sorted(doubt - now - before)
    return MembershipDiff(
        entered=entered,
        exited=exited,
        unchanged=len(stay) - len(resend_true),
        resend_true=resend_true,
        resend_false=resend_false,
    )


def guard_problem(*, cohort: str, previous: int, members: int, exited: int, max_exit_share: float) -> str | None:
    """Why the blast-radius guard stops this sync, or None."""
    if previous == 0:
        return None
    if members == 0:
        return f"the query returned no members, but {previous:,} users are in cohort {cohort} in WebEngage"
    share = exited / previous
    if share > max_exit_share:
        return (
            f"{exited:,} of {previous:,} members ({share:.0%}) would leave cohort {cohort}, more than its "
            f"max_exit_share of {max_exit_share:.0%}"
        )
    return None


def attribute_payload(user_id: str, attribute: str, value: bool) -> dict[str, Any]:
    """One /bulk-users item: only this attribute is written; the rest of the profile is left alone."""
    return {"userId": user_id, "attributes": {attribute: value}}


def event_payload(user_id: str, cohort: str, transition: Transition, event_time: str) -> dict[str, Any]:
    """One /bulk-events item (``Cohort Entered`` / ``Cohort Exited``) carrying the cohort's name."""
    return {
        "userId": user_id,
        "eventName": EVENT_NAMES[transition],
        "eventTime": event_time,
        "eventData": {"cohort": cohort},
    }
