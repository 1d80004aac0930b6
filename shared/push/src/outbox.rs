//! The push outbox (`push_outbox`): one row per (notification, device),
//! written with the notification, delivered by `cron-push-dispatch`.
//!
//! * `honeydue_core::notify` writes the rows in the transaction that
//!   writes the notifications: one for each active device of each
//!   recipient whose preferences allow push for the kind, due when the
//!   recipient's quiet hours end (SQL `push_due_at`, in their time zone).
//!   The unique (notification, device) pair makes a repeat harmless.
//! * [`dispatch`] claims due rows of the platforms it can send to with
//!   `FOR UPDATE SKIP LOCKED` and a lease (as the email outbox does), sends
//!   them one at a time and records each outcome at once: sent; a retry
//!   with back-off (the provider's `Retry-After` when longer); dead after a
//!   permanent refusal or the last attempt; the device deactivated (and its
//!   other pending rows dropped) when the provider says the token is gone;
//!   the provider unreachable: the run stops and gives its unsent rows back
//!   due now, attempt uncounted.
//! * A push is worth sending for a day: a row still pending 24 hours after
//!   it was written (a provider down that long, a platform with no sender
//!   configured) is `expired`; the in-app notification stays.

use std::time::{Duration, Instant};

use honeydue_core::outbox::{backoff, patiently, Policy, LEASE};
use serde::Serialize;
use sqlx::PgPool;

use crate::{Message, Outcome, Push};

/// What one run did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    /// Accepted by Apple or Google.
    pub sent: u32,
    /// To be retried.
    pub retried: u32,
    /// Refused for good.
    pub dead: u32,
    /// Devices deactivated (their token is gone).
    pub deactivated: u32,
    /// Rows older than a day, never sent.
    pub expired: u32,
}

