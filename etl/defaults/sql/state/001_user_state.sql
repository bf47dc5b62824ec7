-- One row per user WebEngage accepted: the hash of the last accepted payload, and which mapped fields
-- were non-empty in it (a string of 0/1 in mapping order) so the null policy can clear exactly those.
CREATE TABLE IF NOT EXISTS we_user_state (
    user_id       VARCHAR(100) PRIMARY KEY,
    payload_hash  BIGINT       NOT NULL,
    field_mask    VARCHAR(512) NOT NULL,
    accepted_at   TIMESTAMP    NOT NULL,
    run_id        VARCHAR(250) NOT NULL
);
