//! Due-soon and overdue task reminders and warranty-expiry reminders (the
//! `cron-task-reminders`, `cron-overdue-reminders` and
//! `cron-warranty-reminders` functions share this scan).
//!
//! For the hour `h`, the served users are the active ones whose preferred
//! local hour for the kind is `h` (see the `served_at` SQL function) and who
//! have the kind enabled. Their "today" is the local date at `h`. A task
//! reaches a served user when it is live (not archived, not cancelled), the
//! user is a member of its residence, and it is assigned to the user or to
//! nobody (then every member gets it). Due soon: due in `d` days where `d` is
//! one of the frequency's reminder offsets (a one-off: the day itself).
//! Overdue: overdue by 1, 2, 3, 6, 9 or 12 days, then no more. Warranties
//! (documents of type warranty) reach every member of the residence when
//! they expire in 30, 7 or 0 days, at the user's due-soon hour.
//!
//! Each (kind, task, user, occurrence, offset) is claimed in
//! `task_reminder_log` in the same transaction as the notification and the
//! email, users in batches by id. Emails go to verified addresses of users
//! who did not turn email off (globally or for the kind).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use honeydue_core::domain::notifications as notification;
use honeydue_mail::templates::{notice, Line, Section};
use serde_json::{json, Value};

use crate::send::{email, enqueue_all, notify, Notice};
use crate::Ctx;

/// Users per transaction.
pub const BATCH_USERS: i64 = 5000;

/// Which reminder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Due in one of the frequency's offsets.
    DueSoon,
    /// Overdue by 1, 2, 3, 6, 9 or 12 days.
    Overdue,
    /// A warranty expiring in 30, 7 or 0 days.
    Warranty,
}

impl Kind {
    /// The notification kind it sends.
    pub fn notification(self) -> notification::Kind {
        match self {
            Kind::DueSoon => notification::Kind::DueSoon,
            Kind::Overdue => notification::Kind::Overdue,
            Kind::Warranty => notification::Kind::WarrantyExpiring,
        }
    }

    /// The notification kind's name.
    pub fn name(self) -> &'static str {
        self.notification().as_str()
    }

    /// The UTC hour for users who set none.
    pub fn default_hour(self) -> i32 {
        self.notification()
            .hour()
            .expect("reminders are scheduled kinds")
            .default_utc_hour()
    }
}

/// "today", "tomorrow", "in 3 days", "1 day overdue", ...
pub fn when(kind: Kind, offset_days: i32) -> String {
    match (kind, offset_days) {
        (Kind::DueSoon, 0) => "due today".into(),
        (Kind::DueSoon, 1) => "due tomorrow".into(),
        (Kind::DueSoon, d) => format!("due in {d} days"),
        (Kind::Overdue, 1) => "1 day overdue".into(),
        (Kind::Overdue, d) => format!("{d} days overdue"),
        (Kind::Warranty, 0) => "expires today".into(),
        (Kind::Warranty, d) => format!("expires in {d} days"),
    }
}

/// A date as people read it: "Tue 1 Dec".
pub fn day(d: NaiveDate) -> String {
    d.format("%a %-d %b").to_string()
}

/// One claimed reminder, with what the message shows.
struct Row {
    user_id: i64,
    email: String,
    first_name: String,
    send_email: bool,
    item_id: i64,
    title: String,
    residence: String,
    due_date: NaiveDate,
    offset_days: i32,
}

struct Item {
    item_id: i64,
    title: String,
    residence: String,
    due_date: NaiveDate,
    offset_days: i32,
}

struct UserItems {
    email: String,
    first_name: String,
    send_email: bool,
    items: Vec<Item>,
}

