"""The result type of every coercion (:class:`Coerced`), WebEngage's limits, the reason codes, and the
shared machinery: object columns are factorised by ``(type, value)``, each function's core runs once per
distinct value, and the results are expanded back to the rows (see :mod:`etl.transform.formats`)."""

from __future__ import annotations

import decimal
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

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
