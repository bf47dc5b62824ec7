-- One row per pipeline run; counts is the run summary as JSON text (portable across databases).
CREATE TABLE IF NOT EXISTS we_runs (
    run_id        VARCHAR(250) NOT NULL,
    pipeline      VARCHAR(120) NOT NULL,
    window_start  TIMESTAMP,
    window_end    TIMESTAMP,
    started_at    TIMESTAMP    NOT NULL,
    finished_at   TIMESTAMP,
    status        VARCHAR(20)  NOT NULL,
    dry_run       BOOLEAN      NOT NULL,
    message       VARCHAR(2000),
    counts        TEXT,
    PRIMARY KEY (run_id, pipeline)
);
