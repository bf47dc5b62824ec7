"""Dates: :func:`to_datetime_str` (WebEngage's ``YYYY-MM-DDTHH:MM:SS+0000``) and :func:`to_birth_date_str`."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from etl.transform.formats.core import (
    _STRING_OUT,
    BIRTH_DATE_IN_FUTURE,
    DATE_OUT_OF_RANGE,
    INVALID_DATE,
    BoolArray,
    Coerced,
    IntArray,
    ObjArray,
    _classify,
    _factorize,
)

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
