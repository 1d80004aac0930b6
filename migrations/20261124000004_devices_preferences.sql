-- Push devices and notification preferences.

CREATE TABLE devices (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    platform      TEXT        NOT NULL,
    token         TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_seen_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT devices_platform_check CHECK (platform IN ('ios', 'android')),
    CONSTRAINT devices_platform_token_key UNIQUE (platform, token)
);
CREATE INDEX devices_user_id_idx ON devices (user_id);

-- One row per user who changed anything; absent = the defaults.
-- kinds: {"due_soon": {"enabled": bool, "email": bool}, ...}; missing keys
-- take the defaults. Hours are the user's local hour (0-23); NULL = the
-- product default (due soon 14:00, overdue 15:00, digest 03:00 UTC).
CREATE TABLE notification_preferences (
    user_id        BIGINT      PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    kinds          JSONB       NOT NULL DEFAULT '{}'::jsonb,
    email_enabled  BOOLEAN     NOT NULL DEFAULT TRUE,
    due_soon_hour  SMALLINT,
    overdue_hour   SMALLINT,
    digest_hour    SMALLINT,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT notification_preferences_kinds_object CHECK (jsonb_typeof(kinds) = 'object'),
    CONSTRAINT notification_preferences_hours_check CHECK (
        (due_soon_hour IS NULL OR due_soon_hour BETWEEN 0 AND 23) AND
        (overdue_hour IS NULL OR overdue_hour BETWEEN 0 AND 23) AND
        (digest_hour IS NULL OR digest_hour BETWEEN 0 AND 23))
);
