"""Numbers: :func:`to_number` (``Float64``, or ``Int64`` with ``integer=True``)."""

from __future__ import annotations

import decimal
import math
import numbers
from typing import Any, Final

import numpy as np
import pandas as pd

from etl.transform.formats.core import (
    _STRING_OUT,
    _U,
    INVALID_NUMBER,
    NON_FINITE_NUMBER,
    NOT_AN_INTEGER,
    NUMBER_OUT_OF_RANGE,
    Coerced,
    ObjArray,
    _classify,
    _run,
)

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
