"""Shared DuckDB plumbing for the demo warehouse: connection, session set-up, Segment table layouts.

Randomness is `hash(key, salt, seed)` rather than `setseed()` + `random()`: DuckDB's `random()` is
not reproducible once a query runs on several threads, a keyed hash is. `hash()` is stable within a
DuckDB version, which constraints.txt pins.

Identifiers (table and column names) cannot be bound as parameters in DuckDB, so the SQL below is
assembled from the constants in this module only; every value goes through a bound parameter or a
session variable set with one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from etl.instants import as_utc
from webengage_dev.demo import _reference as ref

SITE = "https://shop.example.com"

# Segment slug -> event name as the app sent it (Segment's `event` / `event_text`).
EVENT_NAMES: dict[str, str] = {
    "products_searched": "Products Searched",
    "product_viewed": "Product Viewed",
    "product_added": "Product Added",
    "product_removed": "Product Removed",
    "checkout_started": "Checkout Started",
    "order_completed": "Order Completed",
    "order_refunded": "Order Refunded",
    "signed_up": "Signed Up",
    "logged_in": "Logged In",
}

# Columns of the staging table every generated event goes through: (name, type). Helper columns
# (kind, tbl, ckey, source) never reach the Segment tables.
RAW_COLUMNS: list[tuple[str, str]] = [
    ("kind", "VARCHAR"),  # track | page | screen
    ("tbl", "VARCHAR"),  # Segment per-event table (tracks only)
    ("ckey", "VARCHAR"),  # whose device: keys the context (ip, user agent, OS)
    ("source", "VARCHAR"),  # web | app | server
    ("id", "VARCHAR"),
    ("anonymous_id", "VARCHAR"),
    ("user_id", "VARCHAR"),
    ("ts", "TIMESTAMPTZ"),
    ("context_locale", "VARCHAR"),
    ("context_page_path", "VARCHAR"),
    ("query", "VARCHAR"),
    ("product_id", "VARCHAR"),
    ("sku", "VARCHAR"),
    ("name", "VARCHAR"),
    ("category", "VARCHAR"),
    ("brand", "VARCHAR"),
    ("price", "DOUBLE"),
    ("quantity", "BIGINT"),
    ("currency", "VARCHAR"),
    ("cart_id", "VARCHAR"),
    ("checkout_id", "VARCHAR"),
    ("order_id", "VARCHAR"),
    ("value", "DOUBLE"),
    ("revenue", "DOUBLE"),
    ("coupon", "VARCHAR"),
    ("products", "JSON"),
    ("method", "VARCHAR"),
    ("plan", "VARCHAR"),
    ("page_name", "VARCHAR"),
    ("path", "VARCHAR"),
    ("url", "VARCHAR"),
    ("referrer", "VARCHAR"),
    ("title", "VARCHAR"),
    ("search", "VARCHAR"),
    ("screen_name", "VARCHAR"),
]

# Output layouts: (column, type, expression over the decorated staging table `_ev`).
_COMMON: list[tuple[str, str, str]] = [
    ("id", "VARCHAR", "id"),
    ("anonymous_id", "VARCHAR", "anonymous_id"),
    ("user_id", "VARCHAR", "user_id"),
    ("timestamp", "TIMESTAMPTZ", '"timestamp"'),
    ("original_timestamp", "TIMESTAMPTZ", "original_timestamp"),
    ("sent_at", "TIMESTAMPTZ", "sent_at"),
    ("received_at", "TIMESTAMPTZ", "received_at"),
    ("uuid_ts", "TIMESTAMPTZ", "uuid_ts"),
]
_EVENT = [("event", "VARCHAR", "event"), ("event_text", "VARCHAR", "event_text")]
_CTX = [
    ("context_page_path", "VARCHAR", "context_page_path"),
    ("context_ip", "VARCHAR", "context_ip"),
    ("context_library_name", "VARCHAR", "context_library_name"),
    ("context_locale", "VARCHAR", "context_locale"),
]


def _cols(*names: str) -> list[tuple[str, str, str]]:
    types = dict(RAW_COLUMNS)
    return [(n, types[n], n) for n in names]


_PRODUCT = _cols("product_id", "sku", "name", "category", "brand", "price", "currency")
EVENT_PROPERTIES: dict[str, list[tuple[str, str, str]]] = {
    "products_searched": _cols("query"),
    "product_viewed": _PRODUCT,
    "product_added": [*_cols("cart_id"), *_PRODUCT, *_cols("quantity")],
    "product_removed": [*_cols("cart_id"), *_PRODUCT, *_cols("quantity")],
    "checkout_started": _cols("checkout_id", "order_id", "value", "revenue", "currency", "products"),
    "order_completed": _cols("checkout_id", "order_id", "revenue", "currency", "coupon", "products"),
    "order_refunded": _cols("order_id", "revenue", "currency"),
    "signed_up": _cols("method", "plan"),
    "logged_in": _cols("method"),
}

LAYOUTS: dict[str, list[tuple[str, str, str]]] = {
    "tracks": [
        *_COMMON,
        *_EVENT,
        *_CTX,
        ("context_page_url", "VARCHAR", "context_page_url"),
        ("context_page_referrer", "VARCHAR", "context_page_referrer"),
        ("context_user_agent", "VARCHAR", "context_user_agent"),
        ("context_library_version", "VARCHAR", "context_library_version"),
    ],
    "pages": [
        *_COMMON,
        ("name", "VARCHAR", "page_name"),
        *_cols("path", "url", "referrer", "title", "search"),
        ("context_ip", "VARCHAR", "context_ip"),
        ("context_user_agent", "VARCHAR", "context_user_agent"),
        ("context_library_name", "VARCHAR", "context_library_name"),
        ("context_locale", "VARCHAR", "context_locale"),
    ],
    "screens": [
        *_COMMON,
        ("name", "VARCHAR", "screen_name"),
        ("context_app_version", "VARCHAR", "context_app_version"),
        ("context_device_type", "VARCHAR", "context_device_type"),
        ("context_os_name", "VARCHAR", "context_os_name"),
        ("context_ip", "VARCHAR", "context_ip"),
        ("context_library_name", "VARCHAR", "context_library_name"),
        ("context_locale", "VARCHAR", "context_locale"),
    ],
    **{table: [*_COMMON, *_EVENT, *_CTX, *props] for table, props in EVENT_PROPERTIES.items()},
}

# Turns the staging rows in `_raw` into complete Segment rows: Segment-side timestamps (sent, received,
# loaded), late arrivals, clock skew, and per-device context.
_DECORATE = """
CREATE OR REPLACE TEMP TABLE _ev AS
SELECT d.*, d.received_at + to_seconds((60 + floor(demo_u(d.id, 'load') * 1740))::BIGINT) AS uuid_ts
FROM (
SELECT r.* EXCLUDE (ts),
    CASE WHEN r.kind = 'track' THEN r.tbl END AS event,
    CASE WHEN r.kind = 'track' THEN n.event_text END AS event_text,
    r.ts AS "timestamp",
    CASE WHEN demo_u(r.id, 'skew') < 0.01 THEN r.ts - to_seconds(1 + floor(demo_u(r.id, 'skew_s') * 900))
         ELSE r.ts END AS original_timestamp,
    r.ts + to_milliseconds(50 + floor(demo_u(r.id, 'sent') * 1950)) AS sent_at,
    CASE WHEN demo_u(r.id, 'late') < 0.02
         THEN least(r.ts + to_minutes((120 + floor(demo_u(r.id, 'late_m') * 2760))::BIGINT), getvariable('demo_as_of'))
         ELSE r.ts + to_milliseconds(100 + floor(demo_u(r.id, 'recv') * 2900)) END AS received_at,
    CASE WHEN r.context_page_path IS NOT NULL THEN getvariable('demo_site') || r.context_page_path END
        AS context_page_url,
    CASE WHEN r.kind = 'track' AND r.source = 'web' THEN r.referrer END AS context_page_referrer,
    CASE WHEN demo_u(r.ckey, 'ipv6') < 0.05
         THEN printf('2001:db8:%x::%x', hash(r.ckey, 'ip1') % 65536, hash(r.ckey, 'ip2') % 65536)
         ELSE printf('%d.%d.%d.%d', 1 + hash(r.ckey, 'ip1') % 223, hash(r.ckey, 'ip2') % 256,
                     hash(r.ckey, 'ip3') % 256, 1 + hash(r.ckey, 'ip4') % 254) END AS context_ip,
    CASE WHEN r.source <> 'server' THEN demo_pick(getvariable('demo_user_agents'), demo_u(r.ckey, 'ua')) END
        AS context_user_agent,
    CASE r.source WHEN 'web' THEN 'analytics.js' WHEN 'server' THEN 'analytics-python'
         ELSE CASE WHEN demo_u(r.ckey, 'os') < 0.45 THEN 'analytics-ios' ELSE 'analytics-android' END
    END AS context_library_name,
    CASE r.source WHEN 'web' THEN '5.2.1' WHEN 'server' THEN '2.3.0' ELSE '4.1.8' END AS context_library_version,
    CASE WHEN r.source = 'app' THEN demo_pick(getvariable('demo_app_versions'), demo_u(r.ckey, 'appv')) END
        AS context_app_version,
    CASE WHEN r.source = 'app' THEN CASE WHEN demo_u(r.ckey, 'os') < 0.45 THEN 'ios' ELSE 'android' END END
        AS context_device_type,
    CASE WHEN r.source = 'app' THEN CASE WHEN demo_u(r.ckey, 'os') < 0.45 THEN 'iOS' ELSE 'Android' END END
        AS context_os_name
FROM _raw r LEFT JOIN _event_names n ON n.tbl = r.tbl
) d
"""


def connect(path: Path | str) -> duckdb.DuckDBPyConnection:
    """Open the demo file read-write in UTC (one writer process per file: keep connections short)."""
    con = duckdb.connect(str(path))
    con.execute("SET TimeZone='UTC'")
    con.execute("SET enable_progress_bar = false")  # a library must not draw on the caller's terminal
    return con


@contextmanager
def session(path: Path | str) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection that is always closed, releasing the file lock for the next process."""
    con = connect(path)
    try:
        yield con
    finally:
        con.close()


