-- Cart abandoners: added a product in the `days` days before the export time and have not ordered
-- since. Read from the event stream, so visitors who never logged in appear with a NULL user_id: the
-- sync exports identified users only and reports those rows as excluded (anonymous).
WITH added AS (
    SELECT user_id, anonymous_id, max(event_time) AS last_added_at
    FROM main.events
    WHERE event_name = 'Product Added'
      AND event_time > CAST(:as_of AS TIMESTAMP) - CAST(:days AS INTEGER) * INTERVAL '1 day'
      AND event_time <= CAST(:as_of AS TIMESTAMP)
    GROUP BY user_id, anonymous_id
), ordered AS (
    SELECT user_id, max(ordered_at) AS last_order_at
    FROM main.orders
    WHERE ordered_at <= CAST(:as_of AS TIMESTAMP)
    GROUP BY user_id
)
SELECT a.user_id, a.anonymous_id
FROM added AS a
LEFT JOIN ordered AS o ON o.user_id = a.user_id
WHERE o.last_order_at IS NULL OR o.last_order_at < a.last_added_at
