-- Scheduled jobs: one row per (job, scheduled hour) claimed by the run that
-- serves it, and ledgers that make every scheduled message go out once.

CREATE TABLE job_runs (
    job            TEXT        NOT NULL,
    scheduled_for  TIMESTAMPTZ NOT NULL,
    status         TEXT        NOT NULL DEFAULT 'running',
    attempts       INTEGER     NOT NULL DEFAULT 1,
    started_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at    TIMESTAMPTZ,
    stats          JSONB       NOT NULL DEFAULT '{}'::jsonb,
    last_error     TEXT,
    PRIMARY KEY (job, scheduled_for),
    CONSTRAINT job_runs_status_check CHECK (status IN ('running', 'done', 'failed'))
);

-- Due-soon and overdue reminders: one row per (kind, task, recipient,
-- occurrence, offset). A rescheduled task is a new occurrence.
CREATE TABLE task_reminder_log (
    kind         TEXT        NOT NULL,
    task_id      BIGINT      NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    user_id      BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    due_date     DATE        NOT NULL,
    offset_days  INTEGER     NOT NULL,
    sent_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, task_id, user_id, due_date, offset_days),
    CONSTRAINT task_reminder_log_kind_check CHECK (kind IN ('due_soon', 'overdue'))
);
CREATE INDEX task_reminder_log_sent_at_idx ON task_reminder_log (sent_at);

CREATE TABLE warranty_reminder_log (
    document_id  BIGINT      NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    user_id      BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expiry_date  DATE        NOT NULL,
    offset_days  INTEGER     NOT NULL,
    sent_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, user_id, expiry_date, offset_days)
);
CREATE INDEX warranty_reminder_log_sent_at_idx ON warranty_reminder_log (sent_at);

-- One digest per user and local date.
CREATE TABLE digest_log (
    user_id     BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    local_date  DATE        NOT NULL,
    sent_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, local_date)
);
CREATE INDEX digest_log_sent_at_idx ON digest_log (sent_at);

-- Each onboarding step once per user, ever (kept for the user's lifetime);
-- sent_for is the day of the run, which sends a user one step at most.
CREATE TABLE onboarding_emails (
    user_id    BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    step       TEXT        NOT NULL,
    sent_for   DATE        NOT NULL,
    sent_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    outbox_id  BIGINT      REFERENCES email_outbox (id) ON DELETE SET NULL,
    PRIMARY KEY (user_id, step),
    CONSTRAINT onboarding_emails_step_check CHECK (step IN ('welcome', 'verify_reminder', 'no_residence', 'no_tasks'))
);
CREATE INDEX onboarding_emails_sent_for_idx ON onboarding_emails (sent_for, user_id);

-- Is a user with local hour `pref` (NULL = `default_utc_hour`, in UTC) served
-- by the run for the UTC hour `h`? True when the local wall-clock time
-- pref:00 of the local day falls in (local(h - 1 hour), local(h)]: exactly
-- one run a day serves it, also on DST days (a skipped 02:00 is served at
-- 03:00, a repeated 01:00 only the first time) and in half-hour zones.
CREATE FUNCTION served_at(h TIMESTAMPTZ, tz TEXT, pref SMALLINT, default_utc_hour INTEGER)
RETURNS BOOLEAN LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN pref IS NULL THEN extract(hour FROM h AT TIME ZONE 'UTC') = default_utc_hour
        ELSE (h AT TIME ZONE tz)::date + make_interval(hours => pref) <= (h AT TIME ZONE tz)
         AND (h AT TIME ZONE tz)::date + make_interval(hours => pref) > ((h - interval '1 hour') AT TIME ZONE tz)
    END
$$;

-- Scans of onboarding (users by creation) and cleanup.
CREATE INDEX users_created_at_idx ON users (created_at);
CREATE INDEX uploads_confirmed_at_idx ON uploads (confirmed_at) WHERE status = 'confirmed';
CREATE INDEX notifications_read_at_idx ON notifications (read_at) WHERE read_at IS NOT NULL;
CREATE INDEX email_outbox_done_idx ON email_outbox (created_at) WHERE status <> 'pending';
