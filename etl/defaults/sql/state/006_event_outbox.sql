-- Transactional outbox of event requests: a request's exact body and event ids are written here
-- (status in_flight) before it is sent; on acceptance the ledger rows are written and this row deleted
-- in one transaction. A run first replays every row left here, with the same x-request-id and bytes,
-- so a crash between WebEngage's acceptance and the ledger write is resolved by WebEngage's de-duplication.
CREATE TABLE IF NOT EXISTS we_event_outbox (
    request_id  VARCHAR(64)  PRIMARY KEY,
    endpoint    VARCHAR(20)  NOT NULL,
    status      VARCHAR(20)  NOT NULL,
    items       INTEGER      NOT NULL,
    event_ids   TEXT         NOT NULL,
    body        TEXT         NOT NULL,
    run_id      VARCHAR(250) NOT NULL,
    created_at  TIMESTAMP    NOT NULL
);
