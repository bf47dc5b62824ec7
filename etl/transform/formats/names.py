"""Attribute and event names: what WebEngage would silently ignore, and the rename rule."""

from __future__ import annotations

import hashlib
from typing import Final

from etl.transform.formats.core import ATTRIBUTE_NAME_MAX_LEN

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
