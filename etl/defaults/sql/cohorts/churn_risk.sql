-- Churn risk: buyers with at least min_orders completed orders whose last sign of life (an event or an
-- order) is more than inactive_days days before the export time.
WITH buyers AS (
    SELECT user_id, max(ordered_at) AS last_order_at, count(*) AS orders
    FROM main.orders
    WHERE status = 'completed' AND user_id IS NOT NULL AND ordered_at <= CAST(:as_of AS TIMESTAMP)
    GROUP BY user_id
), seen AS (
    SELECT user_id, max(event_time) AS last_event_at
    FROM main.events
    WHERE user_id IS NOT NULL AND event_time <= CAST(:as_of AS TIMESTAMP)
    GROUP BY user_id
)
SELECT b.user_id
FROM buyers AS b
LEFT JOIN seen AS s ON s.user_id = b.user_id
WHERE b.orders >= :min_orders
  AND greatest(b.last_order_at, coalesce(s.last_event_at, b.last_order_at))
      < CAST(:as_of AS TIMESTAMP) - CAST(:inactive_days AS INTEGER) * INTERVAL '1 day'
