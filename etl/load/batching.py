"""Validate, then batch: at most ``batch_size`` items and ``max_bytes`` per bulk call.

Items are serialized once (orjson) so the byte cap is measured on the real body. An item that alone
exceeds the cap is returned as oversize rather than failing its neighbours.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import orjson

from etl.webengage.models import Endpoint, SendRequest, deterministic_request_id

K = TypeVar("K")

_WRAPPER: Final[dict[Endpoint, bytes]] = {"bulk-users": b'{"users":[', "bulk-events": b'{"events":['}
_CLOSE: Final = b"]}"


@dataclass(frozen=True, slots=True)
class Item(Generic[K]):
    """One payload with the caller's checkpoint handle and the string its request id is derived from."""

    key: K
    identity: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Batch(Generic[K]):
    items: tuple[Item[K], ...]


def body_of(endpoint: Endpoint, encoded: list[bytes]) -> bytes:
    return _WRAPPER[endpoint] + b",".join(encoded) + _CLOSE


def make_request(endpoint: Endpoint, items: tuple[Item[K], ...], encoded: list[bytes]) -> SendRequest[Batch[K]]:
    """A bulk request whose id is a hash of its items' identities (stable across re-runs)."""
    return SendRequest(
        endpoint,
        body_of(endpoint, encoded),
        deterministic_request_id(i.identity for i in items),
        len(items),
        Batch(items),
    )


def batch_requests(
    items: Iterable[Item[K]],
    *,
    endpoint: Endpoint,
    batch_size: int,
    max_bytes: int,
    oversize: list[Item[K]],
) -> Iterator[SendRequest[Batch[K]]]:
    """Yield bulk requests; items too big for any request are appended to ``oversize``."""
    overhead = len(_WRAPPER[endpoint]) + len(_CLOSE)
    current: list[Item[K]] = []
    encoded: list[bytes] = []
    size = overhead
    for item in items:
        data = orjson.dumps(item.payload)
        if overhead + len(data) > max_bytes:
            oversize.append(item)
            continue
        added = len(data) + (1 if current else 0)
        if current and (len(current) >= batch_size or size + added > max_bytes):
            yield make_request(endpoint, tuple(current), encoded)
            current, encoded, size = [], [], overhead
            added = len(data)
        current.append(item)
        encoded.append(data)
        size += added
    if current:
        yield make_request(endpoint, tuple(current), encoded)


def split_request(request: SendRequest[Batch[K]]) -> list[SendRequest[Batch[K]]]:
    """Halve a rejected bulk request so the item WebEngage refused can be found (bisection)."""
    items = request.key.items
    if len(items) < 2:
        return []
    mid = len(items) // 2
    halves = (items[:mid], items[mid:])
    return [make_request(request.endpoint, h, [orjson.dumps(i.payload) for i in h]) for h in halves]
