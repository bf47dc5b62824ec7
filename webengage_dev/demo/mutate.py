"""Deterministic changes to a built demo warehouse, for incremental-sync tests.

`change_users` edits a share of the regular users (``main.users`` and, as an identify, Segment);
`add_events` appends new tracks in a time window. Both are all-or-nothing and release the file lock
when they return.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from etl.instants import as_utc
from webengage_dev.demo import _sql
from webengage_dev.demo.warehouse import VALID_USER_ID

_PICK_USERS = """
CREATE OR REPLACE TEMP TABLE _chg AS
WITH latest AS (
    SELECT user_id, country_code, city FROM main.users WHERE regexp_matches(user_id, $valid)
    QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY updated_at DESC NULLS LAST, anonymous_id) = 1
), picked AS (
    SELECT * FROM latest ORDER BY hash(user_id, 'change', $seed), user_id LIMIT $k
), cities AS (
    SELECT country_code, list(DISTINCT city ORDER BY city) AS cities
    FROM main.users WHERE city IS NOT NULL AND country_code IS NOT NULL GROUP BY country_code
)
SELECT p.user_id,
    -- A third of them move to another city of their country.
    CASE WHEN hash(p.user_id, 'move', $seed) % 3 = 0 AND len(c.cities) > 1
         THEN c.cities[1 + coalesce(list_position(c.cities, p.city), 0) % len(c.cities)] END AS new_city,
    round(5 + (hash(p.user_id, 'spend', $seed) % 20000) / 100.0, 2) AS amount
FROM picked p LEFT JOIN cities c USING (country_code)
"""

# Every picked id gets a new plan, so each one really changes; all its rows (duplicates too) change.
_UPDATE_USERS = """
UPDATE main.users AS u SET
    plan = CASE u.plan WHEN 'free' THEN 'pro' WHEN 'pro' THEN 'enterprise' ELSE 'free' END,
    city = coalesce(c.new_city, u.city),
    lifetime_value = CASE WHEN u.lifetime_value IS NULL OR isnan(u.lifetime_value) OR isinf(u.lifetime_value)
                          THEN c.amount ELSE round(u.lifetime_value + c.amount, 2) END,
    updated_at = greatest(u.updated_at + INTERVAL 1 SECOND, $as_of::TIMESTAMPTZ AT TIME ZONE 'UTC')
FROM _chg c
WHERE u.user_id = c.user_id
"""

# The same change as Segment would record it: a new identify and the refreshed users row.
_MIRROR_SEGMENT = """
INSERT INTO segment.identifies BY NAME
SELECT md5(concat_ws(':', 'identify-change', u.user_id, $seed, epoch($as_of::TIMESTAMPTZ)))::UUID::VARCHAR AS id,
    u.anonymous_id, u.user_id, $as_of::TIMESTAMPTZ AS "timestamp",
    $as_of::TIMESTAMPTZ + INTERVAL 100 MILLISECOND AS sent_at,
    $as_of::TIMESTAMPTZ + INTERVAL 1 SECOND AS received_at,
    u.email, u.first_name, u.last_name, u.phone, u.gender, strftime(u.birth_date, '%Y-%m-%d') AS birthday,
    u.city AS address_city, u.country AS address_country, u.company AS company_name, u.plan
FROM main.users u JOIN _chg USING (user_id)
QUALIFY row_number() OVER (PARTITION BY u.user_id ORDER BY u.updated_at DESC, u.anonymous_id) = 1;

UPDATE segment.users AS s
SET plan = u.plan, address_city = u.city, received_at = $as_of::TIMESTAMPTZ + INTERVAL 1 SECOND
FROM (SELECT user_id, plan, city FROM main.users JOIN _chg USING (user_id)
      QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY updated_at DESC, anonymous_id) = 1) u
