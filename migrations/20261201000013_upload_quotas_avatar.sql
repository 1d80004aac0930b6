-- Upload quotas by tier, the user's avatar as a real field, and uploads
-- marked for deletion (a replaced avatar) for the cleanup job to remove.

-- Per-account quotas over the uploads a user made that are pending or
-- confirmed, whatever their purpose. NULL = unlimited.
ALTER TABLE tier_limits
    ADD COLUMN max_upload_files        INTEGER,
    ADD COLUMN max_upload_total_bytes  BIGINT,
    ADD CONSTRAINT tier_limits_max_upload_files_check CHECK (max_upload_files >= 0),
    ADD CONSTRAINT tier_limits_max_upload_total_bytes_check CHECK (max_upload_total_bytes >= 0);
-- free: 200 files / 500 MiB; pro: 5,000 files / 10 GiB.
UPDATE tier_limits SET max_upload_files = 200, max_upload_total_bytes = 524288000 WHERE tier = 'free';
UPDATE tier_limits SET max_upload_files = 5000, max_upload_total_bytes = 10737418240 WHERE tier = 'pro';

-- 'deleted': no longer served or counted; the cleanup job deletes its object,
-- then its row, on its next run.
ALTER TABLE uploads DROP CONSTRAINT uploads_status_check;
ALTER TABLE uploads
    ADD COLUMN deleted_at TIMESTAMPTZ,
    ADD CONSTRAINT uploads_status_check CHECK (status IN ('pending', 'confirmed', 'deleted')),
    ADD CONSTRAINT uploads_deleted_at_check CHECK (status <> 'deleted' OR deleted_at IS NOT NULL);
CREATE INDEX uploads_deleted_idx ON uploads (deleted_at) WHERE status = 'deleted';

-- One current avatar per user. The index serves the cleanup's "is anyone's
-- avatar" test and the SET NULL when an upload row goes.
ALTER TABLE users
    ADD COLUMN avatar_upload_id UUID,
    ADD CONSTRAINT users_avatar_upload_id_fkey FOREIGN KEY (avatar_upload_id) REFERENCES uploads (id) ON DELETE SET NULL;
CREATE INDEX users_avatar_upload_id_idx ON users (avatar_upload_id) WHERE avatar_upload_id IS NOT NULL;

-- Until now every avatar a user ever confirmed was kept; the newest one
-- becomes their avatar, the others are unreferenced and the cleanup job
-- removes them.
UPDATE users u SET avatar_upload_id = a.id
  FROM (SELECT DISTINCT ON (user_id) id, user_id FROM uploads
         WHERE purpose = 'avatar' AND status = 'confirmed' AND user_id IS NOT NULL
         ORDER BY user_id, confirmed_at DESC NULLS LAST, created_at DESC) a
 WHERE a.user_id = u.id;

-- A user's avatar is a confirmed avatar upload of that same user, whoever
-- sets it: another user's upload can never be linked.
CREATE FUNCTION check_avatar_upload() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM uploads
                    WHERE id = NEW.avatar_upload_id AND user_id = NEW.id
                      AND purpose = 'avatar' AND status = 'confirmed') THEN
        RAISE EXCEPTION 'avatar_upload_id must be a confirmed avatar upload of the same user'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'users_avatar_upload_id_owner_check',
                  TABLE = 'users', COLUMN = 'avatar_upload_id';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER users_avatar_upload_id_owner_check AFTER INSERT OR UPDATE OF avatar_upload_id ON users
    FOR EACH ROW WHEN (NEW.avatar_upload_id IS NOT NULL) EXECUTE FUNCTION check_avatar_upload();
