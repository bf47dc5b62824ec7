"""The overflow lane: the dispatcher's choices, the client's widths and counts, and the profile sync with the
lane on against the sandbox (every user once, both budgets used, checkpoints only after acceptance)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from etl.config import Settings
from etl.errors import TerminalAPIError
from etl.load.batching import Batch, Item, batch_requests
from etl.pipelines import users
from etl.webengage import OverflowLane, SendRequest, SystemClock, WebEngageClient, deterministic_request_id
from tests.helpers.sandbox import sandbox_fixture, sandbox_settings
from tests.helpers.warehouse import AS_OF, user_state_ids, warehouse_fixture
from webengage_dev.sandbox import SandboxServer

from .fakes import make_settings

KEY = "overflow-test-key-not-logged"


def items(n: int) -> list[Item[str]]:
    return [Item(key=f"u{i:04d}", identity=f"u{i:04d}:7", payload={"userId": f"u{i:04d}"}) for i in range(n)]


def bulk(n_items: int) -> list[SendRequest]:
    return list(batch_requests(items(n_items), endpoint="bulk-users", batch_size=25, max_bytes=100_000, oversize=[]))


def singles(request: SendRequest) -> list[SendRequest]:
    batch = request.key
    assert isinstance(batch, Batch)
    return [
        SendRequest("users", orjson.dumps(i.payload), deterministic_request_id([i.identity]), 1, Batch((i,)))
        for i in batch.items
    ]


class StubClient:
    """What the lane reads of a client, with the bulk lane's occupancy set by the test."""

    def __init__(self, width: int = 2) -> None:
        self.width = width
        self.bulk_in_flight = 0
        self.attached: list[tuple[str, str]] = []

    def in_flight(self, endpoint: str) -> int:
        return self.bulk_in_flight if endpoint == "bulk-users" else 0

    def concurrency_for(self, endpoint: str) -> int:
        return self.width

    def attach_overflow(self, primary: str, overflow: str) -> None:
        self.attached.append((primary, overflow))

    def detach_overflow(self, primary: str) -> None:
        self.attached.remove((primary, "users"))


def lane_for(client: StubClient) -> OverflowLane:
    return OverflowLane(client, split=singles)  # type: ignore[arg-type]


def test_bulk_lane_with_room_takes_whole_batches() -> None:
    client = StubClient()
    lane = lane_for(client)
    out = list(lane.dispatch(bulk(100)))
    assert [r.endpoint for r in out] == ["bulk-users"] * 4
    assert (lane.bulk_requests, lane.split_requests, lane.single_items) == (4, 0, 0)


def test_full_bulk_lane_sends_the_next_batch_as_singles_and_resumes_bulk_when_a_slot_frees() -> None:
    client = StubClient(width=2)
    lane = lane_for(client)
    source = bulk(30 * 25)
    stream = lane.dispatch(source)
    assert client.attached == []  # a generator does nothing until pulled
    client.bulk_in_flight = 2  # the bulk lane is full (its requests wait for tokens)
    first = [next(stream) for _ in range(10)]
    assert client.attached == [("bulk-users", "users")]
    assert [r.endpoint for r in first] == ["users"] * 10
    assert [r.request_id for r in first] == [deterministic_request_id([f"u{i:04d}:7"]) for i in range(10)]
    client.bulk_in_flight = 1  # a bulk request finished: the next batch goes bulk, the split waits
    assert next(stream) is source[1]
    client.bulk_in_flight = 2
    rest = list(stream)
    assert client.attached == []  # detached when the stream ends
    sent = [i.key for r in [*first, source[1], *rest] for i in r.key.items]
    assert sorted(sent) == sorted(i.key for r in source for i in r.key.items)  # every user exactly once
    assert len(sent) == len(set(sent))
    assert lane.bulk_requests == 1 and lane.split_requests == 29 and lane.single_items == 29 * 25


def test_source_end_drains_a_split_batch_and_closing_detaches() -> None:
    client = StubClient(width=1)
    client.bulk_in_flight = 1
    lane = lane_for(client)
    out = []
    stream = lane.dispatch(bulk(25))
    out.append(next(stream))
    client.bulk_in_flight = 0  # room again, but the source is dry: the 24 singles left still go
    out.extend(stream)
    assert [r.endpoint for r in out] == ["users"] * 25
    partial = lane.dispatch(bulk(50))
    client.bulk_in_flight = 1
    next(partial)
    assert client.attached
    partial.close()
    assert client.attached == []


