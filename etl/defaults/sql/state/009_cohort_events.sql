-- Outbox of Cohort Entered / Cohort Exited events: a row is queued in the transaction that records the
-- accepted attribute flip, and marked sent once WebEngage accepted the event, so each transition is sent
-- once. Status: pending | sent | rejected.
CREATE TABLE IF NOT EXISTS we_cohort_events (
    cohort      VARCHAR(120) NOT NULL,
    user_id     VARCHAR(100) NOT NULL,
    transition  VARCHAR(10)  NOT NULL,
    version     INTEGER      NOT NULL,
    status      VARCHAR(20)  NOT NULL,
    queued_at   TIMESTAMP    NOT NULL,
    sent_at     TIMESTAMP,
    run_id      VARCHAR(250) NOT NULL,
    detail      VARCHAR(500),
    PRIMARY KEY (cohort, user_id, transition, version)
);
