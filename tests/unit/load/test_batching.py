from __future__ import annotations

import orjson
import pytest

from etl.load.batching import Batch, Item, batch_requests, split_request


def _items(n: int, size: int = 10) -> list[Item[str]]:
    return [Item(key=f"u{i}", identity=f"u{i}:1", payload={"userId": f"u{i}", "x": "a" * size}) for i in range(n)]


def test_batches_cap_items_and_body_is_valid_json() -> None:
    oversize: list[Item[str]] = []
    reqs = list(batch_requests(_items(60), endpoint="bulk-users", batch_size=25, max_bytes=10**6, oversize=oversize))
    assert [r.items for r in reqs] == [25, 25, 10]
    body = orjson.loads(reqs[0].body)
    assert [u["userId"] for u in body["users"]] == [f"u{i}" for i in range(25)]
    assert oversize == []


def test_batches_cap_bytes_exactly() -> None:
    oversize: list[Item[str]] = []
    reqs = list(
        batch_requests(_items(30, 200), endpoint="bulk-users", batch_size=25, max_bytes=2048, oversize=oversize)
    )
    assert all(len(r.body) <= 2048 for r in reqs)
    assert sum(r.items for r in reqs) == 30
    assert len(reqs) > 2


def test_single_oversize_item_is_set_aside_not_failing_neighbours() -> None:
    items = _items(3)
    big = Item(key="big", identity="big:1", payload={"userId": "big", "x": "b" * 5000})
    oversize: list[Item[str]] = []
    reqs = list(
        batch_requests(
            [items[0], big, *items[1:]], endpoint="bulk-users", batch_size=25, max_bytes=2048, oversize=oversize
        )
    )
    assert oversize == [big]
    assert sum(r.items for r in reqs) == 3


def test_request_id_is_deterministic_and_content_addressed() -> None:
    a = list(batch_requests(_items(5), endpoint="bulk-events", batch_size=25, max_bytes=10**6, oversize=[]))
    b = list(batch_requests(_items(5), endpoint="bulk-events", batch_size=25, max_bytes=10**6, oversize=[]))
    c = list(batch_requests(_items(6), endpoint="bulk-events", batch_size=25, max_bytes=10**6, oversize=[]))
    assert a[0].request_id == b[0].request_id != c[0].request_id
    assert orjson.loads(a[0].body)["events"][0]["userId"] == "u0"


@pytest.mark.parametrize("n", [2, 5, 25])
def test_split_halves_cover_all_items(n: int) -> None:
    [req] = batch_requests(_items(n), endpoint="bulk-users", batch_size=25, max_bytes=10**6, oversize=[])
    halves = split_request(req)
    keys = [i.key for h in halves for i in (h.key.items if isinstance(h.key, Batch) else ())]
    assert keys == [f"u{i}" for i in range(n)]
    assert all(orjson.loads(h.body)["users"] for h in halves)


def test_split_single_item_gives_nothing() -> None:
    [req] = batch_requests(_items(1), endpoint="bulk-users", batch_size=25, max_bytes=10**6, oversize=[])
    assert split_request(req) == []
