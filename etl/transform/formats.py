"""Deterministic, vectorised coercion of warehouse columns into WebEngage wire values.

Every public ``to_*`` function takes one pandas Series of whatever dtype the warehouse produced (object,
``string``/``str``, ``ArrowDtype``, numeric, ``bool``/``boolean``, ``datetime64`` naive or tz-aware,
categorical) and returns a :class:`Coerced` with the same index.

Semantics shared by every function
----------------------------------
* **Missing is never invalid.** ``None``, ``pd.NA``, ``NaN``, ``NaT`` (and, where a function says so, the
  empty or blank string) are *missing*: ``values`` holds ``<NA>`` and ``invalid`` is ``False``.
* **Invalid** means a non-missing source value that cannot be represented on the wire. Its ``values`` entry
  is ``<NA>`` (the value is dropped, the row still goes) and ``invalid`` is ``True``. ``reason`` is the
  function's main reason code; when a function can fail for more than one reason, ``reasons`` holds the
  per-row code (``<NA>`` on rows that are not invalid). :meth:`Coerced.reason_counts` works either way.
* ``changed`` (when not ``None``) flags rows whose value was altered on the way (normalised, trimmed,
  re-formatted); ``trimmed`` (strings only) flags the rows cut to ``max_len``.
* Results never depend on the machine clock, time zone or locale: no ``now()``, no ``dateutil`` guessing,
  no locale-aware formatting. The same input gives byte-identical output on every run.
* No per-row Python loops: work is done with pandas/numpy/pyarrow kernels, and the few Python loops that
  remain run over *deduplicated* values (object columns are factorised by ``(type, value)`` first, so
  ``1``, ``1.0`` and ``True`` stay distinct). The one exception is :func:`to_json_object`, which has to look
  at every dict/list because containers are unhashable.

Output dtypes: strings are pandas ``string`` (pyarrow storage, ``pd.NA`` for missing), booleans are
``boolean``, numbers are ``Float64`` or ``Int64`` (never a NaN, missing is ``pd.NA``), JSON is ``object``
(``None`` for missing).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import math
import numbers
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "ATTRIBUTE_NAME_MAX_LEN",
    "STRING_MAX_LEN",
    "Coerced",
    "attribute_name_problem",
    "sanitize_attribute_name",
    "to_birth_date_str",
    "to_bool",
    "to_datetime_str",
    "to_e164",
    "to_email",
    "to_gender",
    "to_json_object",
    "to_number",
    "to_string",
]

BoolArray = npt.NDArray[np.bool_]
ObjArray = npt.NDArray[np.object_]
IntArray = npt.NDArray[np.int64]

#: WebEngage: string values must have fewer than 1,000 characters.
STRING_MAX_LEN: Final = 999
#: WebEngage: attribute and event names must have fewer than 50 characters.
ATTRIBUTE_NAME_MAX_LEN: Final = 49

# Reason codes (stable: they end up in run reports).
INVALID_DATE: Final = "invalid_date"
DATE_OUT_OF_RANGE: Final = "date_out_of_range"
BIRTH_DATE_IN_FUTURE: Final = "birth_date_in_future"
INVALID_PHONE: Final = "invalid_phone"
INVALID_GENDER: Final = "invalid_gender"
INVALID_BOOLEAN: Final = "invalid_boolean"
INVALID_NUMBER: Final = "invalid_number"
NON_FINITE_NUMBER: Final = "non_finite_number"
NOT_AN_INTEGER: Final = "not_an_integer"
NUMBER_OUT_OF_RANGE: Final = "number_out_of_range"
INVALID_STRING: Final = "invalid_string"
STRING_TRIMMED: Final = "string_trimmed"
INVALID_JSON: Final = "invalid_json"
JSON_NOT_OBJECT: Final = "json_not_object"
INVALID_EMAIL: Final = "invalid_email"


@dataclass(frozen=True)
class Coerced:
    """Result of one coercion; every Series shares the input's index.

    ``values``: wire-ready values, ``<NA>``/``None`` where missing or invalid.
    ``invalid``: bool, a non-missing input that could not be coerced (value dropped, row still goes).
    ``reason``: the function's main reason code for ``invalid``.
    ``changed``: optional bool, the value was altered (normalised/trimmed); ``change_reason`` names it.
    ``reasons``: optional per-row reason code (``<NA>`` where not invalid) for functions with several codes.
    ``trimmed``: optional bool, strings only: cut to ``max_len``.
    """

    values: pd.Series
    invalid: pd.Series
    reason: str
    changed: pd.Series | None = None
    reasons: pd.Series | None = None
    change_reason: str | None = None
    trimmed: pd.Series | None = None

    def reason_counts(self) -> dict[str, int]:
        """Number of invalid rows per reason code, sorted by code (deterministic)."""
        n_invalid = int(self.invalid.sum())
        if n_invalid == 0:
            return {}
        if self.reasons is None:
            return {self.reason: n_invalid}
        counts = self.reasons[self.invalid.to_numpy(dtype=bool)].value_counts()
        return {str(k): int(v) for k, v in sorted(counts.items())}


# --------------------------------------------------------------------------------------------------
# Shared machinery
# --------------------------------------------------------------------------------------------------

_STRING_OUT = pd.StringDtype(storage="pyarrow")


@dataclass
class _U:
    """Per-unique-value result; ``values`` are Python objects (``None`` = missing/invalid)."""

    values: ObjArray
    invalid: BoolArray
    reasons: ObjArray | None = None
    changed: BoolArray | None = None
    trimmed: BoolArray | None = None


def _obj(values: Iterable[Any] | npt.ArrayLike, n: int | None = None) -> ObjArray:
    if n is None:
        out = np.asarray(values, dtype=object)
        if out.ndim != 1:  # a list of lists/tuples: keep the elements as objects
            seq = list(values)  # type: ignore[arg-type]
            out = np.empty(len(seq), dtype=object)
            out[:] = seq
        return out
    out = np.empty(n, dtype=object)
    out[:] = values
    return out


_UNHASHABLE_SENTINEL: Final = object()


def _to_obj(series: pd.Series) -> ObjArray:
    """Series -> object ndarray with ``None`` for missing."""
    out: ObjArray = np.array(series.to_numpy(dtype=object), dtype=object, copy=True)
    out[np.asarray(pd.isna(out), dtype=bool)] = None
    return out


def _type_codes(arr: ObjArray) -> tuple[IntArray, list[type]]:
    types = np.asarray(np.frompyfunc(type, 1, 1)(arr), dtype=object)
    codes, uniq = pd.factorize(types)
    return codes.astype(np.int64), list(uniq)


def _factorize(s: pd.Series) -> tuple[npt.NDArray[np.intp], ObjArray]:
    """Codes per row (-1 = missing) and the distinct non-missing values as Python objects.

    Object columns are keyed by ``(type, value)`` so ``1``, ``1.0``, ``True`` and ``Decimal("1")`` stay
    distinct; unhashable values (dicts, lists, arrays) collapse into one sentinel (every caller except
    :func:`to_json_object` treats them as invalid anyway).
    """
    if isinstance(s.dtype, pd.CategoricalDtype):
        cat_codes = np.asarray(s.cat.codes.to_numpy(), dtype=np.intp)
        sub_codes, sub_uniques = _factorize(pd.Series(s.cat.categories.to_numpy(dtype=object), dtype=object))
        mapped = np.where(cat_codes >= 0, sub_codes[np.maximum(cat_codes, 0)], -1)
        return mapped.astype(np.intp), sub_uniques
    if s.dtype != object:
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        return np.asarray(codes, dtype=np.intp), _obj(list(uniques.tolist()), len(uniques))
    arr = s.to_numpy(dtype=object)
    kind = pd.api.types.infer_dtype(arr, skipna=True)
    if kind in ("string", "empty"):
        str_codes, str_uniques = pd.factorize(arr, use_na_sentinel=True)
        return np.asarray(str_codes, dtype=np.intp), _obj(str_uniques)
    tcodes, types = _type_codes(arr)
    unhashable = [t.__hash__ is None for t in types]
    if any(unhashable):
        bad_type = np.asarray(unhashable, dtype=bool)[tcodes]
        arr = arr.copy()
        arr[bad_type] = _UNHASHABLE_SENTINEL
    vcodes, _ = pd.factorize(arr, use_na_sentinel=True)
    vcodes = np.asarray(vcodes, dtype=np.int64)
    combined = np.where(vcodes >= 0, vcodes * max(len(types), 1) + tcodes, -1)
    codes, first_of = _factorize_ints(combined)
    return codes, _obj(arr[first_of], len(first_of))


def _factorize_ints(keys: IntArray) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Factorise non-negative int keys (-1 = missing); return codes and the first row of each unique."""
    codes, _ = pd.factorize(keys, use_na_sentinel=False)
    codes = np.asarray(codes, dtype=np.intp)
    present = keys >= 0
    if not present.any():
        return np.full(len(keys), -1, dtype=np.intp), np.empty(0, dtype=np.intp)
    # renumber so only present keys get codes 0..k-1 (in order of first appearance)
    sub_codes, sub_uniques = pd.factorize(codes[present])
    first_rows = np.flatnonzero(present)
    firsts = np.full(len(sub_uniques), -1, dtype=np.intp)
    # first occurrence: iterate reversed assignment so the earliest row wins
    firsts[sub_codes[::-1]] = first_rows[::-1]
    out = np.full(len(keys), -1, dtype=np.intp)
    out[present] = sub_codes
    return out, firsts


