-- The in-warehouse diff's hash of the source row WebEngage accepted (md5 hex of the canonical text of the
-- mapped columns, computed by the warehouse). NULL: not known (rows checkpointed by the full-read path, or
-- from before this column); the next in-warehouse diff reads such a row once, confirms it against
-- payload_hash in the worker and stores its hash, so switching paths never re-sends unchanged users.
ALTER TABLE we_user_state ADD COLUMN IF NOT EXISTS source_hash VARCHAR(32);
