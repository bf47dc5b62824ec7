"""Warehouse event rows -> WebEngage event payloads. Pure functions over pandas DataFrames.

Input columns (the custom ``.sql`` source and the Segment preset produce the same shape):
``event_id``, ``user_id`` and/or ``anonymous_id``, ``event_name``, ``event_time``, optional ``received_at``
(arrival time; only used by the query's window), optional ``properties`` (JSON object), and any other
column as one more property.

Per chunk, vectorised where the data allows it:

1. :func:`transform_events` screens rows WebEngage would refuse or mis-attribute (one reason per row);
2. maps event names through the name table (Datafly defaults + the mapping file), then makes them
   WebEngage-safe (< 50 characters, no ``we_``);
3. builds ``eventData``: top-level property names renamed (``revenue`` -> ``amount``) or camelCased
   (``order_id`` -> ``orderId``), nested objects and arrays kept as they are, values coerced to wire types;
4. pins each attribute's type per event name in a :class:`TypeRegistry` (WebEngage fixes it on first
   send) and keeps at most 25 attributes per type per event name; a later value of another type is
   coerced to the pinned type or left out, never sent with the wrong type.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import orjson
import pandas as pd

from etl.errors import ConfigError
from etl.mappings.events import EventMapping
from etl.transform import formats
from etl.transform.event_names import camel_case
from etl.transform.formats import garbage
from etl.transform.formats.json_objects import all_finite
from etl.transform.users import DEFAULT_NULL_TOKENS, normalise_keys

WireType = Literal["string", "number", "boolean", "date", "object"]

MAX_ID_LENGTH: Final = 100  # WebEngage userId / anonymousId
MAX_EVENT_ID_LENGTH: Final = 255  # the ledger's key
MAX_PER_TYPE: Final = 25  # attributes of one type per event name
#: Columns with a meaning of their own; every other column is a property.
RESERVED_COLUMNS: Final = frozenset(
    {"event_id", "user_id", "anonymous_id", "event_name", "event_time", "received_at", "properties"}
)
_DATE_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{4}", re.ASCII)


# -- attribute types per event name ---------------------------------------------------------------
RegistryLoader = Callable[[str], Mapping[str, tuple[str, str]]]


def scope_of(event_name: str) -> str:
    """The attribute-registry scope of an event name's attributes."""
    return f"event:{event_name}"


class TypeRegistry:
    """Attribute types per event name: those pinned earlier (loaded lazily from the state store) and
    those pinned during this run (:meth:`take_pending` hands them over for registration)."""

    def __init__(self, loader: RegistryLoader, *, max_per_type: int = MAX_PER_TYPE) -> None:
        self._loader = loader
        self._max = max_per_type
        self._types: dict[str, dict[str, str]] = {}
        self._counts: dict[str, Counter[str]] = {}
        self._pending: dict[str, dict[str, str]] = {}

    def _scope(self, scope: str) -> tuple[dict[str, str], Counter[str]]:
        if scope not in self._types:
            known = {name: kind for name, (kind, _owner) in self._loader(scope).items()}
            self._types[scope] = known
            self._counts[scope] = Counter(known.values())
        return self._types[scope], self._counts[scope]

    def resolve(self, scope: str, name: str, kind: str) -> str | None:
        """The attribute's type (pinning ``kind`` if it is new); None when its type has no slot left."""
        types, counts = self._scope(scope)
        pinned = types.get(name)
        if pinned is not None:
            return pinned
        if counts[kind] >= self._max:
            return None
        types[name] = kind
        counts[kind] += 1
        self._pending.setdefault(scope, {})[name] = kind
        return kind

    def take_pending(self) -> dict[str, dict[str, str]]:
        pending, self._pending = self._pending, {}
        return pending


# -- values ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Wire:
    kind: str | None  # None: missing (left out silently) or dropped (reason set)
    value: Any = None
    reason: str | None = None
    trimmed: bool = False


_MISSING: Final = _Wire(None)


def _date_of(value: Any, source_tz: str) -> _Wire:
    result = formats.to_datetime_str(pd.Series([value], dtype=object), source_tz=source_tz)
    text = result.values.iloc[0]
    if text is pd.NA or text is None:
        return _Wire(None, reason=formats.INVALID_DATE)
    return _Wire("date", str(text))


