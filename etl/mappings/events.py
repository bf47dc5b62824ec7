"""The events mapping (``mappings/events.toml``): where events come from and how their names and properties
become WebEngage's. Every table reads ``source name = WebEngage name`` (``[event_names]``,
``[properties.rename]``), as in the users mapping."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import ConfigDict, Field

from etl.errors import ConfigError
from etl.mappings.base import ChunkRows, FileModel, MaxStringLength, Preset, QuerySource, TimeZone, read_toml, validate
from etl.resources import DEFAULT_EVENTS_MAPPING, user_file
from etl.transform.event_names import DEFAULT_PROPERTY_RENAMES, NameTable, default_name_table
from etl.transform.formats.core import STRING_MAX_LEN
from etl.transform.formats.names import attribute_name_problem

EventsEndpoint = Literal["bulk-events", "events"]
#: Which user an anonymous id seen with several user ids (a shared device) is merged into, if any.
SharedAnonymous = Literal["first", "last", "none"]

_LOOKBACK_RE: Final = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


@dataclass(frozen=True, kw_only=True)
class MergeConfig:
    """``[merges]``: anonymous -> known merges from identify data (off unless ``enabled``)."""

    enabled: bool = False
    preset: Preset = "segment"
    query: str = "merges/identify_pairs.sql"
    segment_schema: str = "segment"
    params: Mapping[str, Any] = field(default_factory=dict)
    shared_anonymous_id: SharedAnonymous = "first"
    chunk_rows: int = 50_000
    #: Only identifies that arrived this long before the run (None: the whole history).
    lookback: timedelta | None = None


@dataclass(frozen=True, kw_only=True)
class EventMapping:
    """Where events come from and how their names and properties become WebEngage's."""

    query: str = "events/events.sql"
    preset: Preset = "sql"
    segment_schema: str = "segment"
    params: Mapping[str, Any] = field(default_factory=dict)
    lookback: timedelta = timedelta(hours=2)
    chunk_rows: int = 50_000
    json_columns: tuple[str, ...] = ()
    endpoint: EventsEndpoint = "bulk-events"
    drop_unmapped: bool = False
    camel_case: bool = True
    source_timezone: str = "UTC"
    max_string_length: int = STRING_MAX_LEN
    keep_null_like_values: bool = False
    names: NameTable = field(default_factory=default_name_table)
    property_renames: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PROPERTY_RENAMES))
    exclude_properties: frozenset[str] = frozenset()
    merges: MergeConfig = field(default_factory=MergeConfig)


