"""Garbage from upstream bugs: null-like tokens (``str(None)``, pandas writing NaN as text, JavaScript's
``undefined``), control characters, and objects over WebEngage's 16 KB limit.

WebEngage keeps whatever it is sent, forever: a profile ``"null"``, an event named ``"undefined"``, a key with a
NUL in it. So:

* ids and event names that are a null-like token, or contain any control character, are rejected
  (:data:`NULL_LIKE_ID`, :data:`CONTROL_CHARACTER_IN_ID`, ...);
* attribute/property keys lose their control characters (all of them), string values lose theirs (all but
  tab, line feed and carriage return, which are text) -- the same rule as :func:`~.text.to_string`;
  :func:`clean_text` and :func:`clean_json` say whether anything was removed, so the run can count it;
* a string value that is a null-like token is missing unless the mapping keeps them (:data:`NULL_LIKE_VALUE`);
* an object/array over :data:`OBJECT_MAX_BYTES` (its compact JSON) is left out (:data:`OBJECT_TOO_LARGE`).

The token list is an argument (the setting ``null_tokens``), never read here: transforms stay pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: The default of the ``null_tokens`` setting (compared case-insensitively, after trimming).
DEFAULT_NULL_TOKENS: Final = ("null", "none", "nan", "undefined", "nil")
#: WebEngage: map/array values at most 16 KB (per profile for user attributes; per value for event data).
OBJECT_MAX_BYTES: Final = 16 * 1024

NULL_LIKE_ID: Final = "null_like_id"
CONTROL_CHARACTER_IN_ID: Final = "control_character_in_id"
NULL_LIKE_EVENT_NAME: Final = "null_like_event_name"
CONTROL_CHARACTER_IN_EVENT_NAME: Final = "control_character_in_event_name"
NULL_LIKE_VALUE: Final = "null_like_value"
OBJECT_TOO_LARGE: Final = "object_too_large"
EMPTY_PROPERTY_NAME: Final = "empty_property_name"
EVENT_TIME_IN_FUTURE: Final = "event_time_in_future"

#: Any control character (C0, DEL, C1): never in an id, an event name or a key.
_ANY_CONTROL: Final = "[\x00-\x1f\x7f-\x9f]"
_ANY_CONTROL_RE: Final = re.compile(_ANY_CONTROL)
#: In values: C0 controls except \t \n \r, DEL, and lone surrogates (as :func:`~.text.to_string` removes).
_VALUE_CONTROL_RE: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_C0_PATTERN: Final = "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]"  # RE2 (Arrow) spelling, no surrogates


def null_tokens(tokens: Iterable[str] = DEFAULT_NULL_TOKENS) -> frozenset[str]:
    """The tokens as compared: trimmed, lower-cased, blanks left out."""
    return frozenset(t.strip().lower() for t in tokens if t.strip())


def is_null_like(text: str, tokens: frozenset[str]) -> bool:
    return text.strip().lower() in tokens


def has_control(text: str) -> bool:
    """Any control character at all (what an id or an event name must not have)."""
    return _ANY_CONTROL_RE.search(text) is not None


def null_like_mask(text: pd.Series, tokens: frozenset[str]) -> pd.Series:
    """Vectorised :func:`is_null_like` over a ``string`` Series (missing is False)."""
    return text.str.strip().str.lower().isin(tokens).fillna(False).astype(bool)


def control_mask(text: pd.Series) -> pd.Series:
    """Vectorised :func:`has_control` over a ``string`` Series (missing is False)."""
    return text.str.contains(_ANY_CONTROL, regex=True).fillna(False).astype(bool)


def clean_key(key: str) -> str:
    """An attribute/property key without control characters."""
    return _ANY_CONTROL_RE.sub("", key)


def clean_text(value: str) -> str:
    """A string value without control characters (tab, line feed and carriage return stay)."""
    return _VALUE_CONTROL_RE.sub("", value)


def clean_json(value: Any) -> tuple[Any, int]:
    """``value`` with control characters removed from every key and string inside it, and how many keys and
    strings changed. Two keys equal once cleaned: the later one wins, as in a JSON object."""
    if isinstance(value, str):
        cleaned = clean_text(value)
        return cleaned, int(cleaned != value)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        changed = 0
        for k, v in value.items():
            key = clean_key(k) if isinstance(k, str) else k
            changed += int(key != k)
            out[key], n = clean_json(v)
            changed += n
        return out, changed
    if isinstance(value, list):
        items = [clean_json(v) for v in value]
        return [v for v, _n in items], sum(n for _v, n in items)
    return value, 0


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (what counts against the 16 KB limit); 0 if it cannot be encoded."""
    try:
        return len(orjson.dumps(value))
    except TypeError:
        return 0


def printable(text: str, limit: int = 60) -> str:
    """``text`` safe for the rejects table and logs: control characters escaped, cut to ``limit``."""
    shown = _ANY_CONTROL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return shown if len(shown) <= limit else shown[:limit] + "…"


def clean_values(
    col: pd.Series, tokens: frozenset[str], *, keep_null_like: bool
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """A column's string values without control characters and, unless ``keep_null_like``, with null-like
    ones made missing. Returns (values, null_like mask, cleaned mask); other values pass unchanged.

    Vectorised with Arrow; only the (rare) values with a control character are cleaned one by one."""
    n = len(col)
    false = pd.Series(np.zeros(n, dtype=bool), index=col.index)
    dtype = col.dtype
    if not (
        pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype | pd.ArrowDtype | pd.CategoricalDtype)
    ):
        return col, false, false
    values = col.to_numpy(dtype=object)
    is_text = np.fromiter((isinstance(v, str) for v in values.tolist()), dtype=bool, count=n)
    if not is_text.any():
        return col, false, false
    texts = values[is_text]
    try:
        arr = pa.array(texts.tolist(), type=pa.large_string())
        dirty = pc.match_substring_regex(arr, _C0_PATTERN).to_numpy(zero_copy_only=False).astype(bool)
    except (pa.ArrowException, UnicodeError):  # lone surrogates: Arrow cannot hold them
        arr = None
        dirty = np.fromiter(
            (_VALUE_CONTROL_RE.search(t) is not None for t in texts.tolist()), dtype=bool, count=len(texts)
        )
    if dirty.any():
        texts = texts.copy()
        texts[dirty] = [clean_text(t) for t in texts[dirty].tolist()]
        arr = None
    if keep_null_like or not tokens:
        null_hit = np.zeros(len(texts), dtype=bool)
    else:
        if arr is None:
            arr = pa.array(texts.tolist(), type=pa.large_string())
        lowered = pc.utf8_lower(pc.utf8_trim_whitespace(arr))
        null_hit = pc.is_in(lowered, value_set=pa.array(sorted(tokens), type=pa.large_string()))
        null_hit = null_hit.to_numpy(zero_copy_only=False).astype(bool)
    if not dirty.any() and not null_hit.any():
        return col, false, false
    cleaned = np.zeros(n, dtype=bool)
    cleaned[is_text] = dirty
    null_like = np.zeros(n, dtype=bool)
    null_like[is_text] = null_hit
    texts[null_hit] = None
    out = values.copy()
    out[is_text] = texts
    result = pd.Series(out, index=col.index, dtype=object, name=col.name)
    if isinstance(dtype, pd.StringDtype):
        result = result.astype(dtype)
    return result, pd.Series(null_like, index=col.index), pd.Series(cleaned, index=col.index)
