-- VIP buyers: completed orders worth at least min_revenue_usd (in US dollars, converted with the
-- country's rate) in the `days` days before the export time. Bound parameters only (as_of is the
-- export time, the others come from mappings/cohorts.toml).
SELECT o.user_id
FROM main.orders AS o
JOIN main.countries AS c ON c.currency = o.currency
WHERE o.status = 'completed'
  AND o.user_id IS NOT NULL
  AND o.ordered_at > CAST(:as_of AS TIMESTAMP) - CAST(:days AS INTEGER) * INTERVAL '1 day'
  AND o.ordered_at <= CAST(:as_of AS TIMESTAMP)
GROUP BY o.user_id
HAVING sum(o.revenue / c.fx_usd) >= :min_revenue_usd