WHERE s.id = u.user_id
"""

_ADD_EVENTS = f"""
INSERT INTO _raw BY NAME
WITH e AS (
    SELECT j,
        demo_uuid('add', epoch(getvariable('demo_win_start')) || ':' || epoch(getvariable('demo_as_of')) || ':' || j)
            AS id,
        floor(demo_u2(j, epoch(getvariable('demo_win_start')), 'add_user') * getvariable('demo_n_pool'))::BIGINT
            AS uidx,
        demo_u2(j, epoch(getvariable('demo_win_start')), 'add_type') AS u_type,
        demo_u2(j, epoch(getvariable('demo_win_start')), 'add_misc') AS u_misc,
        floor(demo_u2(j, epoch(getvariable('demo_win_start')), 'add_prod') * getvariable('demo_n_products'))::BIGINT
            AS pidx,
        demo_between(epoch(getvariable('demo_win_start')), epoch(getvariable('demo_as_of')),
                     demo_u2(j, epoch(getvariable('demo_win_start')), 'add_time')) AS ts
    FROM range(getvariable('demo_add_count')) r(j)
), t AS (
    SELECT e.*, p.user_id AS ckey, p.user_id, p.anonymous_id, p.currency, p.fx_usd, p.locale,
        CASE WHEN u_type < 0.35 THEN 'product_viewed'
             WHEN u_type < 0.55 THEN 'products_searched'
             WHEN u_type < 0.75 THEN 'product_added'
             WHEN u_type < 0.83 THEN 'product_removed'
             WHEN u_type < 0.90 THEN 'checkout_started'
             ELSE 'logged_in' END AS typ
    FROM e JOIN _pool p ON p.idx = e.uidx
)
{_sql.BROWSE_SELECT}
"""  # noqa: S608 - interpolates only constants of this package

_POOL = """
CREATE OR REPLACE TEMP TABLE _pool AS
SELECT row_number() OVER (ORDER BY u.user_id) - 1 AS idx, u.user_id, u.anonymous_id,
    coalesce(c.currency, 'USD') AS currency, coalesce(c.fx_usd, 1.0) AS fx_usd, c.locale
FROM (SELECT user_id, anonymous_id, country_code FROM main.users WHERE regexp_matches(user_id, ?)
      QUALIFY row_number() OVER (PARTITION BY user_id ORDER BY updated_at DESC NULLS LAST, anonymous_id) = 1) u
LEFT JOIN main.countries c USING (country_code)
"""


def change_users(path: Path | str, *, share: float, seed: int, as_of: datetime) -> int:
    """Change `share` (0..1) of the regular user ids: new plan, lifetime value, sometimes city, and
    `updated_at` bumped to at least `as_of`. Returns how many user ids changed.

    The same seed picks the same ids. Segment gets a matching identify and ``segment.users`` update.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError("share must be between 0 and 1")
    as_of = as_utc(as_of)
    with _sql.session(path) as con:
        con.begin()
        row = con.execute(
            "SELECT count(DISTINCT user_id) FROM main.users WHERE regexp_matches(user_id, ?)", [VALID_USER_ID]
        ).fetchone()
        k = round(share * (int(row[0]) if row else 0))
        if k == 0:
            con.rollback()
            return 0
        con.execute(_PICK_USERS, {"valid": VALID_USER_ID, "seed": seed, "k": k})
        con.execute(_UPDATE_USERS, {"as_of": as_of})
        has_segment = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'segment' AND table_name = 'users' "
            "AND database_name = current_database()"
        ).fetchone()
        if has_segment and has_segment[0]:
            for statement in _MIRROR_SEGMENT.split(";\n"):
                params = {"seed": seed, "as_of": as_of} if "$seed" in statement else {"as_of": as_of}
                con.execute(statement, params)
        con.commit()
    return k


def add_events(path: Path | str, *, count: int, start: datetime, end: datetime, seed: int) -> int:
    """Append `count` tracks (each with its per-event row) by random regular users, timestamped in
    [start, end). Returns the number of tracks added.

    Ids derive from seed and window: calling twice with the same arguments appends the same ids again.
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    start, end = as_utc(start), as_utc(end)
    if end <= start:
        raise ValueError("end must be after start")
    with _sql.session(path) as con:
        _sql.install(con, seed=seed, as_of=end, window_start=start)
        con.begin()
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _products AS "
            "SELECT row_number() OVER (ORDER BY product_id) - 1 AS idx, * FROM main.products"
        )
        con.execute(_POOL, [VALID_USER_ID])
        for name, sql in (
            ("demo_n_products", "SELECT count(*) FROM _products"),
            ("demo_n_pool", "SELECT count(*) FROM _pool"),
        ):
            row = con.execute(sql).fetchone()
            # Variable names are the constants above.
            con.execute(f"SET VARIABLE {name} = ?::BIGINT", [int(row[0]) if row else 0])
        con.execute("SET VARIABLE demo_add_count = ?::BIGINT", [count])
        _sql.create_raw(con)
        con.execute(_ADD_EVENTS)
        _sql.decorate(con)
        added = _sql.insert_events(con)
        con.commit()
    return added
