//! `cron-daily-digest`: hourly; one email per user at their local digest
//! hour (default 03:00 UTC): overdue (the 10 oldest), due today and
//! tomorrow, the next 7 days, in progress, other members' completions in the
//! last 24 hours, and warranties expiring within 30 days. A user with nothing
//! in any section gets no email. `digest_log` (user, local date) makes it
//! once a day, claimed in the same transaction as the outbox row.
//!
//! Tasks count for a user as the reminders do: live tasks of the user's
//! residences assigned to them or to nobody. Only verified addresses of
//! users who keep the digest's email on receive it.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use honeydue_jobs::reminders::day;
use honeydue_jobs::send::{email, enqueue_all, unsubscribe_url, Hour, Kind};
use honeydue_jobs::{Cadence, Ctx, Job, JobFuture};
use honeydue_mail::templates::{notice, Line, Section};
use serde_json::{json, Value};

/// The job.
pub static JOB: Job = Job {
    name: "daily-digest",
    cadence: Cadence::Hourly { lookback: 6 },
    mails: true,
    storage: false,
    run,
};

/// Users per transaction.
pub const BATCH_USERS: i64 = 5000;
/// Lines per section.
pub const PER_SECTION: i64 = 10;
/// What this job sends (its users' digest hour times it).
const KIND: Kind = Kind::DailyDigest;

/// The sections, in the order the email shows them.
pub const SECTIONS: [(&str, &str); 6] = [
    ("overdue", "Overdue"),
    ("soon", "Due today and tomorrow"),
    ("week", "Next 7 days"),
    ("in_progress", "In progress"),
    ("completed", "Done by others in the last 24 hours"),
    ("warranty", "Warranties expiring within 30 days"),
];

fn run(ctx: &Ctx, hour: DateTime<Utc>) -> JobFuture<'_> {
    Box::pin(serve_hour(ctx, hour))
}

struct Digest {
    email: String,
    first_name: String,
    today: NaiveDate,
    sections: BTreeMap<usize, (i64, Vec<Line>)>,
}

fn detail(
    section: &str,
    residence: &str,
    date: Option<NaiveDate>,
    who: Option<&str>,
    today: NaiveDate,
) -> String {
    match (section, date) {
        ("completed", _) => format!("{residence} · done by {}", who.unwrap_or("someone")),
        ("warranty", Some(d)) => format!("{residence} · expires {}", day(d)),
        ("overdue", Some(d)) => {
            let n = (today - d).num_days();
            format!(
                "{residence} · due {}, {n} day{} ago",
                day(d),
                if n == 1 { "" } else { "s" }
            )
        }
        (_, Some(d)) if d == today => format!("{residence} · due today"),
        (_, Some(d)) if d == today.succ_opt().unwrap_or(d) => format!("{residence} · due tomorrow"),
        (_, Some(d)) => format!("{residence} · due {}", day(d)),
        (_, None) => residence.to_string(),
    }
}

