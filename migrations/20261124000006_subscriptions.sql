-- Subscription tiers and their limits, the global switch, and each user's
-- subscription. NULL limit = unlimited.
CREATE TABLE tier_limits (
    tier              TEXT    PRIMARY KEY,
    display_name      TEXT    NOT NULL,
    max_residences    INTEGER,
    max_tasks         INTEGER,
    max_contractors   INTEGER,
    max_documents     INTEGER,
    max_upload_bytes  BIGINT  NOT NULL,
    CONSTRAINT tier_limits_tier_check CHECK (tier IN ('free', 'pro'))
);
INSERT INTO tier_limits (tier, display_name, max_residences, max_tasks, max_contractors, max_documents, max_upload_bytes) VALUES
    ('free', 'Free', 1, 30, 10, 10, 10485760),
    ('pro', 'Pro', NULL, NULL, NULL, NULL, 52428800);

CREATE TABLE app_settings (
    singleton       BOOLEAN     PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    limits_enabled  BOOLEAN     NOT NULL DEFAULT TRUE,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO app_settings DEFAULT VALUES;

-- No row = free. is_free: granted by an admin, bypasses every limit.
CREATE TABLE user_subscriptions (
    user_id                  BIGINT      PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    tier                     TEXT        NOT NULL DEFAULT 'free' REFERENCES tier_limits (tier),
    expires_at               TIMESTAMPTZ,
    is_free                  BOOLEAN     NOT NULL DEFAULT FALSE,
    source                   TEXT        NOT NULL DEFAULT 'none',
    original_transaction_id  TEXT,
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT user_subscriptions_source_check CHECK (source IN ('none', 'apple', 'google', 'admin'))
);
