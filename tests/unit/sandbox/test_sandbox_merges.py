"""The sandbox's anonymous -> known merge: a /users call with both ids moves the anonymous profile and its
events to the user; later events of that device go to the user; a userId never changes; bulk ignores it."""

from __future__ import annotations

from typing import Any

from webengage_dev.sandbox.store import SandboxStore


def user(store: SandboxStore, body: dict[str, Any], *, merge: bool = True, endpoint: str = "users") -> None:
    store.ingest_users([(None, body)], endpoint=endpoint, request_id=None, merge=merge)


def event(store: SandboxStore, body: dict[str, Any]) -> None:
    store.ingest_events([(None, body)], endpoint="events", request_id=None)


def test_merge_moves_profile_and_events_to_the_user() -> None:
    store = SandboxStore()
    user(store, {"anonymousId": "dev-1", "city": "Pune", "attributes": {"plan": "free", "visits": 3}})
    user(store, {"userId": "alice", "city": "Delhi", "attributes": {"plan": "gold"}})
    event(store, {"anonymousId": "dev-1", "eventName": "Page Viewed"})
    event(store, {"anonymousId": "dev-2", "eventName": "Page Viewed"})

    user(store, {"userId": "alice", "anonymousId": "dev-1"})

    assert store.get_user("anon:dev-1") is None
    profile = store.get_profile("alice")
    assert profile is not None
    # The user's own values win; the anonymous profile fills what the user lacked.
    assert profile["city"] == "Delhi" and profile["attributes"] == {"plan": "gold", "visits": 3}
    assert [e["event"]["anonymousId"] for e in store.events(user_id="alice")] == ["dev-1"]
    # After the merge, the device's events (and anonymous-only profile updates) belong to the user.
    event(store, {"anonymousId": "dev-1", "eventName": "Product Viewed"})
    user(store, {"anonymousId": "dev-1", "attributes": {"visits": 4}})
    assert [e["event"]["eventName"] for e in store.events(user_id="alice")] == ["Page Viewed", "Product Viewed"]
    assert store.get_user("anon:dev-1") is None
    assert store.events(user_id=None)[1]["event"] == {"anonymousId": "dev-2", "eventName": "Page Viewed"}
    stats = store.stats()
    assert (stats["merges"], stats["merged_events"], stats["merge_conflicts"]) == (1, 1, 0)


def test_a_merged_device_never_moves_to_another_user() -> None:
    store = SandboxStore()
    user(store, {"userId": "alice", "anonymousId": "dev-1"})
    user(store, {"userId": "alice", "anonymousId": "dev-1"})  # the same merge again: nothing new
    user(store, {"userId": "bob", "anonymousId": "dev-1"})
    event(store, {"anonymousId": "dev-1", "eventName": "Page Viewed"})
    assert [e["event"]["userId"] for e in store.events()] == ["alice"]
    stats = store.stats()
    assert (stats["merges"], stats["merge_conflicts"]) == (1, 1)


def test_bulk_and_merge_off_ignore_the_anonymous_id() -> None:
    store = SandboxStore()
    user(store, {"anonymousId": "dev-1", "city": "Pune"})
    user(store, {"userId": "alice", "anonymousId": "dev-1"}, merge=False, endpoint="bulk-users")
    event(store, {"anonymousId": "dev-1", "eventName": "Page Viewed"})
    assert store.get_user("anon:dev-1") is not None and store.events(user_id="alice") == []
    assert store.stats()["merges"] == 0
