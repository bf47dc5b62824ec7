"""Pure per-item checks of user and event objects against the WebEngage contract.

WebEngage answers ``queued`` and then silently drops or truncates what breaks its rules; the sandbox
instead records a :class:`Violation` per broken rule and stores a cleaned copy, as WebEngage would keep
it. Checks that need state across requests (attribute type and count registries) live in ``store.py``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

Endpoint = Literal["users", "events", "bulk-users", "bulk-events"]
AttrType = Literal["boolean", "number", "date", "string", "object"]

ID_MAX = 100
NAME_MAX = 49  # "fewer than 50 characters"
STRING_MAX = 999  # "fewer than 1,000 characters"
RESERVED_PREFIX = "we_"
OBJECT_MAX_BYTES = 16 * 1024  # an event's map/array value (per profile for users: store.py)
#: Garbage WebEngage keeps forever: ids and event names that are one of these (any case, trimmed) are
#: upstream bugs (str(None), NaN written as text, JavaScript's undefined), as is any control character.
NULL_TOKENS = frozenset({"null", "none", "nan", "undefined", "nil"})
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")

DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{4}", re.ASCII)
PHONE_RE = re.compile(r"\+[1-9]\d{6,14}", re.ASCII)
GENDERS = frozenset({"male", "female", "other"})
OPT_INS = frozenset({"emailOptIn", "smsOptIn", "whatsappOptIn"})
STRING_FIELDS = frozenset(
    {
        "firstName",
        "lastName",
        "company",
        "hashedEmail",
        "hashedPhone",
        "country",
        "city",
        "region",
        "locality",
        "postalCode",
    }
)
USER_SYSTEM_FIELDS = STRING_FIELDS | OPT_INS | {"birthDate", "gender", "email", "phone"}
ID_FIELDS = ("userId", "anonymousId")
EVENT_FIELDS = frozenset({"userId", "anonymousId", "eventName", "eventTime", "eventData"})


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken contract rule. ``rule`` is a short stable code; ``detail`` never carries the value."""

    endpoint: str
    rule: str
    field: str | None
    detail: str
    item_index: int | None = None
    request_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class NonFinite(float):
    """A NaN/Infinity literal found while parsing a body; a float so it flows on and is then flagged."""

    __slots__ = ("literal",)

    literal: str

    def __new__(cls, literal: str) -> NonFinite:
        obj = super().__new__(cls, literal)
        obj.literal = literal
        return obj


def parse_json(body: bytes | str) -> Any:
    """Parse a request body. Strict JSON has no NaN/Infinity; stdlib accepts them, so we mark them instead."""
    return json.loads(body, parse_constant=NonFinite)


def is_date(value: object) -> bool:
    """True for a string in WebEngage's only safe date format ``yyyy-MM-ddTHH:mm:ss±hhmm``."""
    return isinstance(value, str) and DATE_RE.fullmatch(value) is not None


def classify(value: object) -> AttrType | None:
    """The WebEngage data type a value fixes for its attribute; None for null (which fixes nothing)."""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "date" if is_date(value) else "string"
    if isinstance(value, dict | list):
        return "object"
    return None


def garbage_text(value: str, what: str) -> str | None:
    """The rule an id or a name (``what``: ``id``, ``event_name``) WebEngage should never get breaks: ``null_like_…``
    or ``control_character_in_…``; None when it is fine."""
    if CONTROL_RE.search(value):
        return f"control_character_in_{what}"
    if value.strip().lower() in NULL_TOKENS:
        return f"null_like_{what}"
    return None


