-- Events of one window, one row per event: the default source of the event sync (mappings/events.toml).
-- Columns: event_id (stable, unique), user_id and/or anonymous_id, event_name, event_time, properties (JSON
-- object); optional received_at (arrival time); any other column becomes one more property.
-- start and end (bound parameters) are the Airflow data interval widened by the lookback. Filter on the
-- arrival time when the table has one (coalesce(received_at, event_time)), so rows that arrive late are
-- still read; the demo view main.events carries only the event time.
SELECT
    event_id,
    user_id,
    anonymous_id,
    event_name,
    event_time,
    properties
FROM main.events
WHERE event_time >= :start
  AND event_time < :end
