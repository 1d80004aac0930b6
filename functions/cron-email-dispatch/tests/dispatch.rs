//! Outbox delivery against a real SMTP server (aiosmtpd) and Postgres.

use std::time::Duration;

use cron_email_dispatch::Dispatcher;
use honeydue_mail::deliver::{Mailer, Policy, Security, SmtpConfig};
use honeydue_mail::OutgoingEmail;
use honeydue_testkit::smtp::TestSmtp;
use honeydue_testkit::TestDb;

fn mailer(port: u16) -> Mailer {
    let cfg = SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        security: Security::None,
        credentials: None,
        timeout: Duration::from_secs(5),
    };
    Mailer::new(&cfg, "honeyDue <noreply@honeydue.test>").unwrap()
}

async fn enqueue(db: &TestDb, to: &str, subject: &str) -> i64 {
    let mut conn = db.pool.acquire().await.unwrap();
    honeydue_mail::enqueue(
        &mut conn,
        &OutgoingEmail {
            user_id: None,
            kind: "test",
            to: to.into(),
            subject: subject.into(),
            text: format!("text of {subject}"),
            html: Some(format!("<p>html of {subject}</p>")),
            dedupe_key: None,
            headers: vec![(
                "List-Unsubscribe".into(),
                "<https://honeydue.test/api/unsubscribe/x/>".into(),
            )],
        },
    )
    .await
    .unwrap()
    .unwrap()
}

