-- One row per cohort ever exported. The attribute is kept so a cohort removed from the config can still
-- be retired; version goes up by one per sending run and keys its events and request ids.
-- Status: active | retired.
CREATE TABLE IF NOT EXISTS we_cohorts (
    cohort          VARCHAR(120) PRIMARY KEY,
    attribute       VARCHAR(100) NOT NULL,
    mode            VARCHAR(20)  NOT NULL,
    events          BOOLEAN      NOT NULL,
    version         INTEGER      NOT NULL,
    status          VARCHAR(20)  NOT NULL,
    members         INTEGER      NOT NULL,
    last_run_id     VARCHAR(250),
    last_synced_at  TIMESTAMP,
    retired_at      TIMESTAMP
);
