//! The push outbox from the event to the provider: notifications written
//! with `honeydue_core::notify`, delivered by the function's dispatcher to
//! local APNs and FCM stand-ins (honeydue_testkit::push), against a real
//! Postgres.

use std::time::Duration;

use cron_push_dispatch::Dispatcher;
use honeydue_core::notify::{notify, Notice};
use honeydue_core::outbox::Policy;
use honeydue_core::Env;
use honeydue_push::Push;
use honeydue_testkit::fixtures::{user, user_in};
use honeydue_testkit::push::Providers;
use honeydue_testkit::TestDb;
use serde_json::json;

fn dispatcher(db: &TestDb, env: &[(&'static str, String)]) -> Dispatcher {
    let mut e = Env::from_pairs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let push = Push::read(&mut e);
    Dispatcher {
        db: db.pool.clone(),
        push: e.finish_with(push).unwrap(),
        policy: Policy::default(),
    }
}

async fn device(db: &TestDb, user_id: i64, platform: &str, token: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO devices (user_id, platform, token) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(user_id)
    .bind(platform)
    .bind(token)
    .fetch_one(&db.pool)
    .await
    .unwrap()
}

/// Notifies `user_id`; the notification's id, unless their preferences
/// turned the kind off.
async fn event(db: &TestDb, user_id: i64, kind: &'static str) -> Option<i64> {
    let mut tx = db.pool.begin().await.unwrap();
    let ids = notify(
        &mut tx,
        &[Notice {
            user_id,
            kind,
            title: "Clean the gutters".into(),
            body: "Due today".into(),
            data: json!({"task_id": 7}),
        }],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    ids.first().copied()
}

/// (status, attempts, due now) of each push row, by device token.
async fn rows(db: &TestDb) -> Vec<(String, String, i32, bool)> {
    sqlx::query_as(
        "SELECT d.token, o.status, o.attempts, o.next_attempt_at <= now()
           FROM push_outbox o JOIN devices d ON d.id = o.device_id ORDER BY o.id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn every_active_device_gets_the_push_once() {
    let db = TestDb::new().await;
    let p = Providers::start().await;
    let (ann, _) = user(&db.pool, "ann@example.com").await;
    let (bob, _) = user(&db.pool, "bob@example.com").await;
    device(&db, ann, "ios", "ann-phone").await;
    device(&db, ann, "android", "ann-tablet").await;
    let old = device(&db, bob, "ios", "bob-old-phone").await;
    sqlx::query("UPDATE devices SET active = FALSE WHERE id = $1")
        .bind(old)
        .execute(&db.pool)
        .await
        .unwrap();
    event(&db, ann, "completed").await;
    event(&db, bob, "completed").await;
    let d = dispatcher(&db, &p.env);
    let s = d.run().await.unwrap();
    assert_eq!((s.sent, s.retried, s.dead), (2, 0, 0));
    assert_eq!(
        d.run().await.unwrap().sent,
        0,
        "a second run sends nothing again"
    );
    {
        let apple = p.apple.seen.lock().unwrap();
        let google = p.google.seen.lock().unwrap();
        assert_eq!(apple.delivered.len(), 1);
        assert_eq!(apple.delivered[0].token, "ann-phone");
        assert_eq!(apple.delivered[0].payload["kind"], "completed");
        assert_eq!(google.delivered.len(), 1);
        assert_eq!(google.delivered[0].token, "ann-tablet");
        assert!(apple.auth_failures.is_empty() && google.auth_failures.is_empty());
    }

    // Notifying again for the same rows queues nothing twice.
    let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM notifications")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    assert_eq!(
        honeydue_core::notify::enqueue_push(&mut conn, &ids)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn a_gone_token_deactivates_its_device_and_drops_its_other_pushes() {
    let db = TestDb::new().await;
    let p = Providers::start().await;
    let (ann, _) = user(&db.pool, "ann@example.com").await;
    let gone = device(&db, ann, "ios", "gone-phone").await;
    let also_gone = device(&db, ann, "android", "gone-tablet").await;
    event(&db, ann, "completed").await;
    event(&db, ann, "assigned").await;
    let s = dispatcher(&db, &p.env).run().await.unwrap();
    assert_eq!((s.sent, s.deactivated), (0, 2));
    let active: Vec<(i64, bool, Option<String>)> =
        sqlx::query_as("SELECT id, active, deactivated_reason FROM devices ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(active.len(), 2);
    assert_eq!((active[0].0, active[0].1), (gone, false));
    assert!(active[0].2.as_deref().unwrap().contains("410"));
    assert_eq!((active[1].0, active[1].1), (also_gone, false));
    assert!(active[1].2.as_deref().unwrap().contains("UNREGISTERED"));
    let statuses: Vec<String> = rows(&db).await.into_iter().map(|r| r.1).collect();
    assert_eq!(statuses, ["dead", "dead", "dropped", "dropped"]);
    // A later event finds no active device: nothing is queued.
    event(&db, ann, "completed").await;
    assert_eq!(rows(&db).await.len(), 4);
}

#[tokio::test]
async fn throttled_and_failing_pushes_are_retried_with_back_off() {
    let db = TestDb::new().await;
    let p = Providers::start().await;
    let (ann, _) = user(&db.pool, "ann@example.com").await;
    device(&db, ann, "ios", "busy-phone").await;
    device(&db, ann, "android", "fail-tablet").await;
    event(&db, ann, "completed").await;
    let s = dispatcher(&db, &p.env).run().await.unwrap();
    assert_eq!((s.sent, s.retried, s.dead), (0, 2, 0));
    let r = rows(&db).await;
    assert!(
        r.iter()
            .all(|(_, st, a, due)| st == "pending" && *a == 1 && !due),
        "{r:?}"
    );
    let errors: Vec<String> = sqlx::query_scalar("SELECT last_error FROM push_outbox ORDER BY id")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert!(
        errors[0].contains("429") && errors[1].contains("503"),
        "{errors:?}"
    );
}

#[tokio::test]
async fn providers_down_delay_pushes_without_using_attempts() {
    let db = TestDb::new().await;
    let p = Providers::start().await;
    let (ann, _) = user(&db.pool, "ann@example.com").await;
    device(&db, ann, "ios", "ann-phone").await;
    device(&db, ann, "android", "ann-tablet").await;
    event(&db, ann, "completed").await;
    event(&db, ann, "assigned").await;
    let d = dispatcher(&db, &p.env);
    p.apple.stop();
    p.google.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let s = d.run().await.unwrap();
    assert_eq!(s.sent, 0);
    let r = rows(&db).await;
    assert!(
        r.iter()
            .all(|(_, st, a, due)| st == "pending" && *a == 0 && *due),
        "given back due now, uncounted: {r:?}"
    );
    p.apple.start_again().await;
    p.google.start_again().await;
    // Both are back: the next runs deliver everything (a run may first meet
    // a pooled connection to the old server and give its rows back again).
    let mut sent = 0;
    for _ in 0..3 {
        sent += d.run().await.unwrap().sent;
    }
    assert_eq!(sent, 4);
    assert_eq!(p.apple.seen.lock().unwrap().delivered.len(), 2);
    assert_eq!(p.google.seen.lock().unwrap().delivered.len(), 2);
}

#[tokio::test]
async fn preferences_and_quiet_hours_decide_what_is_queued_and_when() {
    let db = TestDb::new().await;
    let (ann, _) = user(&db.pool, "ann@example.com").await;
    let (bob, _) = user(&db.pool, "bob@example.com").await;
    let (cat, _) = user(&db.pool, "cat@example.com").await;
    for (u, t) in [(ann, "a"), (bob, "b"), (cat, "c")] {
        device(&db, u, "ios", t).await;
    }
    sqlx::query(
        "INSERT INTO notification_preferences (user_id, kinds, push_enabled) VALUES
           ($1, '{\"completed\": {\"push\": false}, \"assigned\": {\"enabled\": false}}', TRUE),
           ($2, '{}', FALSE)",
    )
    .bind(ann)
    .bind(bob)
    .execute(&db.pool)
    .await
    .unwrap();
    for u in [ann, bob, cat] {
        event(&db, u, "completed").await;
        event(&db, u, "assigned").await;
        event(&db, u, "due_soon").await;
    }
    let queued: Vec<(i64, String)> =
        sqlx::query_as("SELECT user_id, kind FROM push_outbox ORDER BY user_id, id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let inapp: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notifications WHERE user_id = $1 AND kind = 'assigned'",
    )
    .bind(ann)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(inapp, 0, "a kind turned off is not even in the app");
    let want = vec![
        (ann, "due_soon".to_string()),
        (cat, "completed".to_string()),
        (cat, "assigned".to_string()),
        (cat, "due_soon".to_string()),
    ];
    assert_eq!(queued, want);
}

#[tokio::test]
async fn quiet_hours_hold_a_push_until_they_end_in_the_users_time_zone() {
    let db = TestDb::new().await;
    let (ann, _) = user_in(&db.pool, "ann@example.com", "Europe/Paris").await;
    let (bob, _) = user_in(&db.pool, "bob@example.com", "America/New_York").await;
    sqlx::query(
        "INSERT INTO notification_preferences (user_id, quiet_hours_start, quiet_hours_end)
         VALUES ($1, 22, 7), ($2, 13, 15)",
    )
    .bind(ann)
    .bind(bob)
    .execute(&db.pool)
    .await
    .unwrap();
    let due = |u: i64, at: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT to_char(push_due_at($1, $2::timestamptz) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI')",
            )
            .bind(u)
            .bind(at)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    // Paris in summer (UTC+2): 23:30 local waits for 07:00 the next day.
    assert_eq!(due(ann, "2026-06-10 21:30Z").await, "2026-06-11 05:00");
    // 06:59 local: until 07:00 the same day.
    assert_eq!(due(ann, "2026-06-11 04:59Z").await, "2026-06-11 05:00");
    // Outside the quiet hours: at once.
    assert_eq!(due(ann, "2026-06-10 12:00Z").await, "2026-06-10 12:00");
    assert_eq!(due(ann, "2026-06-11 05:00Z").await, "2026-06-11 05:00");
    // Over the autumn change (Paris leaves summer time on 2026-10-25 at
    // 03:00): 07:00 local that morning is 06:00 UTC.
    assert_eq!(due(ann, "2026-10-24 21:00Z").await, "2026-10-25 06:00");
    // A window within one day (13:00-15:00 New York, UTC-4 in June).
    assert_eq!(due(bob, "2026-06-10 17:10Z").await, "2026-06-10 19:00");
    assert_eq!(due(bob, "2026-06-10 19:00Z").await, "2026-06-10 19:00");
    // Nothing set: at once.
    let (cat, _) = user(&db.pool, "cat@example.com").await;
    assert_eq!(due(cat, "2026-06-10 23:00Z").await, "2026-06-10 23:00");
}

#[tokio::test]
async fn a_push_not_sent_within_a_day_expires_and_no_sender_means_none_is_claimed() {
    let db = TestDb::new().await;
    let (ann, _) = user(&db.pool, "ann@example.com").await;
    device(&db, ann, "ios", "ann-phone").await;
    device(&db, ann, "android", "ann-tablet").await;
    event(&db, ann, "completed").await;
    event(&db, ann, "assigned").await;
    sqlx::query(
        "UPDATE push_outbox SET created_at = now() - interval '25 hours'
          WHERE id = (SELECT min(id) FROM push_outbox)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    // No APNS_* or FCM_*: push is off; nothing is claimed or sent.
    let s = dispatcher(&db, &[]).run().await.unwrap();
    assert_eq!((s.sent, s.retried, s.expired), (0, 0, 1));
    let statuses: Vec<(String, i32)> =
        sqlx::query_as("SELECT status, attempts FROM push_outbox ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        statuses,
        [
            ("expired".into(), 0),
            ("pending".into(), 0),
            ("pending".into(), 0),
            ("pending".into(), 0)
        ]
    );
}
