"""Enumerations: :func:`to_gender`, and :func:`to_bool` with the one list of boolean words for data
(:data:`TRUE_WORDS`, :data:`FALSE_WORDS`; the event transform reads the same list)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import numpy as np
import pandas as pd

from etl.transform.formats.core import (
    _STRING_OUT,
    _U,
    INVALID_BOOLEAN,
    INVALID_GENDER,
    Coerced,
    ObjArray,
    _classify,
    _run,
    _to_obj,
)

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


#: The words a data value may use for a boolean (compared lower-cased, trimmed, inner blanks folded): profile
#: attributes (:func:`to_bool`) and event properties (``etl.transform.events.convert``) read the same list.
TRUE_WORDS: Final = frozenset(("true", "t", "yes", "y", "1", "on", "1.0"))
FALSE_WORDS: Final = frozenset(("false", "f", "no", "n", "0", "off", "0.0"))


def bool_word(text: str) -> bool | None:
    """``True``/``False`` for a boolean word (:data:`TRUE_WORDS`, :data:`FALSE_WORDS`), else ``None``."""
    key = " ".join(text.strip().lower().split())
    return True if key in TRUE_WORDS else False if key in FALSE_WORDS else None


def to_bool(s: pd.Series, *, extra_true: Iterable[str] = (), extra_false: Iterable[str] = ()) -> Coerced:
    """Coerce to Python ``bool`` (dtype ``boolean``); blank string -> missing.

    Strings (case-insensitive, trimmed): true/t/yes/y/1/on/1.0 -> True, false/f/no/n/0/off/0.0 -> False,
    plus ``extra_true``/``extra_false``. Numbers: exactly 1 -> True, exactly 0 -> False. Bool dtypes pass
    through. Anything else (``"maybe"``, ``2``, NaN-free floats like 0.5) -> ``invalid_boolean``.
    """
    trues = set(TRUE_WORDS) | {" ".join(x.strip().lower().split()) for x in extra_true}
    falses = set(FALSE_WORDS) | {" ".join(x.strip().lower().split()) for x in extra_false}
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
