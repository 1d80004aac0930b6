-- Users, their tokens and one-time codes, the admin realm, and the email
-- outbox. Constraint names are stable: the code maps them to 409/422.

CREATE TABLE users (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email              TEXT        NOT NULL,
    password_hash      TEXT        NOT NULL,
    first_name         TEXT        NOT NULL DEFAULT '',
    last_name          TEXT        NOT NULL DEFAULT '',
    timezone           TEXT        NOT NULL DEFAULT 'UTC',
    preferences        JSONB       NOT NULL DEFAULT '{}'::jsonb,
    email_verified_at  TIMESTAMPTZ,
    is_active          BOOLEAN     NOT NULL DEFAULT TRUE,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email),
    CONSTRAINT users_email_lower CHECK (email = lower(email)),
    CONSTRAINT users_preferences_object CHECK (jsonb_typeof(preferences) = 'object')
);

-- App login tokens: only the SHA-256 of the token is stored.
CREATE TABLE auth_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash   BYTEA       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ,
    CONSTRAINT auth_tokens_token_hash_key UNIQUE (token_hash),
    CONSTRAINT auth_tokens_hash_len CHECK (octet_length(token_hash) = 32)
);
CREATE INDEX auth_tokens_user_id_idx ON auth_tokens (user_id) WHERE revoked_at IS NULL;
CREATE INDEX auth_tokens_expires_at_idx ON auth_tokens (expires_at);

-- One-time codes (email verification, password reset) and the short-lived
-- reset tokens a verified reset code is exchanged for. Hashed, expiring,
-- attempt-limited, single use.
CREATE TABLE user_codes (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose       TEXT        NOT NULL,
    code_hash     BYTEA       NOT NULL,
    attempts      INTEGER     NOT NULL DEFAULT 0,
    max_attempts  INTEGER     NOT NULL DEFAULT 5,
    expires_at    TIMESTAMPTZ NOT NULL,
    consumed_at   TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT user_codes_purpose_check
        CHECK (purpose IN ('verify_email', 'reset_password', 'reset_token'))
);
CREATE INDEX user_codes_user_purpose_idx ON user_codes (user_id, purpose) WHERE consumed_at IS NULL;
CREATE INDEX user_codes_expires_at_idx ON user_codes (expires_at);
CREATE UNIQUE INDEX user_codes_reset_token_key ON user_codes (code_hash) WHERE purpose = 'reset_token';

-- The admin panel's own realm: separate accounts and tokens.
CREATE TABLE admin_users (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email          TEXT        NOT NULL,
    password_hash  TEXT        NOT NULL,
    name           TEXT        NOT NULL DEFAULT '',
    is_active      BOOLEAN     NOT NULL DEFAULT TRUE,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_login_at  TIMESTAMPTZ,
    CONSTRAINT admin_users_email_key UNIQUE (email),
    CONSTRAINT admin_users_email_lower CHECK (email = lower(email))
);

CREATE TABLE admin_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    admin_id     BIGINT      NOT NULL REFERENCES admin_users (id) ON DELETE CASCADE,
    token_hash   BYTEA       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ,
    CONSTRAINT admin_tokens_token_hash_key UNIQUE (token_hash)
);

-- Transactional outbox: a row is written in the same transaction as the
-- change that causes the email; a dispatcher delivers it over SMTP.
CREATE TABLE email_outbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    kind             TEXT        NOT NULL,
    to_address       TEXT        NOT NULL,
    subject          TEXT        NOT NULL,
    body_text        TEXT        NOT NULL,
    body_html        TEXT,
    headers          JSONB       NOT NULL DEFAULT '{}'::jsonb,
    dedupe_key       TEXT,
    status           TEXT        NOT NULL DEFAULT 'pending',
    attempts         INTEGER     NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_error       TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at          TIMESTAMPTZ,
    CONSTRAINT email_outbox_status_check CHECK (status IN ('pending', 'sent', 'dead')),
    CONSTRAINT email_outbox_dedupe_key_key UNIQUE (dedupe_key)
);
CREATE INDEX email_outbox_due_idx ON email_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX email_outbox_user_id_idx ON email_outbox (user_id);
