-- One row per GDPR erasure request for a deleted user, kept as the record of the erasure.
-- status journaled: written with its exact body before it is sent; a run that finds it replays it (same
--   subject_request_id, same bytes), so a crash between sending and confirming ends in one request.
-- status rejected: WebEngage refused it (HTTP 4xx); replayed by later runs until the reject is dead.
-- status submitted: WebEngage accepted it; in the same transaction the user's sync state was removed.
-- Later status checks record WebEngage's own status: pending | in_progress | completed | cancelled | unknown.
CREATE TABLE IF NOT EXISTS we_erasure_requests (
    request_id    VARCHAR(64)  PRIMARY KEY,
    user_id       VARCHAR(100) NOT NULL,
    status        VARCHAR(20)  NOT NULL,
    body          TEXT         NOT NULL,
    detected_by   VARCHAR(200) NOT NULL,
    run_id        VARCHAR(250) NOT NULL,
    created_at    TIMESTAMP    NOT NULL,
    submitted_at  TIMESTAMP,
    checked_at    TIMESTAMP,
    finished_at   TIMESTAMP,
    checks        INTEGER      NOT NULL,
    message       VARCHAR(500)
);
CREATE INDEX IF NOT EXISTS we_erasure_requests_user ON we_erasure_requests (user_id);
