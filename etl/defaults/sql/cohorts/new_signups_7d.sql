-- New sign-ups: users who signed up in the `days` days before the export time. The users table has
-- duplicate rows for some ids: the sync counts each id once.
SELECT user_id
FROM main.users
WHERE signup_at > CAST(:as_of AS TIMESTAMP) - CAST(:days AS INTEGER) * INTERVAL '1 day'
  AND signup_at <= CAST(:as_of AS TIMESTAMP)