/// Serves hour `h` for `kind`; returns the figures.
pub async fn run(ctx: &Ctx, kind: Kind, h: DateTime<Utc>) -> anyhow::Result<Value> {
    let (mut reminded, mut users, mut emails) = (0u64, 0u64, 0u64);
    for (start, end) in crate::user_batches(&ctx.db, BATCH_USERS).await? {
        let mut tx = ctx.db.begin().await?;
        let rows = match kind {
            Kind::DueSoon | Kind::Overdue => claim_tasks(&mut tx, kind, h, start, end).await?,
            Kind::Warranty => claim_warranties(&mut tx, h, start, end).await?,
        };
        let mut by_user: BTreeMap<i64, UserItems> = BTreeMap::new();
        for r in rows {
            by_user
                .entry(r.user_id)
                .or_insert_with(|| UserItems {
                    email: r.email,
                    first_name: r.first_name,
                    send_email: r.send_email,
                    items: Vec::new(),
                })
                .items
                .push(Item {
                    item_id: r.item_id,
                    title: r.title,
                    residence: r.residence,
                    due_date: r.due_date,
                    offset_days: r.offset_days,
                });
        }
        let mut notices = Vec::with_capacity(by_user.len());
        let mut outgoing = Vec::new();
        for (user_id, u) in by_user {
            reminded += u.items.len() as u64;
            users += 1;
            let (title, body) = headline(kind, &u.items);
            notices.push(Notice {
                user_id,
                kind: kind.name(),
                title: title.clone(),
                body: body.clone(),
                data: {
                    let ids: Vec<i64> = u.items.iter().map(|i| i.item_id).collect();
                    match kind {
                        Kind::Warranty => json!({ "document_ids": ids }),
                        _ => json!({ "task_ids": ids }),
                    }
                },
            });
            if u.send_email {
                let lines = u
                    .items
                    .iter()
                    .map(|i| Line {
                        title: i.title.clone(),
                        detail: format!(
                            "{} · {}, {}",
                            i.residence,
                            when(kind, i.offset_days),
                            day(i.due_date)
                        ),
                    })
                    .collect();
                let heading = match kind {
                    Kind::DueSoon => "Coming up",
                    Kind::Overdue => "Overdue",
                    Kind::Warranty => "Warranties",
                };
                let rendered = notice(
                    &ctx.app.name,
                    &ctx.app.base_url,
                    &u.first_name,
                    &title,
                    &[body],
                    &[Section {
                        heading: heading.into(),
                        lines,
                    }],
                    &crate::send::unsubscribe_url(ctx, user_id, kind.name()),
                );
                outgoing.push(email(
                    ctx,
                    user_id,
                    &u.email,
                    kind.name(),
                    kind.name(),
                    rendered,
                    None,
                ));
            }
        }
        notify(&mut tx, &notices).await?;
        emails += enqueue_all(&mut tx, &outgoing).await?;
        tx.commit().await?;
    }
    Ok(json!({"reminders": reminded, "users": users, "emails": emails}))
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Postgres>;

async fn claim_tasks(
    tx: &mut Tx<'_>,
    kind: Kind,
    h: DateTime<Utc>,
    lo: i64,
    hi: i64,
) -> sqlx::Result<Vec<Row>> {
    sqlx::query_as!(
            Row,
            r#"WITH served AS (SELECT * FROM served_users($1, $2, $3, $4::text, $5)),
               horizon AS (
                   SELECT coalesce(max(o), 0) AS max_offset FROM task_frequencies, unnest(reminder_offsets) o
               ),
               candidates AS (
                   SELECT t.id AS task_id, s.id AS user_id, t.next_due_date AS due_date,
                          abs(t.next_due_date - s.today) AS offset_days
                     FROM served s
                     JOIN residence_members m ON m.user_id = s.id
                     JOIN tasks t ON t.residence_id = m.residence_id
                     LEFT JOIN task_frequencies f ON f.id = t.frequency_id
                    WHERE NOT t.is_archived AND NOT t.is_cancelled
                      AND (t.assigned_to = s.id OR t.assigned_to IS NULL)
                      AND t.next_due_date BETWEEN ($1::timestamptz AT TIME ZONE 'UTC')::date - 14
                                              AND ($1::timestamptz AT TIME ZONE 'UTC')::date + 1 + (SELECT max_offset FROM horizon)
                      AND CASE WHEN $4::text = 'overdue'
                               THEN s.today - t.next_due_date = ANY ('{1,2,3,6,9,12}'::int[])
                               ELSE t.next_due_date - s.today = ANY (coalesce(f.reminder_offsets, '{0}'::int[]))
                          END
               ),
               claimed AS (
                   INSERT INTO task_reminder_log (kind, task_id, user_id, due_date, offset_days)
                   SELECT $4::text, task_id, user_id, due_date, offset_days FROM candidates
                   ON CONFLICT DO NOTHING
                   RETURNING task_id, user_id, due_date, offset_days
               )
               SELECT c.user_id AS "user_id!", s.email AS "email!", s.first_name AS "first_name!",
                      s.send_email AS "send_email!", c.task_id AS "item_id!", t.title AS "title!",
                      r.name AS "residence!", c.due_date AS "due_date!", c.offset_days AS "offset_days!"
                 FROM claimed c
                 JOIN served s ON s.id = c.user_id
                 JOIN tasks t ON t.id = c.task_id
                 JOIN residences r ON r.id = t.residence_id
                ORDER BY c.user_id, c.due_date, t.title, c.task_id"#,
            h,
            lo,
            hi,
            kind.name(),
            kind.default_hour()
        )
        .fetch_all(&mut **tx)
        .await
}

async fn claim_warranties(
    tx: &mut Tx<'_>,
    h: DateTime<Utc>,
    lo: i64,
    hi: i64,
) -> sqlx::Result<Vec<Row>> {
    sqlx::query_as!(
        Row,
        r#"WITH served AS (SELECT * FROM served_users($1, $2, $3, 'warranty_expiring', $4)),
           candidates AS (
               SELECT d.id AS document_id, s.id AS user_id, d.expiry_date, d.expiry_date - s.today AS offset_days
                 FROM served s
                 JOIN residence_members m ON m.user_id = s.id
                 JOIN documents d ON d.residence_id = m.residence_id
                WHERE d.doc_type = 'warranty'
                  AND d.expiry_date BETWEEN ($1::timestamptz AT TIME ZONE 'UTC')::date - 1
                                        AND ($1::timestamptz AT TIME ZONE 'UTC')::date + 31
                  AND d.expiry_date - s.today = ANY ('{30,7,0}'::int[])
           ),
           claimed AS (
               INSERT INTO warranty_reminder_log (document_id, user_id, expiry_date, offset_days)
               SELECT document_id, user_id, expiry_date, offset_days FROM candidates
               ON CONFLICT DO NOTHING
               RETURNING document_id, user_id, expiry_date, offset_days
           )
           SELECT c.user_id AS "user_id!", s.email AS "email!", s.first_name AS "first_name!",
                  s.send_email AS "send_email!", c.document_id AS "item_id!", d.title AS "title!",
                  r.name AS "residence!", c.expiry_date AS "due_date!", c.offset_days AS "offset_days!"
             FROM claimed c
             JOIN served s ON s.id = c.user_id
             JOIN documents d ON d.id = c.document_id
             JOIN residences r ON r.id = d.residence_id
            ORDER BY c.user_id, c.expiry_date, d.title, c.document_id"#,
        h,
        lo,
        hi,
        Kind::Warranty.default_hour()
    )
    .fetch_all(&mut **tx)
    .await
}

fn headline(kind: Kind, items: &[Item]) -> (String, String) {
    match (kind, items) {
        (Kind::DueSoon, [one]) => (
            format!("{} is {}", one.title, when(kind, one.offset_days)),
            format!("{} at {} is {} ({}).", one.title, one.residence, when(kind, one.offset_days), day(one.due_date)),
        ),
        (Kind::DueSoon, many) => (
            format!("{} tasks are due soon", many.len()),
            "These tasks are coming up.".to_string(),
        ),
        (Kind::Overdue, [one]) => (
            format!("{} is overdue", one.title),
            format!("{} at {} was due {} and is {}.", one.title, one.residence, day(one.due_date), when(kind, one.offset_days)),
        ),
        (Kind::Overdue, many) => (
            format!("{} tasks are overdue", many.len()),
            "These tasks are past their due date.".to_string(),
        ),
        (Kind::Warranty, [one]) => (
            format!("The warranty for {} {}", one.title, when(kind, one.offset_days)),
            format!(
                "The warranty for {} at {} {} ({}). Check what it covers and how to claim while it still applies.",
                one.title,
                one.residence,
                when(kind, one.offset_days),
                day(one.due_date)
            ),
        ),
        (Kind::Warranty, many) => (
            format!("{} warranties expire soon", many.len()),
            "These warranties are about to expire.".to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(Kind::DueSoon.name(), "due_soon");
        assert_eq!(Kind::Overdue.name(), "overdue");
        assert_eq!(Kind::Warranty.name(), "warranty_expiring");
        assert_eq!(Kind::DueSoon.default_hour(), 14);
        assert_eq!(Kind::Overdue.default_hour(), 15);
        assert_eq!(Kind::Warranty.default_hour(), 14);
    }

    #[test]
    fn phrases() {
        assert_eq!(when(Kind::DueSoon, 0), "due today");
        assert_eq!(when(Kind::DueSoon, 1), "due tomorrow");
        assert_eq!(when(Kind::DueSoon, 14), "due in 14 days");
        assert_eq!(when(Kind::Overdue, 1), "1 day overdue");
        assert_eq!(when(Kind::Overdue, 6), "6 days overdue");
        assert_eq!(when(Kind::Warranty, 0), "expires today");
        assert_eq!(when(Kind::Warranty, 30), "expires in 30 days");
        assert_eq!(
            day(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()),
            "Tue 1 Dec"
        );
    }
}
