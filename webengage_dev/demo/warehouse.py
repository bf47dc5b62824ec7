"""Build an embedded DuckDB demo warehouse with realistic, messy data.

Schemas and tables (counts are for the defaults: 50,000 users, 30 days, seed 42):

* ``main.users`` - the app's own user table: one row per user plus the messy extras below.
* ``main.orders`` - order history since signup (most users 0-3 orders, about 1% VIPs with 20-80).
* ``main.products``, ``main.countries`` - small reference tables the generator used.
* ``main.events`` - VIEW: every Segment track/page/screen as (event_id, user_id, anonymous_id,
  event_name, event_time, properties JSON).
* ``segment.identifies``, ``segment.users``, ``segment.tracks``, ``segment.pages``, ``segment.screens``
  and one table per event as Segment names them: ``segment.order_completed``, ``product_viewed``,
  ``product_added``, ``product_removed``, ``products_searched``, ``checkout_started``,
  ``order_refunded``, ``signed_up``, ``logged_in``. Every tracks row has the row with the same id in
  its per-event table (also when its ``event`` was lost).

Messy cases, always present (the summary's ``anomalies`` reports the counts measured on the data):

* duplicate user ids: 0.5% of ids appear twice, the extra row an older version (earlier
  ``updated_at``, other plan, lower lifetime value, sometimes an old e-mail);
* anonymous-only rows (``user_id`` NULL, ``anonymous_id`` set): 1% of ``users`` on top;
* 20 users with 200-character user ids (on top; they also appear in the Segment tables);
* 50 rows whose ``bio`` is 5,000 characters, about 1% with 1,000-4,999;
* 100 invalid phones ('12345', 'call me', '+1 555', '0000000000', ...); valid phones in local and
  international formats of IN, US, GB, AE, SA, DE, SG with ``country_code`` to resolve them;
* ``lifetime_value``: 15 NaN, 5 +inf, 3 -inf, 27 negative, about 3% NULL;
* 30 malformed e-mails, 40 + about 1% empty ones, about 2% NULL, upper-case and trailing spaces;
* 5 birth dates in the future and 5 before 1900; ``birthday_text`` in several formats, '' or 'unknown';
* 50 first names with emoji (plus about 0.3% at random), names in Arabic and Chinese script;
* 30 rows whose ``preferences_raw`` is invalid JSON (``preferences`` NULL there);
* naive ``signup_at``/``updated_at`` (UTC) next to TIMESTAMPTZ ``last_seen_at``;
* events: 25 tracks with NULL event, 25 events with NULL timestamp, 25 with neither user_id nor
  anonymous_id, about 2% arriving hours late, about 15% of a known user's events pre-login
  (anonymous only), anonymous-only visitors (0.3 x users);
* ``segment.identifies``: anonymous -> known pairs (about 70% of identifies carry the browser's
  anonymous_id), and about 0.5% shared devices (a second user identified on another's browser).

Values are derived from ``hash(key, salt, seed)``: same seed and ``as_of`` give identical data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from etl.instants import as_utc
from webengage_dev.demo import _reference as ref
from webengage_dev.demo import _sql

LONG_ID_USERS = 20
VISITORS_PER_USER = 0.3
ANONYMOUS_USER_ROWS = 0.01
DUPLICATE_IDS = 0.005
VALID_USER_ID = "^usr_[0-9]+$"  # regexp for the regular (non-messy) ids

# Rank ranges of a per-build random permutation of the valid users: the messy case applied to each,
# so every case exists at any size (with fewer users the ranges overlap or shrink).
_PERM = {
    "bio_5000": (1, 50),
    "invalid_phone": (51, 150),
    "emoji_name": (151, 200),
    "ltv_nan": (201, 215),
    "ltv_inf": (216, 220),
    "ltv_neg_inf": (221, 223),
    "ltv_negative": (224, 250),
    "malformed_email": (251, 280),
    "empty_email": (281, 320),
    "future_birth": (321, 325),
    "old_birth": (326, 330),
    "invalid_json": (331, 360),
}


@dataclass(frozen=True, kw_only=True)
class DemoWarehouseSummary:
    """What `build_demo_warehouse` wrote."""

    path: Path
    as_of: datetime  # the instant the data was built relative to
    users: int  # distinct regular user ids
    user_rows: int  # rows in main.users, messy extras included
    events: int  # rows in segment.tracks + pages + screens
    tables: dict[str, int]  # "schema.table" -> rows
    seconds: float
    anomalies: dict[str, int] = field(default_factory=dict)


def _between(name: str) -> str:
    lo, hi = _PERM[name]
    # Constants from _PERM only.
    return f"(perm BETWEEN {lo} AND {hi})"


_USERS_BASE = f"""
CREATE OR REPLACE TEMP TABLE _u AS
WITH b AS (
    SELECT i, i >= getvariable('demo_n') AS long_id, demo_u(i, 'cc') AS u_cc, demo_u(i, 'perm') AS u_perm
    FROM range(getvariable('demo_n') + getvariable('demo_n_long')) t(i)
), p AS (
    SELECT b.*, c.* EXCLUDE (lo, hi),
        CASE WHEN NOT long_id THEN row_number() OVER (PARTITION BY long_id ORDER BY u_perm, i) END AS perm,
        CASE WHEN long_id
             THEN left(printf('usr_long_%04d_', i - getvariable('demo_n')) || repeat(md5(i::VARCHAR), 7), 200)
             ELSE printf('usr_%07d', i + 1) END AS user_id,
        demo_uuid('anon', i::VARCHAR) AS anonymous_id,
        demo_pick(c.first_names, demo_u(i, 'first')) AS first0,
        demo_pick(c.last_names, demo_u(i, 'last')) AS last0,
        demo_pick(c.cities, demo_u(i, 'city')) AS geo,
        demo_u(i, 'test') < 0.01 AS is_test,
        demo_digits(i, 'ph', 9) AS ph_d,
        demo_u(i, 'ph_pre') AS ph_pre,
        floor(demo_u(i, 'ph_fmt') * 4)::INTEGER AS ph_fmt,
        CASE WHEN demo_u(i, 'signup') < 0.08
             THEN demo_between(epoch(getvariable('demo_win_start')), epoch(getvariable('demo_as_of')),
                               demo_u(i, 'signup_t'))
             ELSE demo_between(epoch(getvariable('demo_win_start')) - 3 * 365 * 86400,
                               epoch(getvariable('demo_win_start')), demo_u(i, 'signup_t')) END AS signup_at_tz,
        CASE WHEN demo_u(i, 'orders') < 0.45 THEN 0
             WHEN demo_u(i, 'orders') < 0.70 THEN 1
             WHEN demo_u(i, 'orders') < 0.85 THEN 2
             WHEN demo_u(i, 'orders') < 0.93 THEN 3
             WHEN demo_u(i, 'orders') < 0.99 THEN 4 + floor(demo_u(i, 'orders_n') * 7)::INTEGER
             ELSE 20 + floor(demo_u(i, 'orders_n') * 61)::INTEGER END AS n_orders,
        demo_u(i, 'app') < 0.3 AS has_app
    FROM b JOIN _countries c ON b.u_cc >= c.lo AND b.u_cc < c.hi
), q AS (
    SELECT p.*,
        CASE country_code
            WHEN 'IN' THEN demo_pick(['6', '7', '8', '9'], ph_pre) || ph_d
            WHEN 'US' THEN demo_pick(getvariable('demo_us_area_codes'), ph_pre)
                           || (2 + ph_d[1]::INTEGER % 8)::VARCHAR || ph_d[2:7]
            WHEN 'GB' THEN '7' || demo_pick(['4', '5', '7', '8', '9'], ph_pre) || ph_d[1:8]
            WHEN 'AE' THEN demo_pick(getvariable('demo_ae_prefixes'), ph_pre) || ph_d[1:7]
            WHEN 'SA' THEN demo_pick(getvariable('demo_sa_prefixes'), ph_pre) || ph_d[1:7]
            WHEN 'DE' THEN demo_pick(getvariable('demo_de_prefixes'), ph_pre) || ph_d[1:8]
            ELSE demo_pick(['8', '9'], ph_pre) || ph_d[1:7] END AS nat,
        regexp_replace(lower(strip_accents(first0 || '.' || last0)), '[^a-z0-9.]', '', 'g') AS local0
    FROM p
), r AS (
    SELECT q.*,
        -- Arabic or Chinese script leaves no ASCII local part: such users get a generic address.
        CASE WHEN length(replace(local0, '.', '')) < 3 THEN 'user' || i ELSE trim(local0, '.') END
        || CASE WHEN demo_u(i, 'email_num') < 0.6 THEN (i % 997)::VARCHAR ELSE '' END
        || '@' || demo_pick(getvariable('demo_email_domains'), demo_u(i, 'domain')) AS em
    FROM q
)
SELECT i, long_id, perm, country_code, country_names, currency, fx_usd, locale, signup_at_tz, n_orders,
    has_app, is_test, anonymous_id, user_id,
    perm > getvariable('demo_n') - getvariable('demo_n_dup') AS is_dup,
    CASE WHEN {_between("emoji_name")} OR demo_u(i, 'emoji') < 0.003
             THEN first0 || ' ' || demo_pick(getvariable('demo_emoji'), demo_u(i, 'emoji_pick'))
         WHEN demo_u(i, 'first_mess') < 0.01 THEN ' ' || first0 || ' '
         WHEN demo_u(i, 'first_mess') < 0.02 THEN upper(first0)
         ELSE first0 END AS first_name,
    CASE WHEN demo_u(i, 'last_null') < 0.03 THEN NULL ELSE last0 END AS last_name,
    CASE WHEN {_between("malformed_email")}
             THEN demo_pick(getvariable('demo_malformed_emails'), demo_u(i, 'bad_email'))
         WHEN {_between("empty_email")} OR demo_u(i, 'email_empty') < 0.01 THEN ''
         WHEN demo_u(i, 'email_null') < 0.02 THEN NULL
         WHEN is_test THEN printf('test+%d@example.com', i)
         WHEN demo_u(i, 'email_case') < 0.03 THEN upper(em[1]) || em[2:]
         WHEN demo_u(i, 'email_case') < 0.04 THEN em || ' '
         ELSE em END AS email,
    CASE WHEN {_between("invalid_phone")}
             THEN demo_pick(getvariable('demo_invalid_phones'), demo_u(i, 'bad_phone'))
         WHEN demo_u(i, 'phone_null') < 0.05 THEN NULL
         WHEN country_code = 'IN' THEN CASE floor(demo_u(i, 'ph_fmt') * 5)::INTEGER
             WHEN 0 THEN nat[1:5] || ' ' || nat[6:10]
             WHEN 1 THEN '+91-' || nat[1:5] || '-' || nat[6:10]
             WHEN 2 THEN '0' || nat
             WHEN 3 THEN '+91' || nat
             ELSE nat END
         WHEN country_code = 'US' THEN CASE ph_fmt
             WHEN 0 THEN '(' || nat[1:3] || ') ' || nat[4:6] || '-' || nat[7:10]
             WHEN 1 THEN nat[1:3] || '.' || nat[4:6] || '.' || nat[7:10]
             WHEN 2 THEN '+1 ' || nat[1:3] || '-' || nat[4:6] || '-' || nat[7:10]
             ELSE nat END
         WHEN country_code = 'GB' THEN CASE ph_fmt
             WHEN 0 THEN '0' || nat[1:4] || ' ' || nat[5:10]
             WHEN 1 THEN '+44 ' || nat[1:4] || ' ' || nat[5:10]
             WHEN 2 THEN '+44' || nat
             ELSE '0' || nat END
         WHEN country_code = 'AE' THEN CASE ph_fmt
             WHEN 0 THEN '0' || nat[1:2] || ' ' || nat[3:5] || ' ' || nat[6:9]
             WHEN 1 THEN '+971 ' || nat[1:2] || ' ' || nat[3:5] || ' ' || nat[6:9]
             WHEN 2 THEN '00971' || nat
             ELSE '0' || nat END
         WHEN country_code = 'SA' THEN CASE ph_fmt
             WHEN 0 THEN '0' || nat
             WHEN 1 THEN '+966 ' || nat[1:2] || ' ' || nat[3:5] || ' ' || nat[6:9]
             WHEN 2 THEN '966' || nat
             ELSE '0' || nat[1:2] || ' ' || nat[3:5] || ' ' || nat[6:9] END
         WHEN country_code = 'DE' THEN CASE ph_fmt
             WHEN 0 THEN '0' || nat[1:3] || ' ' || nat[4:]
             WHEN 1 THEN '+49 ' || nat[1:3] || ' ' || nat[4:]
             ELSE '+49' || nat END
         ELSE CASE ph_fmt
             WHEN 0 THEN nat[1:4] || ' ' || nat[5:8]
             WHEN 1 THEN '+65 ' || nat[1:4] || ' ' || nat[5:8]
             ELSE '+65' || nat END
    END AS phone,
    demo_pick(getvariable('demo_genders'), demo_u(i, 'gender')) AS gender,
    CASE WHEN {_between("future_birth")}
             THEN getvariable('demo_as_of')::DATE + (30 + floor(demo_u(i, 'bd') * 3000))::INTEGER
         WHEN {_between("old_birth")} THEN DATE '1850-01-01' + floor(demo_u(i, 'bd') * 18000)::INTEGER
         WHEN demo_u(i, 'bd_null') < 0.10 THEN NULL
         ELSE getvariable('demo_as_of')::DATE - (6570 + floor(demo_u(i, 'bd') * 19000))::INTEGER END AS birth_date,
    CASE WHEN demo_u(i, 'country_null') < 0.02 THEN NULL
         ELSE demo_pick(country_names, demo_u(i, 'country_name')) END AS country,
    CASE WHEN demo_u(i, 'city_null') < 0.03 THEN NULL ELSE geo.city END AS city,
    geo.region AS region,
    geo.postal AS postal_code,
    CASE WHEN demo_u(i, 'company') < 0.45 THEN NULL
         ELSE demo_pick(getvariable('demo_companies'), demo_u(i, 'company_pick')) END AS company,
    CASE WHEN demo_u(i, 'plan') < 0.70 THEN 'free' WHEN demo_u(i, 'plan') < 0.95 THEN 'pro'
         ELSE 'enterprise' END AS plan,
    CASE WHEN demo_u(i, 'active') < 0.30 THEN 0
         ELSE least(500, (1 + floor(-ln(1 - demo_u(i, 'active_n')) * 9))
                         * CASE WHEN n_orders >= 20 THEN 4 ELSE 1 END)::INTEGER END AS k_events
