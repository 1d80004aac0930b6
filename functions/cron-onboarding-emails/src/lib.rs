//! `cron-onboarding-emails`: daily. Each step goes to a user once, ever
//! (`onboarding_emails`), and a user gets at most one step per day, the
//! first that applies in this order:
//!
//! * `welcome` — verified in the last 7 days;
//! * `verify_reminder` — still unverified 1 to 7 days after signing up (the
//!   only step sent to an unverified address: it is the point of it);
//! * `no_residence` — verified, signed up 2 to 30 days ago, in no residence;
//! * `no_tasks` — 5 to 30 days after creating their first residence, no task
//!   in any residence of theirs.
//!
//! Windows are measured from the start of the UTC day the event stands for,
//! so a repeated or late run judges the same users. Users who turned email
//! off get none; inactive users get none.

use chrono::{DateTime, Utc};
use honeydue_jobs::send::{email, unsubscribe_url};
use honeydue_jobs::{Cadence, Ctx, Job, JobFuture};
use honeydue_mail::templates::{notice, Rendered};
use serde_json::{json, Map, Value};

/// The job.
pub static JOB: Job = Job {
    name: "onboarding-emails",
    cadence: Cadence::Daily,
    mails: true,
    storage: false,
    run,
};

/// The steps in the order they are considered.
pub const STEPS: [&str; 4] = ["welcome", "verify_reminder", "no_residence", "no_tasks"];

fn run(ctx: &Ctx, day: DateTime<Utc>) -> JobFuture<'_> {
    Box::pin(serve_day(ctx, day))
}

/// The message of a step.
pub fn render(ctx: &Ctx, step: &str, user_id: i64, first_name: &str) -> Rendered {
    let app = &ctx.app.name;
    let (subject, paragraphs): (String, Vec<String>) = match step {
        "welcome" => (
            format!("Welcome to {app}"),
            vec![
                format!("Your email is verified and your {app} account is ready."),
                "Add your home, then the jobs that keep it running: filters, gutters, smoke alarms. We will remind you before each one is due.".into(),
            ],
        ),
        "verify_reminder" => (
            format!("Please verify your {app} email address"),
            vec![
                "You signed up but have not verified your email address yet.".into(),
                "Open the app and ask for a new code from the verification screen; it arrives in seconds.".into(),
            ],
        ),
        "no_residence" => (
            format!("Add your home to {app}"),
            vec![
                "You have not added a home yet. It takes a minute: a name is enough to start.".into(),
                "Once it is there, add recurring tasks and share the home with the people you live with.".into(),
            ],
        ),
        _ => (
            "Add your first maintenance task".to_string(),
            vec![
                "Your home is set up, but it has no tasks yet.".into(),
                "Start with the ones that are easy to forget: HVAC filters every 3 months, gutters twice a year, smoke alarm batteries once a year.".into(),
            ],
        ),
    };
    notice(
        app,
        &ctx.app.base_url,
        first_name,
        &subject,
        &paragraphs,
        &[],
        &unsubscribe_url(ctx, user_id, "all"),
    )
}

async fn serve_day(ctx: &Ctx, day: DateTime<Utc>) -> anyhow::Result<Value> {
    let mut tx = ctx.db.begin().await?;
    let mut stats = Map::new();
    for step in STEPS {
        let rows = sqlx::query!(
            r#"WITH candidates AS (
                   SELECT u.id FROM users u
                     LEFT JOIN notification_preferences p ON p.user_id = u.id
                    WHERE u.is_active AND coalesce(p.email_enabled, TRUE)
                      AND NOT EXISTS (SELECT 1 FROM onboarding_emails o
                                       WHERE o.user_id = u.id AND (o.step = $2 OR o.sent_for = ($1::timestamptz AT TIME ZONE 'UTC')::date))
                      AND CASE $2
                          WHEN 'welcome' THEN u.email_verified_at IS NOT NULL
                               AND u.email_verified_at >= $1 - interval '7 days' AND u.email_verified_at < $1
                          WHEN 'verify_reminder' THEN u.email_verified_at IS NULL
                               AND u.created_at >= $1 - interval '7 days' AND u.created_at < $1 - interval '1 day'
                          WHEN 'no_residence' THEN u.email_verified_at IS NOT NULL
                               AND u.created_at >= $1 - interval '30 days' AND u.created_at < $1 - interval '2 days'
                               AND NOT EXISTS (SELECT 1 FROM residence_members m WHERE m.user_id = u.id)
                          WHEN 'no_tasks' THEN u.email_verified_at IS NOT NULL
                               AND (SELECT min(r.created_at) FROM residences r WHERE r.owner_id = u.id)
                                   BETWEEN $1 - interval '30 days' AND $1 - interval '5 days'
                               AND NOT EXISTS (SELECT 1 FROM residence_members m JOIN tasks t ON t.residence_id = m.residence_id
                                                WHERE m.user_id = u.id)
                          ELSE FALSE END
               ),
               claimed AS (
                   INSERT INTO onboarding_emails (user_id, step, sent_for)
                   SELECT c.id, $2, ($1::timestamptz AT TIME ZONE 'UTC')::date FROM candidates c
                   ON CONFLICT DO NOTHING
                   RETURNING user_id
               )
               SELECT c.user_id, u.email, u.first_name FROM claimed c JOIN users u ON u.id = c.user_id"#,
            day,
            step
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut n = 0u64;
        for u in rows {
            let user_id = u.user_id;
            let message = email(
                ctx,
                user_id,
                &u.email,
                "onboarding",
                "all",
                render(ctx, step, user_id, &u.first_name),
                Some(format!("onboarding:{user_id}:{step}")),
            );
            let id = honeydue_mail::enqueue(&mut tx, &message).await?;
            sqlx::query!(
                "UPDATE onboarding_emails SET outbox_id = $3 WHERE user_id = $1 AND step = $2",
                user_id,
                step,
                id
            )
            .execute(&mut *tx)
            .await?;
            n += 1;
        }
        stats.insert(step.to_string(), json!(n));
    }
    tx.commit().await?;
    Ok(Value::Object(stats))
}
