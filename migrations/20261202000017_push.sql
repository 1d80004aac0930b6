-- Push delivery: devices that can be deactivated, push preferences and
-- quiet hours, and the push outbox (shared/push/src/outbox.rs).

ALTER TABLE devices
    ADD COLUMN active              BOOLEAN     NOT NULL DEFAULT TRUE,
    ADD COLUMN deactivated_at      TIMESTAMPTZ,
    ADD COLUMN deactivated_reason  TEXT;

-- push_enabled: all push off; kinds.<kind>.push: one kind's push off.
-- Quiet hours: local hours [start, end) of the user's time zone (wrapping
-- past midnight when start > end); both or neither.
ALTER TABLE notification_preferences
    ADD COLUMN push_enabled       BOOLEAN  NOT NULL DEFAULT TRUE,
    ADD COLUMN quiet_hours_start  SMALLINT,
    ADD COLUMN quiet_hours_end    SMALLINT,
    ADD CONSTRAINT notification_preferences_quiet_check CHECK (
        (quiet_hours_start IS NULL) = (quiet_hours_end IS NULL) AND
        (quiet_hours_start IS NULL OR (quiet_hours_start BETWEEN 0 AND 23 AND quiet_hours_end BETWEEN 0 AND 23
                                       AND quiet_hours_start <> quiet_hours_end)));

CREATE TABLE push_outbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id        BIGINT      NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    notification_id  BIGINT      REFERENCES notifications (id) ON DELETE SET NULL,
    kind             TEXT        NOT NULL,
    title            TEXT        NOT NULL,
    body             TEXT        NOT NULL DEFAULT '',
    data             JSONB       NOT NULL DEFAULT '{}'::jsonb,
    status           TEXT        NOT NULL DEFAULT 'pending',
    attempts         INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at          TIMESTAMPTZ,
    CONSTRAINT push_outbox_status_check CHECK (status IN ('pending', 'sent', 'dead', 'dropped', 'expired')),
    CONSTRAINT push_outbox_once UNIQUE (notification_id, device_id)
);
CREATE INDEX push_outbox_due_idx ON push_outbox (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX push_outbox_device_idx ON push_outbox (device_id) WHERE status = 'pending';
CREATE INDEX push_outbox_created_idx ON push_outbox (created_at DESC);

-- When a push to `user_id` written at `at` may go: `at`, or the end of the
-- user's quiet hours when `at` falls in them (in their time zone; a DST
-- gap moves the end to the next valid instant, as AT TIME ZONE does).
CREATE FUNCTION push_due_at(user_id BIGINT, at TIMESTAMPTZ) RETURNS TIMESTAMPTZ
LANGUAGE sql STABLE AS $$
    SELECT CASE
             WHEN p.quiet_hours_start IS NULL THEN at
             WHEN (CASE WHEN p.quiet_hours_start < p.quiet_hours_end
                        THEN h >= p.quiet_hours_start AND h < p.quiet_hours_end
                        ELSE h >= p.quiet_hours_start OR h < p.quiet_hours_end END)
               THEN ((date_trunc('day', l) + make_interval(hours => p.quiet_hours_end)
                      + CASE WHEN date_trunc('day', l) + make_interval(hours => p.quiet_hours_end) <= l
                             THEN interval '1 day' ELSE interval '0' END) AT TIME ZONE u.timezone)
             ELSE at
           END
      FROM users u
      LEFT JOIN notification_preferences p ON p.user_id = u.id,
           LATERAL (SELECT at AT TIME ZONE u.timezone AS l) loc,
           LATERAL (SELECT extract(hour FROM loc.l)::int AS h) hr
     WHERE u.id = push_due_at.user_id
$$;
