"""The user mapping (``mappings/users.toml``): which column is the user id, which columns feed WebEngage's
system attributes, which become custom attributes (with optional explicit types).

Every table reads ``column = WebEngage destination``::

    [system_attributes]              # column = WebEngage system attribute
    first_name = "firstName"
    [custom_attributes]              # column = attribute name, or column = { name = ..., type = ... }
    plan = "plan"
    ltv = { name = "lifetime_value", type = "number" }
    orders_count = { type = "integer" }   # the name defaults to the column's

The old spelling (``[system]`` and ``[attributes]``, written ``destination = column``) still loads, with a
:class:`~etl.mappings.base.MappingFormatWarning` saying what to change; one file cannot mix both.

Validated once, before anything is read or sent: unknown keys, unknown types, or more than 25 attributes of
one type raise :class:`ConfigError`. Attribute names that WebEngage would silently ignore are renamed by
:func:`etl.transform.formats.sanitize_attribute_name`, and the renames reported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

from pydantic import ConfigDict, Field, model_validator

from etl.errors import ConfigError
from etl.mappings.base import (
    ChunkRows,
    FileModel,
    MaxStringLength,
    QuerySource,
    TimeZone,
    deprecated,
    read_toml,
    validate,
)
from etl.mappings.deletions import DeletionMode, DeletionRules, Deletions, rules_of
from etl.resources import DEFAULT_USERS_MAPPING, user_file
from etl.transform.formats.names import sanitize_attribute_name

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

SystemAttribute = Literal[
    "firstName",
    "lastName",
    "email",
    "phone",
    "birthDate",
    "gender",
    "company",
    "hashedEmail",
    "hashedPhone",
    "emailOptIn",
    "smsOptIn",
    "whatsappOptIn",
    "country",
    "city",
    "region",
    "locality",
    "postalCode",
]
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
assert tuple(SYSTEM_FIELDS) == get_args(SystemAttribute)

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
    keep_null_like_values: bool = False
    system: Mapping[str, str] = field(default_factory=dict)  # WebEngage field -> column
    attributes: tuple[AttributeSpec, ...] = ()
    renamed: Mapping[str, str] = field(default_factory=dict)  # source name -> WebEngage name
    deletions: DeletionRules = field(default_factory=DeletionRules)

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
        doc: dict[str, Any] = {
            "system": dict(self.system),
            "attributes": [(a.name, a.column, a.type) for a in self.attributes],
            "opts": [
                self.source_timezone,
                self.default_phone_region,
                self.phone_region_column,
                self.on_null,
                self.max_string_length,
            ],
        }
        if self.keep_null_like_values:  # only when set: the default keeps earlier fingerprints (no re-send)
            doc["opts"].append("keep_null_like_values")
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


# -- the file -------------------------------------------------------------------------------------------
class UsersSource(QuerySource):
    """``[source]``: where user rows come from."""

    query: str = Field(default="users/users.sql", description="a file under sql/, or a path")
    segment_table: Literal["users", "identifies"] = "users"
    user_id: str = Field(default="user_id", description="the column that becomes WebEngage's userId")
    updated_at: str | None = Field(default="updated_at", description="duplicate ids: the latest updated_at wins")
    chunk_rows: ChunkRows = 100_000


class UsersOptions(FileModel):
    """``[options]``: how values are read and written."""

    source_timezone: TimeZone = "UTC"
    default_phone_region: str = Field(default="IN", description="region of local phone numbers (ISO 3166 alpha-2)")
    phone_region_column: str | None = Field(default=None, description="per-row ISO2 region for local numbers")
    on_null: NullPolicy = Field(
        default="keep", description='keep: a NULL leaves WebEngage\'s value; clear: send "", 0, false'
    )
    duplicate_rule: DuplicateRule = "latest_updated_at"
    max_string_length: MaxStringLength = 999
    keep_null_like_values: bool = Field(
        default=False,
        description='true: send string values such as "null", "None", "nan" as they are (default: left out, '
        "reported as null_like_value; the tokens are the null_tokens setting)",
    )


class CustomAttribute(FileModel):
    """A custom attribute's name (default: the column's) and type (default: inferred from the column)."""

    name: str | None = None
    type: AttrType | None = None

    @model_validator(mode="before")
    @classmethod
    def _not_the_old_table(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "column" in data:
            raise ValueError(
                "the old { column = ..., type = ... } form: in [custom_attributes] the key is the column, "
                'so write column = { name = "attribute", type = "..." }'
            )
        return data


class LegacyAttribute(FileModel):
    """Old ``[attributes]`` entry: ``name = { column = ..., type = ... }``."""

    column: str
    type: AttrType | None = None


class UsersFile(FileModel):
    """``mappings/users.toml``: every table reads ``column = WebEngage destination``."""

    model_config = ConfigDict(title="webengage-sync users mapping")

    source: UsersSource = UsersSource()
    options: UsersOptions = UsersOptions()
    system_attributes: dict[str, SystemAttribute] = Field(
        default_factory=dict, description='column = WebEngage system attribute, e.g. first_name = "firstName"'
    )
    custom_attributes: dict[str, str | CustomAttribute] = Field(
        default_factory=dict,
        description='column = attribute name, or column = { name = "...", type = "number" } (both optional)',
    )
    deletions: DeletionMode | Deletions = Field(
        default="ignore",
        description='users deleted in the warehouse: "ignore" (default), "erase", or a [deletions] table',
    )
    system: dict[str, str] | None = Field(
        default=None,
        description="old spelling (field = column): use [system_attributes]",
        json_schema_extra={"deprecated": True},
    )
    attributes: dict[str, str | LegacyAttribute] | None = Field(
        default=None,
        description="old spelling (name = column): use [custom_attributes]",
        json_schema_extra={"deprecated": True},
    )


_REASONS: Final = {
    "chunk_rows": "must be positive",
    "max_string_length": "must be 1..999 (WebEngage: < 1,000 chars)",
    "attributes": 'expected "column" or {column=, type=}',
    "custom_attributes": 'expected "name" or { name = ..., type = ... }',
    "system_attributes.*": "not a WebEngage system attribute (custom ones go under [custom_attributes]); expected "
    + ", ".join(SYSTEM_FIELDS),
}
_SYSTEM_OLD: Final = (
    "[system] is the old direction (WebEngage field = column): rename it [system_attributes] and write each line "
    'column = field, e.g. first_name = "firstName"'
)
_ATTRIBUTES_OLD: Final = (
    "[attributes] is the old direction (name = column): rename it [custom_attributes] and write each line "
    'column = name, e.g. plan_code = "plan"; name = { column = "c", type = "t" } becomes '
    'c = { name = "name", type = "t" } (name may be left out when it is the column\'s)'
)


# -- loading --------------------------------------------------------------------------------------------
def load_user_mapping(path: str | Path = "") -> UserMapping:
    """Parse and validate a mapping file: a path, a name under ``etl/defaults`` or "" for the packaged one."""
    path = user_file(path, DEFAULT_USERS_MAPPING)
    doc = read_toml(path, setting="users_mapping", missing="mapping file not found")
    return user_mapping_from_dict(doc, origin=str(path))


def user_mapping_from_dict(doc: Mapping[str, Any], *, origin: str = "mapping") -> UserMapping:
    file = validate(UsersFile, doc, origin, reasons=_REASONS)
    system = _system(file, origin)
    attributes, renamed = _attribute_specs(_attribute_entries(file, origin), origin)
    return UserMapping(
        **file.source.model_dump(),
        **file.options.model_dump(),
        system=system,
        attributes=attributes,
        renamed=renamed,
        deletions=rules_of(file.deletions),
    )


def _system(file: UsersFile, origin: str) -> dict[str, str]:
    """WebEngage system field -> column, in the file's order."""
    if file.system is not None:
        if file.system_attributes:
            raise ConfigError(f"{origin} [system]", f"old and new spelling in one file: {_SYSTEM_OLD}")
        bad_fields = set(file.system) - set(SYSTEM_FIELDS)
        if bad_fields:
            raise ConfigError(
                f"{origin} [system]",
                f"not WebEngage system fields: {', '.join(sorted(bad_fields))} (custom ones go under [attributes])",
            )
        deprecated(origin, _SYSTEM_OLD)
        return dict(file.system)
    by_field: dict[str, list[str]] = {}
    for column, target in file.system_attributes.items():
        by_field.setdefault(target, []).append(column)
    twice = {f: cols for f, cols in by_field.items() if len(cols) > 1}
    if twice:
        shown = "; ".join(f"{f} from {', '.join(cols)}" for f, cols in twice.items())
        raise ConfigError(f"{origin} [system_attributes]", f"one column per system attribute: {shown}")
    return {target: column for column, target in file.system_attributes.items()}


