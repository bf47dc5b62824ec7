"""Hand-built requests for tests and benchmarks that drive the client directly (the syncs build theirs with
:mod:`etl.load.batching`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from etl.webengage.models import EventPayload, SendRequest, UserPayload
from etl.webengage.options import MAX_BULK_ITEMS


def user_request(user: UserPayload, request_id: str | None = None, *, key: object = None) -> SendRequest[Any]:
    return SendRequest[Any]("users", orjson.dumps(user), request_id, 1, key)


def event_request(event: EventPayload, request_id: str | None = None, *, key: object = None) -> SendRequest[Any]:
    return SendRequest[Any]("events", orjson.dumps(event), request_id, 1, key)


def bulk_users_request(
    users: Sequence[UserPayload], request_id: str | None = None, *, key: object = None
) -> SendRequest[Any]:
    _check_bulk(len(users))
    return SendRequest[Any]("bulk-users", orjson.dumps({"users": list(users)}), request_id, len(users), key)


def bulk_events_request(
    events: Sequence[EventPayload], request_id: str | None = None, *, key: object = None
) -> SendRequest[Any]:
    _check_bulk(len(events))
    return SendRequest[Any]("bulk-events", orjson.dumps({"events": list(events)}), request_id, len(events), key)


def _check_bulk(count: int) -> None:
    if not 1 <= count <= MAX_BULK_ITEMS:
        raise ValueError(f"a bulk call takes 1 to {MAX_BULK_ITEMS} items, got {count}")
