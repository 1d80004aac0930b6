-- Documents of a residence: warranties, manuals, receipts, insurance,
-- inspections, contracts. Files attach through uploads (later migration).
CREATE TABLE documents (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    residence_id     BIGINT        NOT NULL REFERENCES residences (id) ON DELETE CASCADE,
    created_by       BIGINT        REFERENCES users (id) ON DELETE SET NULL,
    title            TEXT          NOT NULL,
    doc_type         TEXT          NOT NULL,
    description      TEXT          NOT NULL DEFAULT '',
    start_date       DATE,
    expiry_date      DATE,
    provider         TEXT          NOT NULL DEFAULT '',
    policy_number    TEXT          NOT NULL DEFAULT '',
    claim_phone      TEXT          NOT NULL DEFAULT '',
    claim_email      TEXT          NOT NULL DEFAULT '',
    claim_url        TEXT          NOT NULL DEFAULT '',
    amount           NUMERIC(12,2),
    task_id          BIGINT        REFERENCES tasks (id) ON DELETE SET NULL,
    contractor_id    BIGINT        REFERENCES contractors (id) ON DELETE SET NULL,
    created_at       TIMESTAMPTZ   NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ   NOT NULL DEFAULT now(),
    CONSTRAINT documents_doc_type_check CHECK (doc_type IN
        ('warranty', 'manual', 'receipt', 'insurance', 'inspection', 'contract', 'other')),
    CONSTRAINT documents_dates_check CHECK (start_date IS NULL OR expiry_date IS NULL OR start_date <= expiry_date),
    CONSTRAINT documents_amount_check CHECK (amount IS NULL OR amount >= 0)
);
CREATE INDEX documents_residence_idx ON documents (residence_id, doc_type);
-- Warranty reminders scan by expiry.
CREATE INDEX documents_expiry_idx ON documents (expiry_date) WHERE expiry_date IS NOT NULL;
