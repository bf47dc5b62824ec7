"""How the sandbox models WebEngage's anonymous -> known merge (Tracking Users page): a single /users call
carrying both ``userId`` and ``anonymousId`` merges the anonymous profile into the known one.

* the anonymous profile's fields and attributes move to the known user (the known user's own values win)
  and the anonymous profile is gone;
* events tracked with that ``anonymousId`` and no ``userId`` are attributed to the user, those stored
  already and those arriving later;
* a userId cannot change: a second merge of the same anonymous id into another user is ignored (counted).

Whether WebEngage does this on REST single calls is unconfirmed, so the sandbox setting ``merge_on_users``
switches it off (both ids then behave as on the bulk endpoint: ``anonymousId`` ignored). Not locked itself:
:class:`~webengage_dev.sandbox.store.SandboxStore` calls it under its lock.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class _Profile(Protocol):
    profile: dict[str, Any]


class _Event(Protocol):
    @property
    def event(self) -> dict[str, Any]: ...


@dataclass
class MergeBook:
    """Which anonymous ids were merged into which user, and counters."""

    into: dict[str, str] = field(default_factory=dict)
    merges: int = 0
    events_moved: int = 0
    conflicts: int = 0

    def user_for(self, anonymous_id: str | None) -> str | None:
        return self.into.get(anonymous_id) if anonymous_id else None

    def merge(
        self,
        users: MutableMapping[str, Any],
        events: Sequence[_Event],
        *,
        anonymous_id: str,
        user_id: str,
    ) -> None:
        """Merge ``anon:<anonymous_id>`` into ``user_id`` (whose profile the caller has just upserted)."""
        before = self.into.get(anonymous_id)
        if before is not None:
            if before != user_id:
                self.conflicts += 1  # WebEngage: a userId cannot be changed once set
            return
        self.into[anonymous_id] = user_id
        self.merges += 1
        anonymous = users.pop(f"anon:{anonymous_id}", None)
        known = users.get(user_id)
        if anonymous is not None and known is not None:
            _fold(known.profile, anonymous.profile)
        for record in events:
            event = record.event
            if event.get("anonymousId") == anonymous_id and not event.get("userId"):
                event["userId"] = user_id
                self.events_moved += 1

    def attribute(self, event: dict[str, Any]) -> None:
        """An event of a merged anonymous id belongs to its user (as WebEngage attributes it)."""
        user_id = None if event.get("userId") else self.user_for(event.get("anonymousId"))
        if user_id is not None:
            event["userId"] = user_id

    def stats(self) -> dict[str, int]:
        return {"merges": self.merges, "merged_events": self.events_moved, "merge_conflicts": self.conflicts}


def _fold(known: dict[str, Any], anonymous: dict[str, Any]) -> None:
    """The anonymous profile's values where the known profile has none (its own values win)."""
    for name, value in anonymous.items():
        if name == "anonymousId":
            continue
        if name == "attributes" and isinstance(value, dict):
            current = known.setdefault("attributes", {})
            for attr, attr_value in value.items():
                current.setdefault(attr, attr_value)
        else:
            known.setdefault(name, value)