def install(con: duckdb.DuckDBPyConnection, *, seed: int, as_of: datetime, window_start: datetime) -> None:
    """Bind seed, clock and reference lists as session variables and define the generator macros."""
    con.execute("SET VARIABLE demo_seed = ?::BIGINT", [seed])
    con.execute("SET VARIABLE demo_as_of = ?::TIMESTAMPTZ", [as_utc(as_of)])
    con.execute("SET VARIABLE demo_win_start = ?::TIMESTAMPTZ", [as_utc(window_start)])
    con.execute("SET VARIABLE demo_site = ?", [SITE])
    for name, values in ref.LISTS.items():
        # Names come from our own constant dict; DuckDB cannot bind a variable's name.
        con.execute(f"SET VARIABLE demo_{name} = ?::VARCHAR[]", [values])
    for macro in (
        # Uniform [0, 1) from the top 53 bits of a keyed hash.
        "demo_u(k, salt) AS (hash(k, salt, getvariable('demo_seed')) >> 11)::DOUBLE / 9007199254740992.0",
        "demo_u2(k, j, salt) AS (hash(k, j, salt, getvariable('demo_seed')) >> 11)::DOUBLE / 9007199254740992.0",
        "demo_pick(lst, u) AS lst[1 + least(floor(u * len(lst))::BIGINT, len(lst) - 1)]",
        "demo_digits(k, salt, n) AS lpad((hash(k, salt, getvariable('demo_seed')) % (10 ** n)::UBIGINT)::VARCHAR,"
        " n, '0')",
        # Stable uuid-shaped ids: md5 of a key, so the same seed always yields the same ids.
        "demo_uuid(kind, k) AS md5(concat_ws(':', kind, k, getvariable('demo_seed')))::UUID::VARCHAR",
        # A time uniformly between t0 and t1 (epoch seconds), to the millisecond.
        "demo_between(t0, t1, u) AS make_timestamptz((round((t0 + (t1 - t0) * u) * 1000) * 1000)::BIGINT)",
    ):
        con.execute("CREATE OR REPLACE TEMP MACRO " + macro)
    names = pa.Table.from_pylist([{"tbl": k, "event_text": v} for k, v in EVENT_NAMES.items()])
    _temp_table_from_arrow(con, "_event_names", names)


