-- Lookups, residences and their members, share codes, contractors, tasks
-- and completions. Every membership scope and every board scan has an index.

-- ---- lookups ---------------------------------------------------------------
CREATE TABLE residence_types (
    id          INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT    NOT NULL,
    sort_order  INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT residence_types_name_key UNIQUE (name)
);

CREATE TABLE task_categories (
    id          INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT    NOT NULL,
    icon        TEXT    NOT NULL DEFAULT '',
    color       TEXT    NOT NULL DEFAULT '#718096',
    sort_order  INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT task_categories_name_key UNIQUE (name)
);

CREATE TABLE task_priorities (
    id          INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT    NOT NULL,
    level       INTEGER NOT NULL,
    color       TEXT    NOT NULL DEFAULT '#718096',
    sort_order  INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT task_priorities_name_key UNIQUE (name)
);

-- interval_days NULL = a one-off task. reminder_offsets: days before the due
-- date on which the due-soon reminder goes out.
CREATE TABLE task_frequencies (
    id                INTEGER   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              TEXT      NOT NULL,
    interval_days     INTEGER,
    interval_months   INTEGER,
    reminder_offsets  INTEGER[] NOT NULL DEFAULT '{0}',
    sort_order        INTEGER   NOT NULL DEFAULT 0,
    CONSTRAINT task_frequencies_name_key UNIQUE (name),
    CONSTRAINT task_frequencies_interval_check CHECK (
        (interval_days IS NULL OR interval_days > 0) AND (interval_months IS NULL OR interval_months > 0)
        AND NOT (interval_days IS NOT NULL AND interval_months IS NOT NULL))
);

CREATE TABLE contractor_specialties (
    id          INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT    NOT NULL,
    sort_order  INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT contractor_specialties_name_key UNIQUE (name)
);