#: One custom attribute as written: the name asked for -> (column, type).
_Entries = dict[str, tuple[str, AttrType | None]]


def _attribute_entries(file: UsersFile, origin: str) -> _Entries:
    if file.attributes is not None:
        if file.custom_attributes:
            raise ConfigError(f"{origin} [attributes]", f"old and new spelling in one file: {_ATTRIBUTES_OLD}")
        deprecated(origin, _ATTRIBUTES_OLD)
        return {
            name: (spec, None) if isinstance(spec, str) else (spec.column, spec.type)
            for name, spec in file.attributes.items()
        }
    entries: _Entries = {}
    for column, spec in file.custom_attributes.items():
        name, kind = (spec, None) if isinstance(spec, str) else (spec.name or column, spec.type)
        if name in entries:
            raise ConfigError(f"{origin} [custom_attributes].{column}", f"attribute {name} is already filled")
        entries[name] = (column, kind)
    return entries


def _attribute_specs(entries: _Entries, origin: str) -> tuple[tuple[AttributeSpec, ...], dict[str, str]]:
    """The attributes with WebEngage-safe names, and the renames; refuses clashes and more than 25 a type."""
    attributes: list[AttributeSpec] = []
    renamed: dict[str, str] = {}
    for source_name, (column, kind) in entries.items():
        name = sanitize_attribute_name(source_name)
        if name != source_name:
            renamed[source_name] = name
        attributes.append(AttributeSpec(name=name, column=column, type=kind, source_name=source_name))
    names = Counter(a.name for a in attributes)
    clashes = [n for n, c in names.items() if c > 1]
    if clashes:
        raise ConfigError(f"{origin} [attributes]", f"two attributes map to the same name: {', '.join(clashes)}")
    per_type = Counter(WIRE_TYPE[a.type] for a in attributes if a.type)
    over = {t: n for t, n in per_type.items() if n > MAX_PER_TYPE}
    if over:
        raise ConfigError(f"{origin} [attributes]", f"WebEngage allows {MAX_PER_TYPE} attributes per type: {over}")
    return tuple(attributes), renamed


def complete_mapping(
    mapping: UserMapping,
    *,
    user_id: str,
    updated_at: str | None,
    system: Mapping[str, str],
    attributes: Mapping[str, str],
) -> UserMapping:
    """Fill a preset mapping from the columns found (``system``: field -> column, ``attributes``: name ->
    column); entries written in the mapping file win."""
    own: _Entries = {a.source_name: (a.column, a.type) for a in mapping.attributes}
    found: _Entries = {k: (v, None) for k, v in attributes.items() if v not in mapping.columns}
    specs, renamed = _attribute_specs({**found, **own}, "segment preset")
    return dataclasses.replace(
        mapping,
        user_id=user_id,
        updated_at=updated_at,
        system={**system, **mapping.system},
        attributes=specs,
        renamed={**renamed, **mapping.renamed},
    )
