"""The shared rate budget's PostgreSQL store (table ``we_rate_budget``): each reservation is one atomic
upsert on the database clock (the arithmetic and the bucket are in :mod:`etl.webengage.shared_budget`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine

from etl.webengage.shared_budget import SharedBudgetError

BUDGETS: Final = sa.Table(
    "we_rate_budget",
    sa.MetaData(),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("tat", sa.Float(53), nullable=False),
)
# Serialises the first CREATE TABLE of concurrent workers (PostgreSQL's IF NOT EXISTS still races).
_DDL_LOCK_KEY: Final = 0x57E_B0D6
_FIX: Final = "check shared_budget_url (WEBENGAGE_SHARED_BUDGET_URL): the PostgreSQL server must accept connections"


class PostgresBudgetStore:
    """Budgets in a PostgreSQL table; each reservation is one autocommitted upsert on the server clock."""

    def __init__(self, url: str, *, engine_factory: Callable[[str], Engine] | None = None) -> None:
        try:
            engine = (engine_factory or _engine)(url)
            with engine.begin() as conn:  # one transaction: the advisory lock lasts until the table exists
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_DDL_LOCK_KEY)))
                conn.execute(sa.schema.CreateTable(BUDGETS, if_not_exists=True))
            self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        except (sa.exc.SQLAlchemyError, ImportError) as exc:  # ImportError: the URL names a missing driver
            raise SharedBudgetError(f"shared rate budget unavailable ({type(exc).__name__}). Fix: {_FIX}") from None

    def reserve(self, budget: str, *, interval_s: float, burst: float) -> float:
        now = _db_now()
        interval = sa.bindparam("interval", type_=sa.Float(53))
        # A new budget starts idle (tat in the past): its first reservation is now + interval.
        stmt = (
            pg_insert(BUDGETS)
            .values(name=sa.bindparam("budget"), tat=now + interval)
            .on_conflict_do_update(
                index_elements=[BUDGETS.c.name], set_={"tat": sa.func.greatest(BUDGETS.c.tat, now) + interval}
            )
            # RETURNING sees the new tat: wait = new_tat - burst × interval - now.
            .returning(BUDGETS.c.tat - sa.bindparam("window", type_=sa.Float(53)) - now)
        )
        wait = self._run(stmt, {"budget": budget, "interval": interval_s, "window": burst * interval_s})
        return max(0.0, wait)

    def hold(self, budget: str, *, seconds: float, interval_s: float, burst: float) -> None:
        until = _db_now() + sa.bindparam("delay", type_=sa.Float(53))
        stmt = (
            pg_insert(BUDGETS)
            .values(name=sa.bindparam("budget"), tat=until)
            .on_conflict_do_update(
                index_elements=[BUDGETS.c.name], set_={"tat": sa.func.greatest(BUDGETS.c.tat, until)}
            )
            .returning(BUDGETS.c.tat)
        )
        self._run(stmt, {"budget": budget, "delay": seconds + (burst - 1.0) * interval_s})

    def _run(self, stmt: sa.Executable, params: dict[str, object]) -> float:
        try:
            with self._engine.connect() as conn:
                value = conn.execute(stmt, params).scalar_one()
        except sa.exc.SQLAlchemyError as exc:
            raise SharedBudgetError(f"shared rate budget failed ({type(exc).__name__}). Fix: {_FIX}") from None
        return float(value)

    def close(self) -> None:
        self._engine.dispose()

    def __repr__(self) -> str:
        url = self._engine.url
        return f"PostgresBudgetStore(host={url.host!r}, database={url.database!r})"  # never the password


def _db_now() -> sa.ColumnElement[float]:
    # The server's clock, not the workers': every process reserves on one timeline.
    return sa.func.extract("epoch", sa.func.clock_timestamp()).cast(sa.Float(53))


def _engine(url: str) -> Engine:
    # Reservations are short: a few connections serve every sender thread of the process.
    return sa.create_engine(url, pool_size=2, max_overflow=6, pool_pre_ping=True, pool_timeout=60)
