"""The sandbox store: upsert-merge semantics, duplicate detection, request-id memory and stats."""

from __future__ import annotations

import threading

from webengage_dev.sandbox.store import REQUEST_ID_TTL_S, SandboxStore


def test_upsert_merges_fields_and_attributes() -> None:
    store = SandboxStore()
    store.ingest_users(
        [(None, {"userId": "u", "firstName": "A", "city": "Pune", "attributes": {"a": 1, "b": "x"}})],
        endpoint="users",
        request_id=None,
    )
    store.ingest_users(
        [(None, {"userId": "u", "firstName": "B", "attributes": {"b": "y", "c": True}})],
        endpoint="users",
        request_id=None,
    )
    record = store.get_user("u")
    assert record is not None
    assert record["profile"] == {
        "userId": "u",
        "firstName": "B",
        "city": "Pune",
        "attributes": {"a": 1, "b": "y", "c": True},
    }
    assert record["updates"] == 2


def test_anonymous_profiles_are_keyed_apart() -> None:
    store = SandboxStore()
    store.ingest_users([(None, {"anonymousId": "a1"})], endpoint="users", request_id=None)
    store.ingest_users([(None, {"userId": "u", "anonymousId": "a1"})], endpoint="users", request_id=None)
    assert store.get_user("anon:a1") is not None
    assert store.get_user("u") is not None
    assert store.list_users()[0] == 2


def test_unidentifiable_items_are_not_stored() -> None:
    store = SandboxStore()
    stored, found = store.ingest_users([(0, {"userId": "u" * 101})], endpoint="bulk-users", request_id=None)
    assert stored == 0 and [v.rule for v in found] == ["user_id_too_long"]
    stored, _ = store.ingest_events([(None, {"userId": "u"})], endpoint="events", request_id=None)
    assert stored == 0
    assert store.stats()["users"] == 0 and store.stats()["events"] == 0


def test_duplicate_events_are_counted_not_merged() -> None:
    store = SandboxStore()
    first = {
        "userId": "u",
        "eventName": "E",
        "eventTime": "2026-01-01T00:00:00+0000",
        "eventData": {"a": 1, "b": 2},
    }
    reordered = {**first, "eventData": {"b": 2, "a": 1}}
    other = {**first, "eventData": {"a": 2, "b": 2}}
    for item in (first, reordered, other):
        store.ingest_events([(None, item)], endpoint="events", request_id=None)
    assert store.stats()["duplicate_events"] == 1
    assert len(store.events(user_id="u", event_name="E")) == 3


def test_request_ids_expire_after_four_hours() -> None:
    now = [1000.0]
    store = SandboxStore(clock=lambda: now[0])
    assert not store.is_duplicate_request("r1")
    store.remember_request("r1")
    now[0] += REQUEST_ID_TTL_S - 1
    assert store.is_duplicate_request("r1")
    now[0] += 2
    assert not store.is_duplicate_request("r1")
    assert store.stats()["deduplicated_requests"] == 1


def test_stats_and_reset() -> None:
    store = SandboxStore()
    store.record_request("users")
    store.record_response(201)
    store.record_response(429)
    store.record_fault("error_5xx")
    store.ingest_users([(None, {"userId": "u", "gender": "M"})], endpoint="users", request_id="r")
    stats = store.stats()
    assert stats["requests"] == {"users": 1}
    assert stats["responses"] == {"201": 1, "429": 1}
    assert stats["throttled"] == 1
    assert stats["faults"] == {"error_5xx": 1}
    assert stats["items_accepted"] == {"users": 1}
    assert stats["violations"] == 1 and stats["violations_by_rule"] == {"invalid_gender": 1}
    assert stats["first_request_at"] is not None
    assert store.violations()[0].request_id == "r"
    store.reset()
    assert store.stats()["violations"] == 0 and store.get_user("u") is None
    assert store.attribute_types() == {}


def test_concurrent_ingestion_is_consistent() -> None:
    store = SandboxStore()

    def work(n: int) -> None:
        for i in range(200):
            store.ingest_users(
                [(None, {"userId": f"u{i % 10}", "attributes": {"n": n}})], endpoint="users", request_id=None
            )

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.stats()["items_accepted"] == {"users": 800}
    assert sum(store.get_user(f"u{i}")["updates"] for i in range(10)) == 800  # type: ignore[index]
