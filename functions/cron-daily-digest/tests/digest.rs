//! The daily digest: sections, limits, others' completions, skipped when
//! empty, once per local day, preferences.

use cron_daily_digest::JOB;
use honeydue_jobs::run_event;
use honeydue_testkit::fixtures::{
    add_member, document, exec, outbox, residence, task, user, user_in,
};
use honeydue_testkit::jobs::ctx;
use honeydue_testkit::TestDb;
use serde_json::json;

#[tokio::test]
async fn sections_and_once_a_day() {
    let db = TestDb::new().await;
    let p = &db.pool;
    let (ann, _) = user(p, "ann@example.com").await;
    let (bob, _) = user(p, "bob@example.com").await;
    let (idle, _) = user(p, "idle@example.com").await; // nothing to say: no digest
    let home = residence(p, ann, "Home").await;
    add_member(p, home, bob, "member").await;
    residence(p, idle, "Quiet").await;
    // Today is 2026-06-10 (03:00 UTC run).
    for i in 0..12 {
        task(
            p,
            home,
            &format!("Late {i:02}"),
            &format!("2026-05-{:02}", 10 + i),
            None,
            None,
        )
        .await;
    }
    task(p, home, "Today", "2026-06-10", None, None).await;
    task(p, home, "Tomorrow", "2026-06-11", None, None).await;
    task(p, home, "In five days", "2026-06-15", None, None).await;
    task(p, home, "In a month", "2026-07-10", None, None).await; // in no section
    let busy = task(p, home, "Painting", "2026-08-01", None, None).await;
    exec(
        p,
        &format!("UPDATE tasks SET in_progress = TRUE WHERE id = {busy}"),
    )
    .await;
    task(p, home, "Bob's only", "2026-06-10", None, Some(bob)).await; // not in Ann's digest
    let mowed = task(p, home, "Mow the lawn", "2026-06-20", None, None).await;
    exec(
        p,
        &format!(
            "INSERT INTO task_completions (task_id, completed_by, completed_at, occurrence_date)
                      VALUES ({mowed}, {bob}, '2026-06-09T18:00:00Z', '2026-06-09')"
        ),
    )
    .await;
    let swept = task(p, home, "Sweep", "2026-06-20", None, None).await;
    exec(
        p,
        &format!(
            "INSERT INTO task_completions (task_id, completed_by, completed_at, occurrence_date)
                      VALUES ({swept}, {ann}, '2026-06-09T19:00:00Z', '2026-06-08')"
        ),
    )
    .await;
    document(p, home, "Dishwasher", "warranty", "2026-06-30").await;

    let c = ctx(&db, &JOB).await;
    run_event(&c, &JOB, &json!({"time": "2026-06-10T02:00:00Z"}))
        .await
        .unwrap();
    assert!(
        outbox(p, ann, "daily_digest").await.is_empty(),
        "02:00 is not the digest hour"
    );
    let r = run_event(&c, &JOB, &json!({"time": "2026-06-10T03:00:00Z"}))
        .await
        .unwrap();
    assert_eq!(
        r.served.last().unwrap().stats["digests"],
        2,
        "Ann and Bob; the idle user is skipped"
    );
    assert!(outbox(p, idle, "daily_digest").await.is_empty());

    let mail = outbox(p, ann, "daily_digest").await;
    assert_eq!(mail.len(), 1);
    let (subject, text, headers) = &mail[0];
    assert_eq!(subject, "Your honeyDue digest for Wed 10 Jun");
    let pos = |s: &str| {
        text.find(s)
            .unwrap_or_else(|| panic!("{s:?} missing from\n{text}"))
    };
    // Sections in order.
    assert!(pos("Overdue\n") < pos("Due today and tomorrow\n"));
    assert!(pos("Due today and tomorrow\n") < pos("Next 7 days\n"));
    assert!(pos("Next 7 days\n") < pos("In progress\n"));
    assert!(pos("In progress\n") < pos("Done by others in the last 24 hours\n"));
    assert!(pos("Done by others") < pos("Warranties expiring within 30 days\n"));
    // The ten oldest overdue, then a count of the rest.
    assert!(
        text.contains("Late 00 (Home · due Sun 10 May, 31 days ago)"),
        "{text}"
    );
    assert!(text.contains("Late 09"));
    assert!(!text.contains("Late 10") && !text.contains("Late 11"));
    assert!(text.contains("and 2 more"));
    assert!(text.contains("Today (Home · due today)"));
    assert!(text.contains("Tomorrow (Home · due tomorrow)"));
    assert!(text.contains("In five days (Home · due Mon 15 Jun)"));
    assert!(text.contains("Painting (Home · due Sat 1 Aug)"), "{text}");
    assert!(text.contains("Mow the lawn (Home · done by bob)"));
    assert!(
        !text.contains("Sweep"),
        "her own completion is not news to her"
    );
    assert!(!text.contains("In a month") && !text.contains("Bob's only"));
    assert!(text.contains("Dishwasher (Home · expires Tue 30 Jun)"));
    assert!(headers["List-Unsubscribe"]
        .as_str()
        .unwrap()
        .contains("/api/unsubscribe/"));
    let bobs = &outbox(p, bob, "daily_digest").await[0].1;
    assert!(bobs.contains("Bob's only") && bobs.contains("Sweep (Home · done by ann)"));
    assert!(!bobs.contains("Mow the lawn (Home · done"));

    // Once per local day: a repeat, and a taken-over slot, send nothing.
    exec(p, "UPDATE job_runs SET status = 'failed'").await;
    run_event(&c, &JOB, &json!({"time": "2026-06-10T03:00:00Z"}))
        .await
        .unwrap();
    assert_eq!(outbox(p, ann, "daily_digest").await.len(), 1);
    // The next day, again.
    run_event(&c, &JOB, &json!({"time": "2026-06-11T03:00:00Z"}))
        .await
        .unwrap();
    assert_eq!(outbox(p, ann, "daily_digest").await.len(), 2);
}

