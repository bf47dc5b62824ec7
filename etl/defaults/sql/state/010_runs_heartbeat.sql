-- When a run last showed signs of life (checkpoints, progress): a run killed with SIGKILL stays 'running'
-- until the next run of its pipeline marks it 'abandoned', saying when it was last seen.
ALTER TABLE we_runs ADD COLUMN IF NOT EXISTS last_seen_at TIMESTAMP;
