"""JSON: :func:`to_json_object` (objects and arrays, finite numbers only)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from etl.transform.formats.core import (
    _STRING_OUT,
    _U,
    INVALID_JSON,
    JSON_NOT_OBJECT,
    Coerced,
    ObjArray,
    _expand_obj,
    _factorize,
    _finish,
    _obj,
)


def all_finite(v: Any) -> bool:
    """No NaN or infinity anywhere in a value, its dicts, lists and tuples."""
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
    if not all_finite(v):
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
