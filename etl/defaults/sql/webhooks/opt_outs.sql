-- Channel opt-outs back in the warehouse, created with the webhook tables. WebEngage reports unsubscribes
-- only as system events (the global system events webhook); their exact names are not published, so which
-- event names mean an opt-out (or an opt-in again) per channel is this table's data, not code: add a row
-- for a name your account sends (event names are matched lower-cased, spaces and hyphens read as "_").
CREATE TABLE IF NOT EXISTS webengage_opt_out_events (
    event_name  VARCHAR PRIMARY KEY,
    channel     VARCHAR NOT NULL,
    action      VARCHAR NOT NULL  -- opt_out | opt_in
);
INSERT INTO webengage_opt_out_events (event_name, channel, action) VALUES
    ('email_unsubscribe', 'email', 'opt_out'),
    ('email_unsubscribed', 'email', 'opt_out'),
    ('email_opt_out', 'email', 'opt_out'),
    ('sms_unsubscribe', 'sms', 'opt_out'),
    ('sms_unsubscribed', 'sms', 'opt_out'),
    ('sms_opt_out', 'sms', 'opt_out'),
    ('whatsapp_unsubscribe', 'whatsapp', 'opt_out'),
    ('whatsapp_unsubscribed', 'whatsapp', 'opt_out'),
    ('whatsapp_opt_out', 'whatsapp', 'opt_out')
ON CONFLICT (event_name) DO NOTHING;
-- One row per user (or anonymous visitor, when WebEngage knew no user id) and channel whose latest
-- opt-out/opt-in event is an opt-out: whom the next export must leave out of that channel. opted_out_at is
-- that latest opt-out; opt_outs counts every opt-out event received for the pair.
CREATE OR REPLACE VIEW webengage_opt_outs AS
WITH matched AS (
    SELECT e.user_id,
           CASE WHEN e.user_id IS NULL THEN e.anonymous_id END AS anonymous_id,
           o.channel, o.action, e.event_name, e.event_time, e.request_id
    FROM webengage_events e
    JOIN webengage_opt_out_events o
      ON replace(replace(lower(e.event_name), ' ', '_'), '-', '_') = o.event_name
    WHERE e.user_id IS NOT NULL OR e.anonymous_id IS NOT NULL
), ranked AS (
    SELECT m.*,
           row_number() OVER (PARTITION BY user_id, anonymous_id, channel
                              ORDER BY event_time DESC, action DESC, request_id DESC) AS latest,
           count(*) FILTER (WHERE action = 'opt_out') OVER (PARTITION BY user_id, anonymous_id, channel) AS opt_outs
    FROM matched m
)
SELECT user_id, anonymous_id, channel, event_time AS opted_out_at, event_name, opt_outs
FROM ranked
WHERE latest = 1 AND action = 'opt_out';
