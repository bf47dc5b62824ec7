-- Cohort membership as WebEngage accepted it: one row per (cohort, user) whose cohort attribute is true
-- there (member), or whose flip was sent but not yet confirmed (pending: a crash left its value unknown,
-- so the next sync sends the current value again). Rows of users who left are deleted once WebEngage
-- accepted their false.
CREATE TABLE IF NOT EXISTS we_cohort_members (
    cohort      VARCHAR(120) NOT NULL,
    user_id     VARCHAR(100) NOT NULL,
    member      BOOLEAN      NOT NULL,
    pending     BOOLEAN      NOT NULL,
    version     INTEGER      NOT NULL,
    changed_at  TIMESTAMP    NOT NULL,
    run_id      VARCHAR(250) NOT NULL,
    PRIMARY KEY (cohort, user_id)
);
