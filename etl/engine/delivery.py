"""One delivery loop for every sync: count, (journal), send with the client's pacing, split a refused bulk
batch to isolate the item WebEngage refused, and hand results to the sync's checkpoints on the caller's
thread, accepted ones in groups.

Grouping keeps the state database off the critical path (a commit per request would cost more than the
request at high rates). It is safe because a crash before a group is checkpointed only means those requests
are sent again by the next run with the same ``x-request-id`` (or replayed from the outbox, for events).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from etl.load.batching import Batch, Item, split_request
from etl.report import RunReport
from etl.webengage.client import WebEngageClient
from etl.webengage.models import SendRequest, SendResult

log = logging.getLogger("etl.engine")

#: Longest an accepted request waits for its checkpoint when results trickle in.
GROUP_WAIT_S: Final = 0.25

#: Every request the engine sends carries the Batch of items (with their checkpoint keys) it was built from.
Request = SendRequest[Batch[Any]]
Result = SendResult[Batch[Any]]
Requests = Iterable[Request]


def batch_of(request: Request) -> Batch[Any]:
    return request.key


def items_of(requests: Iterable[Request]) -> list[Item[Any]]:
    return [item for request in requests for item in batch_of(request).items]


def keys_of(requests: Iterable[Request]) -> list[Any]:
    return [item.key for item in items_of(requests)]


def counted(requests: Requests, report: RunReport) -> Iterator[Request]:
    """Count each request (batches, rows put in requests) as it is pulled."""
    for request in requests:
        report.batches += 1
        report.sent += request.items
        yield request


def count_only(requests: Requests, report: RunReport) -> None:
    """A dry run: build and count every request, send none."""
    for _ in counted(requests, report):
        pass


@dataclass(frozen=True)
class Checkpoints:
    """What a sync does with results. ``accepted`` gets requests in groups; ``failed`` one request that
    WebEngage refused (single item, or bisection off) or that ran out of retries; ``journal`` (optional) is
    called with requests before they can be sent (an outbox); ``split`` (optional) when a refused request
    is replaced by its halves."""

    accepted: Callable[[list[Request]], None]
    failed: Callable[[Request, Result], None]
    journal: Callable[[list[Request]], None] | None = None
    split: Callable[[Request], None] | None = None


@dataclass(frozen=True)
class Grouping:
    """Accepted requests are checkpointed once ``items`` items (or ``journal`` requests for the outbox)
    have accumulated, or after ``wait_s``."""

    items: int = 1
    journal: int = 1
    wait_s: float = GROUP_WAIT_S


def deliver(
    client: WebEngageClient,
    requests: Requests,
    checkpoints: Checkpoints,
    *,
    grouping: Grouping = Grouping(),
    dispatch: Callable[[Iterable[Request]], Iterator[Request]] | None = None,
    bisect: bool = True,
) -> None:
    """Send every request and settle every result. ``dispatch`` may re-route fresh requests (the overflow
    lane). A TerminalAPIError propagates once the requests in flight have finished; what WebEngage accepted
    until then is checkpointed first."""
    group = _Group(checkpoints.accepted, grouping)
    pending: Iterable[Request] = dispatch(requests) if dispatch is not None else requests
    ok = False
    try:
        while True:
            splits: deque[Request] = deque()
            stream = _with_splits(pending, splits)
            if checkpoints.journal is not None:
                stream = _journaled(stream, checkpoints.journal, grouping.journal)
            for result in client.send_many(stream):
                request = result.request
                if result.outcome == "accepted":
                    group.add(request)
                elif result.outcome == "rejected" and bisect and len(batch_of(request).items) > 1:
                    # WebEngage refused the whole call (nothing ingested): halves go out as new requests.
                    log.info(
                        "batch %s rejected (%s); splitting %d items to isolate the bad one",
                        request.request_id,
                        result.status_code,
                        len(batch_of(request).items),
                    )
                    if checkpoints.split is not None:
                        checkpoints.split(request)
                    splits.extend(split_request(request))
                else:
                    checkpoints.failed(request, result)
            if not splits:
                break
            pending = list(splits)  # halves queued after the source ran dry: another round
        ok = True
    finally:
        try:
            group.flush()  # what WebEngage accepted is checkpointed even when the run stops
        except Exception:
            if ok:
                raise
            log.exception("could not checkpoint accepted requests; the next run sends them again")


def _with_splits(requests: Iterable[Request], splits: deque[Request]) -> Iterator[Request]:
    """Re-queued halves of refused batches first, then the fresh requests. Halves are appended by the result
    loop on the same thread that pulls from this generator."""
    for request in requests:
        while splits:
            yield splits.popleft()
        yield request
    while splits:
        yield splits.popleft()


def _journaled(requests: Iterator[Request], journal: Callable[[list[Request]], None], every: int) -> Iterator[Request]:
    """Journal requests in groups of ``every`` before any of them can be sent."""
    buffer: list[Request] = []
    for request in requests:
        buffer.append(request)
        if len(buffer) >= every:
            journal(buffer)
            yield from buffer
            buffer = []
    if buffer:
        journal(buffer)
        yield from buffer


class _Group:
    def __init__(self, checkpoint: Callable[[list[Request]], None], grouping: Grouping) -> None:
        self._checkpoint = checkpoint
        self._grouping = grouping
        self._requests: list[Request] = []
        self._items = 0
        self._since = 0.0

    def add(self, request: Request) -> None:
        if not self._requests:
            self._since = time.monotonic()
        self._requests.append(request)
        self._items += request.items
        if self._items >= self._grouping.items or time.monotonic() - self._since >= self._grouping.wait_s:
            self.flush()

    def flush(self) -> None:
        if self._requests:
            requests, self._requests, self._items = self._requests, [], 0
            self._checkpoint(requests)
