"""What the three mapping files share: reading TOML, the strict pydantic base model, turning validation
errors into :class:`ConfigError` (file, ``[section].key``, reason), and the warning for old spellings.

Standard library and pydantic only: the cohort names are read while the Airflow DAG files are parsed.
"""

from __future__ import annotations

import tomllib
import warnings
import zoneinfo
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from etl.errors import ConfigError

#: Direction of every mapping table, in every file: the key is what the warehouse has (a column, a source
#: event or property name), the value what WebEngage gets.
DIRECTION = "source = WebEngage destination"


class MappingFormatWarning(FutureWarning):
    """A mapping file uses an old spelling that still loads; the message says exactly what to change."""


class FileModel(BaseModel):
    """A table of a mapping file: unknown keys are refused, TOML types are taken as they are (no ``"yes"`` for
    ``true``, no ``"5"`` for ``5``), and nothing changes once loaded."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


M = TypeVar("M", bound=FileModel)
Preset = Literal["sql", "segment"]


def _time_zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown IANA time zone") from None
    return name


#: An IANA time zone name, checked when the file is loaded.
TimeZone = Annotated[str, AfterValidator(_time_zone), Field(description="IANA time zone, e.g. UTC, Asia/Kolkata")]
#: WebEngage keeps strings under 1,000 characters.
MaxStringLength = Annotated[int, Field(ge=1, le=999, description="strings are cut to this many characters")]
ChunkRows = Annotated[int, Field(ge=1, description="rows per chunk: memory stays flat as the table grows")]


class QuerySource(FileModel):
    """What the users and events ``[source]`` tables share: the query file or a preset, and its parameters."""

    query: str
    preset: Preset = Field(default="sql", description="segment: read a Segment/RudderStack schema instead")
    segment_schema: str = "segment"
    params: dict[str, Any] = Field(default_factory=dict, description="values for the query's :params (bound)")


def read_toml(path: Path, *, setting: str, missing: str) -> dict[str, Any]:
    """The parsed file; a missing file or invalid TOML is a :class:`ConfigError` naming ``setting``."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(setting, f"{missing}: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(setting, f"{path}: invalid TOML: {exc}") from None


def deprecated(origin: str, message: str) -> None:
    """Say once per call site and file that an old spelling was read, and what to write instead."""
    warnings.warn(f"{origin}: {message}", MappingFormatWarning, stacklevel=3)


def where(origin: str, path: Sequence[str], *, nested: frozenset[str] = frozenset()) -> str:
    """``origin [section].key``: a section in ``nested`` holds tables (``[cohorts.NAME]``,
    ``[properties.rename]``), so its second level is part of the header."""
    if not path:
        return origin
    depth = 2 if path[0] in nested and len(path) > 1 else 1
    header = f"{origin} [{'.'.join(path[:depth])}]"
    return header + "".join(f".{p}" for p in path[depth:])


def validate(
    model: type[M],
    doc: Mapping[str, Any],
    origin: str,
    *,
    reasons: Mapping[str, str] | None = None,
    nested: frozenset[str] = frozenset(),
) -> M:
    """``doc`` as ``model``; the first problem raises :class:`ConfigError` (all unknown keys of one table at
    once). ``reasons``: the reason given for any problem with a key of that name (``"name.*"``: with a value
    inside it)."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise config_error(exc, doc, origin, reasons=reasons or {}, nested=nested) from None


def _real_path(loc: Sequence[int | str], doc: Any) -> list[str]:
    """The part of a pydantic location that exists in the document (union member tags are left out)."""
    path: list[str] = []
    node = doc
    for part in loc:
        if isinstance(node, list):
            node = dict(enumerate(node))
        if isinstance(node, Mapping) and part in node:
            node = node[part]
            path.append(str(part))
    return path


def config_error(
    exc: ValidationError,
    doc: Mapping[str, Any],
    origin: str,
    *,
    reasons: Mapping[str, str],
    nested: frozenset[str],
) -> ConfigError:
    errors = exc.errors(include_url=False)
    extras = [e for e in errors if e["type"] == "extra_forbidden"]
    if extras:
        parent = _real_path(extras[0]["loc"][:-1], doc)
        names = sorted(str(e["loc"][-1]) for e in extras if _real_path(e["loc"][:-1], doc) == parent)
        if not parent:
            return ConfigError(origin, f"unknown sections: {', '.join(names)}")
        return ConfigError(where(origin, parent, nested=nested), f"unknown keys: {', '.join(names)}")
    # The deepest problem is the most telling one (a union's failed members stop at the union's key), and of
    # those, one a validator of ours explains.
    first = max(errors, key=lambda e: (len(_real_path(e["loc"], doc)), e["type"] == "value_error"))
    path = _real_path(first["loc"], doc)
    if first["type"] == "missing":
        path = [*path, str(first["loc"][-1])]
    return ConfigError(where(origin, path, nested=nested), _reason(first, path, reasons))


def _reason(error: Any, path: Sequence[str], reasons: Mapping[str, str]) -> str:
    ctx = error.get("ctx") or {}
    if error["type"] == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if path and path[-1] in reasons:
        return reasons[path[-1]]
    for outer in reversed(path[:-1]):
        if f"{outer}.*" in reasons:
            return reasons[f"{outer}.*"]
    if error["type"] == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", "")
        return f"unknown {path[-1] if path else 'value'} {error['input']!r}; expected {expected}"
    for outer in reversed(path):
        if outer in reasons:
            return reasons[outer]
    if error["type"] == "missing":
        return "required"
    msg = str(error["msg"])
    return msg[:1].lower() + msg[1:]