/// Delivers due rows until none is left, a batch comes back short, or the
/// policy's time budget is spent.
pub async fn dispatch(pool: &PgPool, push: &Push, policy: Policy) -> anyhow::Result<Stats> {
    let started = Instant::now();
    let expired = sqlx::query!(
        "UPDATE push_outbox SET status = 'expired', last_error = COALESCE(last_error, 'not sent within a day')
          WHERE status = 'pending' AND created_at < now() - interval '1 day'"
    )
    .execute(pool)
    .await?
    .rows_affected() as u32;
    let mut stats = Stats {
        expired,
        ..Stats::default()
    };
    let platforms: Vec<String> = push.platforms().into_iter().map(String::from).collect();
    if platforms.is_empty() {
        return Ok(stats);
    }
    let mut gone = std::collections::HashSet::new();
    loop {
        let rows = sqlx::query!(
            r#"UPDATE push_outbox o
                  SET attempts = o.attempts + 1, next_attempt_at = now() + make_interval(secs => $3)
                 FROM (SELECT po.id FROM push_outbox po JOIN devices d ON d.id = po.device_id
                        WHERE po.status = 'pending' AND po.next_attempt_at <= now()
                          AND d.platform = ANY($2)
                        ORDER BY po.next_attempt_at, po.id
                        LIMIT $1
                        FOR UPDATE OF po SKIP LOCKED) due, devices d
                WHERE o.id = due.id AND d.id = o.device_id
            RETURNING o.id, o.device_id, d.platform, d.token, d.active, o.kind, o.title, o.body, o.data, o.attempts"#,
            policy.batch,
            &platforms,
            LEASE.as_secs_f64()
        )
        .fetch_all(pool)
        .await?;
        let claimed = rows.len() as i64;
        let mut unsent: Vec<i64> = rows.iter().map(|r| r.id).rev().collect();
        for r in rows {
            unsent.pop();
            if gone.contains(&r.device_id) {
                // Deactivated by an earlier row of this batch, which
                // dropped this one.
                continue;
            }
            if !r.active {
                // Deactivated since it was queued (another push's 410).
                record(
                    pool,
                    r.id,
                    "dropped",
                    Duration::ZERO,
                    Some("the device was deactivated"),
                )
                .await?;
                continue;
            }
            let m = Message {
                id: r.id,
                token: r.token,
                kind: r.kind,
                title: r.title,
                body: r.body,
                data: r.data,
            };
            match push.send(&r.platform, &m).await {
                Outcome::Sent => {
                    stats.sent += 1;
                    record(pool, r.id, "sent", Duration::ZERO, None).await?;
                }
                Outcome::Retry { reason, after } if r.attempts < policy.max_attempts => {
                    let wait = backoff(r.attempts - 1).max(after.unwrap_or_default());
                    tracing::warn!(
                        push_id = r.id,
                        error = reason,
                        retry_in_s = wait.as_secs(),
                        "push failed; will retry"
                    );
                    stats.retried += 1;
                    record(pool, r.id, "pending", wait, Some(&reason)).await?;
                }
                Outcome::Retry { reason, .. } | Outcome::Rejected(reason) => {
                    tracing::error!(push_id = r.id, error = reason, "push refused for good");
                    stats.dead += 1;
                    record(pool, r.id, "dead", Duration::ZERO, Some(&reason)).await?;
                }
                Outcome::Unregistered(reason) => {
                    tracing::info!(
                        push_id = r.id,
                        device_id = r.device_id,
                        reason,
                        "device token gone; deactivated"
                    );
                    stats.deactivated += 1;
                    gone.insert(r.device_id);
                    deactivate(pool, r.device_id, r.id, &reason).await?;
                }
                Outcome::Unreachable(reason) => {
                    // The provider, not the message: this row and the rest
                    // go back, due now and uncounted; the next run retries.
                    unsent.push(r.id);
                    tracing::warn!(
                        error = reason,
                        unsent = unsent.len(),
                        "push provider unreachable; the next run retries"
                    );
                    stats.retried += unsent.len() as u32;
                    patiently("giving pushes back", || {
                        sqlx::query!(
                            "UPDATE push_outbox SET attempts = attempts - 1, next_attempt_at = now(), last_error = $2
                              WHERE id = ANY($1) AND status = 'pending'",
                            &unsent,
                            reason
                        )
                        .execute(pool)
                    })
                    .await?;
                    return Ok(stats);
                }
            }
        }
        if claimed < policy.batch || started.elapsed() > policy.budget {
            break;
        }
    }
    Ok(stats)
}

/// Records one row's outcome (retried while the database is briefly away:
/// a sent push not recorded would go again after its lease).
async fn record(
    pool: &PgPool,
    id: i64,
    status: &str,
    wait: Duration,
    error: Option<&str>,
) -> anyhow::Result<()> {
    patiently("recording a push", || {
        sqlx::query!(
            "UPDATE push_outbox
                SET status = $2, last_error = $4,
                    sent_at = CASE WHEN $2 = 'sent' THEN now() END,
                    next_attempt_at = now() + make_interval(secs => $3)
              WHERE id = $1",
            id,
            status,
            wait.as_secs_f64(),
            error
        )
        .execute(pool)
    })
    .await
    .map(drop)
}

/// The device's token is gone: the device stops receiving, this row is
/// dead, its other pending rows are dropped.
async fn deactivate(pool: &PgPool, device_id: i64, row: i64, reason: &str) -> anyhow::Result<()> {
    patiently("deactivating a device", || async {
        let mut tx = pool.begin().await?;
        sqlx::query!(
            "UPDATE devices SET active = FALSE, deactivated_at = now(), deactivated_reason = $2
              WHERE id = $1 AND active",
            device_id,
            reason
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "UPDATE push_outbox SET status = CASE WHEN id = $2 THEN 'dead' ELSE 'dropped' END, last_error = $3
              WHERE device_id = $1 AND (id = $2 OR status = 'pending')",
            device_id,
            row,
            reason
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    })
    .await
}
