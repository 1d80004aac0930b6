-- The users a scheduled run for hour `h` serves for a notification kind,
-- among ids lo..hi (the jobs batch by id): active, the kind enabled, and
-- their preferred local hour for it (`served_at`; NULL = `default_utc_hour`)
-- beginning in this run. `today` is their local date at `h`; `send_email`
-- says whether the kind may reach them by email (verified address, email
-- on globally and for the kind). An unknown time zone counts as UTC.
-- One definition for every reminder and digest scan (inlined by the
-- planner: a single SQL SELECT).
CREATE FUNCTION served_users(h TIMESTAMPTZ, lo BIGINT, hi BIGINT, kind TEXT, default_utc_hour INTEGER)
RETURNS TABLE (id BIGINT, email TEXT, first_name TEXT, send_email BOOLEAN, today DATE)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT u.id, u.email, u.first_name,
           u.email_verified_at IS NOT NULL
             AND coalesce(p.email_enabled, TRUE)
             AND coalesce((p.kinds -> kind ->> 'email')::boolean, TRUE),
           (h AT TIME ZONE coalesce(z.name, 'UTC'))::date
      FROM users u
      LEFT JOIN notification_preferences p ON p.user_id = u.id
      LEFT JOIN pg_timezone_names z ON z.name = u.timezone
     WHERE u.is_active AND u.id BETWEEN lo AND hi
       AND coalesce((p.kinds -> kind ->> 'enabled')::boolean, TRUE)
       AND served_at(h, coalesce(z.name, 'UTC'),
                     CASE kind WHEN 'overdue' THEN p.overdue_hour
                               WHEN 'daily_digest' THEN p.digest_hour
                               ELSE p.due_soon_hour END,
                     default_utc_hour)
$$;