# -- with the real client ---------------------------------------------------------------------------------
class Gate:
    """Answers the first bulk call at once, holds later ones until 25 singles went through."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.bulk = 0
        self.single_ids: list[str] = []
        self.headers: list[str | None] = []
        self.bulk_ids: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        if request.url.path.endswith("/bulk-users"):
            with self.lock:
                self.bulk += 1
                first = self.bulk == 1
                self.bulk_ids += [u["userId"] for u in body["users"]]
            if not first:
                assert self.release.wait(10), "no single went through while the bulk lane was full"
        else:
            with self.lock:
                self.single_ids.append(body["userId"])
                self.headers.append(request.headers.get("x-request-id"))
                if len(self.single_ids) >= 25:
                    self.release.set()
        return httpx.Response(201, json={"response": {"status": "queued"}})


def test_client_widens_the_stream_and_every_item_goes_once() -> None:
    gate = Gate()
    settings = make_settings(concurrency=2)
    with WebEngageClient(settings, transport=httpx.MockTransport(gate), clock=SystemClock()) as client:
        lane = OverflowLane(client, split=singles)
        assert client.stream_width("bulk-users") == 2
        source = bulk(20 * 25)
        results = list(client.send_many(lane.dispatch(source)))
        assert client.stream_width("bulk-users") == 2  # back to the bulk width once the lane is done
        assert client.in_flight("bulk-users") == client.in_flight("users") == 0
    assert all(r.accepted for r in results)
    delivered = gate.bulk_ids + gate.single_ids
    assert sorted(delivered) == [f"u{i:04d}" for i in range(500)]
    assert len(gate.single_ids) >= 25 and lane.single_items == len(gate.single_ids)
    assert gate.headers == [deterministic_request_id([f"{u}:7"]) for u in gate.single_ids]


def test_stream_width_adds_the_overflow_lane_only_while_attached() -> None:
    client = WebEngageClient(make_settings(concurrency=3), transport=httpx.MockTransport(lambda r: httpx.Response(201)))
    client.attach_overflow("bulk-users", "users")
    assert client.stream_width("bulk-users") == 6 and client.stream_width("bulk-events") == 3
    client.detach_overflow("bulk-users")
    assert client.stream_width("bulk-users") == 3
    client.close()


# -- the profile sync with the lane on ----------------------------------------------------------------------
warehouse = warehouse_fixture(800)


# Independent budgets: bulk 1,200/min (20/s x 25) is the bottleneck, single 6,000/min takes the overflow.
sandbox = sandbox_fixture(KEY, bulk_users_rpm=1200, users_rpm=6000, latency_ms=5)


def settings_for(sandbox: SandboxServer | str, warehouse: Path, **extra: Any) -> Settings:
    values = {
        "bulk_users_rpm": 1200,
        "users_rpm": 6000,
        "expected_latency_s": 0.05,
        "burst_seconds": 0.2,
        "overflow_lane": True,
    }
    return sandbox_settings(sandbox, warehouse, KEY, **(values | extra))


def test_profile_sync_uses_both_budgets_and_sends_every_user_once(sandbox: SandboxServer, warehouse: Path) -> None:
    summary = users.run(settings_for(sandbox, warehouse), run_id="o1", clock=lambda: AS_OF)
    stats = sandbox.stats()
    assert summary["status"] == "success" and stats["violations"] == 0 and stats["throttled"] == 0
    assert summary["extracted"] == summary["unchanged"] + summary["accepted"] + summary["rejected"]
    assert stats["users"] == summary["accepted"] == len(user_state_ids(warehouse))
    singles_sent = int(stats["requests"].get("users", 0))
    assert singles_sent > 80  # the single budget carried a real share of the users (ideal: 1/6)
    assert stats["deduplicated_requests"] == 0  # ... and nobody went twice
    assert int(stats["requests"]["bulk-users"]) * 25 + singles_sent >= summary["accepted"]
    assert any(note.startswith(f"overflow lane: {singles_sent} users") for note in summary["notes"])
    print(
        f"FIGURES overflow: {summary['accepted']} users, bulk {stats['requests']['bulk-users']}, single "
        f"{singles_sent}, {summary['duration_s']}s"
    )
    again = users.run(settings_for(sandbox, warehouse), run_id="o2", clock=lambda: AS_OF)
    assert again["requests"] == 0 and again["unchanged"] == summary["accepted"]


def test_checkpoints_never_run_ahead_and_a_stopped_run_keeps_what_was_accepted(
    sandbox: SandboxServer, warehouse: Path
) -> None:
    """WebEngage starts refusing the key mid-run: what it accepted before is checkpointed (the grouped
    single-lane users included), nothing else; the re-run sends only the rest."""
    forward = httpx.HTTPTransport()
    seen = {"singles": 0}
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            if request.url.path.endswith("/users"):
                seen["singles"] += 1
            revoked = seen["singles"] > 40
        if revoked:
            return httpx.Response(401, json={"response": {"status": "error", "message": "Unauthorized"}})
        response = forward.handle_request(request)
        response.read()
        return response

    with pytest.raises(TerminalAPIError):
        users.run(
            settings_for(sandbox, warehouse), run_id="stop", clock=lambda: AS_OF, transport=httpx.MockTransport(handler)
        )
    in_sandbox = {u["id"] for u in sandbox.store.list_users(limit=100_000)[1]}
    checkpointed = user_state_ids(warehouse)
    assert checkpointed and checkpointed == in_sandbox  # accepted in flight at the stop were still recorded
    resumed = users.run(settings_for(sandbox, warehouse), run_id="resume", clock=lambda: AS_OF)
    stats = sandbox.stats()
    assert resumed["status"] == "success" and resumed["accepted"] + len(checkpointed) == stats["users"]
    assert user_state_ids(warehouse) == {u["id"] for u in sandbox.store.list_users(limit=100_000)[1]}
    assert stats["violations"] == 0 and stats["deduplicated_requests"] == 0
