-- Anonymous -> known merges: one row per anonymous id ever merged (or journaled for a merge). A row is
-- written as in_flight, with its x-request-id, before the /users call carrying both ids goes out; it
-- becomes merged once WebEngage accepted it. A run first re-sends every in_flight row with the same
-- request id, so a crash between WebEngage's acceptance and the checkpoint ends in its de-duplication.
-- An anonymous id is merged into one user only: later pairs naming another user are reported, never sent.
CREATE TABLE IF NOT EXISTS we_merged_pairs (
    anonymous_id  VARCHAR(100) PRIMARY KEY,
    user_id       VARCHAR(100) NOT NULL,
    status        VARCHAR(20)  NOT NULL,
    request_id    VARCHAR(64)  NOT NULL,
    identified_at TIMESTAMP,
    journaled_at  TIMESTAMP    NOT NULL,
    merged_at     TIMESTAMP,
    run_id        VARCHAR(250) NOT NULL
);