def _expand_obj(uvals: ObjArray, codes: npt.NDArray[np.intp]) -> ObjArray:
    if len(uvals) == 0:
        return np.full(len(codes), None, dtype=object)
    out = uvals[np.maximum(codes, 0)]
    out[codes < 0] = None
    return out


def _expand_bool(u: BoolArray | None, codes: npt.NDArray[np.intp]) -> BoolArray:
    if u is None or len(u) == 0:
        return np.zeros(len(codes), dtype=bool)
    return np.where(codes >= 0, u[np.maximum(codes, 0)], False)


def _typed_array(values: ObjArray, dtype: Any) -> Any:
    if dtype == "json":
        return values
    return pd.array(values, dtype=dtype)


def _finish(
    s: pd.Series,
    codes: npt.NDArray[np.intp],
    u: _U,
    *,
    reason: str,
    out_dtype: Any,
    change_reason: str | None = None,
    multi_reason: bool = False,
) -> Coerced:
    idx = s.index
    if out_dtype == "json":
        values = pd.Series(_expand_obj(u.values, codes), index=idx, dtype=object, name=s.name)
    else:
        typed = _typed_array(u.values, out_dtype)
        values = pd.Series(typed.take(codes, allow_fill=True), index=idx, name=s.name)
    invalid = pd.Series(_expand_bool(u.invalid, codes), index=idx, name=s.name)
    changed = pd.Series(_expand_bool(u.changed, codes), index=idx, name=s.name) if u.changed is not None else None
    trimmed = pd.Series(_expand_bool(u.trimmed, codes), index=idx, name=s.name) if u.trimmed is not None else None
    reasons = None
    if multi_reason:
        if u.reasons is not None:
            r = u.reasons
        else:
            r = np.full(len(u.invalid), None, dtype=object)
            r[u.invalid] = reason
        reasons = pd.Series(
            pd.array(r, dtype=_STRING_OUT).take(codes, allow_fill=True) if len(r) else pd.NA,
            index=idx,
            dtype=_STRING_OUT,
            name=s.name,
        )
    return Coerced(values, invalid, reason, changed, reasons, change_reason, trimmed)


def _run(
    s: pd.Series,
    core: Callable[[ObjArray], _U],
    *,
    reason: str,
    out_dtype: Any,
    change_reason: str | None = None,
    multi_reason: bool = False,
) -> Coerced:
    codes, uniques = _factorize(s)
    u = core(uniques)
    return _finish(
        s, codes, u, reason=reason, out_dtype=out_dtype, change_reason=change_reason, multi_reason=multi_reason
    )


def _classify(uniques: ObjArray) -> tuple[BoolArray, BoolArray, BoolArray]:
    """Masks over unique values: is str, is bool-like, is real number (int/float/Decimal, not bool)."""
    is_str = np.fromiter((isinstance(v, str) for v in uniques), dtype=bool, count=len(uniques))
    is_bool = np.fromiter((isinstance(v, bool | np.bool_) for v in uniques), dtype=bool, count=len(uniques))
    is_num = np.fromiter(
        (isinstance(v, numbers.Real | decimal.Decimal) and not isinstance(v, bool | np.bool_) for v in uniques),
        dtype=bool,
        count=len(uniques),
    )
    return is_str, is_bool, is_num


def _str_series(values: ObjArray) -> pd.Series:
    return pd.Series(values, dtype=_STRING_OUT)


# --------------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------------

_US_PER_S: Final = 1_000_000
_NAT = np.datetime64("NaT", "us")


@dataclass
class _Parsed:
    """Per-row parse of a date column; datetime64[us] arrays, NaT where not applicable."""

    wall: npt.NDArray[np.datetime64]  # wall-clock time as written (naive, or in its own offset)
    utc: npt.NDArray[np.datetime64]  # UTC instant, only where the source carried an offset/zone
    aware: BoolArray
    missing: BoolArray
    bad: BoolArray  # non-missing, could not be parsed
    out_of_range: BoolArray  # parsed, but beyond what datetime64[us]/years 1..9999 can hold


_OFFSET_RE: Final = re.compile(
    r"^(?P<body>\d{4}-\d{1,2}-\d{1,2}[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?)\s*"
    r"(?P<off>[zZ]|UTC|GMT|(?P<sign>[+-])(?P<oh>\d{2})(?::?(?P<om>\d{2}))?)$"
)
_ISO_RE: Final = r"^\d{4}-\d{1,2}-\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?)?$"
_YMD_SLASH_RE: Final = r"^(\d{4})[/.](\d{1,2})[/.](\d{1,2})"
_DMY_RE: Final = r"^(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?$"
_EPOCH_STR_RE: Final = r"^[-+]?\d+(?:\.\d+)?$"
_MAX_OFFSET_MIN: Final = 14 * 60


