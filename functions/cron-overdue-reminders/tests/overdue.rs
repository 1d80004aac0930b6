//! Overdue reminders: the 1, 2, 3, 6, 9, 12-day taper, the 15:00 UTC
//! default, the user's own hour, and once per step.

use cron_overdue_reminders::JOB;
use honeydue_jobs::run_event;
use honeydue_testkit::fixtures::{exec, notifications, outbox, residence, task, user};
use honeydue_testkit::jobs::ctx;
use honeydue_testkit::TestDb;
use serde_json::json;

#[tokio::test]
async fn taper_then_stop() {
    let db = TestDb::new().await;
    let p = &db.pool;
    let (ann, _) = user(p, "ann@example.com").await;
    let home = residence(p, ann, "Home").await;
    // Due on 2026-03-01 (across a month end from February); overdue by k on 1 + k March.
    let t = task(
        p,
        home,
        "Replace filter",
        "2026-02-27",
        Some("Monthly"),
        None,
    )
    .await;
    let c = ctx(&db, &JOB).await;
    let mut reminded_on = Vec::new();
    for day in 27..=28 {
        run_event(
            &c,
            &JOB,
            &json!({"time": format!("2026-02-{day:02}T15:00:00Z")}),
        )
        .await
        .unwrap();
    }
    for day in 1..=20 {
        let before = notifications(p, ann, "overdue").await.len();
        // 14:00 serves nobody (the default overdue hour is 15:00 UTC).
        run_event(
            &c,
            &JOB,
            &json!({"time": format!("2026-03-{day:02}T14:00:00Z")}),
        )
        .await
        .unwrap();
        assert_eq!(notifications(p, ann, "overdue").await.len(), before);
        run_event(
            &c,
            &JOB,
            &json!({"time": format!("2026-03-{day:02}T15:00:00Z")}),
        )
        .await
        .unwrap();
        if notifications(p, ann, "overdue").await.len() > before {
            reminded_on.push(day);
        }
    }
    // 2026-02-27 + k days for k in 1, 2, 3, 6, 9, 12 = Feb 28, Mar 1, 2, 5, 8, 11.
    assert_eq!(reminded_on, [1, 2, 5, 8, 11], "March days with a reminder");
    let n = notifications(p, ann, "overdue").await;
    assert_eq!(n.len(), 6, "Feb 28 + five March days");
    assert_eq!(n[0].0, "Replace filter is overdue");
    assert_eq!(n[0].1["task_ids"], json!([t]));
    let mail = outbox(p, ann, "overdue").await;
    assert_eq!(mail.len(), 6);
    assert!(
        mail[1]
            .1
            .contains("Replace filter (Home · 2 days overdue, Fri 27 Feb)"),
        "{}",
        mail[1].1
    );
}

#[tokio::test]
async fn own_hour_and_completed_tasks() {
    let db = TestDb::new().await;
    let p = &db.pool;
    let (ann, _) = user(p, "ann@example.com").await;
    exec(
        p,
        &format!("UPDATE users SET timezone = 'Europe/Berlin' WHERE id = {ann}"),
    )
    .await;
    exec(
        p,
        &format!("INSERT INTO notification_preferences (user_id, overdue_hour) VALUES ({ann}, 7)"),
    )
    .await;
    let home = residence(p, ann, "Home").await;
    task(p, home, "Late", "2026-06-09", None, None).await;
    let done = task(p, home, "Done since", "2026-06-09", None, None).await;
    // Completing moves a task on (a one-off leaves the board): no reminder.
    exec(
        p,
        &format!("UPDATE tasks SET next_due_date = NULL WHERE id = {done}"),
    )
    .await;
    let c = ctx(&db, &JOB).await;
    run_event(&c, &JOB, &json!({"time": "2026-06-10T15:00:00Z"}))
        .await
        .unwrap();
    assert!(
        notifications(p, ann, "overdue").await.is_empty(),
        "15:00 UTC is not 07:00 in Berlin"
    );
    // 07:00 CEST = 05:00 UTC.
    run_event(&c, &JOB, &json!({"time": "2026-06-11T05:00:00Z"}))
        .await
        .unwrap();
    let n = notifications(p, ann, "overdue").await;
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].0, "Late is overdue");
}
