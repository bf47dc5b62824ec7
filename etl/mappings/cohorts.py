"""The cohort config (``mappings/cohorts.toml``): one ``[cohorts.NAME]`` table per cohort, its query file and
how it reaches WebEngage (one boolean user attribute each).

``query`` names the SQL file, as in the users and events mappings; the old key ``sql`` still loads, with a
:class:`~etl.mappings.base.MappingFormatWarning` (a cohort with both is refused).

Standard library and pydantic only (no pandas): the Airflow DAG files read the cohort names while being
parsed (:func:`configured_names`).
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from etl.errors import ConfigError
from etl.mappings.base import FileModel, deprecated, read_toml, validate
from etl.resources import DEFAULT_COHORTS_CONFIG, sql_path, user_file

CohortMode = Literal["one_time", "dynamic"]
ParamValue = str | int | float | bool

#: The setting (environment variable) naming the deployment's cohort config.
CONFIG_ENV: Final = "WEBENGAGE_COHORTS_CONFIG"
#: WebEngage keeps at most 25 custom user attributes per type; every cohort is one boolean.
MAX_BOOLEANS: Final = 25

# Names end up in Asset URIs, run/owner keys and event data: keep them plain identifiers.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,59}$")
# Stricter than WebEngage's own rule (< 50 characters, no ``we_``): segment editors show these names.
_ATTRIBUTE = r"^[A-Za-z][A-Za-z0-9_]{0,48}$"
_ATTRIBUTE_RULE: Final = (
    "must be 1-49 characters (WebEngage ignores names of 50 or more), letters, digits and _, starting with a letter"
)
# How SQLAlchemy's text() finds bound parameters (``:name``, not ``::cast`` nor ``\:escaped``).
_BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")
_RESERVED_PARAMS: Final = frozenset({"as_of"})
_SQL_OLD: Final = "sql = ... is the old name of query = ...: rename the key to query"


@dataclass(frozen=True, kw_only=True)
class CohortSpec:
    """One configured cohort."""

    name: str
    query: str  # a file under sql/ (e.g. "cohorts/vip_buyers_30d.sql") or an absolute path
    attribute: str
    mode: CohortMode
    events: bool = False
    max_exit_share: float = 0.5
    user_id: str = "user_id"
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    description: str = ""

    @property
    def sql(self) -> str:
        """The query file (the old name of :attr:`query`)."""
        return self.query

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


def sql_binds(sql: str) -> set[str]:
    """Names of the ``:name`` parameters a query binds (as SQLAlchemy's text() finds them)."""
    return set(_BIND.findall(sql))


# -- the file -------------------------------------------------------------------------------------------
def _not_reserved(attribute: str) -> str:
    if attribute.lower().startswith("we_"):
        raise ValueError("names starting with we_ are reserved by WebEngage (silently ignored)")
    return attribute


def _param(value: ParamValue) -> ParamValue:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be finite")
    return value


ExitShare = Annotated[float, Field(gt=0, le=1, description="stop before sending when more than this share leaves")]
UserIdColumn = Annotated[str, Field(min_length=1, description="the query's user id column")]
ParamName = Annotated[str, Field(pattern=r"^[A-Za-z_]\w*$")]


class CohortDefaults(FileModel):
    """``[defaults]``: values every cohort takes unless it sets its own."""

    events: bool = False
    max_exit_share: ExitShare = 0.5
    user_id: UserIdColumn = "user_id"


class Cohort(FileModel):
    """``[cohorts.NAME]``: NAME is lower-case letters, digits and _ (the CLI and the Airflow form use it)."""

    query: str | None = Field(default=None, description="the query file under sql/ (one row per member; bound :params)")
    sql: str | None = Field(default=None, description="old name of query", json_schema_extra={"deprecated": True})
    attribute: Annotated[str, Field(pattern=_ATTRIBUTE), AfterValidator(_not_reserved)] | None = Field(
        default=None, description="the WebEngage attribute (default cohort_NAME)"
    )
    mode: CohortMode = Field(description="dynamic: synced every 2 hours; one_time: exported when triggered")
    events: bool | None = Field(default=None, description='also send "Cohort Entered" / "Cohort Exited" events')
    max_exit_share: ExitShare | None = None
    user_id: UserIdColumn | None = None
    params: dict[ParamName, Annotated[ParamValue, AfterValidator(_param)]] = Field(
        default_factory=dict, description="values for the query's other :params (bound, never spliced)"
    )
    description: str = ""

    @model_validator(mode="after")
    def _one_query(self) -> Cohort:
        if self.query is not None and self.sql is not None:
            raise ValueError("query and its old name sql are both set: keep query only")
        return self


class CohortsFile(FileModel):
    """``mappings/cohorts.toml``."""

    model_config = ConfigDict(title="webengage-sync cohorts config")

    defaults: CohortDefaults = CohortDefaults()
    cohorts: dict[str, Cohort] = Field(
        default_factory=dict, json_schema_extra={"propertyNames": {"pattern": _NAME.pattern}}
    )


_REASONS: Final = {
    "attribute": _ATTRIBUTE_RULE,
    "mode": "required: one_time or dynamic",
    "events": "expected true or false",
    "max_exit_share": "expected a share in (0, 1], e.g. 0.5",
    "user_id": "expected the name of the query's user id column",
    "description": "expected a string",
    "params": "expected a table of name = value",
    "params.*": "expected an identifier = a string, number or boolean",
}


# -- loading --------------------------------------------------------------------------------------------
def config_path(setting: str = "") -> Path:
    """The config file: the setting (``WEBENGAGE_COHORTS_CONFIG``), else the packaged
    ``mappings/cohorts.toml`` (:func:`etl.resources.user_file`)."""
    return user_file(setting or os.environ.get(CONFIG_ENV, ""), DEFAULT_COHORTS_CONFIG)


def load_cohort_config(path: str | Path | None = None) -> CohortConfig:
    """Parse and validate the cohort config (``path``, else :func:`config_path`); every problem raises
    :class:`ConfigError` naming the cohort."""
    path = Path(path) if path is not None else config_path()
    doc = read_toml(path, setting="cohorts_config", missing="cohort config not found")
    return cohort_config_from_dict(doc, origin=str(path))


def configured_names(path: str | Path | None = None, *, mode: CohortMode | None = None) -> list[str]:
    """Cohort names (optionally of one mode) for the DAG files: reads the TOML and SQL files only."""
    config = load_cohort_config(path)
    return config.names if mode is None else config.names_by_mode(mode)


def configured_cohorts(path: str | Path | None = None, *, mode: CohortMode | None = None) -> dict[str, str]:
    """Cohort name -> description (empty when the config gives none), in config order, for the DAG files'
    trigger forms: reads the TOML and SQL files only."""
    config = load_cohort_config(path)
    return {c.name: c.description for c in config.cohorts if mode is None or c.mode == mode}


def cohort_config_from_dict(doc: Mapping[str, Any], *, origin: str = "cohorts") -> CohortConfig:
    if set(doc) - {"defaults", "cohorts"}:
        unknown = ", ".join(sorted(set(doc) - {"defaults", "cohorts"}))
        raise ConfigError(origin, f"unknown sections: {unknown} (expected [defaults], [cohorts.NAME])")
    if not isinstance(doc.get("cohorts", {}), Mapping):
        raise ConfigError(f"{origin} [cohorts]", "expected tables [cohorts.NAME]")
    for name, entry in doc.get("cohorts", {}).items():
        if not _NAME.match(str(name)):
            raise ConfigError(
                f"{origin} [cohorts.{name}]",
                "cohort names are lower-case letters, digits and _, starting with a letter (max 60)",
            )
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{origin} [cohorts.{name}]", "expected a table")
    file = validate(CohortsFile, doc, origin, reasons=_REASONS, nested=frozenset({"cohorts"}))
    old = [f"[cohorts.{name}]" for name, entry in file.cohorts.items() if entry.sql is not None]
    if old:
        deprecated(f"{origin} {', '.join(old)}", _SQL_OLD)
    specs = [_spec(name, entry, file.defaults, origin) for name, entry in file.cohorts.items()]

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


def _spec(name: str, entry: Cohort, defaults: CohortDefaults, origin: str) -> CohortSpec:
    where = f"{origin} [cohorts.{name}]"
    query = entry.query if entry.query is not None else entry.sql
    if query is None or not query.strip():
        raise ConfigError(f"{where}.query", "required: the query file, e.g. cohorts/my_cohort.sql")
    path = sql_path(query)
    if not path.is_file():
        raise ConfigError(f"{where}.query", f"query file not found: {query}")
    attribute = entry.attribute if entry.attribute is not None else f"cohort_{name}"
    if not re.match(_ATTRIBUTE, attribute):
        raise ConfigError(f"{where}.attribute", f"{_ATTRIBUTE_RULE}; set it explicitly for a long cohort name")

    params = dict(entry.params)
    reserved = sorted(_RESERVED_PARAMS & set(params))
    if reserved:
        raise ConfigError(f"{where}.params.{reserved[0]}", "is set by the sync (the export time); do not configure it")
    binds = sql_binds(path.read_text(encoding="utf-8"))
    missing = binds - set(params) - _RESERVED_PARAMS
    if missing:
        raise ConfigError(f"{where}.params", f"the query needs values for: {', '.join(sorted(missing))}")
    unused = set(params) - binds
    if unused:
        raise ConfigError(f"{where}.params", f"not used by {query}: {', '.join(sorted(unused))}")

    return CohortSpec(
        name=name,
        query=query,
        attribute=attribute,
        mode=entry.mode,
        events=entry.events if entry.events is not None else defaults.events,
        max_exit_share=float(entry.max_exit_share if entry.max_exit_share is not None else defaults.max_exit_share),
        user_id=entry.user_id if entry.user_id is not None else defaults.user_id,
        params=params,
        description=entry.description,
    )
