-- One revocable iCal feed per user: only the SHA-256 of its secret token is
-- stored; rotating replaces it, deleting revokes it.
CREATE TABLE calendar_feeds (
    user_id     BIGINT      PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    token_hash  BYTEA       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT calendar_feeds_token_hash_key UNIQUE (token_hash),
    CONSTRAINT calendar_feeds_hash_len CHECK (octet_length(token_hash) = 32)
);
