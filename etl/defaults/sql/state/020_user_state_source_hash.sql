-- The in-warehouse diff's 64-bit hash of the source row WebEngage accepted (computed by the warehouse over
-- the mapped columns). NULL: not known (rows checkpointed by the full-read path, or
-- from before this column); the next in-warehouse diff reads such a row once, confirms it against
-- payload_hash in the worker and stores its hash, so switching paths never re-sends unchanged users.
ALTER TABLE we_user_state ADD COLUMN IF NOT EXISTS source_hash BIGINT;
