//! Cleanup against real Postgres and a real S3 server (moto): each rule
//! deletes what is past its cut-off and nothing else; files go before their
//! rows; a bucket outage keeps the rows for the next run.

use std::time::Duration;

use cron_cleanup::JOB;
use honeydue_jobs::{run_event, Ctx};
use honeydue_testkit::fixtures::{document, exec, residence, task, upload, user};
use honeydue_testkit::jobs::CtxBuilder;
use honeydue_testkit::s3::TestS3;
use honeydue_testkit::TestDb;
use serde_json::json;
use sqlx::PgPool;

async fn put_object(ctx: &Ctx, key: &str) {
    let storage = ctx.storage.as_ref().unwrap();
    let url = storage
        .presign_put(key, "image/jpeg", 3, Duration::from_secs(60))
        .await
        .unwrap();
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let addr = host.parse().unwrap();
    let path = format!("/{path}");
    let r = tokio::task::spawn_blocking(move || {
        honeydue_testkit::wire::request(
            addr,
            "PUT",
            &path,
            &[("content-type", "image/jpeg")],
            b"abc",
        )
        .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn exists(ctx: &Ctx, key: &str) -> bool {
    ctx.storage
        .as_ref()
        .unwrap()
        .head(key)
        .await
        .unwrap()
        .is_some()
}

async fn ids(p: &PgPool, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sql).fetch_all(p).await.unwrap()
}

async fn key_of(p: &PgPool, id: uuid::Uuid) -> String {
    sqlx::query_scalar("SELECT object_key FROM uploads WHERE id = $1")
        .bind(id)
        .fetch_one(p)
        .await
        .unwrap()
}

#[tokio::test]
async fn deletes_exactly_what_is_past_its_cut_off() {
    let db = TestDb::new().await;
    let p = &db.pool;
    let s3 = tokio::task::spawn_blocking(TestS3::start).await.unwrap();
    let c = CtxBuilder::new(&db, &JOB)
        .s3(&s3, "cleanup-test")
        .build()
        .await;
    c.storage.as_ref().unwrap().ensure_bucket().await.unwrap();
    // The run stands for 2026-06-10 (T = 2026-06-10T00:00Z).
    let (ann, _) = user(p, "ann@example.com").await;
    let home = residence(p, ann, "Home").await;

    // Codes and tokens: old vs recent.
    exec(
        p,
        &format!(
            "INSERT INTO user_codes (user_id, purpose, code_hash, expires_at, consumed_at) VALUES
        ({ann}, 'verify_email', 'old-expired', '2026-06-08T00:00Z', NULL),
        ({ann}, 'verify_email', 'old-used', '2026-06-20T00:00Z', '2026-06-08T00:00Z'),
        ({ann}, 'reset_password', 'keep-live', '2026-06-10T12:00Z', NULL),
        ({ann}, 'reset_password', 'keep-just-expired', '2026-06-09T12:00Z', NULL)"
        ),
    )
    .await;
    exec(p, "DELETE FROM auth_tokens").await; // the fixture's own token
    exec(
        p,
        &format!(
            "INSERT INTO auth_tokens (user_id, token_hash, expires_at, revoked_at) VALUES
        ({ann}, decode(repeat('01', 32), 'hex'), '2026-06-09T00:00Z', NULL),
        ({ann}, decode(repeat('02', 32), 'hex'), '2027-01-01T00:00Z', '2026-06-08T00:00Z'),
        ({ann}, decode(repeat('03', 32), 'hex'), '2027-01-01T00:00Z', '2026-06-09T12:00Z'),
        ({ann}, decode(repeat('04', 32), 'hex'), '2027-01-01T00:00Z', NULL)"
        ),
    )
    .await;
    exec(p, &format!("INSERT INTO residence_share_codes (residence_id, code, expires_at) VALUES ({home}, 'STALEAB2', '2026-06-09T00:00Z')")).await;
    let home2 = residence(p, ann, "Cabin").await;
    exec(p, &format!("INSERT INTO residence_share_codes (residence_id, code, expires_at) VALUES ({home2}, 'LYVEABC2', '2026-06-11T00:00Z')")).await;
    // Notifications: read long ago, read lately, unread and old.
    exec(
        p,
        &format!(
            "INSERT INTO notifications (user_id, kind, title, read_at, created_at) VALUES
        ({ann}, 'due_soon', 'read-old', '2026-03-01T00:00Z', '2026-02-01T00:00Z'),
        ({ann}, 'due_soon', 'read-recent', '2026-05-01T00:00Z', '2026-02-01T00:00Z'),
        ({ann}, 'due_soon', 'unread-old', NULL, '2025-01-01T00:00Z')"
        ),
    )
    .await;
    // Ledgers and runs.
    let t = task(p, home, "Task", "2026-06-10", None, None).await;
    exec(p, &format!("INSERT INTO task_reminder_log (kind, task_id, user_id, due_date, offset_days, sent_at) VALUES
        ('due_soon', {t}, {ann}, '2026-04-01', 0, '2026-04-01T14:00Z'),
        ('due_soon', {t}, {ann}, '2026-05-01', 0, '2026-05-01T14:00Z')")).await;
    exec(
        p,
        &format!(
            "INSERT INTO digest_log (user_id, local_date, sent_at) VALUES
        ({ann}, '2026-05-01', '2026-05-01T03:00Z'), ({ann}, '2026-06-01', '2026-06-01T03:00Z')"
        ),
    )
    .await;
    exec(p, "INSERT INTO job_runs (job, scheduled_for, status) VALUES
        ('task-reminders', '2026-05-01T14:00Z', 'done'), ('task-reminders', '2026-06-01T14:00Z', 'done')").await;
    exec(p, &format!("INSERT INTO email_outbox (user_id, kind, to_address, subject, body_text, status, created_at) VALUES
        ({ann}, 'x', 'a@x.test', 'sent-old', '', 'sent', '2026-05-01T00:00Z'),
        ({ann}, 'x', 'a@x.test', 'sent-recent', '', 'sent', '2026-06-01T00:00Z'),
        ({ann}, 'x', 'a@x.test', 'dead-recent', '', 'dead', '2026-05-01T00:00Z'),
        ({ann}, 'x', 'a@x.test', 'dead-old', '', 'dead', '2026-02-01T00:00Z'),
        ({ann}, 'x', 'a@x.test', 'pending-old', '', 'pending', '2026-01-01T00:00Z'),
        ({ann}, 'verify_email', 'a@x.test', 'code-sent-2-days', '', 'sent', '2026-06-08T00:00Z'),
        ({ann}, 'password_reset', 'a@x.test', 'code-dead-2-days', '', 'dead', '2026-06-08T00:00Z'),
        ({ann}, 'verify_email', 'a@x.test', 'code-sent-today', '', 'sent', '2026-06-09T12:00Z'),
        ({ann}, 'password_reset', 'a@x.test', 'code-pending', '', 'pending', '2026-06-01T00:00Z')")).await;

    // Uploads, each with its object in the bucket.
    let stale_pending = upload(p, ann, Some(home), "completion_photo", "pending").await;
    let fresh_pending = upload(p, ann, Some(home), "completion_photo", "pending").await;
    let orphan = upload(p, ann, Some(home), "completion_photo", "confirmed").await;
    let attached = upload(p, ann, Some(home), "document_file", "confirmed").await;
    let image = upload(p, ann, Some(home), "residence_image", "confirmed").await;
    let avatar = upload(p, ann, None, "avatar", "confirmed").await;
    let deleted_users = upload(p, ann, None, "avatar", "confirmed").await;
    exec(p, "UPDATE uploads SET created_at = '2026-06-08T00:00Z', confirmed_at = CASE WHEN status = 'confirmed' THEN timestamptz '2026-06-08T00:10Z' END").await;
    exec(
        p,
        &format!(
            "UPDATE uploads SET created_at = '2026-06-09T12:00Z' WHERE id = '{fresh_pending}'"
        ),
    )
    .await;
    exec(
        p,
        &format!("UPDATE uploads SET user_id = NULL WHERE id = '{deleted_users}'"),
    )
    .await;
    let doc = honeydue_testkit::fixtures::document(p, home, "Manual", "manual", "2030-01-01").await;
    exec(
        p,
        &format!(
            "INSERT INTO document_files (document_id, upload_id) VALUES ({doc}, '{attached}')"
        ),
    )
    .await;
    exec(
        p,
        &format!("UPDATE residences SET image_upload_id = '{image}' WHERE id = {home}"),
    )
    .await;
    exec(
        p,
        &format!("UPDATE users SET avatar_upload_id = '{avatar}' WHERE id = {ann}"),
    )
    .await;
    let mut keys = Vec::new();
    for id in [
        stale_pending,
        fresh_pending,
        orphan,
        attached,
        image,
        avatar,
        deleted_users,
    ] {
        let k = key_of(p, id).await;
        put_object(&c, &k).await;
        keys.push((id, k));
    }

    let r = run_event(&c, &JOB, &json!({"time": "2026-06-10T04:30:00Z"}))
        .await
        .unwrap();
    let stats = &r.served[0].stats;
    assert_eq!(stats["uploads"], 3, "{stats}");
    assert_eq!(stats["file_errors"], 0);

    let gone = [stale_pending, orphan, deleted_users];
    for (id, k) in &keys {
        let row: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM uploads WHERE id = $1)")
            .bind(id)
            .fetch_one(p)
            .await
            .unwrap();
        let want = !gone.contains(id);
        assert_eq!(row, want, "upload row {id}");
        assert_eq!(exists(&c, k).await, want, "object {k}");
    }
    assert_eq!(
        ids(
            p,
            "SELECT convert_from(code_hash, 'UTF8') FROM user_codes ORDER BY 1"
        )
        .await,
        ["keep-just-expired", "keep-live"]
    );
    let tokens: Vec<i64> =
        sqlx::query_scalar("SELECT get_byte(token_hash, 0)::bigint FROM auth_tokens ORDER BY 1")
            .fetch_all(p)
            .await
            .unwrap();
    assert_eq!(tokens, [3, 4], "expired and long-revoked tokens go");
    assert_eq!(
        ids(p, "SELECT code FROM residence_share_codes").await,
        ["LYVEABC2"]
    );
    assert_eq!(
        ids(p, "SELECT title FROM notifications ORDER BY 1").await,
        ["read-recent", "unread-old"]
    );
    assert_eq!(
        ids(p, "SELECT due_date::text FROM task_reminder_log").await,
        ["2026-05-01"]
    );
    assert_eq!(
        ids(p, "SELECT local_date::text FROM digest_log").await,
        ["2026-06-01"]
    );
    assert_eq!(
        ids(
            p,
            "SELECT scheduled_for::date::text FROM job_runs WHERE job = 'task-reminders'"
        )
        .await,
        ["2026-06-01"]
    );
    assert_eq!(
        ids(p, "SELECT subject FROM email_outbox ORDER BY 1").await,
        [
            "code-pending",
            "code-sent-today",
            "dead-recent",
            "pending-old",
            "sent-recent"
        ],
        "emails that carried a code go a day after delivery"
    );
    // Nothing else in the tables it touches went.
    assert_eq!(
        ids(p, "SELECT name FROM residences ORDER BY 1").await,
        ["Cabin", "Home"]
    );
    assert_eq!(ids(p, "SELECT title FROM tasks").await, ["Task"]);

    // A second run for the same day: skipped. Another day later: nothing new to delete.
    let r = run_event(&c, &JOB, &json!({"time": "2026-06-10T23:00:00Z"}))
        .await
        .unwrap();
    assert!(r.served.is_empty());
}

#[tokio::test]
async fn bucket_outage_keeps_rows_for_the_next_run() {
    let db = TestDb::new().await;
    let p = &db.pool;
    let mut s3 = tokio::task::spawn_blocking(TestS3::start).await.unwrap();
    let (ann, _) = user(p, "ann@example.com").await;
    let stale = upload(p, ann, None, "completion_photo", "pending").await;
    exec(p, "UPDATE uploads SET created_at = '2026-06-01T00:00Z'").await;
    let c = CtxBuilder::new(&db, &JOB)
        .s3(&s3, "cleanup-test")
        .build()
        .await;
    s3.stop();
    let r = run_event(&c, &JOB, &json!({"time": "2026-06-10T04:30:00Z"}))
        .await
        .unwrap();
    assert_eq!(r.served[0].stats["uploads"], 0);
    assert_eq!(r.served[0].stats["file_errors"], 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads WHERE id = $1")
        .bind(stale)
        .fetch_one(p)
        .await
        .unwrap();
    assert_eq!(left, 1, "the row stays while its file may still exist");
    // The bucket is back: the next day's run deletes it (a missing object counts as gone).
    let s3 = tokio::task::spawn_blocking(TestS3::start).await.unwrap();
    let c = CtxBuilder::new(&db, &JOB)
        .s3(&s3, "cleanup-test")
        .build()
        .await;
    c.storage.as_ref().unwrap().ensure_bucket().await.unwrap();
    let r = run_event(&c, &JOB, &json!({"time": "2026-06-11T04:30:00Z"}))
        .await
        .unwrap();
    assert_eq!(r.served[0].stats["uploads"], 1);
}

/// Asserts that the row and the object of each of `keys` are there unless
/// listed in `gone`.
async fn assert_gone(c: &Ctx, p: &PgPool, keys: &[(uuid::Uuid, String)], gone: &[uuid::Uuid]) {
    for (id, k) in keys {
        let row: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM uploads WHERE id = $1)")
            .bind(id)
            .fetch_one(p)
            .await
            .unwrap();
        let want = !gone.contains(id);
        assert_eq!(row, want, "upload row {id}");
        assert_eq!(exists(c, k).await, want, "object {k}");
    }
}

#[tokio::test]
async fn only_referenced_uploads_and_current_avatars_outlive_the_grace() {
    let db = TestDb::new().await;
    let p = &db.pool;
    let s3 = tokio::task::spawn_blocking(TestS3::start).await.unwrap();
    let c = CtxBuilder::new(&db, &JOB)
        .s3(&s3, "cleanup-test")
        .build()
        .await;
    c.storage.as_ref().unwrap().ensure_bucket().await.unwrap();
    // T = 2026-06-10T00:00Z: confirmed before 2026-06-09T00:00Z is past the grace.
    let (ann, _) = user(p, "ann@example.com").await;
    let (bob, _) = user(p, "bob@example.com").await;
    let home = residence(p, ann, "Home").await;
    let t = task(p, home, "Filter", "2026-06-01", None, None).await;
    let doc = document(p, home, "Manual", "manual", "2030-01-01").await;

    let current = upload(p, ann, None, "avatar", "confirmed").await;
    let previous = upload(p, ann, None, "avatar", "confirmed").await;
    let bobs = upload(p, bob, None, "avatar", "confirmed").await;
    let replaced = upload(p, ann, None, "avatar", "confirmed").await;
    let replaced_after_t = upload(p, ann, None, "avatar", "confirmed").await;
    let image = upload(p, ann, Some(home), "residence_image", "confirmed").await;
    let unused_image = upload(p, ann, Some(home), "residence_image", "confirmed").await;
    let photo = upload(p, ann, Some(home), "completion_photo", "confirmed").await;
    let unused_photo = upload(p, ann, Some(home), "completion_photo", "confirmed").await;
    let file = upload(p, ann, Some(home), "document_file", "confirmed").await;
    let unused_file = upload(p, ann, Some(home), "document_file", "confirmed").await;
    let recent = upload(p, ann, Some(home), "completion_photo", "confirmed").await;
    exec(
        p,
        "UPDATE uploads SET created_at = '2026-06-08T00:00Z', confirmed_at = '2026-06-08T23:59Z'",
    )
    .await;
    exec(
        p,
        &format!("UPDATE uploads SET confirmed_at = '2026-06-09T00:01Z' WHERE id = '{recent}'"),
    )
    .await;
    exec(p, &format!("UPDATE uploads SET status = 'deleted', deleted_at = '2026-06-09T18:00Z' WHERE id = '{replaced}'")).await;
    exec(p, &format!("UPDATE uploads SET status = 'deleted', deleted_at = '2026-06-10T02:00Z' WHERE id = '{replaced_after_t}'")).await;
    exec(
        p,
        &format!("UPDATE users SET avatar_upload_id = '{current}' WHERE id = {ann}"),
    )
    .await;
    exec(
        p,
        &format!("UPDATE users SET avatar_upload_id = '{bobs}' WHERE id = {bob}"),
    )
    .await;
    exec(
        p,
        &format!("UPDATE residences SET image_upload_id = '{image}' WHERE id = {home}"),
    )
    .await;
    let completion: i64 = sqlx::query_scalar(
        "INSERT INTO task_completions (task_id, completed_by, completed_at)
         VALUES ($1, $2, '2026-06-01T10:00Z') RETURNING id",
    )
    .bind(t)
    .bind(ann)
    .fetch_one(p)
    .await
    .unwrap();
    exec(
        p,
        &format!(
            "INSERT INTO completion_images (completion_id, upload_id) VALUES ({completion}, '{photo}')"
        ),
    )
    .await;
    exec(
        p,
        &format!("INSERT INTO document_files (document_id, upload_id) VALUES ({doc}, '{file}')"),
    )
    .await;
    let mut keys = Vec::new();
    for id in [
        current,
        previous,
        bobs,
        replaced,
        replaced_after_t,
        image,
        unused_image,
        photo,
        unused_photo,
        file,
        unused_file,
        recent,
    ] {
        let k = key_of(p, id).await;
        put_object(&c, &k).await;
        keys.push((id, k));
    }

    // An avatar that is no one's current avatar goes like any unused file;
    // one marked for deletion goes once marked before T.
    let r = run_event(&c, &JOB, &json!({"time": "2026-06-10T04:30:00Z"}))
        .await
        .unwrap();
    assert_eq!(r.served[0].stats["uploads"], 5, "{}", r.served[0].stats);
    assert_eq!(r.served[0].stats["file_errors"], 0);
    let mut gone = vec![previous, replaced, unused_image, unused_photo, unused_file];
    assert_gone(&c, p, &keys, &gone).await;

    // A day later: the avatar marked after T, and the photo once its grace is over.
    let r = run_event(&c, &JOB, &json!({"time": "2026-06-11T04:30:00Z"}))
        .await
        .unwrap();
    assert_eq!(r.served[0].stats["uploads"], 2, "{}", r.served[0].stats);
    gone.extend([replaced_after_t, recent]);
    assert_gone(&c, p, &keys, &gone).await;

    // What is referenced stays however old; once nothing references it, it goes.
    exec(
        p,
        &format!("UPDATE users SET avatar_upload_id = NULL WHERE id = {bob}"),
    )
    .await;
    exec(
        p,
        &format!("UPDATE residences SET image_upload_id = NULL WHERE id = {home}"),
    )
    .await;
    exec(
        p,
        &format!("DELETE FROM task_completions WHERE id = {completion}"),
    )
    .await;
    let r = run_event(&c, &JOB, &json!({"time": "2026-06-12T04:30:00Z"}))
        .await
        .unwrap();
    assert_eq!(r.served[0].stats["uploads"], 3, "{}", r.served[0].stats);
    gone.extend([bobs, image, photo]);
    assert_gone(&c, p, &keys, &gone).await;
    let avatar: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT avatar_upload_id FROM users WHERE id = $1")
            .bind(ann)
            .fetch_one(p)
            .await
            .unwrap();
    assert_eq!(avatar, Some(current), "the current avatar is kept");
}

#[tokio::test]
async fn every_reference_to_uploads_is_tested_by_the_cleanup() {
    let db = TestDb::new().await;
    // Every foreign key to uploads, as `table.column`.
    let refs: Vec<String> = sqlx::query_scalar(
        "SELECT c.conrelid::regclass::text || '.' || a.attname FROM pg_constraint c
           JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
          WHERE c.contype = 'f' AND c.confrelid = 'uploads'::regclass
          ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        refs.iter().any(|r| r == "users.avatar_upload_id"),
        "{refs:?}"
    );
    // The cleanup's query keeps an upload any of them points at: a new
    // reference needs its NOT EXISTS there, or referenced files would go.
    let src = include_str!("../src/lib.rs");
    for r in &refs {
        let (table, column) = r.split_once('.').unwrap();
        let test = format!("FROM {table} ");
        let link = format!(".{column} = u.id");
        assert!(
            src.lines()
                .any(|l| l.contains("NOT EXISTS") && l.contains(&test) && l.contains(&link)),
            "cron-cleanup does not test {r} before deleting an upload"
        );
    }
}
