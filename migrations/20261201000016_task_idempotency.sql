-- A task create may carry an Idempotency-Key: a retry whose first answer
-- was lost (a dropped connection, a timeout) returns the task created the
-- first time instead of a duplicate. Keys are per creator.
ALTER TABLE tasks ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX tasks_created_by_idempotency_key_key
    ON tasks (created_by, idempotency_key) WHERE idempotency_key IS NOT NULL;