FROM r
"""  # noqa: S608 - interpolates only constants of this package

_VISITORS = """
CREATE OR REPLACE TEMP TABLE _visitors AS
SELECT v, demo_uuid('visitor', v::VARCHAR) AS anonymous_id, c.country_code, c.country_names, c.currency,
    c.fx_usd, c.locale, demo_pick(c.cities, demo_u(v, 'v_city')) AS geo,
    demo_u(v, 'v_app') < 0.2 AS has_app,
    (1 + floor(-ln(1 - demo_u(v, 'v_k')) * 2))::INTEGER AS k_events
FROM (SELECT v, demo_u(v, 'v_cc') AS u_cc FROM range(getvariable('demo_n_visitors')) t(v)) b
JOIN _countries c ON b.u_cc >= c.lo AND b.u_cc < c.hi
"""

_ORDERS = """
CREATE OR REPLACE TEMP TABLE _ord AS
WITH o AS (
    SELECT u.i, u.user_id, u.anonymous_id, u.currency, u.fx_usd, u.locale, j,
        printf('ORD-%07d-%03d', u.i + 1, j + 1) AS order_id,
        demo_between(epoch(u.signup_at_tz), epoch(getvariable('demo_as_of')), demo_u2(u.i, j, 'ord_t'))
            AS ordered_at,
        demo_u2(u.i, j, 'refund') < 0.06 AS refund_draw,
        (1 + floor(demo_u2(u.i, j, 'items') ** 2 * 4))::INTEGER AS n_items
    FROM _u u, range(u.n_orders) r(j)
)
SELECT o.*,
    CASE WHEN refund_draw THEN ordered_at + to_seconds(floor(86400 + demo_u(order_id, 'refund_t') * 9 * 86400)) END
        AS refund_at
