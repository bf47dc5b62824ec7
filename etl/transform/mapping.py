"""The user mapping: which column is the user id, which feed WebEngage system fields, which become
custom attributes (with optional explicit types). Loaded from a TOML file (``mappings/users.toml``).

Validated once, before anything is read or sent: unknown keys, unknown types, or more than 25
attributes of one type raise :class:`ConfigError`. Attribute names that WebEngage would silently
ignore are renamed by :func:`etl.transform.formats.sanitize_attribute_name`, and the renames reported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

from etl.errors import ConfigError
from etl.transform.formats import sanitize_attribute_name

AttrType = Literal["string", "number", "integer", "boolean", "date", "json"]
#: WebEngage's own type of an attribute (integer is a number there; json is a map/array).
WIRE_TYPE: Final[dict[str, str]] = {
    "string": "string",
    "number": "number",
    "integer": "number",
    "boolean": "boolean",
    "date": "date",
    "json": "object",
}
MAX_PER_TYPE: Final = 25

#: WebEngage system fields and how their values are coerced.
SYSTEM_FIELDS: Final[dict[str, str]] = {
    "firstName": "string",
    "lastName": "string",
    "email": "email",
    "phone": "phone",
    "birthDate": "birth_date",
    "gender": "gender",
    "company": "string",
    "hashedEmail": "string",
    "hashedPhone": "string",
    "emailOptIn": "boolean",
    "smsOptIn": "boolean",
    "whatsappOptIn": "boolean",
    "country": "string",
    "city": "string",
    "region": "string",
    "locality": "string",
    "postalCode": "string",
}

NullPolicy = Literal["keep", "clear"]
DuplicateRule = Literal["latest_updated_at", "first_seen"]


@dataclass(frozen=True, kw_only=True)
class AttributeSpec:
    name: str  # the WebEngage attribute name (after the rename rule)
    column: str
    type: AttrType | None  # None: inferred from the column's dtype on first read, then pinned
    source_name: str  # as written in the mapping file


@dataclass(frozen=True, kw_only=True)
class UserMapping:
    query: str = "users/users.sql"
    preset: Literal["sql", "segment"] = "sql"
    segment_schema: str = "segment"
    segment_table: Literal["users", "identifies"] = "users"
    user_id: str = "user_id"
    updated_at: str | None = "updated_at"
    params: Mapping[str, Any] = field(default_factory=dict)
    chunk_rows: int = 100_000
    source_timezone: str = "UTC"
    default_phone_region: str = "IN"
    phone_region_column: str | None = None
    on_null: NullPolicy = "keep"
    duplicate_rule: DuplicateRule = "latest_updated_at"
    max_string_length: int = 999
    system: Mapping[str, str] = field(default_factory=dict)  # WebEngage field -> column
    attributes: tuple[AttributeSpec, ...] = ()
    renamed: Mapping[str, str] = field(default_factory=dict)  # source name -> WebEngage name

    @property
    def fields(self) -> tuple[str, ...]:
        """Payload fields in a fixed order: system fields, then ``attributes.<name>``."""
        return tuple(self.system) + tuple(f"attributes.{a.name}" for a in self.attributes)

    @property
    def columns(self) -> tuple[str, ...]:
        """Source columns the payload depends on (hashing covers exactly these)."""
        cols = [self.user_id, *self.system.values(), *(a.column for a in self.attributes)]
        if self.phone_region_column:
            cols.append(self.phone_region_column)
        return tuple(dict.fromkeys(cols))

    def fingerprint(self) -> str:
        """Changes whenever a mapping change would change payloads, so a changed mapping re-sends."""
        doc = {
            "system": dict(self.system),
            "attributes": [(a.name, a.column, a.type) for a in self.attributes],
            "opts": [self.source_timezone, self.default_phone_region, self.phone_region_column, self.on_null,
                     self.max_string_length],
        }  # fmt: skip
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


_SOURCE_KEYS = {
    "query",
    "preset",
    "segment_schema",
    "segment_table",
    "user_id",
    "updated_at",
    "params",
    "chunk_rows",
}
_OPTION_KEYS = {
    "source_timezone",
    "default_phone_region",
    "phone_region_column",
    "on_null",
    "duplicate_rule",
    "max_string_length",
}


def load_user_mapping(path: str | Path) -> UserMapping:
    """Parse and validate a mapping file."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("users_mapping", f"mapping file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("users_mapping", f"{path}: invalid TOML: {exc}") from None
    return user_mapping_from_dict(doc, origin=str(path))


