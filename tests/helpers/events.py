"""Independent readers of the event side: the requests the ledger records as accepted, and the events a
window must deliver (transformed as one uninterrupted run would), compared as multisets of full payloads."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson
import sqlalchemy as sa

from etl.mappings.events import EventMapping
from etl.state import ledger
from etl.transform.events import TypeRegistry, transform_events
from etl.warehouse.engine import make_engine

from .warehouse import AS_OF, duck

#: The demo's last 31 days: every event it holds.
WINDOW = (AS_OF - timedelta(days=31), AS_OF)


def ledger_request_ids(warehouse: Path) -> set[str]:
    """The request ids the event ledger records as accepted."""
    engine = make_engine(duck(warehouse))
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("we_event_ledger"):
                return set()
            rows = conn.execute(sa.select(ledger.LEDGER.c.request_id).where(ledger.LEDGER.c.status == "accepted"))
            return {str(r[0]) for r in rows}
    finally:
        engine.dispose()


def reference_events(warehouse: Path, window: tuple[datetime, datetime]) -> Counter[bytes]:
    """What one uninterrupted run must deliver: the window's rows transformed, first row per event id."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        con.execute("SET TimeZone='UTC'")
        df = (
            con.sql(
                "SELECT * FROM main.events WHERE event_time >= ? AND event_time < ? ORDER BY event_id",
                params=[window[0] - timedelta(hours=2), window[1]],
            )
            .to_arrow_table()
            .to_pandas()
        )
    finally:
        con.close()
    df = df[~df["event_id"].duplicated()].reset_index(drop=True)
    return canonical(transform_events(df, EventMapping(), TypeRegistry(lambda _scope: {})).payloads)


def canonical(payloads: list[dict[str, Any]]) -> Counter[bytes]:
    """Payloads as a multiset of canonical JSON (keys sorted): equal when the same events went, field by field."""
    return Counter(orjson.dumps(p, option=orjson.OPT_SORT_KEYS) for p in payloads)