FROM o;

CREATE OR REPLACE TEMP TABLE _items AS
SELECT o.order_id, x, p.product_id, p.name, round(p.price_usd * o.fx_usd, 2)::DECIMAL(12, 2) AS price,
    (1 + floor(demo_u2(o.order_id, x, 'qty') ** 4 * 3))::INTEGER AS quantity
FROM _ord o CROSS JOIN range(o.n_items) r(x)
JOIN _products p ON p.idx = floor(demo_u2(o.order_id, x, 'prod') * getvariable('demo_n_products'))::BIGINT;

CREATE TABLE main.orders AS
SELECT o.order_id, o.user_id, o.ordered_at, sum(it.price * it.quantity)::DECIMAL(12, 2) AS revenue, o.currency,
    CASE WHEN o.refund_at <= getvariable('demo_as_of') THEN 'refunded' ELSE 'completed' END AS status,
    CASE WHEN o.refund_at <= getvariable('demo_as_of') THEN o.refund_at END AS refunded_at
FROM _ord o JOIN _items it USING (order_id)
GROUP BY ALL
ORDER BY o.order_id;

CREATE OR REPLACE TEMP TABLE _order_products AS
SELECT order_id, to_json(list(json_object('product_id', product_id, 'product_name', name,
    'price', price::DOUBLE, 'quantity', quantity) ORDER BY x)) AS products