#[tokio::test]
async fn preferences_and_verification() {
    let db = TestDb::new().await;
    let p = &db.pool;
    let (off, _) = user(p, "off@example.com").await;
    let (unverified, _) = user(p, "unverified@example.com").await;
    let (sydney, _) = user_in(p, "syd@example.com", "Australia/Sydney").await;
    exec(p, &format!("INSERT INTO notification_preferences (user_id, kinds) VALUES ({off}, '{{\"daily_digest\": {{\"email\": false}}}}')")).await;
    exec(
        p,
        &format!("UPDATE users SET email_verified_at = NULL WHERE id = {unverified}"),
    )
    .await;
    exec(
        p,
        &format!(
            "INSERT INTO notification_preferences (user_id, digest_hour) VALUES ({sydney}, 6)"
        ),
    )
    .await;
    for u in [off, unverified, sydney] {
        let h = residence(p, u, "Home").await;
        task(p, h, "Due", "2026-06-10", None, None).await;
        task(p, h, "Due later", "2026-06-11", None, None).await;
    }
    let c = ctx(&db, &JOB).await;
    run_event(&c, &JOB, &json!({"time": "2026-06-10T03:00:00Z"}))
        .await
        .unwrap();
    assert!(outbox(p, off, "daily_digest").await.is_empty());
    assert!(outbox(p, unverified, "daily_digest").await.is_empty());
    assert!(outbox(p, sydney, "daily_digest").await.is_empty());
    // 06:00 in Sydney (AEST, UTC+10) on the 11th = 20:00 UTC on the 10th:
    // its "today" is the 11th, so "Due later" is due today.
    run_event(&c, &JOB, &json!({"time": "2026-06-10T20:00:00Z"}))
        .await
        .unwrap();
    let mail = outbox(p, sydney, "daily_digest").await;
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].0, "Your honeyDue digest for Thu 11 Jun");
    assert!(
        mail[0].1.contains("Due later (Home · due today)"),
        "{}",
        mail[0].1
    );
    assert!(
        mail[0].1.contains("Due (Home · due Wed 10 Jun, 1 day ago)"),
        "{}",
        mail[0].1
    );
}