def _check_tz(source_tz: str) -> str:
    try:
        zoneinfo.ZoneInfo(source_tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {source_tz!r}") from exc
    return source_tz


def _to_us(values: Any) -> npt.NDArray[np.datetime64]:
    """Any datetime64-ish array -> datetime64[us] (NaT kept), out-of-range -> NaT."""
    arr = np.asarray(values)
    if arr.dtype.kind != "M":
        arr = np.asarray(pd.DatetimeIndex(arr).as_unit("us"))
    unit = np.datetime_data(arr.dtype)[0]
    if unit in ("Y", "M", "W", "D", "h", "m", "s", "ms"):
        lo = np.datetime64("0001-01-01T00:00:00").astype(arr.dtype)
        hi = np.datetime64("9999-12-31T23:59:59").astype(arr.dtype)
        ok = (arr >= lo) & (arr <= hi)
        arr = np.where(ok, arr, np.datetime64("NaT").astype(arr.dtype))
    return arr.astype("datetime64[us]")


def _parse_str(values: ObjArray, *, dayfirst: bool, epoch_unit: str | None) -> _Parsed:
    """Parse distinct strings (already known to be ``str``)."""
    n = len(values)
    wall = np.full(n, _NAT)
    utc = np.full(n, _NAT)
    aware = np.zeros(n, dtype=bool)
    s = pd.Series(values, dtype=_STRING_OUT).str.strip()
    missing = (s == "").to_numpy(dtype=bool, na_value=True)
    done = missing.copy()

    # 1. ISO date-times with an explicit offset: strip it, parse the wall clock, subtract the offset.
    m = s.str.extract(_OFFSET_RE.pattern)
    has_off = m["body"].notna().to_numpy(dtype=bool) & ~done
    if has_off.any():
        body = m["body"][has_off].str.replace(",", ".", regex=False)
        w = pd.to_datetime(body, format="ISO8601", errors="coerce")
        off = m.loc[has_off]
        oh = pd.to_numeric(off["oh"], errors="coerce").fillna(0).to_numpy(dtype=np.int64)
        om = pd.to_numeric(off["om"], errors="coerce").fillna(0).to_numpy(dtype=np.int64)
        sign = np.where(off["sign"].to_numpy(dtype=object, na_value="+") == "-", -1, 1)
        minutes = sign * (oh * 60 + om)
        wus = _to_us(w.to_numpy())
        ok = ~np.isnat(wus) & (om < 60) & (np.abs(minutes) <= _MAX_OFFSET_MIN)
        pos = np.flatnonzero(has_off)
        wall[pos[ok]] = wus[ok]
        utc[pos[ok]] = wus[ok] - minutes[ok].astype("timedelta64[m]")
        aware[pos[ok]] = True
        done |= has_off  # failures stay NaT -> bad

    # 2. Naive ISO dates / date-times, and YYYY/MM/DD.
    rest = ~done
    if rest.any():
        sr = s[rest]
        ymd = sr.str.match(_YMD_SLASH_RE).fillna(False)
        sr = sr.where(~ymd, sr.str.replace(r"^(\d{4})[/.](\d{1,2})[/.](\d{1,2})", r"\1-\2-\3", regex=True))
        iso = sr.str.match(_ISO_RE).fillna(False).to_numpy(dtype=bool)
        if iso.any():
            w = pd.to_datetime(sr[iso].str.replace(",", ".", regex=False), format="ISO8601", errors="coerce")
            pos = np.flatnonzero(rest)[iso]
            wall[pos] = _to_us(w.to_numpy())
            done[pos] = True

    # 3. D/M/Y or M/D/Y (dayfirst), optional HH:MM[:SS].
    rest = ~done
    if rest.any():
        parts = s[rest].str.extract(_DMY_RE)
        hit = parts[0].notna().to_numpy(dtype=bool)
        if hit.any():
            p = parts[hit].astype("float64")
            first, second = p[0], p[1]
            frame = pd.DataFrame(
                {
                    "year": p[2],
                    "month": second if dayfirst else first,
                    "day": first if dayfirst else second,
                    "hour": p[3].fillna(0),
                    "minute": p[4].fillna(0),
                    "second": p[5].fillna(0),
                }
            )
            w = pd.to_datetime(frame, errors="coerce")
            pos = np.flatnonzero(rest)[hit]
            wall[pos] = _to_us(w.to_numpy())
            done[pos] = True

    # 4. Epoch numbers written as text, only when epoch_unit is set.
    rest = ~done
    if epoch_unit is not None and rest.any():
        sr = s[rest]
        num = sr.str.fullmatch(_EPOCH_STR_RE).fillna(False).to_numpy(dtype=bool)
        if num.any():
            pos = np.flatnonzero(rest)[num]
            got = _epoch_to_utc(pd.to_numeric(sr[num], errors="coerce").to_numpy(dtype=np.float64), epoch_unit)
            wall[pos] = got
            utc[pos] = got
            aware[pos] = True
            done[pos] = True

    bad = ~missing & np.isnat(wall)
    return _Parsed(wall, utc, aware, missing, bad, np.zeros(n, dtype=bool))


def _epoch_to_utc(nums: npt.NDArray[np.float64], unit: str) -> npt.NDArray[np.datetime64]:
    per_s = {"s": 1, "ms": 1_000}[unit]
    finite = np.isfinite(nums)
    secs = np.where(finite, nums / per_s, 0.0)
    ok = finite & (secs >= -62_135_596_800) & (secs <= 253_402_300_799)  # 0001-01-01 .. 9999-12-31
    us = np.where(ok, np.floor(np.where(ok, nums, 0.0) * (_US_PER_S // per_s)), 0).astype(np.int64)
    out = us.astype("datetime64[us]")
    out[~ok] = _NAT
    return out


def _parse_objects(uniques: ObjArray, *, dayfirst: bool, epoch_unit: str | None) -> _Parsed:
    """Parse distinct Python objects of any type (loop runs over distinct values only)."""
    n = len(uniques)
    wall = np.full(n, _NAT)
    utc = np.full(n, _NAT)
    aware = np.zeros(n, dtype=bool)
    missing = np.zeros(n, dtype=bool)
    handled = np.zeros(n, dtype=bool)
    is_str, _is_bool, is_num = _classify(uniques)
    if is_str.any():
        p = _parse_str(uniques[is_str], dayfirst=dayfirst, epoch_unit=epoch_unit)
        wall[is_str], utc[is_str], aware[is_str], missing[is_str] = p.wall, p.utc, p.aware, p.missing
        handled |= is_str
    if epoch_unit is not None and is_num.any():
        nums = np.asarray([float(v) for v in uniques[is_num]], dtype=np.float64)
        got = _epoch_to_utc(nums, epoch_unit)
        wall[is_num], utc[is_num], aware[is_num] = got, got, True
        handled |= is_num
    # datetime / date / numpy datetime64 objects
    for i in np.flatnonzero(~handled):
        v = uniques[i]
        if isinstance(v, dt.datetime):  # includes pd.Timestamp
            off = v.utcoffset()
            naive = v.replace(tzinfo=None)
            w = _to_us(np.asarray([pd.Timestamp(naive).to_datetime64()]))[0]
            wall[i] = w
            if off is not None:
                aware[i] = True
                utc[i] = w - np.timedelta64(int(off.total_seconds() * _US_PER_S), "us")
        elif isinstance(v, dt.date):
            wall[i] = np.datetime64(v.isoformat(), "us")
        elif isinstance(v, np.datetime64) and not np.isnat(v):
            wall[i] = _to_us(np.asarray([v]))[0]
    bad = ~missing & np.isnat(wall)
    return _Parsed(wall, utc, aware, missing, bad, np.zeros(n, dtype=bool))


def _parse_series(s: pd.Series, *, dayfirst: bool, epoch_unit: str | None) -> _Parsed:
    """Per-row parse of any supported column (vectorised for datetime64 and numeric dtypes)."""
    n = len(s)
    dtype = s.dtype
    if isinstance(dtype, pd.ArrowDtype):
        pat = dtype.pyarrow_dtype
        if pa.types.is_timestamp(pat):
            target: Any = f"datetime64[us, {pat.tz}]" if pat.tz else "datetime64[us]"
            s = s.astype(target)
        elif pa.types.is_date(pat):
            s = s.astype("datetime64[us]")
        dtype = s.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        null = s.isna().to_numpy(dtype=bool)
        wall_raw = s.dt.tz_localize(None).to_numpy()
        utc_raw = s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        wall, utc = _to_us(wall_raw), _to_us(utc_raw)
        oor = ~null & (np.isnat(wall) | np.isnat(utc))
        aware = ~null & ~oor
        return _Parsed(wall, utc, aware, null, np.zeros(n, dtype=bool), oor)
    if isinstance(dtype, np.dtype) and dtype.kind == "M":
        raw = s.to_numpy()
        null = np.isnat(raw)
        wall = _to_us(raw)
        oor = ~null & np.isnat(wall)
        return _Parsed(wall, np.full(n, _NAT), np.zeros(n, dtype=bool), null, np.zeros(n, dtype=bool), oor)
    if pd.api.types.is_bool_dtype(dtype):
        null = s.isna().to_numpy(dtype=bool)
        nat = np.full(n, _NAT)
        return _Parsed(nat, nat.copy(), np.zeros(n, dtype=bool), null, ~null, np.zeros(n, dtype=bool))
    if pd.api.types.is_numeric_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype):
        null = s.isna().to_numpy(dtype=bool)
        if epoch_unit is None:
            nat = np.full(n, _NAT)
            return _Parsed(nat, nat.copy(), np.zeros(n, dtype=bool), null, ~null, np.zeros(n, dtype=bool))
        nums = s.to_numpy(dtype=np.float64, na_value=np.nan)
        got = _epoch_to_utc(nums, epoch_unit)
        return _Parsed(got, got.copy(), ~null, null, ~null & np.isnat(got), np.zeros(n, dtype=bool))
    codes, uniques = _factorize(s)
    p = _parse_objects(uniques, dayfirst=dayfirst, epoch_unit=epoch_unit)
    present = codes >= 0
    take = np.maximum(codes, 0)

    def ex(a: Any, fill: Any) -> Any:
        if len(a) == 0:
            return np.full(n, fill, dtype=np.asarray(fill).dtype if not isinstance(fill, bool) else bool)
        return np.where(present, a[take], fill)

    return _Parsed(
        ex(p.wall, _NAT),
        ex(p.utc, _NAT),
        ex(p.aware, False),
        np.where(present, ex(p.missing, True), True),
        ex(p.bad, False),
        ex(p.out_of_range, False),
    )


def _format_seconds(secs: npt.NDArray[np.datetime64], valid: BoolArray, time_part: bool) -> pa.Array:
    """datetime64[s] -> ``YYYY-MM-DDTHH:MM:SS+0000`` as a pyarrow string array, nulls where not valid.

    Built digit by digit with numpy (about 20x faster than strftime); years must be 1..9999.
    """
    n = len(secs)
    safe = np.where(valid, secs, np.datetime64(0, "s"))
    days = safe.astype("datetime64[D]")
    months = safe.astype("datetime64[M]")
    year = safe.astype("datetime64[Y]").astype(np.int64) + 1970
    month = months.astype(np.int64) % 12 + 1
    day = (days - months.astype("datetime64[D]")).astype(np.int64) + 1
    sod = (safe - days).astype(np.int64)
    hour, minute, second = sod // 3600, (sod // 60) % 60, sod % 60
    if not time_part:
        hour = minute = second = np.zeros(n, dtype=np.int64)
    width = 24
    buf = np.empty((n, width), dtype=np.uint8)
    buf[:] = np.frombuffer(b"0000-00-00T00:00:00+0000", dtype=np.uint8)
    zero = ord("0")
    buf[:, 0] = zero + year // 1000
    buf[:, 1] = zero + (year // 100) % 10
    buf[:, 2] = zero + (year // 10) % 10
    buf[:, 3] = zero + year % 10
    for col, val in ((5, month), (8, day), (11, hour), (14, minute), (17, second)):
        buf[:, col] = zero + val // 10
        buf[:, col + 1] = zero + val % 10
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    validity = pa.array(valid, type=pa.bool_()).buffers()[1] if not valid.all() else None
    null_count = int((~valid).sum())
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(buf.tobytes()), validity, null_count)


def _year_of(us: npt.NDArray[np.datetime64]) -> IntArray:
    safe = np.where(np.isnat(us), np.datetime64(0, "us"), us)
    return safe.astype("datetime64[Y]").astype(np.int64) + 1970


def _date_result(
    s: pd.Series,
    out_us: npt.NDArray[np.datetime64],
    p: _Parsed,
    extra_bad: list[tuple[BoolArray, str]],
    *,
    time_part: bool,
) -> Coerced:
    n = len(s)
    reasons = np.full(n, None, dtype=object)
    reasons[p.bad] = INVALID_DATE
    reasons[p.out_of_range & ~p.bad] = DATE_OUT_OF_RANGE
    invalid = p.bad | p.out_of_range
    for mask, code in extra_bad:
        new = mask & ~invalid & ~p.missing
        reasons[new] = code
        invalid |= new
    valid = ~invalid & ~p.missing & ~np.isnat(out_us)
    secs = np.where(valid, out_us, np.datetime64(0, "us")).astype("datetime64[s]")  # floor: drop sub-seconds
    text = _format_seconds(secs, valid, time_part)
    values = pd.Series(pd.arrays.ArrowStringArray(text), index=s.index, name=s.name)
    return Coerced(
        values=values,
        invalid=pd.Series(invalid, index=s.index, name=s.name),
        reason=INVALID_DATE,
        reasons=pd.Series(pd.array(reasons, dtype=_STRING_OUT), index=s.index, name=s.name),
    )


def _localize(wall: npt.NDArray[np.datetime64], source_tz: str) -> tuple[npt.NDArray[np.datetime64], BoolArray]:
    """Naive wall-clock (datetime64[us]) in ``source_tz`` -> UTC; returns (utc, failed)."""
    if source_tz == "UTC" or len(wall) == 0:
        return wall.copy(), np.zeros(len(wall), dtype=bool)
    idx = pd.DatetimeIndex(wall)
    try:
        loc = idx.tz_localize(source_tz, ambiguous=np.ones(len(idx), dtype=bool), nonexistent="shift_forward")
        out = np.asarray(loc.tz_convert("UTC").tz_localize(None).as_unit("us"))
        return out, np.isnat(out) & ~np.isnat(wall)
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):  # pragma: no cover - extreme years
        out = np.full(len(wall), _NAT)
        return out, ~np.isnat(wall)


def to_datetime_str(
    s: pd.Series,
    *,
    source_tz: str = "UTC",
    dayfirst: bool = False,
    epoch_unit: Literal["s", "ms"] | None = None,
    min_year: int = 1900,
    max_year: int = 2100,
) -> Coerced:
    """Coerce to WebEngage date strings ``YYYY-MM-DDTHH:MM:SS+0000`` (UTC, no millis, never ``Z``).

    Accepted inputs: ``datetime64`` of any unit, naive or tz-aware (also pyarrow timestamp/date);
    ``datetime``/``pd.Timestamp``/``date``/``np.datetime64`` objects; strings in these shapes only (others
    are ``invalid_date``; nothing is guessed, so the result never depends on the clock or locale):

    * ISO ``YYYY-MM-DD`` with optional ``[T ]HH:MM[:SS[.fff]]`` (also ``YYYY/MM/DD``, ``YYYY.MM.DD``);
    * the same date-time followed by an offset ``Z``, ``UTC``, ``GMT``, ``±HH``, ``±HHMM`` or ``±HH:MM``
      (|offset| <= 14:00);
    * ``DD/MM/YYYY`` (``dayfirst=True``) or ``MM/DD/YYYY`` (default), separators ``/ . -``, optional
      ``HH:MM[:SS]``;
    * epoch seconds/milliseconds (numbers, or digit strings) only when ``epoch_unit`` is ``"s"``/``"ms"``;
      without it numbers and booleans are ``invalid_date``.

    Naive values (no offset) are wall-clock times in ``source_tz`` (IANA name). DST rule, deterministic:
    an *ambiguous* time (the repeated hour when clocks go back) takes the **earlier** instant, i.e. the
    daylight-saving reading (PEP 495 ``fold=0``); a *nonexistent* time (in the spring-forward gap) is
    **shifted forward** to the first valid instant (``02:30`` on a New York spring-forward day becomes
    ``03:00`` EDT = ``07:00:00+0000``). Aware values and epochs are converted to UTC. A bare date means
    midnight in ``source_tz``. Sub-second parts are dropped (floored), never rounded.

    Reasons: ``invalid_date`` (unparseable), ``date_out_of_range`` (UTC year outside
    ``[min_year, max_year]``); per row in ``reasons``. Empty/blank strings are missing, not invalid.
    Output dtype: ``string``.
    """
    _check_tz(source_tz)
    if not 1 <= min_year <= max_year <= 9999:
        raise ValueError("need 1 <= min_year <= max_year <= 9999")
    if epoch_unit not in (None, "s", "ms"):
        raise ValueError("epoch_unit must be None, 's' or 'ms'")
    p = _parse_series(s, dayfirst=dayfirst, epoch_unit=epoch_unit)
    naive = ~p.aware & ~np.isnat(p.wall)
    out = p.utc.copy()
    loc_failed = np.zeros(len(s), dtype=bool)
    if naive.any():
        got, failed = _localize(p.wall[naive], source_tz)
        out[naive] = got
        loc_failed[naive] = failed
    years = _year_of(out)
    oor = ~np.isnat(out) & ((years < min_year) | (years > max_year))
    return _date_result(s, out, p, [(loc_failed | oor, DATE_OUT_OF_RANGE)], time_part=True)


def to_birth_date_str(
    s: pd.Series,
    *,
    today: dt.date,
    dayfirst: bool = False,
    epoch_unit: Literal["s", "ms"] | None = None,
    min_year: int = 1900,
) -> Coerced:
    """Coerce to ``YYYY-MM-DDT00:00:00+0000``: a birth date is a calendar date, never shifted by a zone.

    Inputs and string shapes as :func:`to_datetime_str`. The calendar date is taken *as written*: for a
    tz-aware value that is the date in its own zone/offset (``1990-05-01T23:30:00-05:00`` ->
    ``1990-05-01``), for epochs the UTC date; any time of day is discarded.

    ``today`` is required (no clock reads): dates after it are ``birth_date_in_future``; years before
    ``min_year`` are ``date_out_of_range``; unparseable values are ``invalid_date``.
    """
    if not isinstance(today, dt.date):
        raise TypeError("today must be a datetime.date")
    if isinstance(today, dt.datetime):
        today = today.date()
    if not 1 <= min_year <= 9999:
        raise ValueError("need 1 <= min_year <= 9999")
    p = _parse_series(s, dayfirst=dayfirst, epoch_unit=epoch_unit)
    dates = np.where(np.isnat(p.wall), _NAT, p.wall.astype("datetime64[D]").astype("datetime64[us]"))
    future = ~np.isnat(dates) & (dates > np.datetime64(today.isoformat(), "us"))
    early = ~np.isnat(dates) & (_year_of(dates) < min_year)
    return _date_result(s, dates, p, [(early, DATE_OUT_OF_RANGE), (future, BIRTH_DATE_IN_FUTURE)], time_part=False)


# --------------------------------------------------------------------------------------------------
# Phones
# --------------------------------------------------------------------------------------------------

_PHONE_STRIP_RE: Final = r"[\s\-.()]"
_IN_MOBILE_RE: Final = r"^(?:\+?91|0)?(?P<nsn>[6-9][0-9]{9})$"
_PLUS91_RE: Final = r"^\+91(?P<nsn>[6-9][0-9]{9})$"
_REGION_ALIASES: Final = {"UK": "GB"}
_DESC_NAMES: Final = (
    "premium_rate",
    "toll_free",
    "shared_cost",
    "voip",
    "personal_number",
    "pager",
    "uan",
    "voicemail",
    "fixed_line",
    "mobile",
)


@dataclass(frozen=True)
class _RegionRules:
    """Vectorisable subset of libphonenumber's parse/is_valid for one region (see ``_fast_phone``)."""

    country_code: int
    general: tuple[frozenset[int], str]
    types: tuple[tuple[frozenset[int], str], ...]
    national_prefix: str | None  # national_prefix_for_parsing regex
    simple_prefix: bool  # the prefix regex has no groups and there is no transform rule
    idd: str | None
    is_main: bool  # first region of its calling code and no leading_digits: is_valid_number agrees


@lru_cache(maxsize=512)
def _rules(region: str) -> _RegionRules | None:
    if region not in phonenumbers.SUPPORTED_REGIONS:
        return None
    md = phonenumbers.PhoneMetadata.metadata_for_region(region, None)
    if md is None or md.general_desc is None or not md.general_desc.national_number_pattern:
        return None

    def desc(d: Any) -> tuple[frozenset[int], str] | None:
        if d is None or not d.national_number_pattern:
            return None
        return frozenset(d.possible_length or ()), d.national_number_pattern

    general = desc(md.general_desc)
    assert general is not None
    types = tuple(x for x in (desc(getattr(md, name, None)) for name in _DESC_NAMES) if x is not None)
    npfp = md.national_prefix_for_parsing or None
    simple = npfp is None or (re.compile(npfp).groups == 0 and not md.national_prefix_transform_rule)
    cc = int(md.country_code or 0)
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc, ())
    is_main = bool(regions) and regions[0] == region and md.leading_digits is None
    return _RegionRules(cc, general, types, npfp, simple, md.international_prefix, is_main)


def _fullmatch(arr: pa.Array, pattern: str) -> BoolArray:
    got = pc.match_substring_regex(arr, f"^(?:{pattern})$")
    return np.asarray(got.to_numpy(zero_copy_only=False), dtype=bool)


def _prefix_match_len(values: ObjArray, pattern: str) -> IntArray:
    """Length of ``re.match(pattern)`` (libphonenumber's semantics) per distinct value, -1 if none."""
    compiled = re.compile(pattern)
    out = np.full(len(values), -1, dtype=np.int64)
    for i, v in enumerate(values):
        m = compiled.match(v)
        if m is not None:
            out[i] = m.end()
    return out


def _valid_nsn(nsns: ObjArray, rules: _RegionRules) -> BoolArray:
    """Vectorised ``_number_type_helper(nsn) != UNKNOWN`` (general desc, then any number type)."""
    if len(nsns) == 0:
        return np.zeros(0, dtype=bool)
    arr = pa.array(list(nsns), type=pa.string())
    lens = np.asarray(pc.utf8_length(arr).to_numpy(zero_copy_only=False), dtype=np.int64)

    def matches(d: tuple[frozenset[int], str]) -> BoolArray:
        lengths, pattern = d
        ok = np.isin(lens, list(lengths)) if lengths else np.ones(len(lens), dtype=bool)
        if ok.any():
            ok &= _fullmatch(arr, pattern)
        return ok

    ok = matches(rules.general)
    if not ok.any():
        return ok
    any_type = np.zeros(len(nsns), dtype=bool)
    for d in rules.types:
        any_type |= matches(d)
    leading_zero = np.asarray(pc.starts_with(arr, "0").to_numpy(zero_copy_only=False), dtype=bool)
    result: BoolArray = ok & any_type & ~leading_zero
    return result


def _fast_phone(cleaned: ObjArray, regions: ObjArray) -> ObjArray:
    """E.164 for the pairs a vectorised replica of libphonenumber can settle; ``None`` = ask phonenumbers.

    Deliberately conservative: it only accepts a number when libphonenumber would parse it to the same
    national significant number and ``is_valid_number`` would be true (same metadata regexes), so the
    fallback decides every doubtful case. Verified against phonenumbers in the tests.
    """
    n = len(cleaned)
    out = np.full(n, None, dtype=object)
    if n == 0:
        return out
    arr = pa.array(list(cleaned), type=pa.string())
    # Indian mobiles (region IN, or +91 anywhere): the hot path.
    reg_in = regions == "IN"
    ext_in = pc.struct_field(pc.extract_regex(arr, _IN_MOBILE_RE), 0).to_numpy(zero_copy_only=False)
    ext_91 = pc.struct_field(pc.extract_regex(arr, _PLUS91_RE), 0).to_numpy(zero_copy_only=False)
    cand = np.where(reg_in, ext_in, ext_91)
    has = np.array([c is not None for c in cand], dtype=bool)  # over distinct values only
    in_rules = _rules("IN")
    if has.any() and in_rules is not None:
        pos = np.flatnonzero(has)
        ok = _valid_nsn(cand[pos], in_rules)
        out[pos[ok]] = np.char.add("+91", cand[pos[ok]].astype(str)).astype(object)
    todo = np.array([o is None for o in out], dtype=bool)
    is_plus = np.asarray(_fullmatch(arr, r"\+[1-9][0-9]{1,17}"), dtype=bool) & todo
    is_nat = np.asarray(_fullmatch(arr, r"[0-9]{2,17}"), dtype=bool) & todo
    # International numbers: calling code = first 1..3 digits that are a known code (re-parse semantics).
    if is_plus.any():
        pos = np.flatnonzero(is_plus)
        digits = np.array([c[1:] for c in cleaned[pos]], dtype=object)
        cc = np.zeros(len(pos), dtype=np.int64)
        for k in (3, 2, 1):  # the library takes the shortest known prefix: assign longest first
            heads = np.array([int(d[:k]) if len(d) > k else -1 for d in digits], dtype=np.int64)
            known = np.isin(heads, list(phonenumbers.COUNTRY_CODE_TO_REGION_CODE))
            cc = np.where(known, heads, cc)
        for code in np.unique(cc[cc > 0]):
            main = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[int(code)][0]
            rules = _rules(main)
            if rules is None or not rules.is_main:
                continue
            sel = np.flatnonzero(cc == code)
            nsn = np.array([d[len(str(code)) :] for d in digits[sel]], dtype=object)
            ok = _valid_nsn(nsn, rules)
            if rules.national_prefix:
                ok &= _prefix_match_len(nsn, rules.national_prefix) < 0
            out[pos[sel[ok]]] = np.array([f"+{code}{x}" for x in nsn[ok]], dtype=object)
    # National numbers, per region.
    if is_nat.any():
        for region in sorted(set(regions[is_nat].tolist())):
            rules = _rules(region)
            if rules is None or not rules.is_main:
                continue
            sel = np.flatnonzero(is_nat & (regions == region))
            nums = cleaned[sel]
            narr = pa.array(list(nums), type=pa.string())
            eligible = ~pc.starts_with(narr, str(rules.country_code)).to_numpy(zero_copy_only=False)
            if rules.idd:
                eligible &= _prefix_match_len(nums, rules.idd) < 0
            nsn = nums.copy()
            if rules.national_prefix:
                plen = _prefix_match_len(nums, rules.national_prefix)
                has_prefix = plen >= 0
                if not rules.simple_prefix:
                    eligible &= ~has_prefix
                nsn = np.array([x[p:] if p >= 0 else x for x, p in zip(nums, plen, strict=True)], dtype=object)
            ok = eligible & _valid_nsn(nsn, rules)
            out[sel[ok]] = np.array([f"+{rules.country_code}{x}" for x in nsn[ok]], dtype=object)
    return out


def _slow_phone(value: str, region: str) -> str | None:
    try:
        num = phonenumbers.parse(value, region or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(num):
        return None
    return str(phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164))


def _phone_text(uniques: ObjArray) -> tuple[ObjArray, BoolArray]:
    """Distinct raw values -> cleaned text (``None`` where the type cannot be a phone)."""
    n = len(uniques)
    text = np.full(n, None, dtype=object)
    bad = np.zeros(n, dtype=bool)
    is_str, _, is_num = _classify(uniques)
    text[is_str] = uniques[is_str]
    for i in np.flatnonzero(is_num):  # numbers: whole, non-negative only (distinct values)
        v = uniques[i]
        f = float(v)
        if math.isfinite(f) and f >= 0 and f == math.floor(f):
            text[i] = str(int(v)) if not isinstance(v, float | np.floating) else f"{f:.0f}"
    bad[~is_str & ~is_num] = True
    bad[is_num & np.array([t is None for t in text], dtype=bool)] = True
    if is_str.any() or is_num.any():
        has = ~bad
        cleaned = pd.Series(text[has], dtype=_STRING_OUT).str.replace(_PHONE_STRIP_RE, "", regex=True)
        cleaned = cleaned.str.replace(r"^00", "+", regex=True)
        text[has] = cleaned.pipe(_to_obj)
    return text, bad


def to_e164(s: pd.Series, *, default_region: str = "IN", region: pd.Series | None = None) -> Coerced:
    """Coerce phone numbers to E.164 (``+917850009678``); invalid -> ``invalid_phone``.

    Spaces, dashes, dots and parentheses are removed and a leading ``00`` becomes ``+``. Numbers without
    ``+`` are read in the row's region: ``region`` (ISO 3166 alpha-2 per row, aligned on ``s``'s index;
    case-insensitive, ``UK`` means ``GB``; null/blank -> ``default_region``). What remains must be ASCII digits
    with an optional leading ``+``: letters (vanity numbers, ``ext. 12``) are invalid. Whole non-negative
    numbers (int/float/Decimal columns) are read as their digits. Validity is libphonenumber's
    ``is_valid_number``: a vectorised replica of its metadata rules settles the common shapes (Indian
    mobiles first), the rest goes through ``phonenumbers.parse`` over distinct (value, region) pairs.
    ``changed`` flags rows whose output text differs from the (stripped) input.
    """
    dr = default_region.strip().upper()
    dr = _REGION_ALIASES.get(dr, dr)
    codes, uniques = _factorize(s)
    text, type_bad = _phone_text(uniques)
    n = len(s)
    # per-row region code (only matters for numbers without '+')
    if region is None:
        reg_rows = np.full(n, dr, dtype=object)
    else:
        if len(region) != n or not region.index.equals(s.index):
            raise ValueError("region must be aligned with s (same index)")
        r = region.astype(_STRING_OUT).str.strip().str.upper()
        r = r.replace(_REGION_ALIASES).fillna(dr).replace("", dr)
        reg_rows = r.to_numpy(dtype=object)
    rcodes, runiq = pd.factorize(reg_rows)
    is_plus_u = np.array([t is not None and t.startswith("+") for t in text], dtype=bool)
    present = codes >= 0
    take = np.maximum(codes, 0)
    row_plus = np.where(present, is_plus_u[take] if len(text) else False, False)
    rkey = np.where(row_plus, 0, rcodes.astype(np.int64) + 1)
    key = np.where(present, take.astype(np.int64) * (len(runiq) + 1) + rkey, -1)
    pcodes, first = _factorize_ints(key)
    pair_val = text[take[first]] if len(first) else np.empty(0, dtype=object)
    pair_bad = type_bad[take[first]] if len(first) else np.empty(0, dtype=bool)
    pair_reg = np.where(row_plus[first], "", np.asarray(reg_rows, dtype=object)[first]).astype(object)
    usable = ~pair_bad & np.array([v is not None for v in pair_val], dtype=bool)
    result = np.full(len(first), None, dtype=object)
    if usable.any():
        pos = np.flatnonzero(usable)
        vals = pair_val[pos]
        shape_ok = pd.Series(vals, dtype=_STRING_OUT).str.fullmatch(r"\+?\d+").to_numpy(dtype=bool, na_value=False)
        regs = pair_reg[pos]
        fast = np.full(len(pos), None, dtype=object)
        if shape_ok.any():
            fast[shape_ok] = _fast_phone(vals[shape_ok], regs[shape_ok])
        for j in np.flatnonzero(shape_ok & np.array([f is None for f in fast], dtype=bool)):
            fast[j] = _slow_phone(str(vals[j]), str(regs[j]))
        result[pos] = fast
    invalid_pair = np.array([r is None for r in result], dtype=bool)
    original = uniques[take[first]] if len(first) else np.empty(0, dtype=object)
    changed_pair = np.asarray(original != result, dtype=bool)
    u = _U(values=result, invalid=invalid_pair, changed=changed_pair & ~invalid_pair)
    return _finish(s, pcodes, u, reason=INVALID_PHONE, out_dtype=_STRING_OUT, change_reason="phone_normalised")


# --------------------------------------------------------------------------------------------------
# Enumerations: gender, boolean
# --------------------------------------------------------------------------------------------------

_GENDER_MAP: Final[Mapping[str, str]] = {
    **dict.fromkeys(("m", "male", "man", "boy", "he", "him", "he/him"), "male"),
    **dict.fromkeys(("f", "female", "woman", "girl", "she", "her", "she/her"), "female"),
    **dict.fromkeys(
        (
            "other",
            "non-binary",
            "nonbinary",
            "non binary",
            "nb",
            "x",
            "diverse",
            "genderqueer",
            "they",
            "them",
            "they/them",
        ),
        "other",
    ),
}
_GENDER_MISSING: Final = frozenset(
    (
        "",
        "unknown",
        "u",
        "prefer not to say",
        "prefer_not_to_say",
        "prefer not to answer",
        "not specified",
        "unspecified",
        "n/a",
        "na",
        "none",
        "null",
        "-",
    )
)
_GENDERS: Final = frozenset(("male", "female", "other"))


def _norm_keys(values: ObjArray) -> ObjArray:
    """Strip + casefold + collapse inner whitespace (vectorised over distinct strings)."""
    s = pd.Series(values, dtype=_STRING_OUT).str.strip().str.lower().str.replace(r"\s+", " ", regex=True)
    return s.pipe(_to_obj)


def to_gender(s: pd.Series, *, extra: Mapping[str, str] | None = None) -> Coerced:
    """Coerce to ``male`` | ``female`` | ``other`` (case-insensitive, trimmed).

    m/male/man/boy/he/him -> male; f/female/woman/girl/she/her -> female; other/non-binary/nonbinary/nb/x/
    diverse/genderqueer/they/them -> other. Blank, ``unknown``, ``u``, ``prefer not to say``, ``n/a``,
    ``na``, ``none``, ``null``, ``-`` -> missing (not invalid). Anything else, and non-strings ->
    ``invalid_gender``. ``extra`` maps further spellings (keys normalised the same way) to one of the three
    values, or to ``""`` to mark a spelling as missing; it takes precedence over the built-in map.
    """
    mapping = dict(_GENDER_MAP)
    missing_keys = set(_GENDER_MISSING)
    for k, v in (extra or {}).items():
        key = " ".join(k.strip().lower().split())
        if v == "":
            missing_keys.add(key)
            mapping.pop(key, None)
        elif v in _GENDERS:
            mapping[key] = v
            missing_keys.discard(key)
        else:
            raise ValueError(f"extra gender mapping {k!r} -> {v!r}: target must be male, female, other or ''")

    def core(uniques: ObjArray) -> _U:
        is_str = _classify(uniques)[0]
        keys = np.full(len(uniques), None, dtype=object)
        keys[is_str] = _norm_keys(uniques[is_str])
        ks = pd.Series(keys, dtype=object)
        vals = ks.map(mapping).pipe(_to_obj)
        is_missing = is_str & ks.isin(missing_keys).to_numpy(dtype=bool)
        invalid = np.array([v is None for v in vals], dtype=bool) & ~is_missing
        changed = is_str & ~invalid & ~is_missing & (uniques != vals)
        return _U(values=vals, invalid=invalid, changed=changed)

    return _run(s, core, reason=INVALID_GENDER, out_dtype=_STRING_OUT, change_reason="gender_normalised")


_TRUE: Final = frozenset(("true", "t", "yes", "y", "1", "on", "1.0"))
_FALSE: Final = frozenset(("false", "f", "no", "n", "0", "off", "0.0"))


def to_bool(s: pd.Series, *, extra_true: Iterable[str] = (), extra_false: Iterable[str] = ()) -> Coerced:
    """Coerce to Python ``bool`` (dtype ``boolean``); blank string -> missing.

    Strings (case-insensitive, trimmed): true/t/yes/y/1/on/1.0 -> True, false/f/no/n/0/off/0.0 -> False,
    plus ``extra_true``/``extra_false``. Numbers: exactly 1 -> True, exactly 0 -> False. Bool dtypes pass
    through. Anything else (``"maybe"``, ``2``, NaN-free floats like 0.5) -> ``invalid_boolean``.
    """
    trues = set(_TRUE) | {" ".join(x.strip().lower().split()) for x in extra_true}
    falses = set(_FALSE) | {" ".join(x.strip().lower().split()) for x in extra_false}
    if trues & falses:
        raise ValueError(f"values both true and false: {sorted(trues & falses)}")
    if pd.api.types.is_bool_dtype(s.dtype) and not isinstance(s.dtype, pd.CategoricalDtype):
        values = s.astype("boolean")
        return Coerced(values, pd.Series(False, index=s.index, name=s.name), INVALID_BOOLEAN)

    def core(uniques: ObjArray) -> _U:
        is_str, is_bool, is_num = _classify(uniques)
        vals = np.full(len(uniques), None, dtype=object)
        missing = np.zeros(len(uniques), dtype=bool)
        if is_str.any():
            keys = pd.Series(_norm_keys(uniques[is_str]), dtype=object)
            mapped = keys.map(dict.fromkeys(trues, True) | dict.fromkeys(falses, False))
            vals[is_str] = mapped.pipe(_to_obj)
            missing[is_str] = (keys == "").to_numpy(dtype=bool)
        if is_bool.any():
            vals[is_bool] = [bool(v) for v in uniques[is_bool]]
        for i in np.flatnonzero(is_num):
            v = uniques[i]
            if v == 1:
                vals[i] = True
            elif v == 0:
                vals[i] = False
        invalid = np.array([v is None for v in vals], dtype=bool) & ~missing
        changed = ~invalid & ~missing & ~is_bool
        return _U(values=vals, invalid=invalid, changed=changed)

    return _run(s, core, reason=INVALID_BOOLEAN, out_dtype="boolean", change_reason="boolean_coerced")


# --------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------

_NUMBER_RE: Final = r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?$"
_INF_WORDS: Final = frozenset(("inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"))
_INT64_BOUND: Final = 2.0**63


def to_number(s: pd.Series, *, integer: bool = False) -> Coerced:
    """Coerce to a number: dtype ``Float64``, or ``Int64`` when ``integer=True``; missing is ``<NA>``.

    Accepts numeric dtypes, ``Decimal``, and strings matching ``[-+]?digits[.digits][e±digits]`` after
    trimming (no thousands separators: ``"1,234.5"`` is ``invalid_number``, as are ``"12a"`` and
    ``"nan"``). NaN/None from the source is missing; blank strings are missing. ``±inf`` (values or text)
    -> ``non_finite_number``. Booleans are not numbers (``invalid_number``) so an attribute never flips
    type. ``integer=True``: a fractional value -> ``not_an_integer``; beyond int64 ->
    ``number_out_of_range``. Per-row codes in ``reasons``.
    """
    dtype = s.dtype
    out_dtype = "Int64" if integer else "Float64"
    if (
        pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
        and not isinstance(dtype, pd.CategoricalDtype)
    ):
        return _number_vectorised(s, integer=integer, out_dtype=out_dtype)

    def core(uniques: ObjArray) -> _U:
        n = len(uniques)
        is_str, _is_bool, is_num = _classify(uniques)
        nums = np.full(n, np.nan)
        reasons = np.full(n, None, dtype=object)
        missing = np.zeros(n, dtype=bool)
        exact_int: dict[int, int] = {}
        if is_str.any():
            st = pd.Series(uniques[is_str], dtype=_STRING_OUT).str.strip()
            ok = st.str.fullmatch(_NUMBER_RE).to_numpy(dtype=bool, na_value=False)
            blank = (st == "").to_numpy(dtype=bool, na_value=False)
            inf = st.str.lower().isin(_INF_WORDS).to_numpy(dtype=bool)
            parsed = pd.to_numeric(st.where(ok), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            pos = np.flatnonzero(is_str)
            nums[pos] = np.where(ok, parsed, np.nan)
            missing[pos] = blank
            reasons[pos[~ok & ~blank]] = INVALID_NUMBER
            reasons[pos[inf]] = NON_FINITE_NUMBER
            if integer:
                int_like = st.str.fullmatch(r"[-+]?\d+").to_numpy(dtype=bool, na_value=False)
                for i, txt in zip(pos[int_like], st[int_like], strict=True):
                    exact_int[int(i)] = int(txt)
        for i in np.flatnonzero(is_num):
            v = uniques[i]
            if isinstance(v, numbers.Integral):
                exact_int[int(i)] = int(v)
            if isinstance(v, float | np.floating) and math.isnan(v):
                missing[i] = True
                continue
            try:
                nums[i] = float(v)
            except (OverflowError, ValueError):
                nums[i] = math.inf if v > 0 else -math.inf
            if isinstance(v, decimal.Decimal) and v.is_nan():
                missing[i] = True
        other = ~is_str & ~is_num
        reasons[other] = INVALID_NUMBER
        nonfin = np.isinf(nums) & np.array([r is None for r in reasons], dtype=bool)
        reasons[nonfin] = NON_FINITE_NUMBER
        vals = np.full(n, None, dtype=object)
        good = np.array([r is None for r in reasons], dtype=bool) & ~missing & ~np.isnan(nums)
        if integer:
            frac = good & (np.floor(nums) != nums)
            reasons[frac] = NOT_AN_INTEGER
            big = good & ~frac & (np.abs(nums) >= _INT64_BOUND)
            for i in np.flatnonzero(good & ~frac):
                if i in exact_int:
                    big[i] = not (-(2**63) <= exact_int[int(i)] < 2**63)
            reasons[big] = NUMBER_OUT_OF_RANGE
            good &= ~frac & ~big
            for i in np.flatnonzero(good):
                vals[i] = exact_int.get(int(i), int(nums[i]))
        else:
            vals[good] = nums[good].tolist() if good.any() else []
        invalid = np.array([r is not None for r in reasons], dtype=bool)
        return _U(values=vals, invalid=invalid, reasons=reasons)

    return _run(s, core, reason=INVALID_NUMBER, out_dtype=out_dtype, multi_reason=True)


def _number_vectorised(s: pd.Series, *, integer: bool, out_dtype: str) -> Coerced:
    idx = s.index
    is_int = pd.api.types.is_integer_dtype(s.dtype)
    null = s.isna().to_numpy(dtype=bool)
    reasons = np.full(len(s), None, dtype=object)
    if is_int:
        values = s.astype("Int64") if integer else s.astype("Float64")
    else:
        f = s.to_numpy(dtype=np.float64, na_value=np.nan)
        null = np.isnan(f)
        nonfin = np.isinf(f)
        reasons[nonfin] = NON_FINITE_NUMBER
        good = ~null & ~nonfin
        if integer:
            frac = good & (np.floor(np.where(good, f, 0)) != np.where(good, f, 0))
            big = good & ~frac & (np.abs(np.where(good, f, 0)) >= _INT64_BOUND)
            reasons[frac] = NOT_AN_INTEGER
            reasons[big] = NUMBER_OUT_OF_RANGE
            good &= ~frac & ~big
            arr: Any = pd.array(np.where(good, f, 0).astype(np.int64), dtype="Int64")
            arr[~good] = pd.NA
        else:
            arr = pd.array(np.where(good, f, 0.0), dtype="Float64")
            arr[~good] = pd.NA
        values = pd.Series(arr, index=idx, name=s.name)
    invalid = np.array([r is not None for r in reasons], dtype=bool) if reasons.size else np.zeros(0, bool)
    return Coerced(
        values=pd.Series(values.array, index=idx, name=s.name),
        invalid=pd.Series(invalid, index=idx, name=s.name),
        reason=INVALID_NUMBER,
        reasons=pd.Series(pd.array(reasons, dtype=_STRING_OUT), index=idx, name=s.name),
    )


# --------------------------------------------------------------------------------------------------
# Strings
# --------------------------------------------------------------------------------------------------

# C0 controls except \t \n \r, DEL, and lone surrogates (which cannot be encoded as UTF-8).
_CONTROL_RE: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _scalar_to_text(v: Any) -> str | None:
    """Deterministic text for one non-string scalar; None = cannot be represented."""
    if isinstance(v, bool | np.bool_):
        return "true" if v else "false"
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, float | np.floating):
        return repr(float(v))
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, dt.datetime | dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, np.datetime64):
        return str(np.datetime_as_string(v))
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if isinstance(v, dict | list | tuple):
        try:
            return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()
        except TypeError:
            return None
    return None


def to_string(s: pd.Series, *, max_len: int = STRING_MAX_LEN, empty_as_missing: bool = False) -> Coerced:
    """Coerce to ``str`` (dtype ``string``).

    Non-strings are converted deterministically: ints ``"5"`` (no ``.0``), floats ``repr`` (``"1.5"``,
    ``"1.0"``), bools ``"true"``/``"false"``, ``Decimal`` via ``str`` (``"1.50"``), datetimes/dates
    ``isoformat()`` (naive stays naive), bytes decoded as UTF-8, dicts/lists as compact JSON with sorted
    keys. Anything else (undecodable bytes, arbitrary objects) -> ``invalid_string``.

    Cleaning: C0 control characters other than ``\\t \\n \\r``, DEL and lone surrogates are removed
    (they break JSON encoders); surrounding whitespace is kept. Then strings longer than ``max_len`` code
    points are cut to ``max_len`` (Python slicing: never splits a code point); such rows are flagged in
    ``trimmed`` and ``changed`` (``change_reason="string_trimmed"``). ``changed`` also flags removed
    control characters and non-string conversions. Empty strings stay ``""`` (a legitimate clear value)
    unless ``empty_as_missing=True``, which makes empty and whitespace-only strings missing.
    """
    if max_len < 1:
        raise ValueError("max_len must be >= 1")

    def core(uniques: ObjArray) -> _U:
        n = len(uniques)
        is_str = _classify(uniques)[0]
        text = np.full(n, None, dtype=object)
        text[is_str] = uniques[is_str]
        converted = ~is_str
        for i in np.flatnonzero(converted):
            text[i] = _scalar_to_text(uniques[i])
        invalid = np.array([t is None for t in text], dtype=bool)
        ok = ~invalid
        ser = pd.Series(text[ok], dtype=object)
        cleaned = ser.str.replace(_CONTROL_RE, "", regex=True)
        ctrl = (cleaned != ser).to_numpy(dtype=bool)
        lengths = cleaned.str.len().to_numpy(dtype=np.int64)
        cut = lengths > max_len
        cleaned = cleaned.where(~cut, cleaned.str.slice(0, max_len))
        vals = np.full(n, None, dtype=object)
        vals[ok] = cleaned.to_numpy(dtype=object)
        trimmed = np.zeros(n, dtype=bool)
        trimmed[ok] = cut
        changed = converted & ok
        changed[ok] |= ctrl | cut
        if empty_as_missing and ok.any():
            blank = pd.Series(vals[ok], dtype=object).str.strip().eq("").to_numpy(dtype=bool)
            pos = np.flatnonzero(ok)[blank]
            vals[pos] = None
            changed[pos] = trimmed[pos] = False
        return _U(values=vals, invalid=invalid, changed=changed, trimmed=trimmed)

    return _run(s, core, reason=INVALID_STRING, out_dtype=_STRING_OUT, change_reason=STRING_TRIMMED)


# --------------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------------


def _all_finite(v: Any) -> bool:
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, float) and not math.isfinite(x):
            return False
        if isinstance(x, dict):
            stack.extend(x.values())
        elif isinstance(x, list | tuple):
            stack.extend(x)
    return True


