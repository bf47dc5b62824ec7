"""Warehouse user rows -> WebEngage user payloads. Pure functions over pandas DataFrames.

The flow per chunk keeps the expensive work on the rows that changed:

1. :func:`screen_keys` rejects rows WebEngage would refuse or mis-attribute (no user id, id over 100
   characters) and :func:`dedupe` keeps one deterministic winner per user id;
2. :func:`row_hashes` hashes the *source* values of the mapped columns (vectorised), salted with the
   mapping fingerprint and the pinned attribute types, so the diff against the state store happens
   before any coercion;
3. :func:`build_payloads` coerces and assembles payloads only for new or changed rows.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from etl.engine.rejects import RejectRow
from etl.errors import ConfigError
from etl.mappings.users import MAX_PER_TYPE, SYSTEM_FIELDS, WIRE_TYPE, AttrType, UserMapping
from etl.transform import formats
from etl.transform.formats import garbage

MAX_ID_LENGTH: Final = 100
#: The default ``null_tokens`` as compared (the pipeline passes the setting's).
DEFAULT_NULL_TOKENS: Final = garbage.null_tokens()

#: Value a "clear" null policy sends per field kind (WebEngage has no unset). Kinds absent here
#: (phone, birth date, gender, date, json) have no valid empty value and are kept as they are.
_CLEAR_VALUE: Final[dict[str, Any]] = {"string": "", "email": "", "number": 0, "integer": 0, "boolean": False}


@dataclass
class TransformStats:
    """Value-level counts (rows are counted by the pipeline)."""

    trimmed: Counter[str] = field(default_factory=Counter)  # column -> values cut to < 1,000 chars
    coerced: Counter[str] = field(default_factory=Counter)  # column -> values normalised
    dropped: Counter[str] = field(default_factory=Counter)  # reason -> invalid values left out
    cleared: int = 0
    cleaned: int = 0  # values (and JSON keys/strings inside them) that lost control characters

    def merge(self, other: TransformStats) -> None:
        self.trimmed.update(other.trimmed)
        self.coerced.update(other.coerced)
        self.dropped.update(other.dropped)
        self.cleared += other.cleared
        self.cleaned += other.cleaned


# -- keys and duplicates --------------------------------------------------------------------------
def normalise_keys(df: pd.DataFrame, column: str) -> pd.Series:
    """User ids as stripped strings; missing stays missing. Numbers become their integer text."""
    raw = df[column]
    if pd.api.types.is_float_dtype(raw.dtype):
        whole = raw.dropna()
        if (whole == whole.round()).all():
            raw = raw.astype("Int64")
    keys = raw.astype("string").str.strip()
    return keys.mask(keys == "")


def screen_keys(
    df: pd.DataFrame, keys: pd.Series, mapping: UserMapping, *, null_tokens: frozenset[str] = DEFAULT_NULL_TOKENS
) -> tuple[pd.Series, list[RejectRow]]:
    """A boolean mask of rows with a usable user id, and the rejects for the others.

    Besides missing and over-long ids, an id that is a null-like token (``"null"``, ``"None"``, ``"nan"``:
    upstream bugs, see :mod:`etl.transform.formats.garbage`) or holds a control character is refused: WebEngage
    would keep that profile forever. Those rows are keyed by their position (``row:N``), as missing ids are."""
    rejects: list[RejectRow] = []
    missing = keys.isna()
    too_long = keys.str.len().fillna(0) > MAX_ID_LENGTH
    control = garbage.control_mask(keys) & ~missing
    null_like = garbage.null_like_mask(keys, null_tokens) & ~missing & ~control
    for mask, reason, what in (
        (null_like, garbage.NULL_LIKE_ID, "a null-like token"),
        (control, garbage.CONTROL_CHARACTER_IN_ID, "a control character"),
    ):
        for idx in df.index[mask]:
            shown = garbage.printable(str(keys.at[idx]))
            rejects.append(
                RejectRow(
                    row_key=f"row:{idx}",
                    column=mapping.user_id,
                    reason=reason,
                    detail=f"user id {shown!r} is {what} (an upstream bug?); not sent as a profile",
                )
            )
    too_long &= ~(null_like | control)
    for idx in df.index[missing]:
        rejects.append(
            RejectRow(
                row_key=f"row:{idx}",
                column=mapping.user_id,
                reason="missing_user_id",
                detail="no user id (anonymous-only rows are not synced as profiles)",
            )
        )
    for idx in df.index[too_long]:
        key = str(keys.at[idx])
        rejects.append(
            RejectRow(
                row_key=key[:60] + "…",
                column=mapping.user_id,
                reason="user_id_too_long",
                detail=f"{len(key)} characters; WebEngage allows {MAX_ID_LENGTH}",
            )
        )
    return ~(missing | too_long | null_like | control), rejects


def dedupe(
    df: pd.DataFrame, keys: pd.Series, hashes: pd.Series, mapping: UserMapping
) -> tuple[pd.Series, list[RejectRow]]:
    """Keep one row per user id: latest ``updated_at`` (then highest row hash, so the winner does not
    depend on read order), or the first row seen. Returns a keep-mask and rejects for the losers."""
    dup = keys.duplicated(keep=False)
    keep = pd.Series(True, index=df.index)
    if not dup.any():
        return keep, []
    order = pd.DataFrame({"key": keys[dup], "hash": hashes[dup]})
    ascending = [True]
    by = ["key"]
    if mapping.duplicate_rule == "latest_updated_at" and mapping.updated_at and mapping.updated_at in df:
        order["updated"] = pd.to_datetime(df.loc[dup, mapping.updated_at], errors="coerce", utc=True)
        by.append("updated")
        ascending.append(False)
    else:
        order["pos"] = np.arange(len(order))
        by.append("pos")
        ascending.append(True)
    by.append("hash")
    ascending.append(False)
    ranked = order.sort_values(by, ascending=ascending, na_position="last", kind="mergesort")
    losers = ranked.index[ranked["key"].duplicated(keep="first")]
    keep[losers] = False
    return keep, [duplicate_reject(str(keys.at[i]), mapping) for i in losers]


def duplicate_reject(user_id: str, mapping: UserMapping) -> RejectRow:
    """The reject of a row that lost to another row of its id."""
    return RejectRow(
        row_key=user_id,
        column=mapping.user_id,
        reason="duplicate_user_id",
        detail=f"another row for this id won ({mapping.duplicate_rule})",
    )


# -- hashing --------------------------------------------------------------------------------------
# Each mapped column adds a keyed 64-bit contribution per row; a missing value adds nothing, so a row's
# hash depends on its own values only (never on which other rows share its chunk). Typed columns hash
# their canonical bits with numpy; the text-like columns of a row are concatenated by Arrow and hashed
# once per row with xxh3 (their byte lengths go in as typed values). No per-value Python conversions.
_U64 = npt.NDArray[np.uint64]
_TAG_NUMBER: Final = 0x6E756D6265720001
_TAG_BIG_INT: Final = 0x6269676E756D0002
_TAG_BOOL: Final = 0x626F6F6C65610003
_TAG_TIME: Final = 0x74696D6573740004
_TAG_DATE: Final = 0x6461746573740005
_TAG_TEXT: Final = 0x746578746C656E06
_EMPTY: Final = pa.scalar("", pa.large_string())
_EXACT_INT: Final = 2**53  # integers up to here are exact in float64, so 5 and 5.0 hash alike


def _mix64(x: _U64) -> _U64:
    """splitmix64's finaliser, vectorised (uint64 arithmetic wraps)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _keyed(bits: _U64, tag: int, key: int) -> _U64:
    return _mix64(bits ^ np.uint64(tag ^ key))


