"""The client's small typed vocabulary: endpoints, outcomes, wire payloads, requests, results, stats."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Final, Generic, Literal, Required, TypedDict, TypeVar, cast

Endpoint = Literal["users", "events", "bulk-users", "bulk-events", "opengdpr_requests"]
#: Final outcome of one :class:`SendRequest`; terminal failures raise instead.
Outcome = Literal["accepted", "rejected", "transient"]

ENDPOINTS: Final[tuple[Endpoint, ...]] = ("users", "events", "bulk-users", "bulk-events", "opengdpr_requests")
BULK_ENDPOINTS: Final[frozenset[Endpoint]] = frozenset({"bulk-users", "bulk-events"})


class UserPayload(TypedDict, total=False):
    """One user object as WebEngage's /users and /bulk-users expect it (dates already formatted)."""

    userId: str
    anonymousId: str
    firstName: str
    lastName: str
    birthDate: str
    gender: str
    email: str
    phone: str
    company: str
    hashedEmail: str
    hashedPhone: str
    emailOptIn: bool
    smsOptIn: bool
    whatsappOptIn: bool
    country: str
    city: str
    region: str
    locality: str
    postalCode: str
    attributes: dict[str, Any]


class EventPayload(TypedDict, total=False):
    """One event object as /events and /bulk-events expect it."""

    userId: str
    anonymousId: str
    eventName: Required[str]
    eventTime: str
    eventData: dict[str, Any]


#: The caller's handle a request carries (the engine's: a Batch of checkpoint keys); the client never reads it.
K = TypeVar("K")


@dataclass(frozen=True)  # no slots: a slotted generic frozen dataclass breaks super() on Python 3.11
class SendRequest(Generic[K]):
    """One HTTP call to make. ``body`` is pre-serialized JSON, so the byte cap is checked on real bytes.

    ``key`` is the caller's handle (e.g. the batch's checkpoint keys); the client never reads it.
    """

    endpoint: Endpoint
    body: bytes = field(repr=False)  # personal data: never in reprs or logs
    request_id: str | None
    items: int
    key: K = field(default=cast(K, None), repr=False)


@dataclass(frozen=True)
class SendResult(Generic[K]):
    """What became of one :class:`SendRequest`. ``attempts`` excludes 429s, which ``throttled`` counts."""

    request: SendRequest[K]
    outcome: Outcome
    status_code: int | None
    message: str | None
    attempts: int
    throttled: int
    elapsed_s: float

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"


@dataclass(frozen=True)
class Fetched:
    """The answer to a GET (a status check): its HTTP status (None: no answer) and JSON object (None: not one)."""

    status_code: int | None
    data: dict[str, Any] | None


@dataclass
class ClientStats:
    """Running counters of one client, safe to update from many threads.

    ``requests``/``bytes_sent`` count HTTP calls (429s and retries included); ``accepted``/``rejected``/
    ``transient`` and ``items_*`` count :class:`SendRequest` outcomes, once each; ``credential_checks``
    counts the calls that carry no data (:meth:`WebEngageClient.check_credentials`), kept out of ``requests``.
    """

    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    transient: int = 0
    throttled: int = 0
    retries: int = 0
    terminal: int = 0
    bytes_sent: int = 0
    items_sent: int = 0
    items_accepted: int = 0
    credential_checks: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def count_status(self, status: int | str) -> None:
        """Count one HTTP answer by status code (``"transport_error"`` when there was none)."""
        key = str(status)
        with self._lock:
            self.by_status[key] = self.by_status.get(key, 0) + 1

    def snapshot(self) -> dict[str, int]:
        """A consistent copy; status counts appear as ``status_<code>``."""
        with self._lock:
            out = {f.name: int(getattr(self, f.name)) for f in fields(self) if f.name in _COUNTERS}
            out.update({f"status_{code}": n for code, n in sorted(self.by_status.items())})
            return out


_COUNTERS: Final = frozenset(f.name for f in fields(ClientStats) if f.name not in ("by_status", "_lock"))


def deterministic_request_id(keys: Iterable[str]) -> str:
    """A stable id for a batch: sha256 of its sorted keys joined by U+001F, first 32 hex chars.

    The same batch rebuilt after a crash gets the same id, so WebEngage can drop the duplicate.
    """
    return hashlib.sha256("\x1f".join(sorted(keys)).encode()).hexdigest()[:32]
