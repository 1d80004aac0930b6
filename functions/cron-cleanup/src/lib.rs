//! `cron-cleanup`: daily. Deletes, in batches, what nobody may use any more.
//! Every cut-off is measured from the start of the UTC day the event stands
//! for (`T`), so a repeated run deletes nothing new.
//!
//! | what | deleted when |
//! |---|---|
//! | one-time codes | expired, or used, more than a day before T |
//! | app and admin tokens | expired before T, or revoked more than a day before T |
//! | residence share codes | expired before T |
//! | uploads never confirmed | created more than 24 h before T |
//! | confirmed uploads nothing uses | confirmed more than 24 h before T and not a residence image, completion photo, document file or any user's current avatar. This is how the files of a deleted account, task or residence, and avatars never made current, go. |
//! | uploads marked `deleted` (a replaced avatar) | marked before T |
//! | read notifications | read more than 90 days before T |
//! | reminder ledgers | more than 60 days old (longer than any offset) |
//! | digest ledger, job runs | more than 30 days old |
//! | outbox rows | sent more than 30 days, or dead more than 90 days, before T |
//!
//! Files go first: an upload row is deleted only after its object is gone
//! from the bucket (a missing object counts as gone). A failed object
//! deletion keeps the row for the next run and is counted in
//! `file_errors`. An upload something references is never deleted, whatever
//! its status: every foreign key to `uploads` (`residences.image_upload_id`,
//! `completion_images`, `document_files`, `users.avatar_upload_id`) is
//! tested. Onboarding records are kept (each step goes once, ever).
//!
//! Accounts are deleted at once by `DELETE /api/auth/account/` (their rows
//! cascade); there is no soft-deleted state to purge later. The files they
//! leave behind are the unused uploads above.

use chrono::{DateTime, Utc};
use honeydue_jobs::{Cadence, Ctx, Job, JobFuture};
use serde_json::{Map, Value};

/// The job.
pub static JOB: Job = Job {
    name: "cleanup",
    cadence: Cadence::Daily,
    mails: false,
    storage: true,
    run,
};

/// Rows per delete statement.
pub const BATCH: i64 = 5000;
/// Uploads per transaction (each is one call to the bucket).
pub const FILE_BATCH: i64 = 200;

/// Row rules: a name and a statement deleting up to `$2` rows given `T`
/// as `$1`.
pub const RULES: [(&str, &str); 11] = [
    (
        "user_codes",
        "DELETE FROM user_codes WHERE id IN (SELECT id FROM user_codes
        WHERE expires_at < $1 - interval '1 day' OR consumed_at < $1 - interval '1 day' LIMIT $2)",
    ),
    (
        "auth_tokens",
        "DELETE FROM auth_tokens WHERE id IN (SELECT id FROM auth_tokens
        WHERE expires_at < $1 OR revoked_at < $1 - interval '1 day' LIMIT $2)",
    ),
    (
        "admin_tokens",
        "DELETE FROM admin_tokens WHERE id IN (SELECT id FROM admin_tokens
        WHERE expires_at < $1 OR revoked_at < $1 - interval '1 day' LIMIT $2)",
    ),
    (
        "share_codes",
        "DELETE FROM residence_share_codes WHERE id IN (SELECT id FROM residence_share_codes
        WHERE expires_at < $1 LIMIT $2)",
    ),
    (
        "notifications",
        "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications
        WHERE read_at < $1 - interval '90 days' LIMIT $2)",
    ),
    (
        "task_reminder_log",
        "DELETE FROM task_reminder_log WHERE ctid IN (SELECT ctid FROM task_reminder_log
        WHERE sent_at < $1 - interval '60 days' LIMIT $2)",
    ),
    (
        "warranty_reminder_log",
        "DELETE FROM warranty_reminder_log WHERE ctid IN (SELECT ctid FROM warranty_reminder_log
        WHERE sent_at < $1 - interval '60 days' LIMIT $2)",
    ),
    (
        "digest_log",
        "DELETE FROM digest_log WHERE ctid IN (SELECT ctid FROM digest_log
        WHERE sent_at < $1 - interval '30 days' LIMIT $2)",
    ),
    (
        "job_runs",
        "DELETE FROM job_runs WHERE ctid IN (SELECT ctid FROM job_runs
        WHERE scheduled_for < $1 - interval '30 days' LIMIT $2)",
    ),
    (
        "outbox_sent",
        "DELETE FROM email_outbox WHERE id IN (SELECT id FROM email_outbox
        WHERE status = 'sent' AND created_at < $1 - interval '30 days' LIMIT $2)",
    ),
    (
        "outbox_dead",
        "DELETE FROM email_outbox WHERE id IN (SELECT id FROM email_outbox
        WHERE status = 'dead' AND created_at < $1 - interval '90 days' LIMIT $2)",
    ),
];