@dataclass(frozen=True)
class _Typed:
    bits: _U64
    missing: npt.NDArray[np.bool_]
    tag: int


def _number(values: npt.NDArray[Any], missing: npt.NDArray[np.bool_]) -> _Typed:
    """Numbers by value: float64 bits (-0.0 and 0.0 alike), integers beyond 2**53 by their own bits."""
    if values.dtype.kind in "iu":
        ints = values.astype(np.int64, copy=False)
        floats = ints.astype(np.float64)
        big = (ints > _EXACT_INT) | (ints < -_EXACT_INT)
        bits = np.where(big, ints.view(np.uint64) ^ np.uint64(_TAG_BIG_INT), floats.view(np.uint64))
        return _Typed(bits=bits, missing=missing, tag=_TAG_NUMBER)
    floats = values.astype(np.float64) + 0.0  # + 0.0 turns -0.0 into 0.0
    return _Typed(bits=floats.view(np.uint64), missing=missing | np.isnan(floats), tag=_TAG_NUMBER)


def _datetimes(col: pd.Series) -> _Typed:
    if isinstance(col.dtype, pd.DatetimeTZDtype):
        col = col.dt.tz_convert("UTC").dt.tz_localize(None)
    micros = col.to_numpy(dtype="datetime64[us]").view(np.int64)
    return _Typed(bits=micros.view(np.uint64), missing=col.isna().to_numpy(), tag=_TAG_TIME)


