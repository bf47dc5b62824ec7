"""The in-warehouse diff and the full read decide alike: the same users found changed, the same payloads
and requests, the same rejects, on DuckDB and PostgreSQL, through duplicates, NULLs, type changes, open
rejects and dead ones. Each scenario runs on two identical warehouses, one per path, step by step."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from etl.config import Settings
from etl.mappings.users import UserMapping, user_mapping_from_dict
from etl.pipelines import users
from etl.state.store import REJECTS, USER_STATE
from etl.warehouse.engine import make_engine
from tests.helpers.runs import failed_delivery
from tests.helpers.sandbox import sandbox_settings
from tests.helpers.warehouse import AS_OF

KEY = "diff-paths-key-not-logged-7"
N = 60

TABLE = """
CREATE TABLE people (
    user_id     VARCHAR(200),
    email       VARCHAR(200),
    phone       VARCHAR(40),
    country_code VARCHAR(2),
    first_name  VARCHAR(100),
    plan        VARCHAR(40),
    score       DOUBLE PRECISION,
    orders      INTEGER,
    vip         BOOLEAN,
    signup_at   TIMESTAMP,
    updated_at  TIMESTAMP
)
"""
INSERT = sa.text(
    "INSERT INTO people VALUES (:user_id, :email, :phone, :country_code, :first_name, :plan, :score, :orders, "
    ":vip, :signup_at, :updated_at)"
)


def _rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(N):
        rows.append(
            {
                "user_id": f"p{i:04d}",
                "email": None if i % 7 == 0 else f"user{i}@example.com",
                "phone": None if i % 5 == 0 else f"98{i:08d}",
                "country_code": "IN",
                "first_name": None if i % 6 == 0 else f"Name{i}",
                "plan": ["free", "pro", None][i % 3],
                "score": None if i % 4 == 0 else i / 8,
                "orders": None if i % 9 == 0 else i * 3,
                "vip": None if i % 8 == 0 else i % 2 == 0,
                "signup_at": f"2024-01-{1 + i % 28:02d} 10:00:00",
                "updated_at": f"2026-10-{1 + i % 28:02d} 08:00:00",
            }
        )
    base = dict(rows[3])
    # Duplicates: a newer row (wins), an older one (loses), a tie on updated_at (the worker's rule decides).
    rows.append(base | {"first_name": "Newer", "updated_at": "2026-10-30 00:00:00"})
    rows.append(dict(rows[10]) | {"first_name": "Older", "updated_at": "2020-01-01 00:00:00"})
    rows.append(dict(rows[11]) | {"first_name": "Tied"})
    # Bad ids: none, a null-like token, too long.
    rows.append(dict(rows[12]) | {"user_id": None})
    rows.append(dict(rows[13]) | {"user_id": "null"})
    rows.append(dict(rows[14]) | {"user_id": "x" * 120})
    return rows


@dataclass
class Recorder:
    """A WebEngage stand-in that accepts everything but the ids in ``refuse`` (400), and records requests."""

    refuse: set[str] = field(default_factory=set)
    requests: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append((request.headers.get("x-request-id", ""), request.content))
        body = orjson.loads(request.content)
        ids = {u["userId"] for u in body.get("users", [body])}
        if ids & self.refuse:
            return httpx.Response(400, json={"response": {"status": "error", "message": "refused"}})
        return httpx.Response(201, json={"response": {"status": "queued"}})

    def take(self) -> list[tuple[str, bytes]]:
        with self.lock:
            out, self.requests = sorted(self.requests), []
        return out


@dataclass
class Side:
    mode: str
    url: str
    recorder: Recorder = field(default_factory=Recorder)

    def settings(self, **extra: Any) -> Settings:
        # No credential check: the recorder compares the data requests of both paths.
        values = {
            "bulk_users_rpm": 600_000,
            "expected_latency_s": 0.01,
            "diff_mode": self.mode,
            "verify_credentials": False,
        } | extra
        return sandbox_settings("http://we.test", self.url, KEY, **values)

    def execute(self, sql: str | sa.TextClause, params: Any = None) -> None:
        engine = make_engine(self.url)
        with engine.begin() as conn:
            conn.execute(sa.text(sql) if isinstance(sql, str) else sql, params)
        engine.dispose()

    def state(self) -> dict[str, tuple[int, str, str | None]]:
        engine = make_engine(self.url)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    USER_STATE.c.user_id, USER_STATE.c.payload_hash, USER_STATE.c.field_mask, USER_STATE.c.source_hash
                )
            ).all()
        engine.dispose()
        return {r[0]: (int(r[1]), str(r[2]), r[3]) for r in rows}

    def rejects(self) -> set[tuple[str, str, str, str, int]]:
        engine = make_engine(self.url)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    REJECTS.c.row_key, REJECTS.c.column_name, REJECTS.c.reason, REJECTS.c.status, REJECTS.c.attempts
                )
            ).all()
        engine.dispose()
        # Rows without a usable id too: both paths key them by their position in the full read (row:N).
        return {(r[0], r[1], r[2], r[3], int(r[4])) for r in rows}


def _mapping(tmp_path: Path) -> UserMapping:
    query = tmp_path / "people.sql"
    query.write_text("SELECT * FROM people WHERE signup_at < :as_of\n", encoding="utf-8")
    return user_mapping_from_dict(
        {
            "source": {"query": str(query), "user_id": "user_id", "updated_at": "updated_at", "chunk_rows": 16},
            "options": {"phone_region_column": "country_code", "on_null": "clear"},
            "system_attributes": {"email": "email", "phone": "phone", "first_name": "firstName"},
            "custom_attributes": {
                "plan": "plan",  # type inferred: the in-warehouse path must infer it from the same rows
                "score": {"type": "number"},
                "orders": {"type": "integer"},
                "vip": {"type": "boolean"},
                "signup_at": {"type": "date"},
            },
        }
    )


def _sides(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Side, Side]:
    if kind == "duckdb":
        urls = [f"duckdb:///{tmp_path / f'{m}.duckdb'}" for m in ("warehouse", "python")]
    else:
        admin_url: str = request.getfixturevalue("pg_url")
        admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        urls = []
        for m in ("warehouse", "python"):
            name = f"diff_{m}_{tmp_path.name[-12:].lower()}".replace("-", "_")
            with admin.connect() as c:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))  # generated name
                c.execute(sa.text(f'CREATE DATABASE "{name}"'))
            urls.append(admin_url.rsplit("/", 1)[0] + "/" + name)
        admin.dispose()
    sides = Side("warehouse", urls[0]), Side("python", urls[1])
    for side in sides:
        side.execute(TABLE)
        side.execute(INSERT, _rows())
    return sides


def _run(side: Side, mapping: UserMapping, run_id: str, *, fails: bool = False, **settings: Any) -> dict[str, Any]:
    transport = httpx.MockTransport(side.recorder.handler)
    args = (side.settings(**settings),)
    kwargs = {"mapping": mapping, "run_id": run_id, "clock": lambda: AS_OF, "transport": transport}
    return failed_delivery(users.run, *args, **kwargs) if fails else users.run(*args, **kwargs)


_COMPARED = ("extracted", "unchanged", "sent", "accepted", "rejected", "requests", "rejected_by_reason")


def _step(
    sides: tuple[Side, Side], mapping: UserMapping, run_id: str, *, fails: bool = False, **settings: Any
) -> list[dict[str, Any]]:
    """One run on each side; everything WebEngage and the state see must be equal."""
    summaries = [_run(side, mapping, run_id, fails=fails, **settings) for side in sides]
    pushed, full = summaries
    assert {k: pushed[k] for k in _COMPARED} == {k: full[k] for k in _COMPARED}, run_id
    assert sides[0].recorder.take() == sides[1].recorder.take(), run_id  # same request ids and bodies
    wh_state, py_state = sides[0].state(), sides[1].state()
    assert {k: v[:2] for k, v in wh_state.items()} == {k: v[:2] for k, v in py_state.items()}, run_id
    assert sides[0].rejects() == sides[1].rejects(), run_id
    assert all(v[2] is None for v in py_state.values())  # the full read never stores a warehouse hash
    return summaries


@pytest.mark.parametrize("kind", ["duckdb", "postgresql"])
def test_both_paths_decide_alike(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    sides = _sides(kind, tmp_path, request)
    mapping = _mapping(tmp_path)
    for side in sides:
        side.recorder.refuse = {"p0020"}  # an API reject: open, re-driven, then dead
    first, _ = _step(sides, mapping, "r1", max_reject_attempts=3)
    assert first["accepted"] == N - 1 and first["rejected_by_reason"]["duplicate_user_id"] == 3
    notes = " ".join(first["notes"])
    assert "in-warehouse diff:" in notes

    again, _ = _step(sides, mapping, "r2", fails=True, max_reject_attempts=3)
    assert again["sent"] == 1 and again["rejected_by_reason"]["api_rejected"] == 1  # only p0020 re-driven
    assert _moved(again) == 3 + 2 + 1 + 2  # bad ids, the tie, p0020, the duplicates' latest rows

    # Values changed, set to NULL, a duplicate id's newer row, a row with a tie.
    for side in sides:
        side.recorder.refuse = set()
        side.execute("UPDATE people SET plan = 'enterprise' WHERE user_id IN ('p0001', 'p0002')")
        side.execute("UPDATE people SET email = NULL, score = NULL WHERE user_id = 'p0008'")
        side.execute(
            "UPDATE people SET first_name = 'Newest', updated_at = TIMESTAMP '2026-10-31 00:00:00' "
            "WHERE user_id = 'p0010' AND first_name = 'Older'"
        )
    third, _ = _step(sides, mapping, "r3", max_reject_attempts=3)
    assert third["accepted"] == 5  # p0001, p0002, p0008 (cleared), p0010 (newer duplicate wins), p0020

    # A column's SQL type changes (same digits): everything is read again and compared; nothing is sent.
    for side in sides:
        side.execute("ALTER TABLE people ALTER COLUMN orders TYPE VARCHAR(20)")
    fourth, _ = _step(sides, mapping, "r4", max_reject_attempts=3)
    # The full read's hash covers the type: both paths re-send every user whose orders is not NULL.
    assert fourth["accepted"] == sum(1 for i in range(N) if i % 9)
    # A refused user dies after max_reject_attempts and is skipped alike.
    for side in sides:
        side.recorder.refuse = {"p0030"}
        side.execute("UPDATE people SET plan = 'pro' WHERE user_id = 'p0030'")
    for n in (5, 6):
        _step(sides, mapping, f"r{n}", fails=True, max_reject_attempts=2)
    last, _ = _step(sides, mapping, "r7", max_reject_attempts=2)
    assert last["rejected_by_reason"].get("dead_after_retries") == 1
    # In the steady state only rows without a usable id, p0030 (dead), the tie and the duplicates' latest move.
    assert _moved(last) == 3 + 1 + 2 + 2


def _moved(summary: dict[str, Any]) -> int:
    note = next(n for n in summary["notes"] if n.startswith("in-warehouse diff:"))
    return int(note.split(", ")[1].split(" moved")[0])
