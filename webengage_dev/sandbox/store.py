"""In-memory state of the sandbox: profiles, events, attribute type registries, request ids and stats.

The server is async but tests read the store from other threads, so every public method takes one lock.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from webengage_dev.sandbox.gdpr import GdprRequests
from webengage_dev.sandbox.merges import MergeBook
from webengage_dev.sandbox.validation import (
    AttrType,
    Violation,
    classify,
    identity_key,
    validate_event,
    validate_user,
)

ATTRIBUTES_PER_TYPE = 25
LIMITED_TYPES: frozenset[AttrType] = frozenset({"string", "number", "boolean", "date"})
OBJECT_BYTES_PER_PROFILE = 16 * 1024
REQUEST_ID_TTL_S = 4 * 3600.0
MAX_KEPT_VIOLATIONS = 100_000  # counts stay exact past this; only the detail list stops growing


def canonical_json(value: Any) -> bytes:
    """Key-sorted compact JSON, used to compare payloads and measure object sizes."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson refuses integers past 64 bits; stdlib does not
        return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


class AttributeRegistry:
    """Types of custom attributes per scope (``user`` for the account, ``event:<name>`` per event name).

    Mimics WebEngage: the first value fixes the type, at most 25 attributes of each type per scope, and a
    value breaking either rule is not applied. Not locked itself: :class:`SandboxStore` holds the lock.
    """

    def __init__(self) -> None:
        self._types: dict[str, dict[str, AttrType]] = {}
        self._counts: dict[str, Counter[AttrType]] = {}

    def admit(
        self, scope: str, attrs: Mapping[str, Any], *, field_prefix: str, context: Violation
    ) -> tuple[dict[str, Any], list[Violation]]:
        """The attributes WebEngage would apply, and a violation for each it would silently ignore.

        ``context`` is a template violation carrying endpoint, item index and request id.
        """
        types = self._types.setdefault(scope, {})
        counts = self._counts.setdefault(scope, Counter())
        kept: dict[str, Any] = {}
        violations: list[Violation] = []
        for name, value in attrs.items():
            kind = classify(value)
            if kind is None:
                continue
            known = types.get(name)
            if known is None:
                if kind in LIMITED_TYPES and counts[kind] >= ATTRIBUTES_PER_TYPE:
                    violations.append(
                        _like(
                            context,
                            "attribute_limit",
                            f"{field_prefix}.{name}",
                            f"already {ATTRIBUTES_PER_TYPE} {kind} attributes in {scope}",
                        )
                    )
                    continue
                types[name] = kind
                counts[kind] += 1
            elif known != kind:
                violations.append(
                    _like(context, "type_change", f"{field_prefix}.{name}", f"type fixed as {known}, got {kind}")
                )
                continue
            kept[name] = value
        return kept, violations

    def types(self, scope: str) -> dict[str, AttrType]:
        return dict(self._types.get(scope, {}))

    def snapshot(self) -> dict[str, dict[str, AttrType]]:
        return {scope: dict(types) for scope, types in self._types.items()}


@dataclass(slots=True)
class StoredUser:
    profile: dict[str, Any]
    updates: int
    first_seen: float
    last_seen: float

    def to_dict(self, key: str) -> dict[str, Any]:
        return {
            "id": key,
            "profile": copy.deepcopy(self.profile),
            "updates": self.updates,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
        }


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event: dict[str, Any]
    endpoint: str
    request_id: str | None
    received_at: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": copy.deepcopy(self.event),
            "endpoint": self.endpoint,
            "request_id": self.request_id,
            "received_at": self.received_at,
        }


@dataclass(slots=True)
class _Stats:
    requests: Counter[str] = field(default_factory=Counter)
    responses: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    items_accepted: Counter[str] = field(default_factory=Counter)
    violations_by_rule: Counter[str] = field(default_factory=Counter)
    throttled: int = 0
    violations: int = 0
    deduplicated_requests: int = 0
    #: Empty-object calls to /users or /events that passed auth: the client's credential check (answered 400
    #: when nothing else intervenes; never a violation).
    credential_checks: int = 0
    duplicate_events: int = 0
    erased_users: int = 0
    first_request_at: float | None = None
    last_request_at: float | None = None