FROM _items GROUP BY order_id;
"""

_BROWSE = f"""
INSERT INTO _raw BY NAME
WITH a AS (
    SELECT 'u' || i AS akey, user_id AS ckey, user_id, anonymous_id, epoch(signup_at_tz) AS since,
        k_events, has_app, currency, fx_usd, locale, TRUE AS known
    FROM _u
    UNION ALL
    SELECT 'v' || v, anonymous_id, NULL, anonymous_id, NULL, k_events, has_app, currency, fx_usd, locale, FALSE
    FROM _visitors
), e AS (
    SELECT a.*, j, demo_uuid('ev', akey || ':' || j) AS id, demo_u2(akey, j, 'type') AS u_type,
        demo_u2(akey, j, 'misc') AS u_misc,
        floor(demo_u2(akey, j, 'prod') * getvariable('demo_n_products'))::BIGINT AS pidx,
        demo_between(greatest(epoch(getvariable('demo_win_start')), coalesce(since, 0)),
                     epoch(getvariable('demo_as_of')), demo_u2(akey, j, 'time')) AS ts
    FROM a, range(a.k_events) r(j)
), t AS (
    SELECT e.* EXCLUDE (user_id),
        CASE WHEN u_type < 0.42 THEN 'page'
             WHEN u_type < 0.50 THEN CASE WHEN has_app THEN 'screen' ELSE 'page' END
             WHEN u_type < 0.68 THEN 'product_viewed'
             WHEN u_type < 0.77 THEN 'products_searched'
             WHEN u_type < 0.86 THEN 'product_added'
             WHEN u_type < 0.89 THEN 'product_removed'
             WHEN u_type < 0.92 THEN 'checkout_started'
             ELSE CASE WHEN known THEN 'logged_in' ELSE 'page' END END AS typ,
        -- About 15% of a known user's browsing happens before login: anonymous_id only.
        CASE WHEN u_type >= 0.92 OR demo_u2(akey, j, 'pre_login') >= 0.15 THEN user_id END AS user_id
    FROM e
)
{_sql.BROWSE_SELECT}
"""  # noqa: S608 - interpolates only constants of this package

_LIFECYCLE = """
INSERT INTO _raw BY NAME
SELECT 'track' AS kind, 'signed_up' AS tbl, user_id AS ckey, 'web' AS source,
    demo_uuid('signed_up', i::VARCHAR) AS id, anonymous_id, user_id, signup_at_tz AS ts,
    locale AS context_locale, '/signup' AS context_page_path,
    demo_pick(getvariable('demo_signup_methods'), demo_u(i, 'signup_method')) AS method, 'free' AS plan
FROM _u WHERE signup_at_tz > getvariable('demo_win_start');

INSERT INTO _raw BY NAME
SELECT 'track' AS kind, 'checkout_started' AS tbl, o.user_id AS ckey, 'web' AS source,
    demo_uuid('checkout_started', o.order_id) AS id, o.anonymous_id, o.user_id,
    greatest(getvariable('demo_win_start'), o.ordered_at - to_seconds(60 + floor(demo_u(o.order_id, 'co_t') * 1140)))
        AS ts,
    o.locale AS context_locale, '/checkout' AS context_page_path,
    demo_uuid('checkout', o.order_id) AS checkout_id, o.order_id, m.revenue::DOUBLE AS value,
    m.revenue::DOUBLE AS revenue, o.currency, op.products
FROM _ord o JOIN main.orders m USING (order_id) JOIN _order_products op USING (order_id)
WHERE o.ordered_at > getvariable('demo_win_start');

INSERT INTO _raw BY NAME
SELECT 'track' AS kind, 'order_completed' AS tbl, o.user_id AS ckey, 'server' AS source,
    demo_uuid('order_completed', o.order_id) AS id,
    -- Sent from the backend: half the time without the browser's anonymous id.
    CASE WHEN demo_u(o.order_id, 'oc_anon') < 0.5 THEN o.anonymous_id END AS anonymous_id, o.user_id,
    o.ordered_at AS ts, o.locale AS context_locale,
    demo_uuid('checkout', o.order_id) AS checkout_id, o.order_id, m.revenue::DOUBLE AS revenue, o.currency,
    demo_pick(getvariable('demo_coupons'), demo_u(o.order_id, 'coupon')) AS coupon, op.products
FROM _ord o JOIN main.orders m USING (order_id) JOIN _order_products op USING (order_id)
WHERE o.ordered_at > getvariable('demo_win_start');

