"""Event and property names: the Datafly default name table, name lookup, camelCase.

Source names are looked up by a normalised key (lower case, runs of other characters as one ``_``), so
``Products Searched``, ``products_searched`` (Segment's table/slug form) and ``PRODUCTS SEARCHED`` all
find the same entry. A WebEngage name that is a target of the table maps to itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

#: Datafly Signal's event table for WebEngage (seed 001), source name -> WebEngage event name.
DATAFLY_EVENT_NAMES: Final[dict[str, str]] = {
    "page": "Page Viewed",
    "Signed Up": "Signed Up",
    "Logged In": "Logged In",
    "Products Searched": "Searched",
    "Product Viewed": "Product Viewed",
    "Product Added": "Added to Cart",
    "Product Removed": "Removed from Cart",
    "Checkout Started": "Checkout Started",
    "Order Completed": "Order Completed",
    "Order Refunded": "Order Refunded",
}
#: Added here: Segment ``screens`` rows arrive as ``screen`` (the Datafly table has no app screens).
EXTRA_EVENT_NAMES: Final[dict[str, str]] = {"screen": "Screen Viewed"}
#: Property renames of the Datafly example (applied before camelCase; the target is used verbatim).
DEFAULT_PROPERTY_RENAMES: Final[dict[str, str]] = {"revenue": "amount"}

_NON_ALNUM = re.compile(r"[^0-9a-z]+")
_SEPARATORS = re.compile(r"[\s_\-.]+")


def name_key(name: str) -> str:
    """The lookup key of an event name: ``"Products Searched"`` and ``"products_searched"`` -> the same."""
    return _NON_ALNUM.sub("_", name.strip().lower()).strip("_")


def camel_case(name: str) -> str:
    """``order_id`` -> ``orderId``, ``page url`` -> ``pageUrl``; names without separators are kept."""
    parts = [p for p in _SEPARATORS.split(name.strip()) if p]
    if len(parts) <= 1:
        return parts[0] if parts else name.strip()
    first = parts[0][:1].lower() + parts[0][1:]
    return first + "".join(p[:1].upper() + p[1:] for p in parts[1:])


@dataclass(frozen=True)
class NameTable:
    """Source event name -> WebEngage event name, by :func:`name_key`."""

    entries: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, *tables: Mapping[str, str]) -> NameTable:
        """Later tables override earlier ones; every target also maps to itself unless a table says otherwise."""
        entries: dict[str, str] = {}
        for table in tables:
            for target in table.values():
                entries.setdefault(name_key(target), target)
        for table in tables:
            entries.update({name_key(source): target for source, target in table.items()})
        return cls({k: v for k, v in entries.items() if k})

    def lookup(self, name: str) -> str | None:
        """The WebEngage name for ``name``, or None when the table does not know it."""
        return self.entries.get(name_key(name))


def default_name_table(overrides: Mapping[str, str] | None = None) -> NameTable:
    return NameTable.build(DATAFLY_EVENT_NAMES, EXTRA_EVENT_NAMES, overrides or {})
