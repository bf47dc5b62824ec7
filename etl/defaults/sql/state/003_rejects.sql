-- Rows (or single values) that did not reach WebEngage, with the reason. Status: open | resolved | dead.
CREATE TABLE IF NOT EXISTS we_rejects (
    pipeline     VARCHAR(120) NOT NULL,
    row_key      VARCHAR(400) NOT NULL,
    column_name  VARCHAR(120) NOT NULL,
    reason       VARCHAR(120) NOT NULL,
    detail       VARCHAR(1000),
    kind         VARCHAR(20)  NOT NULL,
    status       VARCHAR(20)  NOT NULL,
    attempts     INTEGER      NOT NULL,
    first_seen   TIMESTAMP    NOT NULL,
    last_seen    TIMESTAMP    NOT NULL,
    run_id       VARCHAR(250) NOT NULL,
    PRIMARY KEY (pipeline, row_key, column_name, reason)
);
