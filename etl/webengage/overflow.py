"""The overflow lane: spend a single-item endpoint's own budget when the bulk one is saturated.

WebEngage limits each endpoint separately (``/bulk-users`` 500 requests/min × 25 users, ``/users`` 5,000
requests/min × 1 user), so a profile sync that only uses ``/bulk-users`` leaves the ``/users`` budget idle.
:class:`OverflowLane` sits between the batcher and :meth:`WebEngageClient.send_many`: each time the client
has room for another request it decides, on the caller's thread, where the next batch goes:

* the bulk lane has room (fewer than its width in flight, waiting for tokens included): the batch goes
  as one bulk request;
* otherwise the batch is split into single-item requests (``split``), which fill the single lane's
  width; the bulk lane takes the next batch as soon as one of its requests finishes.

Both lanes are paced by their own buckets, so both budgets are spent in full and neither is exceeded.
Only whether WebEngage keeps the budgets apart decides if this is safe (unconfirmed): off by default.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from etl.webengage.client import WebEngageClient
from etl.webengage.models import Endpoint, SendRequest

Split = Callable[[SendRequest[Any]], Sequence[SendRequest[Any]]]


class OverflowLane:
    """Dispatches a stream of ``primary`` (bulk) requests over the bulk and the ``overflow`` endpoints.

    ``split`` turns one bulk request into single-item requests to ``overflow``, each carrying the caller's
    key for its item and a deterministic request id (WebEngage de-duplicates single calls by it).
    Counters: ``bulk_requests``, ``split_requests`` (bulk requests sent as singles) and ``single_items``.
    """

    def __init__(
        self,
        client: WebEngageClient,
        *,
        split: Split,
        primary: Endpoint = "bulk-users",
        overflow: Endpoint = "users",
    ) -> None:
        self._client = client
        self._split = split
        self.primary: Endpoint = primary
        self.overflow: Endpoint = overflow
        self.bulk_requests = 0
        self.split_requests = 0
        self.single_items = 0

    @property
    def primary_width(self) -> int:
        return self._client.concurrency_for(self.primary)

    def dispatch(self, requests: Iterable[SendRequest[Any]]) -> Iterator[SendRequest[Any]]:
        """Yield ``requests``, or their single-item splits when the bulk lane is full; lazily, one per pull.

        While this generator runs, the client's streams that start with ``primary`` get the overflow
        lane's width on top of the bulk one (:meth:`WebEngageClient.stream_width`).
        """
        self._client.attach_overflow(self.primary, self.overflow)
        singles: deque[SendRequest[Any]] = deque()
        source = iter(requests)
        try:
            while True:
                bulk_room = self._client.in_flight(self.primary) < self.primary_width
                if singles and not bulk_room:
                    yield self._single(singles.popleft())
                    continue
                request = next(source, None)
                if request is None:
                    break
                if bulk_room or request.endpoint != self.primary:
                    if request.endpoint == self.primary:
                        self.bulk_requests += 1
                    yield request
                    continue
                parts = list(self._split(request))
                if not parts:  # nothing to split into: it goes as it is
                    yield request
                    continue
                self.split_requests += 1
                singles.extend(parts)
                yield self._single(singles.popleft())
            while singles:  # the source ran dry: the rest of a split batch goes as singles
                yield self._single(singles.popleft())
        finally:
            self._client.detach_overflow(self.primary)

    def _single(self, request: SendRequest[Any]) -> SendRequest[Any]:
        self.single_items += request.items
        return request

    def __repr__(self) -> str:
        return (
            f"OverflowLane({self.primary}->{self.overflow}, bulk_requests={self.bulk_requests}, "
            f"split_requests={self.split_requests}, single_items={self.single_items})"
        )