def parse_lookback(value: Any) -> timedelta:
    """``"2h"``, ``"90m"``, ``"1d"``, ``"30s"`` or a number of minutes."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return timedelta(minutes=value)
    match = _LOOKBACK_RE.match(str(value))
    if match is None:
        raise ConfigError("source.lookback", 'expected a duration such as "2h", "90m" or "1d"')
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


# -- the file -------------------------------------------------------------------------------------------
class EventsSource(QuerySource):
    """``[source]``: where event rows come from."""

    query: str = Field(default="events/events.sql", description="a file under sql/ (bound :start and :end), or a path")
    lookback: str | Annotated[int, Field(ge=0)] = Field(
        default="2h", description='the window starts this much earlier: "30s", "90m", "2h", "1d", or minutes'
    )
    chunk_rows: ChunkRows = 50_000
    json_columns: list[str] = Field(default_factory=list, description="property columns holding JSON text")


class EventsOptions(FileModel):
    """``[options]``: how events are sent."""

    endpoint: EventsEndpoint = Field(
        default="bulk-events", description="bulk-events: 25 per call; events: one per call"
    )
    drop_unmapped: bool = Field(default=False, description="true: events not in [event_names] are not sent")
    camel_case: bool = Field(default=True, description="top-level property names: order_id -> orderId")
    source_timezone: TimeZone = "UTC"
    max_string_length: MaxStringLength = STRING_MAX_LEN
    keep_null_like_values: bool = Field(
        default=False,
        description='true: send property values such as "null", "None", "nan" as they are (default: left out, '
        "reported as null_like_value; the tokens are the null_tokens setting)",
    )


class EventsProperties(FileModel):
    """``[properties]``: which properties are left out, and which are renamed."""

    exclude: list[str] = Field(default_factory=list, description="source property names never sent")
    rename: dict[str, str] = Field(
        default_factory=dict, description="source property name = eventData name (used as written)"
    )


class EventsMerges(FileModel):
    """``[merges]``: pairs of (anonymous id, user id) sent once each to /users, so WebEngage merges the
    anonymous profile (and the events tracked before login) into the known user."""

    enabled: bool = Field(default=False, description="true: `sync merges` (and the events DAG) send new pairs")
    preset: Preset = Field(
        default="segment", description="segment: identifies rows with both ids; sql: the query below"
    )
    query: str = Field(
        default="merges/identify_pairs.sql",
        description="a file under sql/ returning anonymous_id, user_id and optionally identified_at",
    )
    segment_schema: str = "segment"
    params: dict[str, Any] = Field(default_factory=dict, description="values for the query's :params (bound)")
    shared_anonymous_id: SharedAnonymous = Field(
        default="first",
        description="an anonymous id seen with several user ids (shared device): merge into the first "
        "identified, the last, or none; the others are reported as rejects",
    )
    chunk_rows: ChunkRows = 50_000
    lookback: str | Annotated[int, Field(ge=0)] = Field(
        default="",
        description='read only identifies that arrived this long before the run ("7d", "36h", or minutes); '
        "empty: the whole history (the first run must read it all)",
    )


class EventsFile(FileModel):
    """``mappings/events.toml``: every table reads ``source name = WebEngage name``."""

    model_config = ConfigDict(title="webengage-sync events mapping")

    source: EventsSource = EventsSource()
    options: EventsOptions = EventsOptions()
    event_names: dict[str, str] = Field(
        default_factory=dict, description="source event name = WebEngage event name (extends the defaults)"
    )
    properties: EventsProperties = EventsProperties()
    merges: EventsMerges = EventsMerges()


_REASONS: Final = {
    "lookback": 'expected a duration such as "2h", "90m" or "1d"',
    "chunk_rows": "must be positive",
    "max_string_length": "must be 1..999 (WebEngage: < 1,000 chars)",
}


def _merges(merges: EventsMerges, origin: str) -> MergeConfig:
    lookback = None
    if merges.lookback != "":
        try:
            lookback = parse_lookback(merges.lookback)
        except ConfigError as exc:
            raise ConfigError(f"{origin} [merges].lookback", exc.reason) from None
    return MergeConfig(**merges.model_dump(exclude={"lookback"}), lookback=lookback)


# -- loading --------------------------------------------------------------------------------------------
def load_event_mapping(path: str | Path = "") -> EventMapping:
    """Parse and validate an events mapping file (a path, a name under ``etl/defaults``, or "")."""
    path = user_file(path, DEFAULT_EVENTS_MAPPING)
    doc = read_toml(path, setting="events_mapping", missing="mapping file not found")
    return event_mapping_from_dict(doc, origin=str(path))


def event_mapping_from_dict(doc: Mapping[str, Any], *, origin: str = "events mapping") -> EventMapping:
    file = validate(EventsFile, doc, origin, reasons=_REASONS, nested=frozenset({"properties"}))
    for source_name, target in file.event_names.items():
        if not target.strip():
            raise ConfigError(f"{origin} [event_names].{source_name}", "the WebEngage name must not be empty")
    renames = {**DEFAULT_PROPERTY_RENAMES, **file.properties.rename}
    for source_name, target in renames.items():
        problem = attribute_name_problem(target)
        if problem is not None:
            raise ConfigError(f"{origin} [properties.rename].{source_name}", f"{target!r}: {problem}")
    try:
        lookback = parse_lookback(file.source.lookback)
    except ConfigError as exc:
        raise ConfigError(f"{origin} [source].lookback", exc.reason) from None
    return EventMapping(
        **file.source.model_dump(exclude={"lookback", "json_columns"}),
        lookback=lookback,
        json_columns=tuple(file.source.json_columns),
        **file.options.model_dump(),
        names=default_name_table(file.event_names),
        property_renames=renames,
        exclude_properties=frozenset(file.properties.exclude),
        merges=_merges(file.merges, origin),
    )