def wire_value(value: Any, *, max_len: int = formats.STRING_MAX_LEN, source_tz: str = "UTC") -> _Wire:
    """One property value as WebEngage takes it: its wire type and value, missing, or dropped with a reason."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return _MISSING
    if isinstance(value, bool):
        return _Wire("boolean", value)
    if isinstance(value, int):
        if not -(2**63) <= value < 2**64:
            return _Wire(None, reason=formats.NUMBER_OUT_OF_RANGE)
        return _Wire("number", value)
    if isinstance(value, float | decimal.Decimal):
        if isinstance(value, decimal.Decimal) and value.is_nan():
            return _MISSING
        number = float(value)
        if math.isnan(number) and isinstance(value, float):
            return _MISSING
        if not math.isfinite(number):
            return _Wire(None, reason=formats.NON_FINITE_NUMBER)
        return _Wire("number", int(number) if isinstance(value, decimal.Decimal) and number.is_integer() else number)
    if isinstance(value, str):
        if _DATE_RE.fullmatch(value):
            return _Wire("date", value)
        if len(value) > max_len:
            return _Wire("string", value[:max_len], trimmed=True)
        return _Wire("string", value)
    if isinstance(value, dt.datetime | dt.date | np.datetime64):
        return _date_of(value, source_tz)
    if isinstance(value, np.ndarray | tuple):
        value = list(value.tolist() if isinstance(value, np.ndarray) else value)
    if isinstance(value, dict | list):
        try:
            orjson.dumps(value)
        except TypeError:
            return _Wire(None, reason=formats.INVALID_JSON)
        if not all_finite(value):
            return _Wire(None, reason=formats.NON_FINITE_NUMBER)
        return _Wire("object", value)
    return _Wire(None, reason="unsupported_value")


def convert(wire: _Wire, to: str, *, max_len: int = formats.STRING_MAX_LEN, source_tz: str = "UTC") -> Any:
    """``wire``'s value as type ``to`` (WebEngage fixed the attribute's type), or None when it cannot be."""
    kind, value = wire.kind, wire.value
    if to == "string":
        if kind == "boolean":
            return "true" if value else "false"
        if kind == "number":
            return str(value)
        if kind == "date":
            # The date format itself would read as a date: a space instead of the T keeps it a string.
            return str(value).replace("T", " ", 1)
        if kind == "object":
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()[:max_len]
        return None
    if to == "number":
        if kind == "string":
            try:
                number = float(str(value).strip())
            except ValueError:
                return None
            if not math.isfinite(number):
                return None
            return int(number) if number.is_integer() and abs(number) < 2**53 else number
        return None
    if to == "boolean":
        if kind == "string":
            return formats.bool_word(str(value))
        if kind == "number" and value in (0, 1):
            return bool(value)
        return None
    if to == "date":
        if kind == "string":
            parsed = _date_of(value, source_tz)
            return parsed.value if parsed.kind == "date" else None
        return None
    if to == "object" and kind == "string":
        try:
            parsed_json = orjson.loads(str(value))
        except orjson.JSONDecodeError:
            return None
        return parsed_json if isinstance(parsed_json, dict | list) and all_finite(parsed_json) else None
    return None


# -- the transform --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RowReject:
    """A whole event that does not go; ``event_id`` is None when the row has no usable id."""

    event_id: str | None
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class ValueDrop:
    """One property value left out of an event that still goes."""

    event_id: str
    column: str
    reason: str
    detail: str


@dataclass
class Transformed:
    event_ids: list[str] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[RowReject] = field(default_factory=list)
    drops: list[ValueDrop] = field(default_factory=list)
    trimmed: int = 0
    coerced: int = 0
    cleaned: int = 0  # keys and string values (also inside objects) that lost control characters
    renamed: dict[str, str] = field(default_factory=dict)  # source name -> name sent (events and properties)


class NameCache:
    """Per-run caches of event-name and property-name decisions (a few distinct names, many rows)."""

    def __init__(self, mapping: EventMapping) -> None:
        self.mapping = mapping
        self.events: dict[str, tuple[str | None, str | None]] = {}
        self.props: dict[str, str | None] = {}
        self.renamed: dict[str, str] = {}
        self.dirty: set[str] = set()  # source property names that lost control characters

    def event(self, raw: str) -> tuple[str | None, str | None]:
        """(WebEngage name, None) or (None, reject reason)."""
        found = self.events.get(raw)
        if found is None:
            target = self.mapping.names.lookup(raw)
            if target is None and self.mapping.drop_unmapped:
                found = (None, "unmapped_event")
            else:
                name = (target or raw).strip()
                safe = formats.sanitize_attribute_name(name)
                if safe != name:
                    self.renamed[name] = safe
                found = (safe, None)
            self.events[raw] = found
        return found

    def prop(self, source: str) -> str | None:
        """The eventData name of a top-level property; None for a name that cannot be sent (excluded, or blank
        once its control characters are removed: :meth:`blank` tells them apart)."""
        if source in self.props:
            return self.props[source]
        target: str | None = None
        base = garbage.clean_key(source)
        if base != source:
            self.dirty.add(source)
        if (
            source not in self.mapping.exclude_properties
            and base not in self.mapping.exclude_properties
            and base.strip()
        ):
            renamed = self.mapping.property_renames.get(base)
            wanted = renamed if renamed is not None else (camel_case(base) if self.mapping.camel_case else base)
            target = formats.sanitize_attribute_name(wanted) if wanted.strip() else None
            if target is not None and target != wanted:
                self.renamed[wanted] = target
        self.props[source] = target
        return target

    def blank(self, source: str) -> bool:
        """A property name with nothing left to send under (``""``, ``" "``, only control characters)."""
        return not garbage.clean_key(source).strip()


def _ids(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df:
        return pd.Series(pd.NA, index=df.index, dtype="string")
    return normalise_keys(df, column)


def _as_objects(col: pd.Series) -> list[Any]:
    return list(col.astype(object).where(col.notna(), None).tolist())


def _property_columns(
    df: pd.DataFrame, mapping: EventMapping, json_columns: frozenset[str]
) -> tuple[list[tuple[str, list[Any]]], list[tuple[str, pd.Series, pd.Series]]]:
    """Property columns as Python values (dates formatted, JSON parsed, vectorised per column), and the
    invalid masks of the columns coerced here (name, invalid, reasons)."""
    columns: list[tuple[str, list[Any]]] = []
    invalid: list[tuple[str, pd.Series, pd.Series]] = []
    for name in df.columns:
        if name in RESERVED_COLUMNS or name in mapping.exclude_properties:
            continue
        col = df[name]
        if name in json_columns:
            result = formats.to_json_object(col)
        elif pd.api.types.is_datetime64_any_dtype(col.dtype):
            result = formats.to_datetime_str(col, source_tz=mapping.source_timezone)
        else:
            columns.append((str(name), _as_objects(col)))
            continue
        if result.invalid.any():
            reasons = result.reasons if result.reasons is not None else pd.Series(result.reason, index=col.index)
            invalid.append((str(name), result.invalid, reasons))
        columns.append((str(name), _as_objects(result.values)))
    return columns, invalid


def transform_events(
    df: pd.DataFrame,
    mapping: EventMapping,
    registry: TypeRegistry,
    *,
    json_columns: frozenset[str] = frozenset(),
    names: NameCache | None = None,
    null_tokens: frozenset[str] = DEFAULT_NULL_TOKENS,
    now: dt.datetime | None = None,
    future_tolerance_s: float = 86_400.0,
) -> Transformed:
    """Screen, map and coerce one chunk of event rows into payloads (rows in input order).

    ``json_columns``: property columns holding JSON text to send as objects/arrays (``properties`` always is).
    ``names``: the run's name caches (see :func:`name_cache`), so renames are decided once per run.
    ``null_tokens``: ids and event names that are one of these are rejected, property values left out
    (unless the mapping's ``keep_null_like_values``); see :mod:`etl.transform.formats.garbage`.
    ``now``: the run's clock; an event later than ``now`` + ``future_tolerance_s`` is rejected
    (``event_time_in_future``). None: no such check.
    """
    for required in ("event_id", "event_name", "event_time"):
        if required not in df:
            raise ConfigError("events source", f"the query must return a column named {required}")
    if "user_id" not in df and "anonymous_id" not in df:
        raise ConfigError("events source", "the query must return user_id and/or anonymous_id")
    names = names or NameCache(mapping)
    out = Transformed()
    n = len(df)
    if n == 0:
        return out
    ids = _ids(df, "event_id")
    user_ids = _ids(df, "user_id")
    anon_ids = _ids(df, "anonymous_id")
    raw_names = df["event_name"].astype("string").str.strip()
    times = formats.to_datetime_str(df["event_time"], source_tz=mapping.source_timezone)

    reason = np.full(n, None, dtype=object)
    detail = np.full(n, "", dtype=object)
    rejected = np.zeros(n, dtype=bool)

    def mark(mask: pd.Series | np.ndarray, code: str, text: str) -> None:
        hit = np.asarray(mask, dtype=bool) & ~rejected
        reason[hit] = code
        detail[hit] = text
        rejected[hit] = True

    mark(ids.isna().to_numpy(dtype=bool), "missing_event_id", "no event id: exactly-once delivery needs one")
    mark(
        ids.str.len().fillna(0).to_numpy() > MAX_EVENT_ID_LENGTH,
        "event_id_too_long",
        f"event ids are kept up to {MAX_EVENT_ID_LENGTH} characters",
    )
    mark((user_ids.isna() & anon_ids.isna()).to_numpy(dtype=bool), "missing_id", "neither user_id nor anonymous_id")
    mark(
        user_ids.str.len().fillna(0).to_numpy() > MAX_ID_LENGTH,
        "user_id_too_long",
        f"WebEngage allows {MAX_ID_LENGTH} characters",
    )
    mark(
        anon_ids.str.len().fillna(0).to_numpy() > MAX_ID_LENGTH,
        "anonymous_id_too_long",
        f"WebEngage allows {MAX_ID_LENGTH} characters",
    )
    for id_col in (user_ids, anon_ids):
        mark(
            garbage.control_mask(id_col).to_numpy(dtype=bool),
            garbage.CONTROL_CHARACTER_IN_ID,
            "a user or anonymous id with a control character (an upstream bug?)",
        )
        mark(
            garbage.null_like_mask(id_col, null_tokens).to_numpy(dtype=bool),
            garbage.NULL_LIKE_ID,
            "a user or anonymous id that is a null-like token (str(None), NaN as text?)",
        )
    mark(
        (raw_names.isna() | raw_names.eq("")).to_numpy(dtype=bool, na_value=True), "missing_event_name", "no event name"
    )
    mark(
        garbage.control_mask(raw_names).to_numpy(dtype=bool),
        garbage.CONTROL_CHARACTER_IN_EVENT_NAME,
        "an event name with a control character (an upstream bug?)",
    )
    mark(
        garbage.null_like_mask(raw_names, null_tokens).to_numpy(dtype=bool),
        garbage.NULL_LIKE_EVENT_NAME,
        "an event name that is a null-like token (str(None), NaN as text, undefined?)",
    )
    mark(times.values.isna().to_numpy(dtype=bool), "invalid_event_time", "event time missing or not a date")
    if now is not None:
        limit = pd.Timestamp(now).tz_convert("UTC") if now.tzinfo else pd.Timestamp(now, tz="UTC")
        limit += pd.Timedelta(seconds=future_tolerance_s)
        when = pd.to_datetime(times.values.astype(object), format="%Y-%m-%dT%H:%M:%S%z", utc=True, errors="coerce")
        mark(
            np.asarray(when > limit, dtype=bool),
            garbage.EVENT_TIME_IN_FUTURE,
            f"event time over {future_tolerance_s:g} s after the run's clock (event_future_tolerance_s)",
        )

    # Event names: decided once per distinct name.
    name_list: list[Any] = raw_names.astype(object).where(raw_names.notna(), None).tolist()
    mapped: list[str | None] = [None] * n
    for i in np.flatnonzero(~rejected).tolist():
        target, problem = names.event(str(name_list[i]))
        if problem is not None:
            reason[i], rejected[i] = problem, True
            detail[i] = "event name not in the name table (drop_unmapped = true)"
        mapped[i] = target

    ok = ~rejected
    id_list = ids.astype(object).where(ids.notna(), None).tolist()
    for i in np.flatnonzero(~ok).tolist():
        out.rejects.append(RowReject(id_list[i], str(reason[i]), str(detail[i])))
    rows = np.flatnonzero(ok)
    if len(rows) == 0:
        out.renamed.update(names.renamed)
        return out

    kept = df.iloc[rows]
    json_columns = frozenset(json_columns) | frozenset(mapping.json_columns)
    columns, invalid_columns = _property_columns(kept, mapping, json_columns)
    blobs: list[Any] = [None] * len(rows)
    blob_invalid: np.ndarray = np.zeros(len(rows), dtype=bool)
    blob_reasons: list[Any] = [None] * len(rows)
    if "properties" in kept and "properties" not in mapping.exclude_properties:
        parsed = formats.to_json_object(kept["properties"])
        blobs = parsed.values.tolist()
        blob_invalid = parsed.invalid.to_numpy(dtype=bool)
        if parsed.reasons is not None:
            blob_reasons = parsed.reasons.astype(object).where(parsed.reasons.notna(), None).tolist()
    col_invalid = {name: (inv.to_numpy(dtype=bool), rs.astype(object).tolist()) for name, inv, rs in invalid_columns}

    uid_list = user_ids.iloc[rows].astype(object).where(user_ids.iloc[rows].notna(), None).tolist()
    aid_list = anon_ids.iloc[rows].astype(object).where(anon_ids.iloc[rows].notna(), None).tolist()
    time_list = times.values.iloc[rows].astype(object).tolist()
    max_len = mapping.max_string_length
    tz = mapping.source_timezone
    keep_null_like = mapping.keep_null_like_values

    for pos, i in enumerate(rows.tolist()):
        event_id = str(id_list[i])
        event_name = str(mapped[i])
        scope = scope_of(event_name)
        chosen: dict[str, tuple[str, _Wire]] = {}

        def drop(column: str, code: str, text: str, _event_id: str = event_id) -> None:
            out.drops.append(ValueDrop(_event_id, garbage.printable(column, 120), code, text))

        sources: list[tuple[str, Any]] = []
        blob = blobs[pos]
        if blob_invalid[pos]:
            drop("properties", str(blob_reasons[pos] or formats.INVALID_JSON), "properties left out; event sent")
        elif isinstance(blob, dict):
            sources.extend((str(k), v) for k, v in blob.items())
        elif blob is not None:
            drop("properties", "properties_not_object", "properties must be a JSON object; event sent")
        for name, values in columns:
            bad = col_invalid.get(name)
            if bad is not None and bad[0][pos]:
                drop(name, str(bad[1][pos]), "value left out; event sent")
                continue
            sources.append((name, values[pos]))

        for source, value in sources:
            target = names.prop(source)
            if target is None:
                if names.blank(source):
                    drop(
                        source or '""', garbage.EMPTY_PROPERTY_NAME, "a blank property name: value left out; event sent"
                    )
                continue
            if source in names.dirty:
                out.cleaned += 1
            if isinstance(value, str):
                text = garbage.clean_text(value)
                if text != value:
                    out.cleaned += 1
                    value = text
                if not keep_null_like and garbage.is_null_like(text, null_tokens):
                    drop(
                        source,
                        garbage.NULL_LIKE_VALUE,
                        f"a null-like token left out of eventData.{target} (keep_null_like_values = false); event sent",
                    )
                    continue
            wire = wire_value(value, max_len=max_len, source_tz=tz)
            if wire.kind is None:
                if wire.reason is not None:
                    drop(source, wire.reason, f"value left out of eventData.{target}; event sent")
                continue
            if wire.kind == "object":
                cleaned_value, n = garbage.clean_json(wire.value)
                out.cleaned += n
                size = garbage.json_size(cleaned_value)
                if size > garbage.OBJECT_MAX_BYTES:
                    drop(
                        source,
                        garbage.OBJECT_TOO_LARGE,
                        f"{size:,} bytes left out of eventData.{target}: "
                        f"WebEngage keeps objects up to {garbage.OBJECT_MAX_BYTES:,} bytes; event sent",
                    )
                    continue
                wire = _Wire("object", cleaned_value)
            previous = chosen.get(target)
            if previous is None or previous[0] == source:  # a column overrides the JSON key of its name
                chosen[target] = (source, wire)
            elif source == target:  # the property already named as sent wins over a renamed one
                drop(previous[0], "property_name_clash", f"{source} fills eventData.{target}")
                chosen[target] = (source, wire)
            else:
                drop(source, "property_name_clash", f"{previous[0]} already fills eventData.{target}")

        data: dict[str, Any] = {}
        for target, (source, wire) in chosen.items():
            assert wire.kind is not None
            pinned = registry.resolve(scope, target, wire.kind)
            if pinned is None:
                drop(source, "attribute_limit", f"{event_name} already has {MAX_PER_TYPE} {wire.kind} attributes")
                continue
            value = wire.value
            if pinned != wire.kind:
                value = convert(wire, pinned, max_len=max_len, source_tz=tz)
                if value is None:
                    drop(source, "type_mismatch", f"eventData.{target} is fixed as {pinned}, got {wire.kind}")
                    continue
                out.coerced += 1
            elif wire.trimmed:
                out.trimmed += 1
            data[target] = value

        payload: dict[str, Any] = {}
        if uid_list[pos] is not None:
            payload["userId"] = uid_list[pos]
        if aid_list[pos] is not None:
            payload["anonymousId"] = aid_list[pos]
        payload["eventName"] = event_name
        payload["eventTime"] = str(time_list[pos])
        if data:
            payload["eventData"] = data
        out.event_ids.append(event_id)
        out.payloads.append(payload)
    out.renamed.update(names.renamed)
    return out


def name_cache(mapping: EventMapping) -> NameCache:
    """Name decisions shared by every chunk of a run."""
    return NameCache(mapping)
