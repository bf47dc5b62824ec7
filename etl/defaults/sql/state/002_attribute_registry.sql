-- WebEngage fixes an attribute's type the first time it is sent and allows 25 per type per scope
-- (scope 'users' for the account's user attributes, 'event:<name>' per event name). Owner frees slots.
CREATE TABLE IF NOT EXISTS we_attribute_registry (
    scope          VARCHAR(120) NOT NULL,
    name           VARCHAR(100) NOT NULL,
    data_type      VARCHAR(20)  NOT NULL,
    owner          VARCHAR(200) NOT NULL,
    first_sent_at  TIMESTAMP    NOT NULL,
    PRIMARY KEY (scope, name)
);