def _json_one(v: Any) -> tuple[Any, str | None]:
    """(value, reason) for one non-missing element."""
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, str | bytes):
        if isinstance(v, str) and not v.strip():
            return None, None  # blank text = missing
        try:
            v = orjson.loads(v)
        except orjson.JSONDecodeError:
            return None, INVALID_JSON
    if isinstance(v, tuple):
        v = list(v)
    if not isinstance(v, dict | list):
        return None, JSON_NOT_OBJECT
    try:
        orjson.dumps(v)  # non-str keys, unsupported objects
    except TypeError:
        return None, INVALID_JSON
    if not _all_finite(v):
        return None, INVALID_JSON
    return v, None


def to_json_object(s: pd.Series) -> Coerced:
    """Coerce to ``dict``/``list`` (dtype ``object``, ``None`` for missing).

    Accepts dicts/lists (also tuples and 1-d numpy arrays from pyarrow list columns, as lists), JSON text
    (parsed with orjson; blank text is missing). Invalid JSON text, non-string keys, unserialisable
    objects and NaN/inf anywhere inside -> ``invalid_json``; text or values that are not an object/array
    (``"3"``, ``"\\"x\\""``, ``5``) -> ``json_not_object``. Containers cannot be hashed, so this is the one
    function that looks at every row; JSON *text* is parsed once per distinct value, so rows with the same
    text share one parsed object: treat values as read-only.
    """
    idx = s.index
    if isinstance(s.dtype, pd.ArrowDtype) and (
        pa.types.is_struct(s.dtype.pyarrow_dtype)
        or pa.types.is_list(s.dtype.pyarrow_dtype)
        or pa.types.is_large_list(s.dtype.pyarrow_dtype)
        or pa.types.is_map(s.dtype.pyarrow_dtype)
    ):
        raw = _obj(pa.chunked_array(s.array._pa_array).to_pylist(), len(s))
    elif s.dtype == object:
        raw = s.to_numpy(dtype=object)
    else:
        codes, uniques = _factorize(s)
        u_vals = np.full(len(uniques), None, dtype=object)
        u_reason = np.full(len(uniques), None, dtype=object)
        for i, v in enumerate(uniques):
            u_vals[i], u_reason[i] = _json_one(v)
        u = _U(values=u_vals, invalid=np.array([r is not None for r in u_reason], dtype=bool), reasons=u_reason)
        return _finish(s, codes, u, reason=INVALID_JSON, out_dtype="json", multi_reason=True)
    n = len(raw)
    null = np.asarray(pd.isna(raw), dtype=bool)
    vals = np.full(n, None, dtype=object)
    reasons = np.full(n, None, dtype=object)
    is_text = np.fromiter((isinstance(v, str) for v in raw), dtype=bool, count=n) & ~null
    if is_text.any():
        sub = _finish_json_text(raw[is_text])
        vals[is_text], reasons[is_text] = sub
    for k in np.flatnonzero(~is_text & ~null):
        vals[k], reasons[k] = _json_one(raw[k])
    invalid = np.array([r is not None for r in reasons], dtype=bool)
    return Coerced(
        values=pd.Series(vals, index=idx, dtype=object, name=s.name),
        invalid=pd.Series(invalid, index=idx, name=s.name),
        reason=INVALID_JSON,
        reasons=pd.Series(pd.array(reasons, dtype=_STRING_OUT), index=idx, name=s.name),
    )


