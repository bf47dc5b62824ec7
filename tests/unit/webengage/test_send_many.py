"""send_many: bounded concurrency, completion order, lazy pulling, terminal stop, no leaked threads.

These use real threads and the system clock with a huge budget, so no pacing sleeps happen; every wait
is bounded by a timeout (a generous one: it only ends a test that is failing, and a busy machine may take
a while to schedule a thread).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from etl.errors import TerminalAPIError
from etl.webengage import SendRequest, SystemClock, WebEngageClient

from .fakes import FakeAPI, a_user, error_body, make_client, make_settings, reply


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


class GatedAPI:
    """Each request blocks until the test opens its gate; counts requests in flight."""

    def __init__(self, status_for: Callable[[int], int] = lambda n: 201, gated: bool = True) -> None:
        self.status_for = status_for
        self.gated = gated
        self.gates: dict[int, threading.Event] = {}
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0

    def gate(self, n: int) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(n, threading.Event())

    def __call__(self, request: httpx.Request) -> httpx.Response:
        n = int(request.headers["x-request-id"])
        with self.lock:
            self.calls += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.gated:
                assert self.gate(n).wait(timeout=10), f"gate {n} never opened"
            return httpx.Response(self.status_for(n), json={"response": {"status": "queued"}})
        finally:
            with self.lock:
                self.in_flight -= 1


def counted(total: int | None, pulled: list[int]) -> Iterator[SendRequest]:
    for n in itertools.count() if total is None else range(total):
        pulled.append(n)
        yield a_user(n, request_id=str(n))


def fast_client(api: GatedAPI, *, warm: bool = True, **overrides: Any) -> WebEngageClient:
    """A client on the system clock; ``warm`` makes one ungated call first, because until the API has
    answered once send_many sends a single request at a time (a wrong key costs one request)."""
    client = make_client(api, clock=SystemClock(), **overrides)
    if warm:
        api.gate(-1).set()
        client.send(a_user(-1, request_id="-1"))
        with api.lock:
            api.calls = 0
            api.max_in_flight = 0
    return client


def test_until_the_first_answer_only_one_request_is_in_flight() -> None:
    api = GatedAPI()
    with fast_client(api, warm=False) as client:
        results = client.send_many(counted(4, []), concurrency=3)
        opener = threading.Thread(target=lambda: (wait_until(lambda: api.in_flight == 1), api.gate(0).set()))
        opener.start()
        for n in (1, 2, 3):
            api.gate(n).set()
        keys = [r.request.key for r in results]
        opener.join()
    assert keys[0] == 0  # the probe answered before anything else was sent
    assert sorted(keys) == [0, 1, 2, 3]  # type: ignore[type-var]
    assert api.calls == 4


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("webengage-send")]


def test_completion_order_and_concurrency_cap() -> None:
    api = GatedAPI()
    pulled: list[int] = []
    yielded: list[int] = []
    order = [2, 0, 3, 1, 5, 4]
    with fast_client(api) as client:
        results = client.send_many(counted(6, pulled), concurrency=3)
        for n in order:
            # Open exactly one gate once the window is full, so only request n can complete next.
            def open_gate(n: int = n) -> None:
                wait_until(lambda: api.in_flight == min(3, 6 - len(yielded)))
                api.gate(n).set()

            opener = threading.Thread(target=open_gate)
            opener.start()
            result = next(results)
            opener.join()
            yielded.append(result.request.key)  # type: ignore[arg-type]
            assert len(pulled) <= len(yielded) + 3  # lazy: never more than the window ahead
        assert next(results, None) is None
    assert yielded == order
    assert api.max_in_flight == 3 and api.calls == 6
    assert sorted(pulled) == list(range(6))
    assert not worker_threads()


def test_pulls_lazily_and_close_joins_workers() -> None:
    api = GatedAPI(gated=False)
    pulled: list[int] = []
    with fast_client(api) as client:
        results = client.send_many(counted(10_000, pulled), concurrency=4)
        first = [next(results) for _ in range(10)]
        results.close()  # the caller stops early
    assert len({r.request.key for r in first}) == 10
    assert len(pulled) <= 10 + 4
    assert api.calls <= len(pulled)
    assert not worker_threads()


def test_every_request_yields_exactly_once() -> None:
    api = GatedAPI(gated=False)
    pulled: list[int] = []
    with fast_client(api) as client:
        keys = [r.request.key for r in client.send_many(counted(200, pulled), concurrency=8)]
        assert client.stats.snapshot()["accepted"] == 200 + 1  # plus the warm-up call
    assert sorted(keys) == list(range(200))  # type: ignore[type-var]
    assert api.calls == 200 and api.max_in_flight <= 8
    assert not worker_threads()


def test_terminal_stops_submitting_drains_in_flight_then_raises() -> None:
    api = GatedAPI(status_for=lambda n: 401 if n == 3 else 201)
    pulled: list[int] = []
    yielded: list[object] = []

    def conduct() -> None:
        # 0-2 complete; then 3 (401) and 4 are in flight; 3 answers first. 4 may still finish before the
        # client has handled 3's failure (worker threads race), and then one more request is pulled: open
        # its gate too, so it completes instead of timing out.
        for n in (0, 1, 2):
            api.gate(n).set()
        wait_until(lambda: api.calls == 5 and api.in_flight == 2)
        api.gate(3).set()
        wait_until(lambda: api.in_flight == 1)
        api.gate(4).set()
        api.gate(5).set()

    opener = threading.Thread(target=conduct)
    opener.start()
    with fast_client(api) as client, pytest.raises(TerminalAPIError) as caught:
        for result in client.send_many(counted(1000, pulled), concurrency=2):
            assert result.accepted
            yielded.append(result.request.key)
    opener.join()
    assert caught.value.status_code == 401
    assert pulled in ([0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5])  # pulling stopped at the failure (+ at most 1 race)
    assert api.calls == len(pulled)  # every pulled request was sent once, none after the stop...
    assert yielded == [n for n in pulled if n != 3]  # ...and those in flight were drained and yielded first
    assert not worker_threads()


def test_error_from_the_iterable_is_raised_after_draining() -> None:
    api = GatedAPI(gated=False)

    def broken() -> Iterator[SendRequest]:
        yield a_user(0, request_id="0")
        yield a_user(1, request_id="1")
        raise RuntimeError("warehouse went away")

    with fast_client(api) as client, pytest.raises(RuntimeError, match="warehouse"):
        keys = []
        for result in client.send_many(broken(), concurrency=4):
            keys.append(result.request.key)
    assert sorted(keys) == [0, 1]  # type: ignore[type-var]
    assert not worker_threads()


def test_empty_iterable_yields_nothing() -> None:
    with fast_client(GatedAPI()) as client:
        assert list(client.send_many([])) == []


@pytest.mark.parametrize(
    ("overrides", "endpoint", "expected"),
    [
        ({"bulk_users_rpm": 500, "expected_latency_s": 1.0}, "bulk-users", 14),  # ceil(8.17×1.5)+1
        ({"bulk_users_rpm": 500, "expected_latency_s": 0.3}, "bulk-users", 5),  # ceil(2.45×1.5)+1
        ({"users_rpm": 5000}, "users", 64),  # capped by max_in_flight
        ({"users_rpm": 5000, "max_in_flight": 10}, "users", 10),
        ({"concurrency": 3}, "users", 3),
        ({"bulk_events_rpm": 1, "expected_latency_s": 0.01}, "bulk-events", 2),
    ],
)
def test_default_concurrency_follows_budget_and_latency(
    overrides: dict[str, object], endpoint: str, expected: int
) -> None:
    client = WebEngageClient(make_settings(**overrides), transport=httpx.MockTransport(GatedAPI()))
    assert client.concurrency_for(endpoint) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("status", [401, 403, 404])
def test_a_terminal_first_answer_never_lets_a_burst_out(status: int) -> None:
    """Instant answers race the loop that submits work: only an accepted or rejected request opens it."""
    for _ in range(20):
        api = FakeAPI(reply(status, error_body("no")))
        client = make_client(api, clock=SystemClock())
        with pytest.raises(TerminalAPIError):
            list(client.send_many((a_user(n, request_id=str(n)) for n in range(50)), concurrency=8))
        client.close()
        assert len(api.requests) == 1


def test_a_transient_first_answer_keeps_one_in_flight_until_one_is_accepted() -> None:
    api = GatedAPI(status_for=lambda n: 503 if n == 0 else 201)
    seen: list[int] = []

    def conduct() -> None:
        wait_until(lambda: api.calls == 1)
        api.gate(0).set()  # 503: a response, but it proves nothing about the key
        wait_until(lambda: api.calls == 2)
        time.sleep(0.05)
        seen.append(api.calls)  # still alone in flight
        for n in range(1, 6):
            api.gate(n).set()

    opener = threading.Thread(target=conduct)
    opener.start()
    with make_client(api, clock=SystemClock(), max_retries=0) as client:
        results = list(client.send_many(counted(6, []), concurrency=4))
    opener.join()
    assert seen == [2]
    assert [r.outcome for r in results][:2] == ["transient", "accepted"] and len(results) == 6
