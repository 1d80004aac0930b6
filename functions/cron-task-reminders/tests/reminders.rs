//! Due-soon reminders against a real Postgres: who is served at which UTC
//! hour, offsets, recipients, preferences, idempotency (repeated, concurrent
//! and taken-over runs), catch-up, and the binary as a CronJob runs it.

use cron_task_reminders::JOB;
use honeydue_jobs::{run_event, Ctx};
use honeydue_testkit::fixtures::{
    add_member, exec, notifications, outbox, residence, task, user, user_in,
};
use honeydue_testkit::jobs::{CtxBuilder, SECRET};
use honeydue_testkit::TestDb;
use serde_json::json;

/// Where links in emails point.
const BASE_URL: &str = "https://app.honeydue.test";

async fn at(ctx: &Ctx, time: &str) -> serde_json::Value {
    serde_json::to_value(
        run_event(ctx, &JOB, &json!({ "time": time }))
            .await
            .unwrap(),
    )
    .unwrap()
}

fn served(report: &serde_json::Value) -> Vec<String> {
    report["served"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["slot"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn served_at_picks_exactly_one_hour_per_local_day_across_dst_and_offsets() {
    let db = TestDb::new().await;
    // For every zone, preferred hour and day (DST start and end days in both
    // hemispheres, an ordinary day, a month end), count the UTC hours whose
    // run serves the user on that local day: always exactly one.
    let bad: Vec<(String, i32, String, i64)> = sqlx::query_as(
        "WITH zones(tz) AS (VALUES ('UTC'), ('America/New_York'), ('America/Los_Angeles'), ('Europe/Berlin'),
                                   ('Asia/Kolkata'), ('Asia/Tokyo'), ('Australia/Sydney'), ('Pacific/Auckland'),
                                   ('Pacific/Kiritimati'), ('Pacific/Pago_Pago'), ('Asia/Kathmandu')),
              days(d) AS (VALUES (date '2026-03-08'), (date '2026-11-01'), (date '2026-03-29'), (date '2026-10-25'),
                                 (date '2026-04-05'), (date '2026-09-27'), (date '2026-06-10'), (date '2026-01-31')),
              prefs(p) AS (SELECT generate_series(0, 23))
         SELECT z.tz, pr.p, dd.d::text, count(h.h)
           FROM zones z CROSS JOIN days dd CROSS JOIN prefs pr
           LEFT JOIN LATERAL (
               SELECT h FROM generate_series(dd.d::timestamp AT TIME ZONE 'UTC' - interval '1 day',
                                             dd.d::timestamp AT TIME ZONE 'UTC' + interval '2 days', interval '1 hour') h
                WHERE (h AT TIME ZONE z.tz)::date = dd.d AND served_at(h, z.tz, pr.p::smallint, 0)
           ) h ON TRUE
          GROUP BY 1, 2, 3 HAVING count(h.h) <> 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        bad.is_empty(),
        "zones/hours/days served other than once: {bad:?}"
    );

    let one = |h: &'static str, tz: &'static str, p: Option<i16>| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, bool>("SELECT served_at($1::timestamptz, $2, $3, 14)")
                .bind(h)
                .bind(tz)
                .bind(p)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    // Spring forward in New York: 02:00 does not exist; served at 03:00 EDT.
    assert!(!one("2026-03-08T06:00:00Z", "America/New_York", Some(2)).await);
    assert!(one("2026-03-08T07:00:00Z", "America/New_York", Some(2)).await);
    // Fall back: 01:00 happens twice; served the first time only.
    assert!(one("2026-11-01T05:00:00Z", "America/New_York", Some(1)).await);
    assert!(!one("2026-11-01T06:00:00Z", "America/New_York", Some(1)).await);
    // Half-hour zone: 08:00 in Kolkata is first reached by the 03:00 UTC run (08:30 IST).
    assert!(one("2026-06-10T03:00:00Z", "Asia/Kolkata", Some(8)).await);
    // No preference: the product default hour in UTC, whatever the zone.
    assert!(one("2026-06-10T14:00:00Z", "Asia/Tokyo", None).await);
    assert!(!one("2026-06-10T05:00:00Z", "Asia/Tokyo", None).await);
}

#[tokio::test]
async fn offsets_recipients_and_preferences() {
    let db = TestDb::new().await;
    let p = &db.pool;
    let (ann, _) = user(p, "ann@example.com").await;
    let (bob, _) = user(p, "bob@example.com").await;
    let (cy, _) = user(p, "cy@example.com").await; // turns the kind's email off
    let (dee, _) = user(p, "dee@example.com").await; // unverified
    let (eve, _) = user(p, "eve@example.com").await; // turns due-soon off
    let (out, _) = user(p, "outsider@example.com").await;
    let home = residence(p, ann, "Maple House").await;
    for u in [bob, cy, dee, eve] {
        add_member(p, home, u, "member").await;
    }
    let other = residence(p, out, "Elsewhere").await;
    exec(
        p,
        &format!("UPDATE users SET email_verified_at = NULL WHERE id = {dee}"),
    )
    .await;
    exec(p, &format!("INSERT INTO notification_preferences (user_id, kinds) VALUES ({cy}, '{{\"due_soon\": {{\"email\": false}}}}')")).await;
    exec(p, &format!("INSERT INTO notification_preferences (user_id, kinds) VALUES ({eve}, '{{\"due_soon\": {{\"enabled\": false}}}}')")).await;

    // "Today" is 2026-01-29 (UTC users, default 14:00 UTC run).
    let monthly3 = task(
        p,
        home,
        "Clean filters",
        "2026-02-01",
        Some("Monthly"),
        None,
    )
    .await; // 3 days: a monthly offset, across the month end
    task(
        p,
        home,
        "Monthly in 2 days",
        "2026-01-31",
        Some("Monthly"),
        None,
    )
    .await; // 2: not an offset
    let annual30 = task(
        p,
        home,
        "Service boiler",
        "2026-02-28",
        Some("Annually"),
        None,
    )
    .await; // 30: annual offset
    task(
        p,
        home,
        "Quarterly in 14",
        "2026-02-12",
        Some("Quarterly"),
        None,
    )
    .await; // 14: not quarterly
    let bob_today = task(
        p,
        home,
        "Bob's job",
        "2026-01-29",
        Some("Weekly"),
        Some(bob),
    )
    .await; // assigned: Bob only
    let once = task(p, home, "One-off today", "2026-01-29", None, None).await;
    task(p, home, "One-off tomorrow", "2026-01-30", None, None).await; // one-offs: the day only
    let archived = task(p, home, "Archived", "2026-01-29", None, None).await;
    exec(
        p,
        &format!("UPDATE tasks SET is_archived = TRUE WHERE id = {archived}"),
    )
    .await;
    let cancelled = task(p, home, "Cancelled", "2026-01-29", None, None).await;
    exec(
        p,
        &format!("UPDATE tasks SET is_cancelled = TRUE WHERE id = {cancelled}"),
    )
    .await;
    let theirs = task(p, other, "Not ours", "2026-01-29", None, None).await;

    let c = CtxBuilder::new(&db, &JOB).base_url(BASE_URL).build().await;
    let r = at(&c, "2026-01-29T13:00:00Z").await;
    assert_eq!(
        r["served"][0]["stats"]["reminders"], 0,
        "13:00 serves nobody: {r}"
    );
    let r = at(&c, "2026-01-29T14:00:00Z").await;
    assert_eq!(served(&r), ["2026-01-29T14:00:00Z"]);

    let ids = |n: &[(String, serde_json::Value)]| -> Vec<i64> {
        let mut v: Vec<i64> = n
            .iter()
            .flat_map(|(_, d)| {
                d["task_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap())
            })
            .collect();
        v.sort();
        v
    };
    let mut shared = vec![monthly3, annual30, once];
    shared.sort();
    assert_eq!(ids(&notifications(p, ann, "due_soon").await), shared);
    let mut bobs = [shared.clone(), vec![bob_today]].concat();
    bobs.sort();
    assert_eq!(ids(&notifications(p, bob, "due_soon").await), bobs);
    assert_eq!(ids(&notifications(p, cy, "due_soon").await), shared);
    assert_eq!(ids(&notifications(p, dee, "due_soon").await), shared);
    assert!(
        notifications(p, eve, "due_soon").await.is_empty(),
        "kind turned off"
    );
    assert_eq!(
        ids(&notifications(p, out, "due_soon").await),
        [theirs],
        "their own home only, nothing of a home they are not in"
    );

    // Emails: one per user, to verified addresses that want them.
    let mail = outbox(p, ann, "due_soon").await;
    assert_eq!(mail.len(), 1);
    let (subject, text, headers) = &mail[0];
    assert_eq!(subject, "3 tasks are due soon");
    assert!(text.starts_with("Hi ann,"), "{text}");
    assert!(
        text.contains("Clean filters (Maple House · due in 3 days, Sun 1 Feb)"),
        "{text}"
    );
    assert!(
        text.contains("Service boiler (Maple House · due in 30 days, Sat 28 Feb)"),
        "{text}"
    );
    assert!(
        text.contains("One-off today (Maple House · due today, Thu 29 Jan)"),
        "{text}"
    );
    assert!(text.contains("https://app.honeydue.test/"), "{text}");
    let unsubscribe = headers["List-Unsubscribe"].as_str().unwrap();
    let token = unsubscribe
        .strip_prefix("<https://app.honeydue.test/api/unsubscribe/")
        .and_then(|t| t.strip_suffix("/>"))
        .unwrap();
    assert_eq!(
        honeydue_mail::unsubscribe::verify(SECRET, token),
        Some((ann, "due_soon".to_string())),
        "List-Unsubscribe is signed for the user and the kind"
    );
    assert_eq!(
        headers["List-Unsubscribe-Post"],
        "List-Unsubscribe=One-Click"
    );
    assert_eq!(outbox(p, bob, "due_soon").await.len(), 1);
    assert!(
        outbox(p, cy, "due_soon").await.is_empty(),
        "kind's email off"
    );
    assert!(
        outbox(p, dee, "due_soon").await.is_empty(),
        "unverified address"
    );
    assert!(outbox(p, eve, "due_soon").await.is_empty());
}

#[tokio::test]
async fn local_hours_and_time_zones_either_side_of_midnight() {
    let db = TestDb::new().await;
    let p = &db.pool;
    let (la, _) = user_in(p, "la@example.com", "America/Los_Angeles").await;
    let (tokyo, _) = user_in(p, "tokyo@example.com", "Asia/Tokyo").await;
    let home = residence(p, la, "Shared").await;
    add_member(p, home, tokyo, "member").await;
    exec(p, &format!("INSERT INTO notification_preferences (user_id, due_soon_hour) VALUES ({la}, 8), ({tokyo}, 7)")).await;
    // 2026-06-10 22:00 UTC = 15:00 on the 10th in Los Angeles = 07:00 on the 11th in Tokyo.
    let t = task(p, home, "Due on the 11th", "2026-06-11", None, None).await;
    let c = CtxBuilder::new(&db, &JOB).base_url(BASE_URL).build().await;
    at(&c, "2026-06-10T22:00:00Z").await;
    let n = notifications(p, tokyo, "due_soon").await;
    assert_eq!(n.len(), 1, "Tokyo's 07:00 on the 11th: due today");
    assert_eq!(n[0].1["task_ids"], json!([t]));
    assert!(
        notifications(p, la, "due_soon").await.is_empty(),
        "15:00 in LA is not 08:00"
    );
    // 2026-06-11 15:00 UTC = 08:00 in LA on the 11th: the same task is due today there.
    at(&c, "2026-06-11T15:00:00Z").await;
    assert_eq!(notifications(p, la, "due_soon").await.len(), 1);
    assert_eq!(
        notifications(p, tokyo, "due_soon").await.len(),
        1,
        "Tokyo not served again"
    );
}

#[tokio::test]
async fn repeated_concurrent_and_taken_over_runs_send_once() {
    let db = TestDb::new().await;
    let p = &db.pool;
    let (ann, _) = user(p, "ann@example.com").await;
    let home = residence(p, ann, "Home").await;
    for i in 0..20 {
        task(p, home, &format!("Task {i}"), "2026-06-10", None, None).await;
    }
    exec(
        p,
        &format!(
            "INSERT INTO devices (user_id, platform, token) VALUES ({ann}, 'android', 'ann-phone')"
        ),
    )
    .await;
    let c = CtxBuilder::new(&db, &JOB).base_url(BASE_URL).build().await;
    let c2 = CtxBuilder::new(&db, &JOB).base_url(BASE_URL).build().await;
    let ev = json!({"time": "2026-06-10T14:00:05Z"});
    let (a, b) = tokio::join!(run_event(&c, &JOB, &ev), run_event(&c2, &JOB, &ev));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.served.len() + b.served.len(),
        1,
        "one run serves the hour, the other skips it"
    );
    assert_eq!(outbox(p, ann, "due_soon").await.len(), 1);
    // The same event again: skipped.
    let r = at(&c, "2026-06-10T14:30:00Z").await;
    assert!(
        served(&r).is_empty() && r["skipped"] == json!(["2026-06-10T14:00:00Z"]),
        "{r}"
    );
    // A run that died holding the slot (its row says running, a moment ago,
    // but its session and lock are gone), or failed: taken over at once,
    // and the ledger keeps it from sending again.
    exec(
        p,
        "UPDATE job_runs SET status = 'running', started_at = now()",
    )
    .await;
    let r = at(&c, "2026-06-10T14:00:00Z").await;
    assert_eq!(served(&r), ["2026-06-10T14:00:00Z"]);
    assert_eq!(r["served"][0]["stats"]["reminders"], 0);
    exec(p, "UPDATE job_runs SET status = 'failed'").await;
    let r = at(&c, "2026-06-10T14:00:00Z").await;
    assert_eq!(r["served"][0]["stats"]["reminders"], 0);
    assert_eq!(outbox(p, ann, "due_soon").await.len(), 1);
    assert_eq!(notifications(p, ann, "due_soon").await.len(), 1);
    // One push of the one reminder, whatever the runs.
    let pushes: Vec<String> = sqlx::query_scalar("SELECT kind FROM push_outbox")
        .fetch_all(p)
        .await
        .unwrap();
    assert_eq!(pushes, ["due_soon"]);
    let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM job_runs")
        .fetch_one(p)
        .await
        .unwrap();
    assert_eq!(attempts, 3);
    // A run still alive holds its slot's lock: another run skips the slot
    // whatever its row says.
    exec(p, "UPDATE job_runs SET status = 'failed'").await;
    let mut holder = p.acquire().await.unwrap();
    let slot = chrono::DateTime::parse_from_rfc3339("2026-06-10T14:00:00Z")
        .unwrap()
        .timestamp();
    for f in ["pg_advisory_lock", "pg_advisory_unlock"] {
        sqlx::query(&format!("SELECT {f}(hashtextextended($1, $2))"))
            .bind(JOB.name)
            .bind(slot)
            .execute(&mut *holder)
            .await
            .unwrap();
        if f == "pg_advisory_lock" {
            let r = at(&c, "2026-06-10T14:00:00Z").await;
            assert!(served(&r).is_empty(), "{r}");
        }
    }
    let r = at(&c, "2026-06-10T14:00:00Z").await;
    assert_eq!(served(&r), ["2026-06-10T14:00:00Z"]);
}

#[tokio::test]
async fn missed_hours_are_caught_up_within_the_look_back() {
    let db = TestDb::new().await;
    let p = &db.pool;
    let (ann, _) = user(p, "ann@example.com").await;
    let home = residence(p, ann, "Home").await;
    task(p, home, "Due", "2026-06-10", None, None).await;
    let c = CtxBuilder::new(&db, &JOB).base_url(BASE_URL).build().await;
    // The first run ever serves only its own hour.
    assert_eq!(
        served(&at(&c, "2026-06-10T12:00:00Z").await),
        ["2026-06-10T12:00:00Z"]
    );
    // 13:00 and 14:00 were missed (the 14:00 run would have reminded Ann);
    // the 15:00 run serves them.
    let r = at(&c, "2026-06-10T15:00:00Z").await;
    assert_eq!(
        served(&r),
        [
            "2026-06-10T13:00:00Z",
            "2026-06-10T14:00:00Z",
            "2026-06-10T15:00:00Z"
        ]
    );
    assert_eq!(outbox(p, ann, "due_soon").await.len(), 1);
    // A long outage: at most 6 hours back.
    let r = at(&c, "2026-06-11T03:00:00Z").await;
    assert_eq!(served(&r).len(), 7);
    assert_eq!(served(&r)[0], "2026-06-10T21:00:00Z");
}

#[tokio::test]
async fn runs_as_a_cronjob_through_the_shim() {
    let db = TestDb::new().await;
    let p = &db.pool;
    let (ann, _) = user(p, "ann@example.com").await;
    let home = residence(p, ann, "Home").await;
    task(p, home, "Due", "2026-06-10", None, None).await;
    let invoke = |secret: Option<&str>| {
        let mut cmd = std::process::Command::new(honeydue_testkit::proc::binary("shim"));
        cmd.current_dir(honeydue_testkit::proc::workspace_root())
            .args([
                "invoke",
                "--function",
                "cron-task-reminders",
                "--scheduled",
                "--time",
                "2026-06-10T14:00:07Z",
                "--bin-dir",
            ])
            .arg(honeydue_testkit::proc::bin_dir())
            .env("DATABASE_URL", &db.url)
            .env_remove("APP_SECRET");
        if let Some(s) = secret {
            cmd.env("APP_SECRET", s);
        }
        cmd.output().unwrap()
    };
    let out = invoke(Some(SECRET));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["served"][0]["slot"], "2026-06-10T14:00:00Z");
    assert_eq!(report["served"][0]["stats"]["emails"], 1);
    assert_eq!(outbox(p, ann, "due_soon").await.len(), 1);
    // Without its secret the function cannot start: an init error, exit 2.
    let out = invoke(None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("APP_SECRET"));
}

#[tokio::test]
async fn a_failing_slot_fails_the_run_and_the_next_run_takes_it_over() {
    let db = TestDb::new().await;
    let p = &db.pool;
    let (ann, _) = user(p, "ann@example.com").await;
    let home = residence(p, ann, "Home").await;
    task(p, home, "Due", "2026-06-10", None, None).await;
    let c = CtxBuilder::new(&db, &JOB).base_url(BASE_URL).build().await;
    // The ledger is unavailable: the scan fails inside its transaction.
    exec(
        p,
        "ALTER TABLE task_reminder_log RENAME TO task_reminder_log_away",
    )
    .await;
    let err = run_event(&c, &JOB, &json!({"time": "2026-06-10T14:00:00Z"}))
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("task-reminders failed"),
        "{err:#}"
    );
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, last_error FROM job_runs")
            .fetch_one(p)
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert!(error.unwrap().contains("task_reminder_log"));
    assert!(
        notifications(p, ann, "due_soon").await.is_empty(),
        "nothing half-sent"
    );
    exec(
        p,
        "ALTER TABLE task_reminder_log_away RENAME TO task_reminder_log",
    )
    .await;
    // The next hour's run serves the failed hour too.
    let r = at(&c, "2026-06-10T15:00:00Z").await;
    assert_eq!(served(&r), ["2026-06-10T14:00:00Z", "2026-06-10T15:00:00Z"]);
    assert_eq!(outbox(p, ann, "due_soon").await.len(), 1);
}
