-- Abuse resistance and account lifecycle.

-- Login tokens slide: besides their absolute lifetime (TOKEN_TTL_DAYS), a
-- token unused for 30 days stops working. Use is recorded at most once an
-- hour per token.
ALTER TABLE auth_tokens ADD COLUMN last_used_at TIMESTAMPTZ NOT NULL DEFAULT now();

-- Share codes: 8 characters of a 32-symbol alphabet (40 bits), single-use
-- by default (the owner may allow up to 10 joins). Codes from before are
-- 6 characters: they stop working, owners share a new one.
DELETE FROM residence_share_codes WHERE code !~ '^[A-HJ-NP-Z2-9]{8}$';
ALTER TABLE residence_share_codes
    ADD COLUMN max_uses INTEGER NOT NULL DEFAULT 1,
    ADD COLUMN uses     INTEGER NOT NULL DEFAULT 0,
    ADD CONSTRAINT residence_share_codes_uses_check
        CHECK (max_uses BETWEEN 1 AND 10 AND uses BETWEEN 0 AND max_uses),
    ADD CONSTRAINT residence_share_codes_code_format
        CHECK (code ~ '^[A-HJ-NP-Z2-9]{8}$');

-- Failed share-code entries: the durable record behind the join limits
-- (per account, per address, and one budget for the whole system), so
-- they hold without Redis and across new accounts. Addresses are stored as
-- SHA-256 digests; rows older than two days are dropped as new ones come.
CREATE TABLE share_code_failures (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    addr_hash  BYTEA,
    failed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX share_code_failures_failed_at_idx ON share_code_failures (failed_at);
CREATE INDEX share_code_failures_user_idx ON share_code_failures (user_id, failed_at)
    WHERE user_id IS NOT NULL;
CREATE INDEX share_code_failures_addr_idx ON share_code_failures (addr_hash, failed_at)
    WHERE addr_hash IS NOT NULL;

-- Registrations per address and for the whole system, counted in
-- Postgres (durable, no Redis needed): the address a user signed up from,
-- as a SHA-256 digest.
ALTER TABLE users ADD COLUMN signup_addr_hash BYTEA;
CREATE INDEX users_signup_addr_idx ON users (signup_addr_hash, created_at)
    WHERE signup_addr_hash IS NOT NULL;