def object_bytes(value: object) -> int:
    """Bytes of a map/array value as compact JSON (0 for anything else)."""
    if not isinstance(value, dict | list):
        return 0
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def has_non_finite(value: object) -> bool:
    """NaN or ±Infinity anywhere inside ``value`` (nested objects included)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(has_non_finite(v) for v in value)
    return False


class _Collector:
    """Accumulates violations with the request context filled in once."""

    __slots__ = ("endpoint", "item_index", "request_id", "violations")

    def __init__(self, endpoint: str, item_index: int | None, request_id: str | None) -> None:
        self.endpoint = endpoint
        self.item_index = item_index
        self.request_id = request_id
        self.violations: list[Violation] = []

    def add(self, rule: str, field: str | None, detail: str) -> None:
        self.violations.append(Violation(self.endpoint, rule, field, detail, self.item_index, self.request_id))


def validate_user(
    user: object,
    *,
    endpoint: str = "users",
    item_index: int | None = None,
    request_id: str | None = None,
) -> tuple[dict[str, Any] | None, list[Violation]]:
    """Check one user object; return the copy WebEngage would keep (None if not an object) and violations."""
    out = _Collector(endpoint, item_index, request_id)
    if not isinstance(user, dict):
        out.add("invalid_item", None, "user is not a JSON object")
        return None, out.violations
    clean: dict[str, Any] = {}
    _check_ids(user, clean, out)
    for key, value in user.items():
        if key in ID_FIELDS:
            continue
        if key == "attributes":
            if isinstance(value, dict):
                clean["attributes"] = _check_attributes(value, "attributes", out)
                # Map/array attributes over 16 KB per profile: checked by the store, against the stored profile.
            else:
                out.add("invalid_attributes", key, "attributes must be a JSON object")
        elif key in USER_SYSTEM_FIELDS:
            kept = _check_system_field(key, value, out)
            if kept is not None:
                clean[key] = kept
        else:
            out.add("unknown_field", key, "not a WebEngage user field; custom data belongs in attributes")
    return clean, out.violations


def validate_event(
    event: object,
    *,
    endpoint: str = "events",
    item_index: int | None = None,
    request_id: str | None = None,
) -> tuple[dict[str, Any] | None, list[Violation]]:
    """Check one event object; return the copy WebEngage would keep (None if not an object) and violations.

    A kept copy without ``eventName`` or without an id cannot be stored.
    """
    out = _Collector(endpoint, item_index, request_id)
    if not isinstance(event, dict):
        out.add("invalid_item", None, "event is not a JSON object")
        return None, out.violations
    clean: dict[str, Any] = {}
    _check_ids(event, clean, out)
    name = event.get("eventName")
    if name is None or name == "":
        out.add("missing_event_name", "eventName", "eventName is required")
    elif not isinstance(name, str):
        out.add("invalid_type", "eventName", "eventName must be a string")
    elif len(name) > NAME_MAX:
        out.add("event_name_too_long", "eventName", f"{len(name)} chars; must be fewer than 50")
    elif name.lower().startswith(RESERVED_PREFIX):
        out.add("event_name_reserved", "eventName", "names starting with we_ are reserved")
    else:
        problem = garbage_text(name, "event_name")
        if problem is not None:  # WebEngage keeps it: an event type of its own, forever
            out.add(problem, "eventName", "an event name from an upstream bug")
        clean["eventName"] = name
    if "eventTime" in event:
        when = event["eventTime"]
        if is_date(when):
            clean["eventTime"] = when
        elif when is None:
            out.add("null_value", "eventTime", "null is not a date")
        else:
            out.add("invalid_date", "eventTime", "expected yyyy-MM-ddTHH:mm:ss±hhmm")
    if "eventData" in event:
        data = event["eventData"]
        if isinstance(data, dict):
            clean["eventData"] = _check_attributes(data, "eventData", out)
            for key, value in list(clean["eventData"].items()):
                size = object_bytes(value)
                if size > OBJECT_MAX_BYTES:  # WebEngage drops it silently
                    out.add("object_too_large", f"eventData.{key}", f"{size} bytes; at most {OBJECT_MAX_BYTES}")
                    del clean["eventData"][key]
        else:
            out.add("invalid_event_data", "eventData", "eventData must be a JSON object")
    for key in event:
        if key not in EVENT_FIELDS:
            out.add("unknown_field", key, "not a WebEngage event field; custom data belongs in eventData")
    return clean, out.violations


def check_user(user: object, **context: Any) -> list[Violation]:
    """Violations of one user object (see :func:`validate_user`)."""
    return validate_user(user, **context)[1]


def check_event(event: object, **context: Any) -> list[Violation]:
    """Violations of one event object (see :func:`validate_event`)."""
    return validate_event(event, **context)[1]


def has_identity(item: object) -> bool:
    """True when ``userId`` or ``anonymousId`` is present and non-empty (WebEngage's 400 check)."""
    return isinstance(item, dict) and any(item.get(k) not in (None, "") for k in ID_FIELDS)


def identity_key(item: Mapping[str, Any]) -> str | None:
    """Profile key of a cleaned item: its userId, else ``anon:`` + anonymousId (ignored next to a userId)."""
    user_id = item.get("userId")
    if user_id:
        return str(user_id)
    anonymous_id = item.get("anonymousId")
    return f"anon:{anonymous_id}" if anonymous_id else None


def _check_ids(item: Mapping[str, Any], clean: dict[str, Any], out: _Collector) -> None:
    present = False
    for key in ID_FIELDS:
        value = item.get(key)
        if value is None or value == "":
            continue
        present = True
        if not isinstance(value, str):
            out.add("invalid_id", key, f"{key} must be a string")
        elif len(value) > ID_MAX:
            rule = "user_id_too_long" if key == "userId" else "anonymous_id_too_long"
            out.add(rule, key, f"{len(value)} chars; at most {ID_MAX}")
        else:
            problem = garbage_text(value, "id")
            if problem is not None:  # WebEngage keeps it: a profile of its own, forever
                out.add(problem, key, f"{key} from an upstream bug")
            clean[key] = value
    if not present:
        out.add("missing_id", None, "userId and anonymousId are both empty")


def _check_system_field(key: str, value: Any, out: _Collector) -> Any:
    """The value to keep for a system field, or None when WebEngage would drop it."""
    if value is None:
        out.add("null_value", key, "WebEngage has no unset; send a same-typed value")
        return None
    if key in OPT_INS:
        if isinstance(value, bool):
            return value
        out.add("invalid_opt_in", key, "opt-ins must be JSON booleans")
        return None
    if not isinstance(value, str):
        rule = "non_finite_number" if has_non_finite(value) else "invalid_type"
        out.add(rule, key, f"{key} must be a string")
        return None
    if key == "birthDate" and not is_date(value):
        out.add("invalid_date", key, "expected yyyy-MM-ddTHH:mm:ss±hhmm")
        return None
    if key == "phone" and PHONE_RE.fullmatch(value) is None:
        out.add("invalid_phone", key, "expected E.164, e.g. +917850009678")
        return None
    if key == "gender" and value not in GENDERS:
        out.add("invalid_gender", key, "expected male, female or other")
        return None
    if key == "email" and value.count("@") != 1:
        out.add("invalid_email", key, "expected exactly one @")
        return None
    return _fit_string(key, value, out)


def _check_attributes(attrs: Mapping[str, Any], prefix: str, out: _Collector) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for name, value in attrs.items():
        field = f"{prefix}.{name}"
        if not name:
            out.add("attribute_name_empty", field, "attribute names must not be empty")
        elif len(name) > NAME_MAX:
            out.add("attribute_name_too_long", field, f"{len(name)} chars; must be fewer than 50")
        elif name.lower().startswith(RESERVED_PREFIX):
            out.add("attribute_name_reserved", field, "names starting with we_ are reserved")
        elif CONTROL_RE.search(name) or not name.strip():
            out.add("attribute_name_garbage", field, "a blank attribute name or one with a control character")
        elif value is None:
            out.add("null_value", field, "WebEngage has no unset; send a same-typed value")
        elif has_non_finite(value):
            out.add("non_finite_number", field, "NaN and Infinity are not JSON numbers")
        elif isinstance(value, str):
            kept[name] = _fit_string(field, value, out)
        else:
            kept[name] = value
    return kept


def _fit_string(field: str, value: str, out: _Collector) -> str:
    # WebEngage truncates long strings rather than dropping them; keep what it would keep.
    if len(value) > STRING_MAX:
        out.add("string_too_long", field, f"{len(value)} chars; must be fewer than 1000 (truncated)")
        return value[:STRING_MAX]
    return value
