"""The state store. DDL lives in ``sql/state/``; DML here uses SQLAlchemy Core with bound parameters.

One :class:`StateStore` holds one connection for a run: on DuckDB every new connection costs ~20 ms
and a commit on an open one ~7 ms, which matters at 50 checkpoints a second.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine

from etl.engine.rejects import REDRIVEN, RejectRow
from etl.engine.rejects import ROW as ROW  # re-exported: the rejects table's whole-row column
from etl.instants import naive_utc
from etl.resources import state_ddl
from etl.warehouse.engine import connect_with_retry, lock_timeout, retry_on_lock
from etl.warehouse.queries import load_sql, split_statements

Clock = Callable[[], datetime]

USER_STATE = sa.table(
    "we_user_state",
    sa.column("user_id", sa.String),
    sa.column("payload_hash", sa.BigInteger),
    sa.column("field_mask", sa.String),
    sa.column("accepted_at", sa.DateTime),
    sa.column("run_id", sa.String),
    sa.column("source_hash", sa.BigInteger),
)
REGISTRY = sa.table(
    "we_attribute_registry",
    sa.column("scope", sa.String),
    sa.column("name", sa.String),
    sa.column("data_type", sa.String),
    sa.column("owner", sa.String),
    sa.column("first_sent_at", sa.DateTime),
)
REJECTS = sa.table(
    "we_rejects",
    sa.column("pipeline", sa.String),
    sa.column("row_key", sa.String),
    sa.column("column_name", sa.String),
    sa.column("reason", sa.String),
    sa.column("detail", sa.String),
    sa.column("kind", sa.String),
    sa.column("status", sa.String),
    sa.column("attempts", sa.Integer),
    sa.column("first_seen", sa.DateTime),
    sa.column("last_seen", sa.DateTime),
    sa.column("run_id", sa.String),
)
RUNS = sa.table(
    "we_runs",
    sa.column("run_id", sa.String),
    sa.column("pipeline", sa.String),
    sa.column("window_start", sa.DateTime),
    sa.column("window_end", sa.DateTime),
    sa.column("started_at", sa.DateTime),
    sa.column("finished_at", sa.DateTime),
    sa.column("status", sa.String),
    sa.column("dry_run", sa.Boolean),
    sa.column("message", sa.String),
    sa.column("counts", sa.Text),
    sa.column("last_seen_at", sa.DateTime),
)

# One statement with array parameters instead of a multi-row VALUES list: SQLAlchemy caches its
# compiled form and DuckDB runs it in ~5 ms instead of ~13 ms (a checkpoint per accepted batch).
# unnest() over equal-length arrays zips them on both DuckDB and PostgreSQL.
# source_hash is always written: a row accepted by the full-read path clears it (NULL), so a later
# in-warehouse diff cannot compare against the hash of an older accepted value.
_UPSERT_USER_STATE = sa.text(
    "INSERT INTO we_user_state (user_id, payload_hash, field_mask, accepted_at, run_id, source_hash) "
    "SELECT unnest(:ids), unnest(:hashes), unnest(:masks), :now, :run_id, unnest(:sources) "
    "ON CONFLICT (user_id) DO UPDATE SET payload_hash = excluded.payload_hash, field_mask = excluded.field_mask, "
    "accepted_at = excluded.accepted_at, run_id = excluded.run_id, source_hash = excluded.source_hash"
).bindparams(
    sa.bindparam("ids", type_=sa.ARRAY(sa.String)),
    sa.bindparam("hashes", type_=sa.ARRAY(sa.BigInteger)),
    sa.bindparam("masks", type_=sa.ARRAY(sa.String)),
    sa.bindparam("sources", type_=sa.ARRAY(sa.BigInteger)),
)

#: Reject kinds re-driven by later runs (and so counted towards dying); data rejects wait for a fix.
_REDRIVEN: Final = tuple(sorted(REDRIVEN))
ABANDONED: Final = "abandoned: the process stopped without finishing (killed?); last seen at "


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def ensure_schema(engine: Engine) -> None:
    """Create the state tables if missing (every packaged file in ``sql/state/``, in name order)."""
    with connect_with_retry(engine, begin=True) as conn:
        for path in state_ddl():
            for stmt in split_statements(load_sql(path)):
                conn.execute(sa.text(stmt))


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return naive_utc(value)


class StateStore:
    """Reads and checkpoints sync state over one connection held for the run."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock = utcnow,
        max_reject_attempts: int | None = None,
        create_schema: bool = True,
    ) -> None:
        self.engine = engine
        self.clock = clock
        #: One rule for every pipeline: re-driven rejects die after this many attempts (None: never).
        self.max_reject_attempts = max_reject_attempts
        #: False for readers (the Airflow UI page): they may hold a read-only database role, so no DDL.
        self.create_schema = create_schema
        self._conn: Connection | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> StateStore:
        if self.create_schema:
            ensure_schema(self.engine)
        self._conn = retry_on_lock(self.engine.connect, timeout_s=lock_timeout(self.engine))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> Connection:
        if self._conn is None:
            raise RuntimeError("StateStore used outside its context")
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.conn.begin():
            yield self.conn

    # -- user state ----------------------------------------------------------------------------
    def user_state(self, user_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        """``user_id -> (payload_hash, field_mask)`` for the ids that WebEngage accepted before."""
        if not user_ids:
            return {}
        ids = sa.bindparam("ids", type_=sa.ARRAY(sa.String))
        query = sa.select(USER_STATE.c.user_id, USER_STATE.c.payload_hash, USER_STATE.c.field_mask).where(
            USER_STATE.c.user_id == sa.any_(ids)
        )
        rows = self.conn.execute(query, {"ids": list(user_ids)}).all()
        self.conn.commit()
        return {r[0]: (int(r[1]), str(r[2])) for r in rows}

    def checkpoint_users(
        self,
        conn: Connection,
        rows: Sequence[tuple[str, int, str]],
        run_id: str,
        source_hashes: Sequence[int | None] | None = None,
    ) -> None:
        """Record accepted payloads; call inside :meth:`transaction`, only after WebEngage accepted them.

        ``source_hashes``: the warehouse's hash of each accepted row (in-warehouse diff), else None (cleared)."""
        if not rows:
            return
        ids, hashes, masks = (list(col) for col in zip(*rows, strict=True))
        sources = list(source_hashes) if source_hashes is not None else [None] * len(ids)
        params = {"ids": ids, "hashes": hashes, "masks": masks, "sources": sources}
        conn.execute(_UPSERT_USER_STATE, {**params, "now": self.clock(), "run_id": run_id})

    def confirm_source_hashes(self, conn: Connection, rows: Sequence[tuple[str, int]]) -> None:
        """Store the warehouse hash of rows found unchanged by the worker (their payload hash matched): the
        migration from the full-read path, and rows whose SQL text changed but whose payload cannot have."""
        if not rows:
            return
        ids = sa.bindparam("ids", type_=sa.ARRAY(sa.String))
        hashes = sa.bindparam("hashes", type_=sa.ARRAY(sa.BigInteger))
        pairs = sa.select(sa.func.unnest(ids).label("uid"), sa.func.unnest(hashes).label("h")).subquery("we_confirm")
        stmt = sa.update(USER_STATE).where(USER_STATE.c.user_id == pairs.c.uid).values(source_hash=pairs.c.h)
        conn.execute(stmt, {"ids": [r[0] for r in rows], "hashes": [r[1] for r in rows]})

    def count_users(self) -> int:
        n = self.conn.execute(sa.select(sa.func.count()).select_from(USER_STATE)).scalar_one()
        self.conn.commit()
        return int(n)

    # -- attribute registry --------------------------------------------------------------------
    def registry(self, scope: str) -> dict[str, tuple[str, str]]:
        """``name -> (data_type, owner)`` of every attribute registered in ``scope``."""
        query = sa.select(REGISTRY.c.name, REGISTRY.c.data_type, REGISTRY.c.owner).where(REGISTRY.c.scope == scope)
        rows = self.conn.execute(query).all()
        self.conn.commit()
        return {r[0]: (r[1], r[2]) for r in rows}

    def registry_usage(self) -> list[dict[str, Any]]:
        """Registered attributes counted per scope (``users``, ``event:<name>``), type and owner."""
        group = (REGISTRY.c.scope, REGISTRY.c.data_type, REGISTRY.c.owner)
        query = sa.select(*group, sa.func.count().label("attributes")).group_by(*group).order_by(*group)
        rows = [dict(r._mapping) for r in self.conn.execute(query)]
        self.conn.commit()
        return rows

    def register_attributes(self, scope: str, types: Mapping[str, str], owner: str) -> None:
        """Fix the type of attributes about to be sent for the first time (existing rows are kept)."""
        if not types:
            return
        now = self.clock()
        values = [
            {"scope": scope, "name": n, "data_type": t, "owner": owner, "first_sent_at": now} for n, t in types.items()
        ]
        with self.transaction() as conn:
            conn.execute(pg_insert(REGISTRY).values(values).on_conflict_do_nothing(index_elements=["scope", "name"]))

    def release_attributes(self, scope: str, owner: str) -> int:
        """Free the slots an owner (e.g. a retired cohort) held."""
        with self.transaction() as conn:
            result = conn.execute(sa.delete(REGISTRY).where(REGISTRY.c.scope == scope, REGISTRY.c.owner == owner))
        return int(result.rowcount or 0)

    # -- rejects -------------------------------------------------------------------------------
    def record_rejects(
        self,
        conn: Connection,
        pipeline: str,
        rejects: Iterable[RejectRow],
        run_id: str,
        *,
        max_attempts: int | None = None,
    ) -> int:
        """Upsert rejects (attempts += 1 on a repeat); call inside :meth:`transaction`.

        A transient or API reject that reaches ``max_attempts`` becomes ``dead``: it is not re-driven any
        more until someone reopens it (`webengage-sync rejects retry`). Data rejects never die: fixing the
        row in the warehouse sends it."""
        if max_attempts is None:
            max_attempts = self.max_reject_attempts
        limit = max_attempts if max_attempts is not None else 2**31 - 1
        now = self.clock()
        merged: dict[tuple[str, str, str], dict[str, Any]] = {}
        for r in rejects:
            merged[(r.row_key, r.column, r.reason)] = {
                "pipeline": pipeline,
                "row_key": r.row_key[:400],
                "column_name": r.column[:120],
                "reason": r.reason[:120],
                "detail": r.detail[:1000],
                "kind": r.kind,
                "status": "dead" if r.kind in _REDRIVEN and limit <= 1 else "open",
                "attempts": 1,
                "first_seen": now,
                "last_seen": now,
                "run_id": run_id,
            }
        values = list(merged.values())
        for start in range(0, len(values), 5_000):
            stmt = pg_insert(REJECTS).values(values[start : start + 5_000])
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["pipeline", "row_key", "column_name", "reason"],
                    set_={
                        "detail": stmt.excluded.detail,
                        "kind": stmt.excluded.kind,
                        "status": sa.case(
                            (sa.and_(stmt.excluded.kind.in_(_REDRIVEN), REJECTS.c.attempts + 1 >= limit), "dead"),
                            else_="open",
                        ),
                        "attempts": REJECTS.c.attempts + 1,
                        "last_seen": stmt.excluded.last_seen,
                        "run_id": stmt.excluded.run_id,
                    },
                )
            )
        return len(values)

    def resolve_rejects(self, conn: Connection, pipeline: str, row_keys: Sequence[str], run_id: str) -> None:
        """Rows that went through are no longer open rejects (kept as history, status resolved).

        Call it before recording the rejects this run found for the same rows (e.g. a bad phone left out of
        a row that was sent), or they would be resolved at once."""
        if not row_keys:
            return
        keys = sa.bindparam("keys", type_=sa.ARRAY(sa.String))
        conn.execute(
            sa.update(REJECTS)
            .where(
                REJECTS.c.pipeline == pipeline,
                REJECTS.c.status == "open",
                REJECTS.c.row_key == sa.any_(keys),
            )
            .values(status="resolved", last_seen=self.clock(), run_id=run_id),
            {"keys": list(row_keys)},
        )

    def open_reject_keys(self, pipeline: str, *, column: str | None = None) -> set[str]:
        """Row keys with an open reject (of ``column`` only, e.g. :data:`ROW` for whole rows): only their
        acceptance needs to touch the rejects table."""
        query = sa.select(REJECTS.c.row_key).where(REJECTS.c.pipeline == pipeline, REJECTS.c.status == "open")
        if column is not None:
            query = query.where(REJECTS.c.column_name == column)
        keys = {str(r[0]) for r in self.conn.execute(query)}
        self.conn.commit()
        return keys

    def dead_reject_keys(self, pipeline: str) -> set[str]:
        """Row keys given up on after ``max_attempts``; pipelines skip them."""
        query = sa.select(REJECTS.c.row_key).where(REJECTS.c.pipeline == pipeline, REJECTS.c.status == "dead")
        keys = {str(r[0]) for r in self.conn.execute(query)}
        self.conn.commit()
        return keys

    def reopen_dead(self, pipeline: str | None = None) -> int:
        """Give dead rejects another round of attempts (attempts reset)."""
        stmt = sa.update(REJECTS).where(REJECTS.c.status == "dead").values(status="open", attempts=0)
        if pipeline:
            stmt = stmt.where(REJECTS.c.pipeline == pipeline)
        with self.transaction() as conn:
            result = conn.execute(stmt)
        return int(result.rowcount or 0)

    def open_rejects(self, pipeline: str | None = None) -> list[dict[str, Any]]:
        query = (
            sa.select(REJECTS)
            .where(REJECTS.c.status != "resolved")
            .order_by(REJECTS.c.pipeline, REJECTS.c.reason, REJECTS.c.row_key)
        )
        if pipeline:
            query = query.where(REJECTS.c.pipeline == pipeline)
        rows = [dict(r._mapping) for r in self.conn.execute(query)]
        self.conn.commit()
        return rows

    # -- runs ----------------------------------------------------------------------------------
    def start_run(
        self,
        *,
        run_id: str,
        pipeline: str,
        window: tuple[datetime | None, datetime | None] = (None, None),
        dry_run: bool = False,
    ) -> None:
        values = {
            "run_id": run_id,
            "pipeline": pipeline,
            "window_start": _naive_utc(window[0]),
            "window_end": _naive_utc(window[1]),
            "started_at": self.clock(),
            "finished_at": None,
            "status": "running",
            "dry_run": dry_run,
            "message": None,
            "counts": None,
            "last_seen_at": self.clock(),
        }
        stmt = pg_insert(RUNS).values(values)
        with self.transaction() as conn:
            # A run of this pipeline still 'running' was stopped without finishing (SIGKILL, a lost worker):
            # say so. Should it in fact still be alive, its own finish overwrites this.
            seen = sa.func.coalesce(RUNS.c.last_seen_at, RUNS.c.started_at)
            conn.execute(
                sa.update(RUNS)
                .where(RUNS.c.pipeline == pipeline, RUNS.c.status == "running", RUNS.c.run_id != run_id)
                .values(status="abandoned", finished_at=seen, message=sa.literal(ABANDONED) + sa.cast(seen, sa.String))
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["run_id", "pipeline"],
                    set_={k: stmt.excluded[k] for k in values if k not in ("run_id", "pipeline")},
                )
            )

    def heartbeat(self, *, run_id: str, pipeline: str) -> None:
        """Record that the run is alive (shown as 'last seen' should it be abandoned)."""
        with self.transaction() as conn:
            conn.execute(
                sa.update(RUNS)
                .where(RUNS.c.run_id == run_id, RUNS.c.pipeline == pipeline)
                .values(last_seen_at=self.clock())
            )

    def finish_run(
        self, *, run_id: str, pipeline: str, status: str, counts: Mapping[str, Any], message: str = ""
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                sa.update(RUNS)
                .where(RUNS.c.run_id == run_id, RUNS.c.pipeline == pipeline)
                .values(
                    finished_at=self.clock(),
                    status=status,
                    message=message[:2000] or None,
                    counts=json.dumps(counts, sort_keys=True, default=str),
                )
            )

    def reject_groups(
        self, pipeline: str | None = None, *, sample: int = 0, run_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Open and dead rejects grouped by pipeline, reason, column, kind and status, largest first, with
        the highest attempts, the last time seen and up to ``sample`` row keys (computed in the database).
        ``run_id``: only the rejects that run was the last to record."""
        group = (REJECTS.c.pipeline, REJECTS.c.reason, REJECTS.c.column_name, REJECTS.c.kind, REJECTS.c.status)
        rows_n = sa.func.count().label("rows")
        query = (
            sa.select(
                *group,
                rows_n,
                sa.func.max(REJECTS.c.attempts).label("max_attempts"),
                sa.func.max(REJECTS.c.last_seen).label("last_seen"),
            )
            .where(REJECTS.c.status != "resolved")
            .group_by(*group)
            .order_by(rows_n.desc(), *group)
        )
        scope = [REJECTS.c.run_id == run_id] if run_id is not None else []
        if pipeline:
            query = query.where(REJECTS.c.pipeline == pipeline)
        groups = [dict(r._mapping) for r in self.conn.execute(query.where(*scope))]
        if sample:
            for g in groups:
                keys = (
                    sa.select(REJECTS.c.row_key)
                    .where(*(c == g[c.name] for c in group), *scope)
                    .order_by(REJECTS.c.row_key)
                    .limit(sample)
                )
                g["keys"] = [str(k) for k in self.conn.execute(keys).scalars()]
        self.conn.commit()
        return groups

    def has_table(self, name: str) -> bool:
        """Whether a state table exists yet (a reader that creates no schema asks before querying)."""
        found = sa.inspect(self.conn).has_table(name)
        self.conn.commit()
        return bool(found)

    def pipelines(self) -> list[str]:
        """Every pipeline with a run, by name."""
        names = [str(p) for p in self.conn.execute(sa.select(RUNS.c.pipeline).distinct().order_by(RUNS.c.pipeline))]
        self.conn.commit()
        return names

    def runs(
        self,
        *,
        pipeline: str | None = None,
        last: int = 20,
        run_id: str | None = None,
        pipeline_prefix: str | None = None,
    ) -> list[dict[str, Any]]:
        """The last ``last`` runs (newest first), of one pipeline (or those starting with ``pipeline_prefix``,
        e.g. ``cohort:``) and/or one run id when given."""
        query = sa.select(RUNS).order_by(RUNS.c.started_at.desc()).limit(last)
        if pipeline:
            query = query.where(RUNS.c.pipeline == pipeline)
        if pipeline_prefix:
            query = query.where(RUNS.c.pipeline.startswith(pipeline_prefix, autoescape=True))
        if run_id is not None:
            query = query.where(RUNS.c.run_id == run_id)
        rows = [dict(r._mapping) for r in self.conn.execute(query)]
        self.conn.commit()
        for row in rows:
            row["counts"] = json.loads(row["counts"]) if row["counts"] else {}
        return rows


STATE_TABLES: Final = (
    "we_user_state",
    "we_attribute_registry",
    "we_rejects",
    "we_runs",
    "we_cohort_members",
    "we_cohorts",
    "we_cohort_events",
    "we_event_ledger",
    "we_event_outbox",
    "we_erasure_requests",
    "we_merged_pairs",
)


def reset_state(engine: Engine) -> None:
    """Drop every state table (the demo starts over with an empty sandbox). Names are our constants."""
    with connect_with_retry(engine, begin=True) as conn:
        for name in STATE_TABLES:
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