fn run(ctx: &Ctx, day: DateTime<Utc>) -> JobFuture<'_> {
    Box::pin(serve_day(ctx, day))
}

async fn serve_day(ctx: &Ctx, t: DateTime<Utc>) -> anyhow::Result<Value> {
    let mut stats = Map::new();
    let (files, file_errors) = uploads(ctx, t).await?;
    stats.insert("uploads".into(), files.into());
    stats.insert("file_errors".into(), file_errors.into());
    for (name, sql) in RULES {
        let mut total = 0u64;
        loop {
            let n = sqlx::query(sql)
                .bind(t)
                .bind(BATCH)
                .execute(&ctx.db)
                .await?
                .rows_affected();
            total += n;
            if n < BATCH as u64 {
                break;
            }
        }
        stats.insert(name.into(), total.into());
    }
    // Emails that carried a one-time code go a day after delivery (their
    // code was already replaced by a placeholder when they were sent).
    let codes = sqlx::query!(
        "DELETE FROM email_outbox WHERE status IN ('sent', 'dead') AND kind = ANY($2)
            AND created_at < $1::timestamptz - interval '1 day'",
        t,
        honeydue_mail::CODE_KINDS as &[&str]
    )
    .execute(&ctx.db)
    .await?
    .rows_affected();
    stats.insert("outbox_codes".into(), codes.into());
    let failures = sqlx::query!(
        "DELETE FROM share_code_failures WHERE failed_at < $1::timestamptz - interval '2 days'",
        t
    )
    .execute(&ctx.db)
    .await?
    .rows_affected();
    stats.insert("share_code_failures".into(), failures.into());
    Ok(Value::Object(stats))
}

/// Stale and unused uploads: the object, then the row. Rows are locked
/// while their objects go, so a concurrent attach waits and then fails
/// cleanly instead of pointing at a deleted file.
async fn uploads(ctx: &Ctx, t: DateTime<Utc>) -> anyhow::Result<(u64, u64)> {
    let storage = ctx.storage.as_ref().expect("cleanup reads the S3 settings");
    let (mut deleted, mut errors) = (0u64, 0u64);
    let mut failed: Vec<uuid::Uuid> = Vec::new();
    loop {
        let mut tx = ctx.db.begin().await?;
        let rows = sqlx::query!(
            r#"SELECT u.id, u.object_key FROM uploads u
                WHERE u.id <> ALL ($3::uuid[])
                  AND ((u.status = 'pending' AND u.created_at < $1::timestamptz - interval '24 hours')
                    OR (u.status = 'confirmed' AND u.confirmed_at < $1 - interval '24 hours')
                    OR (u.status = 'deleted' AND u.deleted_at < $1))
                  AND NOT EXISTS (SELECT 1 FROM completion_images c WHERE c.upload_id = u.id)
                  AND NOT EXISTS (SELECT 1 FROM document_files d WHERE d.upload_id = u.id)
                  AND NOT EXISTS (SELECT 1 FROM residences r WHERE r.image_upload_id = u.id)
                  AND NOT EXISTS (SELECT 1 FROM users a WHERE a.avatar_upload_id = u.id)
                ORDER BY u.created_at
                LIMIT $2
                FOR UPDATE SKIP LOCKED"#,
            t,
            FILE_BATCH,
            &failed
        )
        .fetch_all(&mut *tx)
        .await?;
        let claimed = rows.len() as i64;
        let mut gone = Vec::with_capacity(rows.len());
        for r in rows {
            match storage.delete(&r.object_key).await {
                Ok(()) => gone.push(r.id),
                Err(e) => {
                    tracing::error!(upload_id = %r.id, error = format!("{e:#}"), "cannot delete the file; the row stays");
                    errors += 1;
                    failed.push(r.id);
                }
            }
        }
        deleted += sqlx::query!("DELETE FROM uploads WHERE id = ANY ($1::uuid[])", &gone)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        if claimed < FILE_BATCH {
            break;
        }
    }
    Ok((deleted, errors))
}