async fn status(db: &TestDb, id: i64) -> (String, i32, Option<String>) {
    sqlx::query_as("SELECT status, attempts, last_error FROM email_outbox WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

fn dispatcher(db: &TestDb, port: u16) -> Dispatcher {
    Dispatcher {
        db: db.pool.clone(),
        mailer: mailer(port),
        policy: Policy::default(),
    }
}

#[tokio::test]
async fn delivers_once_with_both_parts() {
    let db = TestDb::new().await;
    let smtp = tokio::task::spawn_blocking(TestSmtp::start).await.unwrap();
    let id = enqueue(&db, "ann@example.com", "Your code").await;
    let d = dispatcher(&db, smtp.port);
    let s = d.run().await.unwrap();
    assert_eq!((s.sent, s.retried, s.dead), (1, 0, 0));
    let s = d.run().await.unwrap();
    assert_eq!(s.sent, 0, "a second run sends nothing again");
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert!(m.contains("X-Envelope-To: ann@example.com"));
    assert!(m.contains("Subject: Your code"));
    assert!(m.contains("multipart/alternative"));
    assert!(m.contains("text of Your code") && m.contains("html of Your code"));
    assert!(m.contains("List-Unsubscribe: <https://honeydue.test/api/unsubscribe/x/>"));
    assert_eq!(status(&db, id).await.0, "sent");
}

#[tokio::test]
async fn permanent_failures_die_and_temporary_ones_wait() {
    let db = TestDb::new().await;
    let smtp = tokio::task::spawn_blocking(TestSmtp::start).await.unwrap();
    let bounce = enqueue(&db, "reject-me@example.com", "Bounce").await;
    let later = enqueue(&db, "tempfail-me@example.com", "Later").await;
    let bad = enqueue(&db, "not an address", "Bad").await;
    let s = dispatcher(&db, smtp.port).run().await.unwrap();
    assert_eq!((s.sent, s.retried, s.dead), (0, 1, 2));
    let (st, attempts, err) = status(&db, bounce).await;
    assert_eq!((st.as_str(), attempts), ("dead", 1));
    assert!(err.unwrap().contains("550"));
    assert_eq!(status(&db, bad).await.0, "dead");
    let (st, attempts, _) = status(&db, later).await;
    assert_eq!((st.as_str(), attempts), ("pending", 1));
    let wait: f64 = sqlx::query_scalar("SELECT EXTRACT(EPOCH FROM next_attempt_at - now())::float8 FROM email_outbox WHERE id = $1")
        .bind(later)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(wait > 30.0, "backed off ({wait} s)");
    // Not due yet: the next run leaves it alone.
    assert_eq!(
        dispatcher(&db, smtp.port).run().await.unwrap(),
        Default::default()
    );
    assert!(smtp.messages().is_empty());
}

#[tokio::test]
async fn smtp_down_then_up_delivers_once() {
    let db = TestDb::new().await;
    let port = honeydue_testkit::proc::free_addr().port();
    let id = enqueue(&db, "ben@example.com", "Reset code").await;
    let d = dispatcher(&db, port);
    let s = d.run().await.unwrap();
    assert_eq!((s.sent, s.retried), (0, 1), "nothing listens yet");
    // An outage is the server's, not the message's: no attempt used up, no
    // back-off, the error kept for the admin.
    let (st, attempts, err) = status(&db, id).await;
    assert_eq!((st.as_str(), attempts), ("pending", 0));
    assert!(err.is_some_and(|e| !e.is_empty()));
    let due: bool =
        sqlx::query_scalar("SELECT next_attempt_at <= now() FROM email_outbox WHERE id = $1")
            .bind(id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(due, "due again at once");
    let smtp = tokio::task::spawn_blocking(move || TestSmtp::start_on(port))
        .await
        .unwrap();
    // The first run after the outage delivers it.
    assert_eq!(d.run().await.unwrap().sent, 1);
    assert_eq!(d.run().await.unwrap().sent, 0);
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 1);
    assert!(
        msgs[0].contains(&format!("Message-ID: <outbox-{id}@honeydue.test>")),
        "{}",
        msgs[0]
    );
    let (st, attempts, err) = status(&db, id).await;
    assert_eq!((st.as_str(), attempts, err), ("sent", 1, None));
}

#[tokio::test]
async fn a_run_that_dies_mid_send_gives_its_rows_back_after_the_lease() {
    let db = TestDb::new().await;
    let smtp = tokio::task::spawn_blocking(TestSmtp::start).await.unwrap();
    let id = enqueue(&db, "cal@example.com", "Leased").await;
    // A dispatcher claimed the row, then died before sending it.
    sqlx::query(
        "UPDATE email_outbox SET attempts = 1, next_attempt_at = now() + interval '300 seconds'",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let d = dispatcher(&db, smtp.port);
    assert_eq!(d.run().await.unwrap().sent, 0, "leased: not taken");
    sqlx::query("UPDATE email_outbox SET next_attempt_at = now()")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(d.run().await.unwrap().sent, 1, "the lease ran out");
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(status(&db, id).await.1, 2);
}

#[tokio::test]
async fn concurrent_runs_send_each_message_once() {
    let db = TestDb::new().await;
    let smtp = tokio::task::spawn_blocking(TestSmtp::start).await.unwrap();
    for i in 0..30 {
        enqueue(
            &db,
            &format!("user{i}@example.com"),
            &format!("Message {i}"),
        )
        .await;
    }
    let mut d1 = dispatcher(&db, smtp.port);
    d1.policy.batch = 5;
    let mut d2 = dispatcher(&db, smtp.port);
    d2.policy.batch = 5;
    let (a, b) = tokio::join!(d1.run(), d2.run());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.sent + b.sent, 30);
    let msgs = smtp.messages();
    assert_eq!(msgs.len(), 30);
    let mut subjects: Vec<&str> = msgs
        .iter()
        .filter_map(|m| m.lines().find(|l| l.starts_with("Subject: ")))
        .collect();
    subjects.sort();
    subjects.dedup();
    assert_eq!(subjects.len(), 30, "no message twice");
}

#[tokio::test]
async fn runs_as_a_cronjob_through_shim_invoke() {
    let db = TestDb::new().await;
    let smtp = tokio::task::spawn_blocking(TestSmtp::start).await.unwrap();
    enqueue(&db, "cron@example.com", "From the CronJob").await;
    let shim = honeydue_testkit::proc::binary("shim");
    let out = tokio::process::Command::new(shim)
        .current_dir(honeydue_testkit::proc::workspace_root())
        .args([
            "invoke",
            "--function",
            "cron-email-dispatch",
            "--scheduled",
            "--bin-dir",
        ])
        .arg(honeydue_testkit::proc::bin_dir())
        .env("DATABASE_URL", &db.url)
        .env("SMTP_HOST", "127.0.0.1")
        .env("SMTP_PORT", smtp.port.to_string())
        .env("SMTP_SECURITY", "none")
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["sent"], 1);
    assert_eq!(smtp.messages().len(), 1);

    // A bad configuration is an init failure: exit code 2.
    let out = tokio::process::Command::new(honeydue_testkit::proc::binary("shim"))
        .current_dir(honeydue_testkit::proc::workspace_root())
        .args([
            "invoke",
            "--function",
            "cron-email-dispatch",
            "--scheduled",
            "--bin-dir",
        ])
        .arg(honeydue_testkit::proc::bin_dir())
        .env("DATABASE_URL", &db.url)
        .env_remove("SMTP_HOST")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Urgent mail (a code sent from the background of a request) whose sender
/// stops half-way, its SMTP server not yet answering (a worker replaced
/// between invocations, a frozen Lambda): the row is leased only for
/// URGENT_LEASE, so the next dispatcher run after it takes the row, rather
/// than one five minutes later.
#[tokio::test]
async fn an_urgent_send_cut_off_half_way_is_due_again_after_a_short_lease() {
    use honeydue_mail::deliver::{deliver_now, URGENT_LEASE};
    let db = TestDb::new().await;
    // An SMTP server that accepts and never speaks.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let id = enqueue(&db, "dee@example.com", "Your code").await;
    let cut = tokio::time::timeout(
        Duration::from_millis(500),
        deliver_now(&db.pool, &mailer(port), &[id]),
    )
    .await;
    assert!(cut.is_err(), "the sender was still waiting for the server");
    held.abort();
    let (attempts, leased_for): (i32, f64) = sqlx::query_as(
        "SELECT attempts, extract(epoch FROM next_attempt_at - now())::float8 FROM email_outbox WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(attempts, 1, "claimed");
    assert!(
        leased_for > 0.0 && leased_for <= URGENT_LEASE.as_secs_f64(),
        "leased for {leased_for:.0} s, expected at most {} s",
        URGENT_LEASE.as_secs()
    );
    let smtp = tokio::task::spawn_blocking(TestSmtp::start).await.unwrap();
    let d = dispatcher(&db, smtp.port);
    assert_eq!(d.run().await.unwrap().sent, 0, "not before the lease ends");
    sqlx::query("UPDATE email_outbox SET next_attempt_at = now() WHERE id = $1 AND next_attempt_at <= now() + $2::float8 * interval '1 second'")
        .bind(id)
        .bind(URGENT_LEASE.as_secs_f64())
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        d.run().await.unwrap().sent,
        1,
        "then the dispatcher sends it"
    );
    assert_eq!(smtp.messages().len(), 1);
}