INSERT INTO _raw BY NAME
SELECT 'track' AS kind, 'order_refunded' AS tbl, o.user_id AS ckey, 'server' AS source,
    demo_uuid('order_refunded', o.order_id) AS id, o.user_id, m.refunded_at AS ts, o.locale AS context_locale,
    o.order_id, m.revenue::DOUBLE AS revenue, o.currency
FROM _ord o JOIN main.orders m USING (order_id)
WHERE m.refunded_at > getvariable('demo_win_start');
"""

# A handful of broken events, chosen by a keyed hash so each build picks the same ones.
_EVENT_MESS = """
UPDATE _ev SET event = NULL, event_text = NULL WHERE id IN (
    SELECT id FROM _ev WHERE kind = 'track' ORDER BY hash(id, 'null_event', getvariable('demo_seed')), id LIMIT 25);
UPDATE _ev SET "timestamp" = NULL WHERE id IN (
    SELECT id FROM _ev ORDER BY hash(id, 'null_ts', getvariable('demo_seed')), id LIMIT 25);
UPDATE _ev SET user_id = NULL, anonymous_id = NULL WHERE id IN (
    SELECT id FROM _ev ORDER BY hash(id, 'no_ids', getvariable('demo_seed')), id LIMIT 25);
"""

_IDENTIFIES = """
CREATE TABLE segment.identifies AS
WITH x AS (
    SELECT u.*, j, j = m - 1 AS latest,
        -- Identify j of m falls in the j-th slice of the user's lifetime: the last one is the newest.
        demo_between(epoch(u.signup_at_tz), epoch(getvariable('demo_as_of')),
                     (j + CASE WHEN j = 0 THEN 0 ELSE demo_u2(u.i, j, 'id_t') END) / m) AS ts
    FROM (SELECT *, (1 + least(floor(-ln(1 - demo_u(i, 'id_n')) * 1.5), 7))::INTEGER AS m FROM _u) u,
        range(u.m) r(j)
)
SELECT demo_uuid('identify', i || ':' || j) AS id,
    CASE WHEN demo_u2(i, j, 'id_anon') < 0.3 THEN NULL ELSE anonymous_id END AS anonymous_id,
    user_id,
    ts + to_milliseconds(100 + floor(demo_u2(i, j, 'id_recv') * 2900)) AS received_at,
    ts AS "timestamp",
    ts + to_milliseconds(50 + floor(demo_u2(i, j, 'id_sent') * 50)) AS sent_at,
    -- Older identifies carry partial or stale traits, as real ones do.
    CASE WHEN latest OR demo_u2(i, j, 'id_email') < 0.7 THEN email END AS email,
    first_name, last_name,
    CASE WHEN latest OR demo_u2(i, j, 'id_phone') < 0.5 THEN phone END AS phone,
    gender, strftime(birth_date, '%Y-%m-%d') AS birthday,
    city AS address_city, country AS address_country, company AS company_name,
    CASE WHEN latest OR demo_u2(i, j, 'id_plan') < 0.5 THEN plan ELSE 'free' END AS plan
FROM x
ORDER BY user_id, "timestamp";

CREATE TABLE segment.users AS
SELECT s.user_id AS id, s.received_at, s.email, s.first_name, s.last_name, s.phone, s.gender, s.birthday,
    s.address_city, s.address_country, u.postal_code AS address_postal_code, s.company_name, s.plan,
    u.signup_at_tz AS created_at
