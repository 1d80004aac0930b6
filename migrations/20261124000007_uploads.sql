-- Uploaded files: the database keeps keys, the bucket keeps bytes. Keys are
-- random (uploads/<uuid>) and never reveal who uploaded what.
CREATE TABLE uploads (
    id             UUID        PRIMARY KEY,
    user_id        BIGINT      REFERENCES users (id) ON DELETE SET NULL,
    residence_id   BIGINT      REFERENCES residences (id) ON DELETE SET NULL,
    purpose        TEXT        NOT NULL,
    object_key     TEXT        NOT NULL,
    filename       TEXT        NOT NULL,
    content_type   TEXT        NOT NULL,
    size_bytes     BIGINT      NOT NULL,
    status         TEXT        NOT NULL DEFAULT 'pending',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    confirmed_at   TIMESTAMPTZ,
    CONSTRAINT uploads_object_key_key UNIQUE (object_key),
    CONSTRAINT uploads_purpose_check CHECK (purpose IN ('residence_image', 'completion_photo', 'document_file', 'avatar')),
    CONSTRAINT uploads_status_check CHECK (status IN ('pending', 'confirmed')),
    CONSTRAINT uploads_size_check CHECK (size_bytes > 0)
);
CREATE INDEX uploads_user_id_idx ON uploads (user_id);
CREATE INDEX uploads_residence_id_idx ON uploads (residence_id);
-- The cleanup job removes pending uploads older than a day.
CREATE INDEX uploads_pending_idx ON uploads (created_at) WHERE status = 'pending';

CREATE TABLE completion_images (
    completion_id  BIGINT NOT NULL REFERENCES task_completions (id) ON DELETE CASCADE,
    upload_id      UUID   NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    PRIMARY KEY (completion_id, upload_id)
);
CREATE INDEX completion_images_upload_idx ON completion_images (upload_id);

CREATE TABLE document_files (
    document_id  BIGINT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    upload_id    UUID   NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    PRIMARY KEY (document_id, upload_id)
);
CREATE INDEX document_files_upload_idx ON document_files (upload_id);

ALTER TABLE residences
    ADD CONSTRAINT residences_image_upload_id_fkey FOREIGN KEY (image_upload_id) REFERENCES uploads (id) ON DELETE SET NULL;