def _finish_json_text(texts: ObjArray) -> tuple[ObjArray, ObjArray]:
    codes, uniques = pd.factorize(texts)
    u_vals = np.full(len(uniques), None, dtype=object)
    u_reason = np.full(len(uniques), None, dtype=object)
    for i, v in enumerate(uniques):
        u_vals[i], u_reason[i] = _json_one(v)
    return _expand_obj(u_vals, codes), _expand_obj(u_reason, codes)


# --------------------------------------------------------------------------------------------------
# Email
# --------------------------------------------------------------------------------------------------

_EMAIL_RE: Final = r"^[^@\s]+@[^@\s.][^@\s]*\.[^@\s]*[^@\s.]$"


def to_email(s: pd.Series) -> Coerced:
    """Coerce to an email address: trimmed, **domain lower-cased, local part kept as written**.

    Valid: exactly one ``@``, a non-empty local part, a domain containing a dot that neither starts nor
    ends with a dot and has no ``..``, and no whitespace or control characters anywhere. Anything else
    (and non-strings) -> ``invalid_email``. Blank strings are missing. No DNS/MX look-ups.
    """

    def core(uniques: ObjArray) -> _U:
        n = len(uniques)
        is_str = _classify(uniques)[0]
        vals = np.full(n, None, dtype=object)
        invalid = ~is_str
        missing = np.zeros(n, dtype=bool)
        if is_str.any():
            st = pd.Series(uniques[is_str], dtype=_STRING_OUT).str.strip()
            blank = (st == "").to_numpy(dtype=bool, na_value=False)
            shape = st.str.fullmatch(_EMAIL_RE).to_numpy(dtype=bool, na_value=False)
            shape &= ~st.str.contains(r"[\x00-\x1f\x7f]", regex=True).to_numpy(dtype=bool, na_value=False)
            parts = st.str.rpartition("@")
            domain = parts[2].str.lower()
            shape &= ~domain.str.contains("..", regex=False).to_numpy(dtype=bool, na_value=False)
            email = parts[0] + "@" + domain
            pos = np.flatnonzero(is_str)
            vals[pos[shape]] = email[shape].to_numpy(dtype=object)
            missing[pos] = blank
            invalid[pos] = ~shape & ~blank
        changed = ~invalid & ~missing & (vals != uniques)
        return _U(values=vals, invalid=invalid, changed=changed)

    return _run(s, core, reason=INVALID_EMAIL, out_dtype=_STRING_OUT, change_reason="email_normalised")


