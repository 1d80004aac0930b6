-- Lists at scale (measured by scripts/bench_lists.py on 100,000 users and
-- 1,000,000 tasks; see BENCHMARKS.md).

-- Every task of a residence, archived or not, on an index. The board's
-- index was partial (NOT is_archived), so counting a residence's tasks (the
-- admin's residence list) and deleting a residence (its ON DELETE CASCADE)
-- read the whole table: 8 s for one page of the admin's residences. One
-- full index serves the board too (archived tasks are few; they are
-- filtered on the way).
CREATE INDEX tasks_residence_idx ON tasks (residence_id, next_due_date);
DROP INDEX tasks_board_idx;

-- The completion figures every board row shows, kept on the task by a
-- trigger rather than counted per row on each read: the board ran two
-- correlated sub-selects per task (4,000 index probes for a 2,000-task
-- household). The trigger covers every writer (the API, the admin, bulk
-- SQL, cascades).
ALTER TABLE tasks
    ADD COLUMN completion_count  BIGINT      NOT NULL DEFAULT 0,
    ADD COLUMN last_completed_at TIMESTAMPTZ;

UPDATE tasks t
   SET completion_count = s.n, last_completed_at = s.last
  FROM (SELECT task_id, count(*) AS n, max(completed_at) AS last FROM task_completions GROUP BY task_id) s
 WHERE s.task_id = t.id;

CREATE FUNCTION task_completion_figures() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        -- The task row first, so that the max below is read after any
        -- concurrent writer of this task's completions has committed.
        PERFORM 1 FROM tasks WHERE id = OLD.task_id FOR UPDATE;
        UPDATE tasks
           SET completion_count = completion_count - 1,
               last_completed_at = (SELECT max(c.completed_at) FROM task_completions c WHERE c.task_id = OLD.task_id)
         WHERE id = OLD.task_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE tasks
           SET completion_count = completion_count + 1,
               last_completed_at = GREATEST(last_completed_at, NEW.completed_at)
         WHERE id = NEW.task_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER task_completions_figures
    AFTER INSERT OR DELETE OR UPDATE OF task_id, completed_at ON task_completions
    FOR EACH ROW EXECUTE FUNCTION task_completion_figures();

-- The admin's user search (`?search=`, a substring of the email or the
-- name) on trigram indexes instead of a scan of every user (110 ms at
-- 100,000 users). pg_trgm is a trusted extension: the database owner may
-- create it (RDS and Aurora ship it).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX users_email_trgm_idx ON users USING gin (email gin_trgm_ops);
CREATE INDEX users_name_trgm_idx ON users USING gin (lower(first_name || ' ' || last_name) gin_trgm_ops);
CREATE INDEX residences_name_trgm_idx ON residences USING gin (lower(name) gin_trgm_ops);