class SandboxStore:
    """Thread-safe record of everything the sandbox accepted, refused and noticed."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._init_state()

    def _init_state(self) -> None:
        self._users: dict[str, StoredUser] = {}
        self._events: list[StoredEvent] = []
        self._event_keys: set[tuple[Any, ...]] = set()
        self._violations: list[Violation] = []
        self._registry = AttributeRegistry()
        self._request_ids: OrderedDict[str, float] = OrderedDict()
        self._stats = _Stats()
        self.gdpr = GdprRequests(clock=self._clock)
        self._merges = MergeBook()

    def reset(self) -> None:
        """Forget everything: data, registries, request ids and stats."""
        with self._lock:
            self._init_state()

    # --- ingestion -------------------------------------------------------------------------------------

    def ingest_users(
        self,
        items: Iterable[tuple[int | None, Any]],
        *,
        endpoint: str,
        request_id: str | None,
        merge: bool = False,
    ) -> tuple[int, list[Violation]]:
        """Validate and upsert users given as (item index, object); returns (stored count, violations).
        ``merge``: an item with both ids merges its anonymous profile into the user (see ``merges``)."""
        stored = 0
        found: list[Violation] = []
        now = time.time()
        with self._lock:
            for index, raw in items:
                clean, violations = validate_user(raw, endpoint=endpoint, item_index=index, request_id=request_id)
                key = identity_key(clean) if clean is not None else None
                if clean is not None and key is not None:
                    if key.startswith("anon:"):  # a merged device is its user's: later calls update that user
                        key = self._merges.user_for(clean.get("anonymousId")) or key
                    anonymous_id = clean.get("anonymousId") if merge and "userId" in clean else None
                    violations += self._upsert(key, clean, violations_context(endpoint, index, request_id), now)
                    if anonymous_id:
                        self._merges.merge(self._users, self._events, anonymous_id=anonymous_id, user_id=key)
                    stored += 1
                found += violations
            self._stats.items_accepted[endpoint] += stored
            self._record_violations(found)
        return stored, found

    def ingest_events(
        self, items: Iterable[tuple[int | None, Any]], *, endpoint: str, request_id: str | None
    ) -> tuple[int, list[Violation]]:
        """Validate and append events given as (item index, object); returns (stored count, violations)."""
        stored = 0
        found: list[Violation] = []
        now = time.time()
        with self._lock:
            for index, raw in items:
                clean, violations = validate_event(raw, endpoint=endpoint, item_index=index, request_id=request_id)
                if clean is not None and identity_key(clean) is not None and "eventName" in clean:
                    if "eventData" in clean:
                        clean["eventData"], more = self._registry.admit(
                            f"event:{clean['eventName']}",
                            clean["eventData"],
                            field_prefix="eventData",
                            context=violations_context(endpoint, index, request_id),
                        )
                        violations += more
                    self._merges.attribute(clean)
                    self._append_event(clean, endpoint, request_id, now)
                    stored += 1
                found += violations
            self._stats.items_accepted[endpoint] += stored
            self._record_violations(found)
        return stored, found

    def _upsert(self, key: str, clean: dict[str, Any], context: Violation, now: float) -> list[Violation]:
        violations: list[Violation] = []
        record = self._users.get(key)
        attrs = clean.pop("attributes", None)
        if record is None:
            record = StoredUser(profile={}, updates=0, first_seen=now, last_seen=now)
            self._users[key] = record
        profile = record.profile
        # Sent top-level fields overwrite; omitted ones keep their values (WebEngage upsert semantics).
        profile.update(clean)
        if attrs is not None:
            admitted, violations = self._registry.admit("user", attrs, field_prefix="attributes", context=context)
            current = profile.setdefault("attributes", {})
            admitted = self._fit_objects(current, admitted, context, violations)
            current.update(admitted)
        record.updates += 1
        record.last_seen = now
        return violations

    @staticmethod
    def _fit_objects(
        current: dict[str, Any], admitted: dict[str, Any], context: Violation, violations: list[Violation]
    ) -> dict[str, Any]:
        """Drop map/array values that would push the profile past 16 KB of them together."""
        if not any(isinstance(v, dict | list) for v in admitted.values()):
            return admitted
        used = sum(
            len(canonical_json(v)) for name, v in current.items() if isinstance(v, dict | list) and name not in admitted
        )
        kept: dict[str, Any] = {}
        for name, value in admitted.items():
            if isinstance(value, dict | list):
                size = len(canonical_json(value))
                if used + size > OBJECT_BYTES_PER_PROFILE:
                    violations.append(
                        _like(
                            context,
                            "object_size_limit",
                            f"attributes.{name}",
                            f"maps/arrays would total {used + size} bytes; 16 KB per profile at most",
                        )
                    )
                    if name in current:  # the old value stays; count it again
                        used += len(canonical_json(current[name]))
                    continue
                used += size
            kept[name] = value
        return kept

    def _append_event(self, event: dict[str, Any], endpoint: str, request_id: str | None, now: float) -> None:
        identity = (
            event.get("userId"),
            event.get("anonymousId"),
            event["eventName"],
            event.get("eventTime"),
            canonical_json(event.get("eventData", {})),
        )
        if identity in self._event_keys:
            self._stats.duplicate_events += 1
        else:
            self._event_keys.add(identity)
        self._events.append(StoredEvent(event, endpoint, request_id, now))

    def erase_user(self, user_id: str) -> bool:
        """A GDPR erasure: forget the profile and the events of ``user_id``; True when there was a profile."""
        with self._lock:
            found = self._users.pop(user_id, None) is not None
            self._events = [e for e in self._events if e.event.get("userId") != user_id]
            self._stats.erased_users += int(found)
            return found

    # --- bookkeeping used by the server ----------------------------------------------------------------

    def record_violations(self, violations: Iterable[Violation]) -> None:
        with self._lock:
            self._record_violations(violations)

    def _record_violations(self, violations: Iterable[Violation]) -> None:
        for violation in violations:
            self._stats.violations += 1
            self._stats.violations_by_rule[violation.rule] += 1
            if len(self._violations) < MAX_KEPT_VIOLATIONS:
                self._violations.append(violation)

    def record_request(self, endpoint: str) -> None:
        now = time.time()
        with self._lock:
            self._stats.requests[endpoint] += 1
            if self._stats.first_request_at is None:
                self._stats.first_request_at = now
            self._stats.last_request_at = now

    def record_credential_check(self) -> None:
        with self._lock:
            self._stats.credential_checks += 1

    def record_response(self, status: int) -> None:
        with self._lock:
            self._stats.responses[str(status)] += 1
            if status == 429:
                self._stats.throttled += 1

    def record_fault(self, kind: str) -> None:
        with self._lock:
            self._stats.faults[kind] += 1

    def is_duplicate_request(self, request_id: str) -> bool:
        """True (and counted) when ``request_id`` was ingested within the last 4 hours."""
        now = self._clock()
        with self._lock:
            self._expire_request_ids(now)
            if request_id in self._request_ids:
                self._stats.deduplicated_requests += 1
                return True
            return False

    def remember_request(self, request_id: str) -> None:
        """Mark ``request_id`` as ingested, so a retry within 4 hours is not ingested again."""
        now = self._clock()
        with self._lock:
            self._request_ids[request_id] = now
            self._request_ids.move_to_end(request_id)
            self._expire_request_ids(now)

    def _expire_request_ids(self, now: float) -> None:
        # Ids are kept in ingestion order, so expired ones are at the front.
        while self._request_ids:
            oldest, seen = next(iter(self._request_ids.items()))
            if now - seen < REQUEST_ID_TTL_S:
                break
            del self._request_ids[oldest]

    # --- inspection -----------------------------------------------------------------------------------

    def get_user(self, key: str) -> dict[str, Any] | None:
        """Snapshot of one profile (``{"id", "profile", "updates", ...}``) by userId or ``anon:<id>``."""
        with self._lock:
            record = self._users.get(key)
            return record.to_dict(key) if record is not None else None

    def get_profile(self, key: str) -> dict[str, Any] | None:
        """Just the merged profile fields of one user, or None."""
        with self._lock:
            record = self._users.get(key)
            return copy.deepcopy(record.profile) if record is not None else None

    def list_users(self, *, limit: int = 100, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
        with self._lock:
            keys = list(self._users)[offset : offset + limit]
            return len(self._users), [self._users[k].to_dict(k) for k in keys]

    def events(
        self, *, user_id: str | None = None, event_name: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Stored events in arrival order, optionally filtered; at most ``limit``."""
        with self._lock:
            found: list[dict[str, Any]] = []
            for record in self._events:
                if limit is not None and len(found) >= limit:
                    break
                if user_id is not None and record.event.get("userId") != user_id:
                    continue
                if event_name is not None and record.event.get("eventName") != event_name:
                    continue
                found.append(record.to_dict())
            return found

    def violations(self, *, limit: int | None = None, rule: str | None = None) -> list[Violation]:
        with self._lock:
            found = [v for v in self._violations if rule is None or v.rule == rule]
        return found if limit is None else found[:limit]

    def attribute_types(self) -> dict[str, dict[str, AttrType]]:
        with self._lock:
            return self._registry.snapshot()

    def stats(self) -> dict[str, Any]:
        """Counters as a JSON-ready dict."""
        with self._lock:
            s = self._stats
            return {
                "requests": dict(s.requests),
                "responses": dict(s.responses),
                "throttled": s.throttled,
                "faults": dict(s.faults),
                "items_accepted": dict(s.items_accepted),
                "violations": s.violations,
                "violations_by_rule": dict(s.violations_by_rule),
                "deduplicated_requests": s.deduplicated_requests,
                "credential_checks": s.credential_checks,
                "duplicate_events": s.duplicate_events,
                "erased_users": s.erased_users,
                "gdpr_requests": len(self.gdpr),
                "gdpr_duplicates": self.gdpr.duplicates,
                "users": len(self._users),
                "events": len(self._events),
                **self._merges.stats(),
                "first_request_at": s.first_request_at,
                "last_request_at": s.last_request_at,
            }


def violations_context(endpoint: str, item_index: int | None, request_id: str | None) -> Violation:
    """A template violation carrying where a finding happened; rule, field and detail are filled later."""
    return Violation(endpoint, "", None, "", item_index, request_id)


def _like(context: Violation, rule: str, field: str, detail: str) -> Violation:
    return Violation(context.endpoint, rule, field, detail, context.item_index, context.request_id)