# --------------------------------------------------------------------------------------------------
# Attribute / event names
# --------------------------------------------------------------------------------------------------

_RESERVED_PREFIX: Final = "we_"
_RENAMED_PREFIX: Final = "attr_"


def attribute_name_problem(name: str) -> str | None:
    """Why WebEngage would ignore this attribute/event name, or ``None`` when it is fine.

    ``"empty_name"`` (blank), ``"reserved_prefix"`` (starts with ``we_``, any case, after stripping
    surrounding whitespace), ``"name_too_long"`` (50 characters or more; WebEngage needs fewer than 50).
    """
    stripped = name.strip()
    if not stripped:
        return "empty_name"
    if stripped[:3].lower() == _RESERVED_PREFIX:
        return "reserved_prefix"
    if len(name) > ATTRIBUTE_NAME_MAX_LEN:
        return "name_too_long"
    return None


def sanitize_attribute_name(name: str) -> str:
    """Rename an attribute/event name so WebEngage accepts it; names without a problem come back stripped.

    Rule, applied in order:

    1. strip surrounding whitespace; a blank name raises ``ValueError``;
    2. a leading ``we_`` (any case) is replaced with ``attr_`` (``we_score`` -> ``attr_score``);
    3. if the result is longer than 49 characters it becomes its first 40 characters + ``"_"`` + the first
       8 hex digits of ``sha1(stripped original name, UTF-8)``, i.e. 49 characters, so two long names
       sharing a 40-character prefix stay distinct.

    Renaming can still collide with another column's name (``we_x`` and ``attr_x``); callers must check
    the final set of names for duplicates.
    """
    stripped = name.strip()
    if not stripped:
        raise ValueError("attribute name is empty")
    out = stripped
    if out[:3].lower() == _RESERVED_PREFIX:
        out = _RENAMED_PREFIX + out[3:]
    if len(out) > ATTRIBUTE_NAME_MAX_LEN:
        digest = hashlib.sha1(stripped.encode("utf-8"), usedforsecurity=False).hexdigest()[:8]
        out = f"{out[:40]}_{digest}"
    return out