FROM segment.identifies s JOIN _u u USING (user_id)
QUALIFY row_number() OVER (PARTITION BY s.user_id ORDER BY s."timestamp" DESC, s.id) = 1
ORDER BY id;
"""

# Shared devices: for about 0.5% of users, another user logs in on their browser (a family computer) in
# the last two days: the owner identifies on it, then the other user a minute later. Both rows repeat their
# user's latest traits, so no profile changes; of the two users, the owner was identified first.
_SHARED_DEVICES = """
INSERT INTO segment.identifies BY NAME
WITH last_identify AS (
    SELECT s.* EXCLUDE (anonymous_id), u.anonymous_id AS own_device
    FROM segment.identifies s JOIN _u u USING (user_id)
    WHERE length(s.user_id) <= 100
    QUALIFY row_number() OVER (PARTITION BY s.user_id ORDER BY s."timestamp" DESC, s.id) = 1
), latest AS (
    SELECT *, row_number() OVER (ORDER BY hash(user_id, 'shared', getvariable('demo_seed')), user_id) AS k
    FROM last_identify
), pairs AS (
    SELECT o.own_device AS device, o.user_id AS owner, o.k,
        getvariable('demo_as_of') - INTERVAL 2 DAY + to_minutes(o.k::BIGINT * 7) AS t
    FROM latest o WHERE o.k % 2 = 1 AND o.k < 2 * greatest(1, (SELECT count(*) FROM latest) // 200)
), rows AS (
    SELECT p.device, p.t, l.* EXCLUDE (own_device, k), 0 AS step FROM pairs p JOIN latest l ON l.user_id = p.owner
    UNION ALL
    SELECT p.device, p.t + INTERVAL 1 MINUTE, l.* EXCLUDE (own_device, k), 1 FROM pairs p JOIN latest l ON l.k = p.k + 1
)
SELECT * EXCLUDE (device, t, step, id, "timestamp", received_at, sent_at),
    demo_uuid('identify_shared', device || ':' || step) AS id, device AS anonymous_id,
    t AS "timestamp", t + INTERVAL 1 SECOND AS received_at, t + INTERVAL 50 MILLISECOND AS sent_at
FROM rows;
"""

_USERS = f"""
CREATE TABLE main.users AS
WITH agg AS (
    SELECT user_id, count(*) AS n, sum(revenue) FILTER (WHERE status = 'completed') AS ltv
    FROM main.orders GROUP BY user_id
), seen AS (
    SELECT coalesce(user_id, anonymous_id) AS who, max("timestamp") AS last_ts
    FROM _ev GROUP BY ALL
), base AS (
    SELECT u.*, ver, agg.n AS n_orders_real, agg.ltv, seen.last_ts,
        CASE WHEN demo_u(i, 'pref_null') < 0.2 OR {_between("invalid_json")} THEN NULL
             ELSE json_object(
                 'newsletter', demo_u(i, 'pref_nl') < 0.6,
                 'categories', list_transform(range(floor(demo_u(i, 'pref_nc') * 4)::BIGINT),
                     lambda x: getvariable('demo_categories')[1 + (floor(demo_u(i, 'pref_c') * 8)::BIGINT + x) % 8]),
                 'theme', demo_pick(getvariable('demo_themes'), demo_u(i, 'pref_theme')),
                 'language', demo_pick(getvariable('demo_languages'), demo_u(i, 'pref_lang')),
                 'notifications', CASE WHEN demo_u(i, 'pref_nt') < 0.3
                     THEN json_object('push', demo_u(i, 'pref_push') < 0.5, 'quiet_hours', '22:00-07:00') END)
        END AS prefs,
        demo_between(epoch(signup_at_tz), epoch(getvariable('demo_as_of')), demo_u(i, 'updated')) AS updated_tz
    FROM _u u CROSS JOIN (VALUES (0), (1)) v(ver)
    LEFT JOIN agg USING (user_id) LEFT JOIN seen ON seen.who = u.user_id
    WHERE ver = 0 OR is_dup
)
SELECT user_id, anonymous_id, first_name, last_name,
    CASE WHEN ver = 1 AND demo_u(i, 'dup_email') < 0.3 AND email <> '' THEN 'old.' || email ELSE email END AS email,
    phone,
    CASE WHEN demo_u(i, 'cc_null') < 0.01 THEN NULL ELSE country_code END AS country_code,
    birth_date,
    CASE WHEN birth_date IS NULL THEN demo_pick(['', 'unknown', NULL], demo_u(i, 'bdt'))
         WHEN demo_u(i, 'bdt') < 0.03 THEN ''
         -- strftime needs a constant format, hence one branch per format.
         ELSE CASE floor(demo_u(i, 'bdt_fmt') * 6)::INTEGER
             WHEN 2 THEN strftime(birth_date, '%d/%m/%Y')
             WHEN 3 THEN strftime(birth_date, '%m/%d/%Y')
             WHEN 4 THEN strftime(birth_date, '%d-%b-%Y')
             WHEN 5 THEN strftime(birth_date, '%Y%m%d')
             ELSE strftime(birth_date, '%Y-%m-%d') END END AS birthday_text,
    gender,
    demo_pick(getvariable('demo_opt_ins'), demo_u(i, 'email_opt')) AS email_opt_in,
    CASE WHEN demo_u(i, 'sms_opt') < 0.45 THEN TRUE WHEN demo_u(i, 'sms_opt') < 0.9 THEN FALSE END AS sms_opt_in,
    CASE WHEN demo_u(i, 'wa_opt') < 0.4 THEN 1 WHEN demo_u(i, 'wa_opt') < 0.85 THEN 0 END::INTEGER
        AS whatsapp_opt_in,
    country,
    CASE WHEN ver = 1 AND demo_u(i, 'dup_city') < 0.5 THEN 'Old Town' ELSE city END AS city,
    region, postal_code, company,
    CASE WHEN ver = 0 THEN plan WHEN plan = 'free' THEN 'pro' ELSE 'free' END AS plan,
    CASE WHEN {_between("ltv_nan")} THEN 'NaN'::DOUBLE
         WHEN {_between("ltv_inf")} THEN 'Infinity'::DOUBLE
         WHEN {_between("ltv_neg_inf")} THEN '-Infinity'::DOUBLE
         WHEN {_between("ltv_negative")} THEN -round(10 + demo_u(i, 'ltv_neg') * 500, 2)
         WHEN demo_u(i, 'ltv_null') < 0.03 THEN NULL
         ELSE round(coalesce(ltv, 0)::DOUBLE * CASE WHEN ver = 1 THEN 0.8 ELSE 1 END, 2) END AS lifetime_value,
    CASE WHEN demo_u(i, 'oc_null') < 0.01 THEN NULL
         ELSE coalesce(n_orders_real, 0) - ver * least(coalesce(n_orders_real, 0), 1) END::INTEGER AS orders_count,
    timezone('UTC', signup_at_tz) AS signup_at,
    CASE WHEN demo_u(i, 'seen_null') < 0.05 THEN NULL ELSE coalesce(last_ts, updated_tz) END AS last_seen_at,
    prefs AS preferences,
    CASE WHEN {_between("invalid_json")} THEN demo_pick(getvariable('demo_invalid_json'), demo_u(i, 'bad_json'))
         ELSE prefs::VARCHAR END AS preferences_raw,
    CASE WHEN {_between("bio_5000")} THEN left(repeat(getvariable('demo_long_bio_text')[1], 40), 5000)
         WHEN demo_u(i, 'bio') < 0.01
             THEN left(repeat(getvariable('demo_long_bio_text')[1], 40),
                       1000 + floor(demo_u(i, 'bio_n') * 3999)::INTEGER)
         WHEN demo_u(i, 'bio') < 0.40 THEN NULL
         ELSE demo_pick(getvariable('demo_bios'), demo_u(i, 'bio_pick')) END AS bio,
    CASE WHEN demo_u(i, 'notes') < 0.85 THEN NULL
         ELSE demo_pick(getvariable('demo_notes'), demo_u(i, 'notes_pick')) END AS notes,
    CASE WHEN demo_u(i, 'test_null') < 0.02 THEN NULL ELSE is_test END AS is_test_user,
    timezone('UTC', updated_tz)
        - CASE WHEN ver = 1 THEN to_seconds(3600 + floor(demo_u(i, 'dup_age') * 30 * 86400)) ELSE INTERVAL 0 SECOND END
        AS updated_at
FROM base
UNION ALL BY NAME
-- Visitors the app knows only by device: anonymous-only rows.
SELECT NULL::VARCHAR AS user_id, v.anonymous_id, v.country_code,
    demo_pick(v.country_names, demo_u(v.v, 'v_country')) AS country, v.geo.city AS city, v.geo.region AS region,
    demo_pick(getvariable('demo_opt_ins'), demo_u(v.v, 'v_opt')) AS email_opt_in, FALSE AS is_test_user,
    seen.last_ts AS last_seen_at,
    timezone('UTC', coalesce(seen.last_ts, getvariable('demo_win_start'))) AS updated_at
FROM _visitors v LEFT JOIN seen ON seen.who = v.anonymous_id
WHERE v.v < getvariable('demo_n_anon_rows')
ORDER BY user_id NULLS LAST, updated_at, anonymous_id
"""  # noqa: S608 - interpolates only constants of this package

# main.events: the Segment data in one flat app-style shape, as a view so appended events show up.
_EVENTS_VIEW_PARTS = {
    "pages": (
        "'Page Viewed'",
        "json_object('name', name, 'path', path, 'url', url, 'referrer', referrer, 'title', title, 'search', search)",
    ),
    "screens": ("'Screen Viewed'", "json_object('name', name, 'app_version', context_app_version)"),
    **{
        table: (
            "event_text",
            "json_object(" + ", ".join(f"'{col}', \"{col}\"" for col, _, _ in props) + ")",
        )
        for table, props in _sql.EVENT_PROPERTIES.items()
    },
}


def _events_view_sql() -> str:
    # Table names and expressions are the constants above.
    head = 'SELECT id AS event_id, user_id, anonymous_id, {} AS event_name, "timestamp" AS event_time, '
    parts = [
        head.format(name) + f"{props}::JSON AS properties FROM segment.{table}"
        for table, (name, props) in _EVENTS_VIEW_PARTS.items()
    ]
    return "CREATE OR REPLACE VIEW main.events AS\n" + "\nUNION ALL\n".join(parts)


_ANOMALIES = """
SELECT
    (SELECT count(*) FROM (SELECT user_id FROM main.users WHERE user_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1))
        AS duplicate_user_ids,
    (SELECT count(*) FROM main.users WHERE user_id IS NULL AND anonymous_id IS NOT NULL) AS anonymous_only_users,
    (SELECT count(*) FROM main.users WHERE length(user_id) >= 200) AS long_user_ids,
    (SELECT count(*) FROM main.users WHERE length(bio) >= 5000 OR length(notes) >= 5000) AS strings_5000_chars,
    (SELECT count(*) FROM main.users WHERE regexp_matches(phone, '[A-Za-z]')
        OR length(regexp_replace(phone, '[^0-9]', '', 'g')) < 8 OR regexp_full_match(phone, '0+'))
        AS invalid_phones,
    (SELECT count(*) FROM main.users WHERE isnan(lifetime_value)) AS nan_lifetime_value,
    (SELECT count(*) FROM main.users WHERE isinf(lifetime_value)) AS inf_lifetime_value,
    (SELECT count(*) FROM main.users WHERE lifetime_value < 0 AND NOT isinf(lifetime_value))
        AS negative_lifetime_value,
    (SELECT count(*) FROM main.users WHERE lifetime_value IS NULL) AS null_lifetime_value,
    (SELECT count(*) FROM main.users WHERE email = '') AS empty_emails,
    (SELECT count(*) FROM main.users WHERE email <> ''
        AND NOT regexp_full_match(trim(email), '[^@\\s]+@[^@\\s]+\\.[^@\\s]+')) AS malformed_emails,
    (SELECT count(*) FROM main.users WHERE birth_date > getvariable('demo_as_of')::DATE) AS future_birth_dates,
    (SELECT count(*) FROM main.users WHERE birth_date < DATE '1900-01-01') AS pre_1900_birth_dates,
    (SELECT count(*) FROM main.users WHERE regexp_matches(first_name,
        '[\\x{1F300}-\\x{1FAFF}\\x{2600}-\\x{27BF}\\x{1F1E6}-\\x{1F1FF}]')) AS emoji_names,
    (SELECT count(*) FROM main.users WHERE preferences_raw IS NOT NULL AND NOT json_valid(preferences_raw))
        AS invalid_preferences_json,
    (SELECT count(*) FROM segment.tracks WHERE event IS NULL) AS null_event_names,
    (SELECT count(*) FROM main.events WHERE event_time IS NULL) AS null_event_timestamps,
    (SELECT count(*) FROM main.events WHERE user_id IS NULL AND anonymous_id IS NULL) AS events_without_ids,
    (SELECT count(*) FROM main.events WHERE user_id IS NULL AND anonymous_id IS NOT NULL) AS anonymous_events,
    (SELECT count(*) FROM segment.tracks WHERE received_at > "timestamp" + INTERVAL 1 HOUR) AS late_tracks,
    (SELECT count(*) FROM (SELECT anonymous_id FROM segment.identifies WHERE user_id IS NOT NULL
        GROUP BY anonymous_id HAVING count(DISTINCT user_id) > 1)) AS shared_devices
"""


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> int:
    row = con.execute(sql, params or []).fetchone()
    return int(row[0]) if row is not None else 0


def _stage_reference(con: duckdb.DuckDBPyConnection) -> None:
    _sql.temp_table_from_rows(con, "_countries", ref.country_rows())
    products = [
        {"idx": n, "product_id": p[0], "sku": p[1], "name": p[2], "category": p[3], "brand": p[4], "price_usd": p[5]}
        for n, p in enumerate(ref.PRODUCTS)
    ]
    _sql.temp_table_from_rows(con, "_products", products)


def _set_sizes(con: duckdb.DuckDBPyConnection, users: int) -> None:
    sizes = {
        "demo_n": users,
        "demo_n_long": LONG_ID_USERS,
        "demo_n_dup": max(1, round(users * DUPLICATE_IDS)),
        "demo_n_visitors": round(users * VISITORS_PER_USER),
        "demo_n_anon_rows": max(1, round(users * ANONYMOUS_USER_ROWS)),
        "demo_n_products": len(ref.PRODUCTS),
    }
    for name, value in sizes.items():
        # Variable names are the constants above.
        con.execute(f"SET VARIABLE {name} = ?::BIGINT", [value])


def _run_script(con: duckdb.DuckDBPyConnection, script: str) -> None:
    for statement in script.split(";\n"):
        if statement.strip():
            con.execute(statement)


def demo_as_of(now: datetime) -> datetime:
    """The `as_of` a demo built at `now` uses: the start of the current hour (UTC), so the hour that just
    ended is complete and the last N days of events, orders and signups reach up to the present."""
    return as_utc(now).replace(minute=0, second=0, microsecond=0)


def build_demo_warehouse(
    path: Path | str,
    *,
    as_of: datetime,
    users: int = 50_000,
    seed: int = 42,
    days: int = 30,
) -> DemoWarehouseSummary:
    """(Re)build the demo warehouse at `path` in one transaction and return what it holds.

    Deterministic for a given `seed` and `as_of` (the caller passes it: tests a fixed instant, the demo
    :func:`demo_as_of` of now); events span the `days` days before `as_of`. Holds the DuckDB file lock only
    while building.
    """
    if users < 1 or days < 1:
        raise ValueError("users and days must be >= 1")
    started = time.perf_counter()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    as_of = as_utc(as_of)
    with _sql.session(path) as con:
        _sql.install(con, seed=seed, as_of=as_of, window_start=as_of - timedelta(days=days))
        _set_sizes(con, users)
        con.begin()  # all or nothing: a failed rebuild leaves the previous warehouse in place
        con.execute("DROP SCHEMA IF EXISTS segment CASCADE")
        con.execute("DROP VIEW IF EXISTS main.events")
        for table in ("users", "orders", "products", "countries"):
            # Our own table names.
            con.execute(f"DROP TABLE IF EXISTS main.{table}")
        con.execute("CREATE SCHEMA segment")
        _stage_reference(con)
        con.execute("CREATE TABLE main.products AS SELECT * EXCLUDE (idx) FROM _products ORDER BY product_id")
        con.execute(
            "CREATE TABLE main.countries AS SELECT country_code, currency, fx_usd, locale FROM _countries "
            "ORDER BY country_code"
        )
        con.execute(_USERS_BASE)
        con.execute(_VISITORS)
        _run_script(con, _ORDERS)
        _sql.create_raw(con)
        con.execute(_BROWSE)
        _run_script(con, _LIFECYCLE)
        con.execute(_sql.PAGE_URLS)
        _sql.decorate(con)
        _run_script(con, _EVENT_MESS)
        _sql.create_segment_tables(con)
        events = _sql.insert_events(con)
        _run_script(con, _IDENTIFIES)
        _run_script(con, _SHARED_DEVICES)
        con.execute(_USERS)
        for table in ("_ev", "_items", "_ord", "_order_products"):
            con.execute(f"DROP TABLE {table}")  # staging only; frees memory before the commit
        con.execute(_events_view_sql())
        con.commit()
        con.execute("CHECKPOINT")
        tables = _table_counts(con)
        anomalies = _anomalies(con)
        valid = _count(
            con, "SELECT count(DISTINCT user_id) FROM main.users WHERE regexp_matches(user_id, ?)", [VALID_USER_ID]
        )
    return DemoWarehouseSummary(
        path=path,
        as_of=as_of,
        users=valid,
        user_rows=tables["main.users"],
        events=events,
        tables=tables,
        seconds=round(time.perf_counter() - started, 3),
        anomalies=anomalies,
    )


def _table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    names = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND NOT temporary AND schema_name IN ('main', 'segment') "
        "UNION ALL SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = current_database() "
        "AND NOT internal AND NOT temporary AND schema_name = 'main' ORDER BY 1, 2"
    ).fetchall()
    # Names come from DuckDB's catalog, quoted as identifiers.
    return {f"{s}.{t}": _count(con, f'SELECT count(*) FROM "{s}"."{t}"') for s, t in names}  # noqa: S608


def _anomalies(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    cur = con.execute(_ANOMALIES)
    row = cur.fetchone()
    cols = [d[0] for d in cur.description or []]
    return {c: int(v) for c, v in zip(cols, row or [], strict=True)}