def _is_string_view(kind: pa.DataType) -> bool:
    check = getattr(pa.types, "is_string_view", None)  # pyarrow >= 16
    return bool(check(kind)) if check is not None else False


def _from_arrow(arr: pa.Array) -> _Typed | pa.Array | None:
    """Typed bits or text for an Arrow array; None when the type has no canonical form here."""
    kind = arr.type
    missing = arr.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or _is_string_view(kind):
        return arr.cast(pa.large_string())  # one text type for the row join, whatever the reader gave
    if pa.types.is_null(kind):
        return _Typed(bits=np.zeros(len(arr), np.uint64), missing=missing, tag=0)
    if pa.types.is_boolean(kind):
        bits = arr.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint64)
        return _Typed(bits=bits, missing=missing, tag=_TAG_BOOL)
    if pa.types.is_integer(kind):
        return _number(arr.fill_null(0).to_numpy(), missing)
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        # Decimals go out as JSON numbers (doubles): hash what can change the payload.
        floats = pc.cast(arr, pa.float64(), safe=False).fill_null(0.0).to_numpy()
        return _number(floats, missing)
    if pa.types.is_date(kind):
        days = pc.cast(arr, pa.date32()).cast(pa.int32()).fill_null(0).to_numpy().astype(np.uint64)
        return _Typed(bits=days, missing=missing, tag=_TAG_DATE)
    if pa.types.is_timestamp(kind):
        micros = pc.cast(arr, pa.timestamp("us", kind.tz), safe=False).cast(pa.int64()).fill_null(0)
        return _Typed(bits=micros.to_numpy().view(np.uint64), missing=missing, tag=_TAG_TIME)
    return None


def _missing_scalar(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float | np.floating) and v != v)


