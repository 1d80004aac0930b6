//! Onboarding emails: each step's window, each step once per user, at most
//! one step per user per day, email preferences.

use cron_onboarding_emails::JOB;
use honeydue_jobs::run_event;
use honeydue_testkit::fixtures::{exec, outbox, residence, task, user};
use honeydue_testkit::jobs::ctx;
use honeydue_testkit::TestDb;
use serde_json::json;
use sqlx::PgPool;

async fn signed_up(p: &PgPool, email: &str, created: &str, verified: Option<&str>) -> i64 {
    let (id, _) = user(p, email).await;
    let verified = verified.map_or("NULL".to_string(), |v| format!("'{v}'"));
    exec(p, &format!("UPDATE users SET created_at = '{created}', email_verified_at = {verified} WHERE id = {id}")).await;
    id
}

async fn steps(p: &PgPool, user: i64) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT step FROM onboarding_emails WHERE user_id = $1 ORDER BY sent_for, step",
    )
    .bind(user)
    .fetch_all(p)
    .await
    .unwrap()
}

#[tokio::test]
async fn each_step_in_its_window_once() {
    let db = TestDb::new().await;
    let p = &db.pool;
    // The run stands for 2026-06-10 (any hour of that UTC day).
    let fresh = signed_up(
        p,
        "fresh@example.com",
        "2026-06-09T20:00:00Z",
        Some("2026-06-09T20:05:00Z"),
    )
    .await;
    let unverified = signed_up(p, "unv@example.com", "2026-06-07T10:00:00Z", None).await;
    let brand_new = signed_up(p, "new@example.com", "2026-06-09T12:00:00Z", None).await; // < 1 day: no reminder yet
    let long_gone = signed_up(p, "gone@example.com", "2026-05-01T10:00:00Z", None).await; // > 7 days: stop
    let homeless = signed_up(
        p,
        "homeless@example.com",
        "2026-05-25T10:00:00Z",
        Some("2026-05-25T10:10:00Z"),
    )
    .await;
    let taskless = signed_up(
        p,
        "taskless@example.com",
        "2026-05-20T10:00:00Z",
        Some("2026-05-20T10:10:00Z"),
    )
    .await;
    let h = residence(p, taskless, "Empty").await;
    exec(
        p,
        &format!("UPDATE residences SET created_at = '2026-06-01T10:00:00Z' WHERE id = {h}"),
    )
    .await;
    let busy = signed_up(
        p,
        "busy@example.com",
        "2026-05-20T10:00:00Z",
        Some("2026-05-20T10:10:00Z"),
    )
    .await;
    let h2 = residence(p, busy, "Busy").await;
    exec(
        p,
        &format!("UPDATE residences SET created_at = '2026-06-01T10:00:00Z' WHERE id = {h2}"),
    )
    .await;
    task(p, h2, "A task", "2026-06-20", None, None).await;
    let quiet = signed_up(p, "quiet@example.com", "2026-06-07T10:00:00Z", None).await;
    exec(
        p,
        &format!(
            "INSERT INTO notification_preferences (user_id, email_enabled) VALUES ({quiet}, FALSE)"
        ),
    )
    .await;

    let c = ctx(&db, &JOB).await;
    let r = run_event(&c, &JOB, &json!({"time": "2026-06-10T10:00:00Z"}))
        .await
        .unwrap();
    assert_eq!(
        r.served[0].stats,
        json!({"welcome": 1, "verify_reminder": 1, "no_residence": 1, "no_tasks": 1})
    );
    assert_eq!(steps(p, fresh).await, ["welcome"]);
    assert_eq!(steps(p, unverified).await, ["verify_reminder"]);
    // Verified 16 days ago (too long for a welcome), still no home.
    assert_eq!(steps(p, homeless).await, ["no_residence"]);
    assert_eq!(steps(p, taskless).await, ["no_tasks"]);
    for u in [brand_new, long_gone, busy, quiet] {
        assert!(steps(p, u).await.is_empty(), "user {u}");
    }
    let mail = outbox(p, unverified, "onboarding").await;
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].0, "Please verify your honeyDue email address");
    assert!(mail[0].2["List-Unsubscribe"].as_str().is_some());
    assert_eq!(
        outbox(p, fresh, "onboarding").await[0].0,
        "Welcome to honeyDue"
    );

    // The same day again (another hour, a retry): nothing new.
    exec(p, "UPDATE job_runs SET status = 'failed'").await;
    run_event(&c, &JOB, &json!({"time": "2026-06-10T23:59:00Z"}))
        .await
        .unwrap();
    assert_eq!(outbox(p, unverified, "onboarding").await.len(), 1);
    // The next days: the new user, now a day old, gets the reminder; nobody
    // gets a step twice; the welcomed user without a home gets at most one
    // step a day.
    run_event(&c, &JOB, &json!({"time": "2026-06-11T10:00:00Z"}))
        .await
        .unwrap();
    run_event(&c, &JOB, &json!({"time": "2026-06-12T10:00:00Z"}))
        .await
        .unwrap();
    assert_eq!(steps(p, brand_new).await, ["verify_reminder"]);
    assert_eq!(steps(p, unverified).await, ["verify_reminder"]);
    assert_eq!(
        steps(p, fresh).await,
        ["welcome", "no_residence"],
        "welcome on the 10th, no home by the 12th"
    );
    let days: Vec<String> = sqlx::query_scalar(
        "SELECT sent_for::text FROM onboarding_emails WHERE user_id = $1 ORDER BY sent_for",
    )
    .bind(fresh)
    .fetch_all(p)
    .await
    .unwrap();
    assert_eq!(days, ["2026-06-10", "2026-06-12"]);
    let outbox_ids: i64 =
        sqlx::query_scalar("SELECT count(*) FROM onboarding_emails WHERE outbox_id IS NULL")
            .fetch_one(p)
            .await
            .unwrap();
    assert_eq!(outbox_ids, 0, "every step points at its email");
}
