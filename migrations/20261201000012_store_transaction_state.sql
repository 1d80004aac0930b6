-- The latest known state of each store subscription (original transaction):
-- the transaction the newest applied statement was about, when the store
-- signed that statement, its expiry, and whether that transaction was
-- revoked (refunded). A statement signed before the stored one, or about an
-- earlier transaction of the same subscription, changes nothing, and a
-- stored revocation sticks to its transaction; so a saved signed
-- transaction replayed after a refund, or a notification delivered out of
-- order, never raises the tier again. No user column: the state belongs to
-- the purchase, whichever account presents it, and outlives accounts.
CREATE TABLE store_transaction_state (
    source                   TEXT        NOT NULL,
    original_transaction_id  TEXT        NOT NULL,
    transaction_id           TEXT        NOT NULL,
    product_id               TEXT        NOT NULL,
    purchased_at             TIMESTAMPTZ NOT NULL,
    signed_at                TIMESTAMPTZ NOT NULL,
    expires_at               TIMESTAMPTZ,
    revoked_at               TIMESTAMPTZ,
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT store_transaction_state_pkey PRIMARY KEY (source, original_transaction_id),
    CONSTRAINT store_transaction_state_source_check CHECK (source IN ('apple', 'google'))
);

-- What the App Store events recorded so far already say: each statement
-- (the transaction of verify/ and restore/, the signedTransactionInfo of a
-- notification, both verified when they were recorded), and per
-- subscription its latest transaction (by purchase, then signature), the
-- newest signature seen, and the earliest revocation of that transaction.
WITH statements AS (
    SELECT CASE WHEN payload ? 'transactionId' THEN payload
                ELSE convert_from(decode(rpad(translate(split_part(jws, '.', 2), '-_', '+/'),
                                              (length(split_part(jws, '.', 2)) + 3) / 4 * 4, '='),
                                         'base64'), 'UTF8')::jsonb
           END AS t
      FROM (SELECT payload, payload -> 'data' ->> 'signedTransactionInfo' AS jws
              FROM subscription_events
             WHERE source = 'apple') e
     WHERE payload ? 'transactionId' OR jws IS NOT NULL
), parsed AS (
    SELECT t ->> 'originalTransactionId' AS original_id,
           t ->> 'transactionId' AS tx_id,
           t ->> 'productId' AS product_id,
           timestamptz 'epoch' + (t ->> 'purchaseDate')::bigint * interval '1 millisecond' AS purchased_at,
           timestamptz 'epoch' + (t ->> 'signedDate')::bigint * interval '1 millisecond' AS signed_at,
           timestamptz 'epoch' + (t ->> 'expiresDate')::bigint * interval '1 millisecond' AS expires_at,
           timestamptz 'epoch' + (t ->> 'revocationDate')::bigint * interval '1 millisecond' AS revoked_at
      FROM statements
)
INSERT INTO store_transaction_state
       (source, original_transaction_id, transaction_id, product_id, purchased_at, signed_at, expires_at, revoked_at)
SELECT DISTINCT ON (original_id)
       'apple', original_id, tx_id, product_id, purchased_at,
       max(signed_at) OVER (PARTITION BY original_id),
       expires_at,
       min(revoked_at) OVER (PARTITION BY original_id, tx_id)
  FROM parsed
 WHERE original_id IS NOT NULL AND tx_id IS NOT NULL AND product_id IS NOT NULL
   AND purchased_at IS NOT NULL AND signed_at IS NOT NULL
 ORDER BY original_id, purchased_at DESC, signed_at DESC;