def _as_text(values: npt.NDArray[Any]) -> pa.Array:
    """Per-value text for what has no typed form: dict/list as sorted JSON, anything else ``str``."""
    out: list[str | None] = []
    for v in values.tolist():
        if _missing_scalar(v):
            out.append(None)
        elif isinstance(v, dict | list):
            out.append(orjson.dumps(v, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode())
        else:
            out.append(str(v))
    return pa.array(out, type=pa.large_string())


def _column_part(col: pd.Series) -> _Typed | pa.Array:
    """A column as typed bits (numbers, booleans, times, dates) or as an Arrow text array."""
    dtype = col.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        col, dtype = col.astype(object), np.dtype(object)
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return _datetimes(col)
    if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
        missing = col.isna().to_numpy()
        if pd.api.types.is_bool_dtype(dtype):
            bits = col.to_numpy(dtype=np.bool_, na_value=False).astype(np.uint64)
            return _Typed(bits=bits, missing=missing, tag=_TAG_BOOL)
        if pd.api.types.is_integer_dtype(dtype):
            return _number(col.to_numpy(dtype=np.int64, na_value=0), missing)
        return _number(col.to_numpy(dtype=np.float64, na_value=np.nan), missing)
    if isinstance(dtype, (pd.StringDtype, pd.ArrowDtype)):
        arr = pa.array(col.array)
        arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
        part = _from_arrow(arr)
        return part if part is not None else _as_text(col.to_numpy(dtype=object))
    values = col.to_numpy(dtype=object)
    first = next((v for v in values[:64].tolist() if not _missing_scalar(v)), None)
    if isinstance(first, Decimal):
        # Decimal.__float__ in C is ~30x faster than Arrow's inference over Decimal objects.
        missing = np.asarray(pd.isna(values), dtype=bool)
        try:
            return _number(np.where(missing, 0.0, values).astype(np.float64), missing)
        except (TypeError, ValueError):
            pass  # something else mixed in: the generic path below decides
    if not isinstance(first, dict | list):
        try:
            part = _from_arrow(pa.array(values, from_pandas=True))
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            part = None  # mixed types in one column: hash their text
        if part is not None:
            return part
    return _as_text(values)


def row_hashes(df: pd.DataFrame, mapping: UserMapping, salt: str) -> pd.Series:
    """A signed 64-bit hash per row of the mapped source columns, salted (mapping, types)."""
    seed = hashlib.sha256(salt.encode()).digest()
    total = np.full(len(df), int.from_bytes(seed[:8], "little"), dtype=np.uint64)
    texts: list[pa.Array] = []
    for column in mapping.columns:
        key = int.from_bytes(hashlib.sha256(seed + column.encode()).digest()[:8], "little")
        part = _column_part(df[column])
        if not isinstance(part, _Typed):
            # Text joins the row's text below; its byte length (kept here, per column) makes the
            # concatenation injective, and a missing value adds neither length nor text.
            texts.append(part)
            length = pc.binary_length(part)
            part = _Typed(
                bits=length.fill_null(0).to_numpy().astype(np.uint64),
                missing=length.is_null().to_numpy(zero_copy_only=False),
                tag=_TAG_TEXT,
            )
        contribution = _keyed(part.bits, part.tag, key)
        contribution[part.missing] = 0
        total += contribution
    if texts:
        joined = pc.binary_join_element_wise(*texts, _EMPTY, null_handling="replace", null_replacement="")
        text_seed = int.from_bytes(seed[8:16], "little")
        digest = xxhash.xxh3_64_intdigest
        rows = joined.cast(pa.large_binary()).to_numpy(zero_copy_only=False).tolist()
        total += np.fromiter((digest(b, text_seed) for b in rows), dtype=np.uint64, count=len(rows))
    return pd.Series(_mix64(total).view(np.int64), index=df.index)


# -- types ----------------------------------------------------------------------------------------
def infer_type(col: pd.Series) -> AttrType:
    """A column's attribute type from its dtype (stable per query), never from individual values."""
    dtype = col.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "number"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "date"
    sample = col.dropna()
    if not sample.empty:
        first = sample.iloc[0]
        if isinstance(first, bool | np.bool_):
            return "boolean"
        if isinstance(first, dict | list):
            return "json"
        if isinstance(first, Decimal | int | float):
            return "number"
        if isinstance(first, dt.date):
            return "date"
    return "string"


_FROM_WIRE: Final[dict[str, AttrType]] = {
    "string": "string",
    "number": "number",
    "boolean": "boolean",
    "date": "date",
    "object": "json",
}


def resolve_types(
    mapping: UserMapping, sample: pd.DataFrame, registry: Mapping[str, tuple[str, str]]
) -> tuple[dict[str, AttrType], dict[str, str], list[str]]:
    """Effective type per attribute: the registry's (WebEngage fixed it at first send) over the
    mapping's explicit type over the inferred one. Returns (types, new registrations, notes).

    Raises ConfigError when new attributes would exceed WebEngage's 25 per type for the account."""
    types: dict[str, AttrType] = {}
    new: dict[str, str] = {}
    notes: list[str] = []
    for spec in mapping.attributes:
        if spec.column not in sample:
            raise ConfigError(f"attributes.{spec.source_name}", f"column {spec.column!r} is not in the query result")
        wanted: AttrType = spec.type or infer_type(sample[spec.column])
        pinned = registry.get(spec.name)
        if pinned is not None:
            fixed = _FROM_WIRE.get(pinned[0], "string")
            if WIRE_TYPE[wanted] != pinned[0]:
                notes.append(f"attribute {spec.name} is pinned to {pinned[0]} (first sent as that); coercing")
                wanted = fixed
        else:
            new[spec.name] = WIRE_TYPE[wanted]
        types[spec.name] = wanted
    used = Counter(t for t, _owner in registry.values())
    used.update(new.values())
    over = {t: n for t, n in used.items() if n > MAX_PER_TYPE}
    if over:
        raise ConfigError(
            "attributes",
            f"WebEngage keeps at most {MAX_PER_TYPE} user attributes per type; this mapping would need {over} "
            "(counting attributes already registered, cohorts included). Remove some or retire cohorts.",
        )
    return types, new, notes


def types_salt(
    mapping: UserMapping, types: Mapping[str, AttrType], *, null_tokens: frozenset[str] = DEFAULT_NULL_TOKENS
) -> str:
    salt = mapping.fingerprint() + "|" + ",".join(f"{k}:{v}" for k, v in sorted(types.items()))
    if null_tokens != DEFAULT_NULL_TOKENS:  # other tokens change payloads; the default keeps earlier hashes
        salt += "|null_tokens:" + ",".join(sorted(null_tokens))
    return salt


# -- coercion and payloads ------------------------------------------------------------------------
@dataclass(frozen=True)
class Built:
    payloads: list[dict[str, Any]]
    masks: list[str]
    rejects: list[RejectRow]
    stats: TransformStats


def _coerce(kind: str, col: pd.Series, df: pd.DataFrame, mapping: UserMapping, today: dt.date) -> formats.Coerced:
    if kind in ("string",):
        return formats.to_string(col, max_len=mapping.max_string_length)
    if kind == "email":
        return formats.to_email(col)
    if kind == "phone":
        region = df[mapping.phone_region_column] if mapping.phone_region_column else None
        return formats.to_e164(col, default_region=mapping.default_phone_region, region=region)
    if kind == "birth_date":
        return formats.to_birth_date_str(col, today=today)
    if kind == "gender":
        return formats.to_gender(col)
    if kind == "boolean":
        return formats.to_bool(col)
    if kind == "number":
        return formats.to_number(col)
    if kind == "integer":
        return formats.to_number(col, integer=True)
    if kind == "date":
        return formats.to_datetime_str(col, source_tz=mapping.source_timezone)
    if kind == "json":
        return formats.to_json_object(col)
    raise AssertionError(kind)


def _plain(value: Any) -> Any:
    """numpy scalars to Python for orjson; missing to None."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


def _plain_list(values: pd.Series) -> list[Any]:
    """A coerced column as plain Python values for orjson (missing as None), converted in one go."""
    if values.dtype == object:
        return [_plain(v) for v in values.tolist()]
    out: list[Any] = values.to_numpy(dtype=object, na_value=None).tolist()  # type: ignore[call-overload]
    return out


def _rows(columns: Sequence[list[Any]], n: int) -> Iterable[tuple[Any, ...]]:
    return zip(*columns, strict=True) if columns else itertools.repeat((), n)


def _assemble(
    key_list: list[Any], fields: Sequence[str], columns: Sequence[list[Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Payloads and masks when nulls are kept: a missing value is simply left out."""
    n_system = sum(1 for f in fields if not f.startswith("attributes."))
    system_names, attr_names = fields[:n_system], [f[11:] for f in fields[n_system:]]
    payloads: list[dict[str, Any]] = []
    rows = zip(
        key_list, _rows(columns[:n_system], len(key_list)), _rows(columns[n_system:], len(key_list)), strict=True
    )
    for user_id, system_values, attr_values in rows:
        payload: dict[str, Any] = {"userId": user_id}
        payload.update({k: v for k, v in zip(system_names, system_values, strict=True) if v is not None})
        attrs = {k: v for k, v in zip(attr_names, attr_values, strict=True) if v is not None}
        if attrs:
            payload["attributes"] = attrs
        payloads.append(payload)
    if not columns or not key_list:
        return payloads, ["" for _ in key_list]
    # One byte per field ("0"/"1") per row, built as a 2-D array and read back as fixed-width strings.
    present = np.empty((len(key_list), len(columns)), dtype=np.uint8)
    for pos, col in enumerate(columns):
        present[:, pos] = np.fromiter((v is not None for v in col), dtype=bool, count=len(col))
    text = (present + ord("0")).view(f"S{len(columns)}").ravel()
    return payloads, text.astype(f"U{len(columns)}").tolist()


def _assemble_clearing(
    key_list: list[Any],
    fields: Sequence[str],
    kinds: Sequence[str],
    columns: Sequence[list[Any]],
    previous_masks: Sequence[str | None],
    stats: TransformStats,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Payloads and masks under the "clear" policy: a value sent before and now missing is cleared."""
    payloads: list[dict[str, Any]] = []
    masks: list[str] = []
    for row, user_id in enumerate(key_list):
        payload: dict[str, Any] = {"userId": user_id}
        attrs: dict[str, Any] = {}
        prev = previous_masks[row]
        prev_ok = prev is not None and len(prev) == len(fields)
        mask_bits = []
        for pos, fieldname in enumerate(fields):
            value = columns[pos][row]
            if value is None and prev_ok and prev is not None and prev[pos] == "1":
                value = _CLEAR_VALUE.get(kinds[pos])
                if value is not None:
                    stats.cleared += 1
                    mask_bits.append("0")
                else:
                    mask_bits.append("1")  # nothing valid to clear with: WebEngage keeps the old value
                    continue
            else:
                mask_bits.append("0" if value is None else "1")
            if value is None:
                continue
            if fieldname.startswith("attributes."):
                attrs[fieldname[11:]] = value
            else:
                payload[fieldname] = value
        if attrs:
            payload["attributes"] = attrs
        payloads.append(payload)
        masks.append("".join(mask_bits))
    return payloads, masks


def build_payloads(
    df: pd.DataFrame,
    keys: pd.Series,
    mapping: UserMapping,
    types: Mapping[str, AttrType],
    previous_masks: Sequence[str | None],
    *,
    today: dt.date,
    null_tokens: frozenset[str] = DEFAULT_NULL_TOKENS,
) -> Built:
    """Coerce the mapped columns of ``df`` (changed rows only) and assemble one payload per row.

    String values lose their control characters (counted in ``stats.cleaned``); one that is a null-like
    token is left out (``null_like_value``) unless the mapping's ``keep_null_like_values``. The JSON
    attributes of one profile together stay within WebEngage's 16 KB (``object_too_large``, largest left out
    first)."""
    stats = TransformStats()
    rejects: list[RejectRow] = []
    targets: list[tuple[str, str, str]] = [(f, c, SYSTEM_FIELDS[f]) for f, c in mapping.system.items()]
    targets += [(f"attributes.{a.name}", a.column, types[a.name]) for a in mapping.attributes]
    columns: list[list[Any]] = []
    for fieldname, column, kind in targets:
        source, null_like, cleaned = garbage.clean_values(
            df[column], null_tokens, keep_null_like=mapping.keep_null_like_values
        )
        stats.cleaned += int(cleaned.sum())
        if null_like.any():
            for i in null_like.to_numpy(dtype=bool).nonzero()[0].tolist():
                stats.dropped[garbage.NULL_LIKE_VALUE] += 1
                rejects.append(
                    RejectRow(
                        row_key=str(keys.iloc[i]),
                        column=column,
                        reason=garbage.NULL_LIKE_VALUE,
                        detail=f"a null-like token left out of {fieldname} (keep_null_like_values = false)",
                    )
                )
        result = _coerce(kind, source, df, mapping, today)
        if result.invalid.any():
            invalid = result.invalid.to_numpy(dtype=bool)
            reasons = result.reasons.to_numpy(dtype=object) if result.reasons is not None else None
            for i in invalid.nonzero()[0].tolist():
                reason = str(reasons[i]) if reasons is not None else result.reason
                stats.dropped[reason] += 1
                rejects.append(
                    RejectRow(
                        row_key=str(keys.iloc[i]),
                        column=column,
                        reason=reason,
                        detail=f"value left out of {fieldname}; the rest of the row was sent",
                    )
                )
        trimmed = result.trimmed if result.trimmed is not None else None
        if trimmed is not None and trimmed.any():
            stats.trimmed[column] += int(trimmed.sum())
        if result.changed is not None and result.changed.any():
            altered = result.changed if trimmed is None else (result.changed & ~trimmed)
            stats.coerced[column] += int(altered.sum())
        values = _plain_list(result.values)
        if kind == "json":
            for i, value in enumerate(values):
                if value is not None:
                    values[i], n = garbage.clean_json(value)
                    stats.cleaned += n
        columns.append(values)
    _fit_objects(targets, columns, keys, stats, rejects)

    fields = [f for f, _c, _k in targets]
    key_list = keys.tolist()
    if mapping.on_null == "clear":
        payloads, masks = _assemble_clearing(
            key_list, fields, [k for _f, _c, k in targets], columns, previous_masks, stats
        )
    else:
        payloads, masks = _assemble(key_list, fields, columns)
    return Built(payloads=payloads, masks=masks, rejects=rejects, stats=stats)


def _fit_objects(
    targets: Sequence[tuple[str, str, str]],
    columns: list[list[Any]],
    keys: pd.Series,
    stats: TransformStats,
    rejects: list[RejectRow],
) -> None:
    """WebEngage keeps a profile's map/array attributes up to 16 KB together and drops the rest silently:
    leave the largest out until the rest fits, each reported as ``object_too_large``."""
    positions = [pos for pos, (_f, _c, kind) in enumerate(targets) if kind == "json"]
    if not positions:
        return
    limit = garbage.OBJECT_MAX_BYTES
    for row in range(len(keys)):
        sizes = {pos: garbage.json_size(columns[pos][row]) for pos in positions if columns[pos][row] is not None}
        total = sum(sizes.values())
        # Largest first; ties by field order, so the choice does not depend on anything but the row.
        for pos in sorted(sizes, key=lambda p: (-sizes[p], p)):
            if total <= limit:
                break
            fieldname, column, _kind = targets[pos]
            columns[pos][row] = None
            total -= sizes[pos]
            stats.dropped[garbage.OBJECT_TOO_LARGE] += 1
            rejects.append(
                RejectRow(
                    row_key=str(keys.iloc[row]),
                    column=column,
                    reason=garbage.OBJECT_TOO_LARGE,
                    detail=f"{sizes[pos]:,} bytes left out of {fieldname}: WebEngage keeps map/array "
                    f"attributes up to {limit:,} bytes per profile",
                )
            )
