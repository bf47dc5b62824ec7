-- WebEngage webhook deliveries (events, global system and application events, journeys), loaded from the
-- receiver's landing log by `webengage-sync webhooks load` / DAG webengage_webhooks_load. One row per
-- delivery: request_id is x-request-id (or "body-" + a hash of the body when WebEngage sent none) and
-- unique, so a redelivery or a replay is stored once. Times are UTC instants. extra holds top-level keys
-- beyond the documented envelope (journeys: resource, version). event_type is the eventType query parameter.
CREATE TABLE IF NOT EXISTS webengage_events (
    request_id    VARCHAR      PRIMARY KEY,
    event_name    VARCHAR      NOT NULL,
    event_time    TIMESTAMPTZ  NOT NULL,
    category      VARCHAR      NOT NULL,
    user_id       VARCHAR,
    anonymous_id  VARCHAR,
    event_data    JSON,
    system_data   JSON,
    extra         JSON,
    license_code  VARCHAR,
    event_type    VARCHAR,
    received_at   TIMESTAMPTZ  NOT NULL,
    loaded_at     TIMESTAMPTZ  NOT NULL
);
-- Well-authenticated deliveries that are not a webhook shape (bad JSON, missing event_time, ...): the raw
-- body as text (body_encoding utf8) or base64 (not UTF-8, or holding NUL), with the reason it was refused.
CREATE TABLE IF NOT EXISTS webengage_webhook_quarantine (
    request_id     VARCHAR      PRIMARY KEY,
    reason         VARCHAR      NOT NULL,
    body           TEXT         NOT NULL,
    body_encoding  VARCHAR      NOT NULL,
    license_code   VARCHAR,
    event_type     VARCHAR,
    received_at    TIMESTAMPTZ  NOT NULL,
    loaded_at      TIMESTAMPTZ  NOT NULL
);
-- The loader's checkpoint, one row per landing segment, committed in the same transaction as the rows it
-- loaded: byte_offset is where the next read starts (always a line boundary). closed_at is set once the
-- writer had closed the segment and every line of it was loaded; the file may then be deleted after the
-- retention period. Counters are cumulative over the segment.
CREATE TABLE IF NOT EXISTS we_webhook_segments (
    segment      VARCHAR    PRIMARY KEY,
    byte_offset  BIGINT     NOT NULL,
    lines        BIGINT     NOT NULL,
    loaded       BIGINT     NOT NULL,
    duplicates   BIGINT     NOT NULL,
    quarantined  BIGINT     NOT NULL,
    closed_at    TIMESTAMP,
    updated_at   TIMESTAMP  NOT NULL
);