async fn serve_hour(ctx: &Ctx, h: DateTime<Utc>) -> anyhow::Result<Value> {
    let mut sent = 0u64;
    for (start, end) in honeydue_jobs::user_batches(&ctx.db, BATCH_USERS).await? {
        let mut tx = ctx.db.begin().await?;
        let rows = sqlx::query!(
            r#"WITH served AS (
                   SELECT id, today FROM served_users($1, $2, $3, 'daily_digest', $4) WHERE send_email
               ),
               fresh AS (
                   SELECT s.* FROM served s
                    WHERE NOT EXISTS (SELECT 1 FROM digest_log d WHERE d.user_id = s.id AND d.local_date = s.today)
               ),
               items AS (
                   SELECT f.id AS user_id,
                          CASE WHEN t.next_due_date < f.today THEN 'overdue'
                               WHEN t.next_due_date <= f.today + 1 THEN 'soon'
                               WHEN t.next_due_date <= f.today + 7 THEN 'week'
                               ELSE 'in_progress' END AS section,
                          t.title, r.name AS residence, t.next_due_date AS day, NULL::text AS who
                     FROM fresh f
                     JOIN residence_members m ON m.user_id = f.id
                     JOIN tasks t ON t.residence_id = m.residence_id
                     JOIN residences r ON r.id = t.residence_id
                    WHERE NOT t.is_archived AND NOT t.is_cancelled
                      AND (t.assigned_to = f.id OR t.assigned_to IS NULL)
                      AND (t.next_due_date <= f.today + 7 OR t.in_progress)
                   UNION ALL
                   SELECT f.id, 'completed', t.title, r.name, NULL::date,
                          coalesce(nullif(btrim(cu.first_name), ''), 'another member')
                     FROM fresh f
                     JOIN residence_members m ON m.user_id = f.id
                     JOIN tasks t ON t.residence_id = m.residence_id
                     JOIN residences r ON r.id = t.residence_id
                     JOIN task_completions c ON c.task_id = t.id
                     LEFT JOIN users cu ON cu.id = c.completed_by
                    WHERE c.completed_at > $1 - interval '24 hours' AND c.completed_at <= $1
                      AND c.completed_by IS DISTINCT FROM f.id
                   UNION ALL
                   SELECT f.id, 'warranty', d.title, r.name, d.expiry_date, NULL
                     FROM fresh f
                     JOIN residence_members m ON m.user_id = f.id
                     JOIN documents d ON d.residence_id = m.residence_id
                     JOIN residences r ON r.id = d.residence_id
                    WHERE d.doc_type = 'warranty' AND d.expiry_date BETWEEN f.today AND f.today + 30
               ),
               ranked AS (
                   SELECT i.*, row_number() OVER w AS rn, count(*) OVER (PARTITION BY i.user_id, i.section) AS total
                     FROM items i
                   WINDOW w AS (PARTITION BY i.user_id, i.section ORDER BY i.day NULLS LAST, i.title)
               )
               SELECT k.user_id AS "user_id!", u.email AS "email!", u.first_name AS "first_name!",
                      f.today AS "today!", k.section AS "section!", k.title AS "title!",
                      k.residence AS "residence!", k.day, k.who, k.total AS "total!"
                 FROM ranked k
                 JOIN fresh f ON f.id = k.user_id
                 JOIN users u ON u.id = k.user_id
                WHERE k.rn <= $5
                ORDER BY k.user_id, k.section, k.rn"#,
            h,
            start,
            end,
            Hour::Digest.default_utc_hour(),
            PER_SECTION
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut digests: BTreeMap<i64, Digest> = BTreeMap::new();
        for r in rows {
            let Some(idx) = SECTIONS.iter().position(|(k, _)| *k == r.section) else {
                continue;
            };
            let d = digests.entry(r.user_id).or_insert_with(|| Digest {
                email: r.email,
                first_name: r.first_name,
                today: r.today,
                sections: BTreeMap::new(),
            });
            let line = Line {
                detail: detail(&r.section, &r.residence, r.day, r.who.as_deref(), d.today),
                title: r.title,
            };
            let e = d.sections.entry(idx).or_insert((r.total, Vec::new()));
            e.1.push(line);
        }
        // Claim the day for each user with something to say; a concurrent
        // run's claim wins and this one sends nothing for that user.
        let users: Vec<i64> = digests.keys().copied().collect();
        let days: Vec<NaiveDate> = digests.values().map(|d| d.today).collect();
        let claimed: Vec<i64> = sqlx::query_scalar!(
            "INSERT INTO digest_log (user_id, local_date)
             SELECT * FROM UNNEST($1::bigint[], $2::date[])
             ON CONFLICT DO NOTHING RETURNING user_id",
            &users,
            &days
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut outgoing = Vec::with_capacity(claimed.len());
        for user_id in claimed {
            let d = &digests[&user_id];
            let sections: Vec<Section> = d
                .sections
                .iter()
                .map(|(idx, (total, lines))| {
                    let mut lines = lines.clone();
                    let more = *total - lines.len() as i64;
                    if more > 0 {
                        lines.push(Line {
                            title: format!("and {more} more"),
                            detail: "open the app to see them all".into(),
                        });
                    }
                    Section {
                        heading: SECTIONS[*idx].1.to_string(),
                        lines,
                    }
                })
                .collect();
            let subject = format!("Your {} digest for {}", ctx.app.name, day(d.today));
            let rendered = notice(
                &ctx.app.name,
                &ctx.app.base_url,
                &d.first_name,
                &subject,
                &["Here is what needs your attention around the house.".to_string()],
                &sections,
                &unsubscribe_url(ctx, user_id, KIND.as_str()),
            );
            outgoing.push(email(
                ctx,
                user_id,
                &d.email,
                KIND.as_str(),
                KIND.as_str(),
                rendered,
                Some(format!("{}:{user_id}:{}", KIND.as_str(), d.today)),
            ));
        }
        sent += enqueue_all(&mut tx, &outgoing).await?;
        tx.commit().await?;
    }
    Ok(json!({"digests": sent}))
}
