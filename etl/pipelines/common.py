"""Pieces every pipeline shares: run ids, clocks, the send loop with checkpoints and bisection."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from etl.load.batching import Batch, split_request
from etl.report import RunReport
from etl.webengage.client import WebEngageClient
from etl.webengage.models import SendRequest, SendResult

log = logging.getLogger("etl.pipelines")

Progress = Callable[[RunReport], None]
WallClock = Callable[[], datetime]


def system_now() -> datetime:
    return datetime.now(UTC)


def default_run_id(now: datetime, prefix: str = "manual") -> str:
    return f"{prefix}__{now.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')}"


def requests_with_splits(requests: Iterable[SendRequest], splits: deque[SendRequest]) -> Iterator[SendRequest]:
    """Yield re-queued halves of rejected batches first, then the fresh requests.

    Halves are appended by the result loop on the same thread that pulls from this generator."""
    for request in requests:
        while splits:
            yield splits.popleft()
        yield request
    while splits:
        yield splits.popleft()


def send_and_checkpoint(
    client: WebEngageClient,
    requests: Iterable[SendRequest],
    *,
    on_accepted: Callable[[Batch[Any]], None],
    on_failed: Callable[[Batch[Any], SendResult], None],
    bisect: bool = True,
) -> None:
    """Send, then act per result on the caller's thread: accepted batches checkpoint; a rejected bulk
    batch is split in halves to isolate the item WebEngage refused; single rejects and exhausted
    transients are reported. A TerminalAPIError propagates after in-flight requests finish."""
    pending: Iterable[SendRequest] = requests
    while True:
        splits: deque[SendRequest] = deque()
        for result in client.send_many(requests_with_splits(pending, splits)):
            batch = result.request.key
            assert isinstance(batch, Batch)
            if result.outcome == "accepted":
                on_accepted(batch)
            elif result.outcome == "rejected" and bisect and len(batch.items) > 1:
                log.info(
                    "batch %s rejected (%s); splitting %d items to isolate the bad one",
                    result.request.request_id,
                    result.status_code,
                    len(batch.items),
                )
                splits.extend(split_request(result.request))
            else:
                on_failed(batch, result)
        if not splits:
            return
        # Halves queued after the source ran dry: send them in another round.
        pending = list(splits)