-- One row: the lookups' version, bumped by every lookup write (the ETag).
CREATE TABLE lookup_version (
    singleton   BOOLEAN     PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    version     BIGINT      NOT NULL DEFAULT 1,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO lookup_version DEFAULT VALUES;

CREATE FUNCTION bump_lookup_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE lookup_version SET version = version + 1, updated_at = now();
    RETURN NULL;
END $$;

CREATE TRIGGER residence_types_version AFTER INSERT OR UPDATE OR DELETE ON residence_types
    FOR EACH STATEMENT EXECUTE FUNCTION bump_lookup_version();
CREATE TRIGGER task_categories_version AFTER INSERT OR UPDATE OR DELETE ON task_categories
    FOR EACH STATEMENT EXECUTE FUNCTION bump_lookup_version();
CREATE TRIGGER task_priorities_version AFTER INSERT OR UPDATE OR DELETE ON task_priorities
    FOR EACH STATEMENT EXECUTE FUNCTION bump_lookup_version();
CREATE TRIGGER task_frequencies_version AFTER INSERT OR UPDATE OR DELETE ON task_frequencies
    FOR EACH STATEMENT EXECUTE FUNCTION bump_lookup_version();
CREATE TRIGGER contractor_specialties_version AFTER INSERT OR UPDATE OR DELETE ON contractor_specialties
    FOR EACH STATEMENT EXECUTE FUNCTION bump_lookup_version();

INSERT INTO residence_types (name, sort_order) VALUES
    ('House', 1), ('Apartment', 2), ('Condo', 3), ('Townhouse', 4), ('Mobile Home', 5),
    ('Cabin', 6), ('Vacation Home', 7), ('Other', 99);
INSERT INTO task_categories (name, icon, color, sort_order) VALUES
    ('Plumbing', 'drop', '#3182ce', 1), ('Electrical', 'bolt', '#d69e2e', 2), ('HVAC', 'fan', '#38a169', 3),
    ('Appliances', 'washer', '#805ad5', 4), ('Exterior', 'house', '#dd6b20', 5), ('Interior', 'sofa', '#319795', 6),
    ('Lawn & Garden', 'leaf', '#48bb78', 7), ('Safety', 'shield', '#e53e3e', 8), ('Cleaning', 'sparkles', '#4299e1', 9),
    ('Pest Control', 'bug', '#975a16', 10), ('Roofing', 'roof', '#718096', 11), ('Other', 'dots', '#a0aec0', 99);
INSERT INTO task_priorities (name, level, color, sort_order) VALUES
    ('Low', 1, '#48bb78', 1), ('Medium', 2, '#ecc94b', 2), ('High', 3, '#ed8936', 3), ('Urgent', 4, '#e53e3e', 4);
INSERT INTO task_frequencies (name, interval_days, interval_months, reminder_offsets, sort_order) VALUES
    ('Once', NULL, NULL, '{0}', 1),
    ('Daily', 1, NULL, '{0}', 2),
    ('Weekly', 7, NULL, '{0}', 3),
    ('Bi-Weekly', 14, NULL, '{1,0}', 4),
    ('Monthly', NULL, 1, '{3,0}', 5),
    ('Quarterly', NULL, 3, '{7,3,0}', 6),
    ('Semi-Annually', NULL, 6, '{7,3,0}', 7),
    ('Annually', NULL, 12, '{30,14,7,0}', 8);
INSERT INTO contractor_specialties (name, sort_order) VALUES
    ('Plumber', 1), ('Electrician', 2), ('HVAC Technician', 3), ('Handyman', 4), ('Landscaper', 5),
    ('Roofer', 6), ('Painter', 7), ('Pest Control', 8), ('Cleaner', 9), ('Appliance Repair', 10),
    ('General Contractor', 11), ('Other', 99);

-- ---- residences -------------------------------------------------------------
CREATE TABLE residences (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id           BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name               TEXT        NOT NULL,
    residence_type_id  INTEGER     REFERENCES residence_types (id) ON DELETE SET NULL,
    street             TEXT        NOT NULL DEFAULT '',
    city               TEXT        NOT NULL DEFAULT '',
    state              TEXT        NOT NULL DEFAULT '',
    postal_code        TEXT        NOT NULL DEFAULT '',
    country            TEXT        NOT NULL DEFAULT '',
    year_built         INTEGER,
    sqft               INTEGER,
    bedrooms           INTEGER,
    bathrooms          NUMERIC(4,1),
    purchase_date      DATE,
    notes              TEXT        NOT NULL DEFAULT '',
    image_upload_id    UUID,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT residences_year_built_check CHECK (year_built IS NULL OR year_built BETWEEN 1600 AND 2200),
    CONSTRAINT residences_sizes_check CHECK ((sqft IS NULL OR sqft >= 0) AND (bedrooms IS NULL OR bedrooms >= 0)
                                             AND (bathrooms IS NULL OR bathrooms >= 0))
);
CREATE INDEX residences_owner_id_idx ON residences (owner_id);

CREATE TABLE residence_members (
    residence_id  BIGINT      NOT NULL REFERENCES residences (id) ON DELETE CASCADE,
    user_id       BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role          TEXT        NOT NULL,
    joined_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (residence_id, user_id),
    CONSTRAINT residence_members_role_check CHECK (role IN ('owner', 'member', 'viewer'))
);
CREATE INDEX residence_members_user_id_idx ON residence_members (user_id, residence_id);

-- One active share code per residence.
CREATE TABLE residence_share_codes (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    residence_id  BIGINT      NOT NULL REFERENCES residences (id) ON DELETE CASCADE,
    code          TEXT        NOT NULL,
    role          TEXT        NOT NULL DEFAULT 'member',
    created_by    BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT residence_share_codes_code_key UNIQUE (code),
    CONSTRAINT residence_share_codes_residence_key UNIQUE (residence_id),
    CONSTRAINT residence_share_codes_role_check CHECK (role IN ('member', 'viewer'))
);
CREATE INDEX residence_share_codes_expires_at_idx ON residence_share_codes (expires_at);

-- ---- contractors -------------------------------------------------------------
CREATE TABLE contractors (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id      BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    residence_id  BIGINT      REFERENCES residences (id) ON DELETE CASCADE,
    name          TEXT        NOT NULL,
    company       TEXT        NOT NULL DEFAULT '',
    phone         TEXT        NOT NULL DEFAULT '',
    email         TEXT        NOT NULL DEFAULT '',
    website       TEXT        NOT NULL DEFAULT '',
    notes         TEXT        NOT NULL DEFAULT '',
    is_favorite   BOOLEAN     NOT NULL DEFAULT FALSE,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX contractors_owner_id_idx ON contractors (owner_id);
CREATE INDEX contractors_residence_id_idx ON contractors (residence_id);

CREATE TABLE contractor_specialty_links (
    contractor_id  BIGINT  NOT NULL REFERENCES contractors (id) ON DELETE CASCADE,
    specialty_id   INTEGER NOT NULL REFERENCES contractor_specialties (id) ON DELETE CASCADE,
    PRIMARY KEY (contractor_id, specialty_id)
);

-- ---- tasks ------------------------------------------------------------------
CREATE TABLE tasks (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    residence_id          BIGINT        NOT NULL REFERENCES residences (id) ON DELETE CASCADE,
    created_by            BIGINT        REFERENCES users (id) ON DELETE SET NULL,
    title                 TEXT          NOT NULL,
    description           TEXT          NOT NULL DEFAULT '',
    category_id           INTEGER       REFERENCES task_categories (id) ON DELETE SET NULL,
    priority_id           INTEGER       REFERENCES task_priorities (id) ON DELETE SET NULL,
    frequency_id          INTEGER       REFERENCES task_frequencies (id) ON DELETE SET NULL,
    custom_interval_days  INTEGER,
    recurrence_anchor     TEXT          NOT NULL DEFAULT 'due_date',
    due_date              DATE,
    next_due_date         DATE,
    assigned_to           BIGINT        REFERENCES users (id) ON DELETE SET NULL,
    contractor_id         BIGINT        REFERENCES contractors (id) ON DELETE SET NULL,
    estimated_cost        NUMERIC(12,2),
    in_progress           BOOLEAN       NOT NULL DEFAULT FALSE,
    is_cancelled          BOOLEAN       NOT NULL DEFAULT FALSE,
    is_archived           BOOLEAN       NOT NULL DEFAULT FALSE,
    created_at            TIMESTAMPTZ   NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ   NOT NULL DEFAULT now(),
    CONSTRAINT tasks_recurrence_anchor_check CHECK (recurrence_anchor IN ('due_date', 'completion')),
    CONSTRAINT tasks_custom_interval_check CHECK (custom_interval_days IS NULL OR custom_interval_days BETWEEN 1 AND 3650),
    CONSTRAINT tasks_estimated_cost_check CHECK (estimated_cost IS NULL OR estimated_cost >= 0)
);
-- The board: one residence's live tasks by due date.
CREATE INDEX tasks_board_idx ON tasks (residence_id, next_due_date) WHERE NOT is_archived;
CREATE INDEX tasks_assigned_to_idx ON tasks (assigned_to) WHERE assigned_to IS NOT NULL;
-- Reminder scans: live tasks by due date across residences.
CREATE INDEX tasks_due_scan_idx ON tasks (next_due_date) WHERE NOT is_archived AND NOT is_cancelled;

CREATE TABLE task_completions (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id          BIGINT        NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    completed_by     BIGINT        REFERENCES users (id) ON DELETE SET NULL,
    completed_at     TIMESTAMPTZ   NOT NULL,
    -- The occurrence (due date) this completion closed; NULL for a task
    -- without a due date.
    occurrence_date  DATE,
    -- The task's next_due_date before this completion (to undo it).
    previous_due_date DATE,
    notes            TEXT          NOT NULL DEFAULT '',
    actual_cost      NUMERIC(12,2),
    rating           SMALLINT,
    contractor_id    BIGINT        REFERENCES contractors (id) ON DELETE SET NULL,
    idempotency_key  TEXT,
    created_at       TIMESTAMPTZ   NOT NULL DEFAULT now(),
    CONSTRAINT task_completions_occurrence_key UNIQUE (task_id, occurrence_date),
    CONSTRAINT task_completions_idempotency_key UNIQUE (task_id, idempotency_key),
    CONSTRAINT task_completions_rating_check CHECK (rating IS NULL OR rating BETWEEN 1 AND 5),
    CONSTRAINT task_completions_actual_cost_check CHECK (actual_cost IS NULL OR actual_cost >= 0)
);
CREATE INDEX task_completions_task_id_idx ON task_completions (task_id, completed_at DESC);
CREATE INDEX task_completions_completed_at_idx ON task_completions (completed_at);