def user_mapping_from_dict(doc: Mapping[str, Any], *, origin: str = "mapping") -> UserMapping:
    unknown = set(doc) - {"source", "options", "system", "attributes"}
    if unknown:
        raise ConfigError(origin, f"unknown sections: {', '.join(sorted(unknown))}")
    source = dict(doc.get("source", {}))
    options = dict(doc.get("options", {}))
    for section, allowed, values in (("source", _SOURCE_KEYS, source), ("options", _OPTION_KEYS, options)):
        bad = set(values) - allowed
        if bad:
            raise ConfigError(f"{origin} [{section}]", f"unknown keys: {', '.join(sorted(bad))}")

    system = {str(k): str(v) for k, v in dict(doc.get("system", {})).items()}
    bad_fields = set(system) - set(SYSTEM_FIELDS)
    if bad_fields:
        raise ConfigError(
            f"{origin} [system]",
            f"not WebEngage system fields: {', '.join(sorted(bad_fields))} (custom ones go under [attributes])",
        )

    attributes: list[AttributeSpec] = []
    renamed: dict[str, str] = {}
    for source_name, spec in dict(doc.get("attributes", {})).items():
        if isinstance(spec, str):
            column, kind = spec, None
        elif isinstance(spec, Mapping) and set(spec) <= {"column", "type"} and "column" in spec:
            column, kind = str(spec["column"]), spec.get("type")
        else:
            raise ConfigError(f"{origin} [attributes].{source_name}", 'expected "column" or {column=, type=}')
        if kind is not None and kind not in get_args(AttrType):
            raise ConfigError(
                f"{origin} [attributes].{source_name}",
                f"unknown type {kind!r}; expected one of {', '.join(get_args(AttrType))}",
            )
        name = sanitize_attribute_name(str(source_name))
        if name != source_name:
            renamed[str(source_name)] = name
        attributes.append(AttributeSpec(name=name, column=column, type=kind, source_name=str(source_name)))

    names = Counter(a.name for a in attributes)
    clashes = [n for n, c in names.items() if c > 1]
    if clashes:
        raise ConfigError(f"{origin} [attributes]", f"two attributes map to the same name: {', '.join(clashes)}")
    per_type = Counter(WIRE_TYPE[a.type] for a in attributes if a.type)
    over = {t: n for t, n in per_type.items() if n > MAX_PER_TYPE}
    if over:
        raise ConfigError(f"{origin} [attributes]", f"WebEngage allows {MAX_PER_TYPE} attributes per type: {over}")

    try:
        mapping = UserMapping(
            **{k: v for k, v in source.items() if k in _SOURCE_KEYS},
            **options,
            system=system,
            attributes=tuple(attributes),
            renamed=renamed,
        )
    except TypeError as exc:
        raise ConfigError(origin, str(exc)) from None
    if mapping.preset not in ("sql", "segment"):
        raise ConfigError(f"{origin} [source].preset", "expected sql or segment")
    if mapping.on_null not in get_args(NullPolicy):
        raise ConfigError(f"{origin} [options].on_null", "expected keep or clear")
    if mapping.duplicate_rule not in get_args(DuplicateRule):
        raise ConfigError(f"{origin} [options].duplicate_rule", "expected latest_updated_at or first_seen")
    if not 1 <= mapping.max_string_length <= 999:
        raise ConfigError(f"{origin} [options].max_string_length", "must be 1..999 (WebEngage: < 1,000 chars)")
    if mapping.chunk_rows < 1:
        raise ConfigError(f"{origin} [source].chunk_rows", "must be positive")
    return mapping


def complete_mapping(
    mapping: UserMapping,
    *,
    user_id: str,
    updated_at: str | None,
    system: Mapping[str, str],
    attributes: Mapping[str, str],
) -> UserMapping:
    """Fill a preset mapping from the columns found; entries written in the mapping file win."""
    doc: dict[str, Any] = {
        "system": {**system, **mapping.system},
        "attributes": {
            **{k: v for k, v in attributes.items() if v not in mapping.columns},
            **{a.source_name: {"column": a.column, **({"type": a.type} if a.type else {})} for a in mapping.attributes},
        },
    }
    rebuilt = user_mapping_from_dict(doc, origin="segment preset")
    return dataclasses.replace(
        mapping,
        user_id=user_id,
        updated_at=updated_at,
        system=rebuilt.system,
        attributes=rebuilt.attributes,
        renamed={**rebuilt.renamed, **mapping.renamed},
    )