def _temp_table_from_arrow(con: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
    con.register("_demo_arrow_src", table)
    try:
        # `name` is one of this package's staging-table constants.
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM _demo_arrow_src")  # noqa: S608
    finally:
        con.unregister("_demo_arrow_src")


def temp_table_from_rows(con: duckdb.DuckDBPyConnection, name: str, rows: list[dict[str, Any]]) -> None:
    """Stage Python reference rows as a temp table (via Arrow, no per-row INSERTs)."""
    _temp_table_from_arrow(con, name, pa.Table.from_pylist(rows))


def create_raw(con: duckdb.DuckDBPyConnection) -> None:
    """Empty typed staging table; parts are added with `INSERT INTO _raw BY NAME`."""
    cols = ", ".join(f"{name} {typ}" for name, typ in RAW_COLUMNS)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _raw ({cols})")


def decorate(con: duckdb.DuckDBPyConnection) -> None:
    """`_raw` -> `_ev` with the Segment-side columns."""
    con.execute(_DECORATE)
    con.execute("DROP TABLE _raw")  # free its memory before the big inserts


def create_segment_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Empty event tables in schema `segment` with Segment's layout."""
    for table, layout in LAYOUTS.items():
        cols = ", ".join(f'"{col}" {typ}' for col, typ, _ in layout)
        con.execute(f"CREATE TABLE segment.{table} ({cols})")


def insert_events(con: duckdb.DuckDBPyConnection) -> int:
    """Append `_ev` to segment.tracks/pages/screens and the per-event tables; returns rows appended to
    tracks + pages + screens. Every track row gets its per-event row with the same id. Rows go in
    received_at order, as Segment loads them."""
    total = 0
    for table, layout in LAYOUTS.items():
        select = ", ".join(f'{expr} AS "{col}"' for col, _, expr in layout)
        if table in ("pages", "screens"):
            where, params = "kind = ?", [table[:-1]]
        elif table == "tracks":
            where, params = "kind = 'track'", []
        else:
            where, params = "kind = 'track' AND tbl = ?", [table]
        row = con.execute(
            f"INSERT INTO segment.{table} BY NAME SELECT {select} "  # noqa: S608 - constants only
            f"FROM _ev WHERE {where} ORDER BY received_at, id",
            params,
        ).fetchone()
        if table in ("tracks", "pages", "screens") and row is not None:
            total += int(row[0])
    return total


# Properties of the browsing-style events, shared by the build and `add_events`. Expects a relation
# `t` with: ckey, id, user_id, anonymous_id, typ, ts, currency, fx_usd, locale, u_misc, pidx.
BROWSE_SELECT = """
SELECT
    CASE WHEN t.typ IN ('page', 'screen') THEN t.typ ELSE 'track' END AS kind,
    CASE WHEN t.typ NOT IN ('page', 'screen') THEN t.typ END AS tbl,
    t.ckey, CASE t.typ WHEN 'screen' THEN 'app' ELSE 'web' END AS source,
    t.id, t.anonymous_id, t.user_id, t.ts, t.locale AS context_locale,
    CASE WHEN t.typ IN ('product_viewed', 'product_added', 'product_removed') THEN '/products/' || p.sku
         WHEN t.typ = 'products_searched' THEN '/search'
         WHEN t.typ = 'checkout_started' THEN '/checkout'
         WHEN t.typ = 'logged_in' THEN '/login' END AS context_page_path,
    CASE WHEN t.typ = 'products_searched' THEN demo_pick(getvariable('demo_search_queries'), t.u_misc) END
        AS query,
    CASE WHEN t.typ IN ('product_viewed', 'product_added', 'product_removed') THEN p.product_id END AS product_id,
    CASE WHEN t.typ IN ('product_viewed', 'product_added', 'product_removed') THEN p.sku END AS sku,
    CASE WHEN t.typ IN ('product_viewed', 'product_added', 'product_removed') THEN p.name END AS name,
    CASE WHEN t.typ IN ('product_viewed', 'product_added', 'product_removed') THEN p.category END AS category,
    CASE WHEN t.typ IN ('product_viewed', 'product_added', 'product_removed') THEN p.brand END AS brand,
    CASE WHEN t.typ IN ('product_viewed', 'product_added', 'product_removed')
         THEN round(p.price_usd * t.fx_usd, 2) END AS price,
    CASE WHEN t.typ IN ('product_added', 'product_removed') THEN 1 + floor(t.u_misc ** 4 * 3)::BIGINT END
        AS quantity,
    CASE WHEN t.typ IN ('product_viewed', 'product_added', 'product_removed', 'checkout_started')
         THEN t.currency END AS currency,
    CASE WHEN t.typ IN ('product_added', 'product_removed') THEN demo_uuid('cart', t.ckey) END AS cart_id,
    CASE WHEN t.typ = 'checkout_started' THEN demo_uuid('checkout', t.id) END AS checkout_id,
    CASE WHEN t.typ = 'checkout_started' THEN round(p.price_usd * t.fx_usd, 2) END AS value,
    CASE WHEN t.typ = 'checkout_started' THEN json_array(json_object(
            'product_id', p.product_id, 'product_name', p.name,
            'price', round(p.price_usd * t.fx_usd, 2), 'quantity', 1)) END AS products,
    CASE WHEN t.typ = 'logged_in' THEN demo_pick(getvariable('demo_signup_methods'), t.u_misc) END AS method,
    CASE WHEN t.typ = 'page' AND t.u_misc < 0.4 THEN 'Product'
         WHEN t.typ = 'page' AND t.u_misc < 0.55 THEN 'Home' END AS page_name,
    CASE WHEN t.typ = 'page' AND t.u_misc < 0.4 THEN '/products/' || p.sku
         WHEN t.typ = 'page' AND t.u_misc < 0.55 THEN '/'
         WHEN t.typ = 'page' THEN demo_pick(getvariable('demo_page_paths'), (t.u_misc - 0.55) / 0.45) END AS path,
    CASE WHEN t.typ = 'page' AND demo_u(t.id, 'utm') < 0.08
         THEN '?utm_source=newsletter&utm_medium=email&utm_campaign=diwali_2026' END AS search,
    CASE WHEN t.typ = 'page' THEN demo_pick(getvariable('demo_referrers'), demo_u(t.id, 'ref')) END AS referrer,
    CASE WHEN t.typ = 'page' AND t.u_misc < 0.4 THEN p.name || ' | Shop'
         WHEN t.typ = 'page' THEN 'Shop' END AS title,
    CASE WHEN t.typ = 'screen' THEN demo_pick(getvariable('demo_screen_names'), t.u_misc) END AS screen_name
FROM t LEFT JOIN _products p ON p.idx = t.pidx
"""

# Pages get a url only once their path is known.
PAGE_URLS = """
UPDATE _raw SET url = getvariable('demo_site') || path || coalesce(search, '') WHERE kind = 'page'
"""
