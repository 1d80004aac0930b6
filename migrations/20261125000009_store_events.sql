-- Store purchases: every verified App Store transaction and every store
-- notification, once (the key makes webhooks and re-verification
-- idempotent), and one account per original transaction.
CREATE TABLE subscription_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      TEXT        NOT NULL,
    event_key   TEXT        NOT NULL,
    user_id     BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    kind        TEXT        NOT NULL,
    payload     JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT subscription_events_source_check CHECK (source IN ('apple', 'google')),
    CONSTRAINT subscription_events_key UNIQUE (source, event_key)
);
CREATE INDEX subscription_events_user_idx ON subscription_events (user_id, created_at DESC);

ALTER TABLE user_subscriptions
    ADD CONSTRAINT user_subscriptions_original_transaction_key UNIQUE (original_transaction_id);
