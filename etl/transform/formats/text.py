"""Strings: :func:`to_string` (control characters removed, cut to fewer than 1,000 characters)."""

from __future__ import annotations

import datetime as dt
import decimal
import numbers
import re
from typing import Any, Final

import numpy as np
import orjson
import pandas as pd

from etl.transform.formats.core import (
    _STRING_OUT,
    _U,
    INVALID_STRING,
    STRING_MAX_LEN,
    STRING_TRIMMED,
    Coerced,
    ObjArray,
    _classify,
    _run,
)

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
