-- Exactly-once event delivery: one row per warehouse event id that reached a terminal state.
-- status accepted: WebEngage accepted it (request_id, run_id, accepted_at); it is never sent again.
-- status rejected: it did not go (reason); re-evaluated whenever a later window reads it again.
CREATE TABLE IF NOT EXISTS we_event_ledger (
    event_id     VARCHAR(255) PRIMARY KEY,
    status       VARCHAR(20)  NOT NULL,
    reason       VARCHAR(120),
    request_id   VARCHAR(64),
    run_id       VARCHAR(250) NOT NULL,
    accepted_at  TIMESTAMP,
    updated_at   TIMESTAMP    NOT NULL
);
