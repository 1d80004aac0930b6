//! Runs claimed per (job, slot) in `job_runs`.
//!
//! The slot a run stands for comes from the event's `time` (EventBridge and
//! `shim invoke --scheduled` both set it), truncated to the hour or the day,
//! so a late or repeated run is judged by the hour it stands for. An hourly
//! job also serves, within `lookback` hours, the hours missed since its
//! last recorded slot and recorded ones that failed; a job with no recorded
//! slot serves only its own.
//!
//! A run holds a slot with a Postgres session advisory lock on a connection
//! of its own for as long as it serves it, and records it in its row. A slot
//! whose lock another run holds is skipped (two runs at once: one serves);
//! a slot recorded `done` is skipped; any other (never run, failed, or
//! `running` with nobody holding the lock: the run died, its connection
//! closed, the lock went with it) is served at once, with no wait for a
//! timeout. The ledgers behind each message make even a taken-over slot
//! send nothing twice.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::pool::PoolConnection;
use sqlx::{PgPool, Postgres};

use crate::{Ctx, Job};

/// How often a job runs.
#[derive(Debug, Clone, Copy)]
pub enum Cadence {
    /// Every hour; up to `lookback` missed hours are caught up.
    Hourly {
        /// Most missed hours served by one run.
        lookback: u32,
    },
    /// Once a day; the slot is the UTC day.
    Daily,
}

/// What one invocation did.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// The job.
    pub job: &'static str,
    /// The time the event stands for.
    pub scheduled_time: DateTime<Utc>,
    /// The slots this run served, oldest first, with each one's figures.
    pub served: Vec<SlotReport>,
    /// Slots skipped because another run holds or finished them.
    pub skipped: Vec<DateTime<Utc>>,
}

/// One served slot.
#[derive(Debug, Serialize)]
pub struct SlotReport {
    /// The slot.
    pub slot: DateTime<Utc>,
    /// The job's figures for it.
    pub stats: Value,
}

/// The time an event stands for: its `time` (RFC 3339), or now when the
/// event has none (a manual invocation).
pub fn scheduled_time(event: &Value) -> anyhow::Result<DateTime<Utc>> {
    match event.get("time").and_then(Value::as_str) {
        Some(t) => Ok(DateTime::parse_from_rfc3339(t)
            .map_err(|e| anyhow::anyhow!("event time {t:?} is not RFC 3339: {e}"))?
            .with_timezone(&Utc)),
        None => Ok(Utc::now()),
    }
}

/// The slot `t` falls in.
pub fn slot_of(cadence: Cadence, t: DateTime<Utc>) -> DateTime<Utc> {
    let unit = match cadence {
        Cadence::Hourly { .. } => TimeDelta::hours(1),
        Cadence::Daily => TimeDelta::days(1),
    };
    t.duration_trunc(unit).expect("in range")
}

/// The slots a run for `slot` should serve, oldest first: within the
/// look-back, the hours after the last recorded one (missed) and recorded
/// hours that did not finish (failed, or held by a run that may have died;
/// the claim decides). A job with no recorded slot serves only `slot`.
pub async fn slots_for(
    pool: &PgPool,
    job: &str,
    cadence: Cadence,
    slot: DateTime<Utc>,
) -> sqlx::Result<Vec<DateTime<Utc>>> {
    let Cadence::Hourly { lookback } = cadence else {
        return Ok(vec![slot]);
    };
    let last = sqlx::query_scalar!(
        "SELECT max(scheduled_for) FROM job_runs WHERE job = $1 AND scheduled_for <= $2",
        job,
        slot
    )
    .fetch_one(pool)
    .await?;
    let Some(last) = last else {
        return Ok(vec![slot]);
    };
    let start = slot - TimeDelta::hours(lookback as i64);
    let unfinished: Vec<DateTime<Utc>> = sqlx::query_scalar!(
        "SELECT scheduled_for FROM job_runs
          WHERE job = $1 AND scheduled_for BETWEEN $2 AND $3 AND status <> 'done'",
        job,
        start,
        slot
    )
    .fetch_all(pool)
    .await?;
    let mut out = Vec::new();
    let mut s = start;
    while s <= slot {
        if s > last || s == slot || unfinished.contains(&s) {
            out.push(s);
        }
        s += TimeDelta::hours(1);
    }
    Ok(out)
}

/// A slot held by this run: the connection holding its advisory lock.
pub struct Lease {
    conn: PoolConnection<Postgres>,
    key: i64,
}

impl Lease {
    /// Lets the slot go. If the unlock cannot be sent, the connection is
    /// closed instead of returned to the pool (closing releases the lock).
    pub async fn release(mut self) {
        let unlocked = sqlx::query_scalar!("SELECT pg_advisory_unlock($1)", self.key)
            .fetch_one(&mut *self.conn)
            .await;
        if !matches!(unlocked, Ok(Some(true))) {
            self.conn.close_on_drop();
        }
    }
}

/// Claims `slot` for this run: `None` if another run holds it now or it is
/// done.
pub async fn claim(pool: &PgPool, job: &str, slot: DateTime<Utc>) -> sqlx::Result<Option<Lease>> {
    let mut conn = pool.acquire().await?;
    let key = sqlx::query_scalar!(
        r#"SELECT hashtextextended($1, $2) AS "key!""#,
        job,
        slot.timestamp()
    )
    .fetch_one(&mut *conn)
    .await?;
    let locked = sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock($1) AS "locked!""#, key)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        return Ok(None);
    }
    let mut lease = Lease { conn, key };
    let row = sqlx::query_scalar!(
        r#"INSERT INTO job_runs (job, scheduled_for) VALUES ($1, $2)
           ON CONFLICT (job, scheduled_for) DO UPDATE
              SET status = 'running', attempts = job_runs.attempts + 1, started_at = now(),
                  finished_at = NULL, last_error = NULL
            WHERE job_runs.status <> 'done'
           RETURNING attempts"#,
        job,
        slot,
    )
    .fetch_optional(&mut *lease.conn)
    .await;
    match row {
        Ok(Some(_)) => Ok(Some(lease)),
        Ok(None) => {
            lease.release().await;
            Ok(None)
        }
        Err(e) => {
            lease.release().await;
            Err(e)
        }
    }
}

async fn finish(
    pool: &PgPool,
    job: &str,
    slot: DateTime<Utc>,
    outcome: &Result<Value, String>,
) -> sqlx::Result<()> {
    let (status, stats, error) = match outcome {
        Ok(v) => ("done", v.clone(), None),
        Err(e) => ("failed", Value::Object(Default::default()), Some(e.clone())),
    };
    sqlx::query!(
        "UPDATE job_runs SET status = $3, finished_at = now(), stats = $4, last_error = $5
          WHERE job = $1 AND scheduled_for = $2",
        job,
        slot,
        status,
        stats,
        error
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Serves the slots an event stands for. A slot that fails is recorded as
/// failed (the next run takes it over) and the invocation fails, so the
/// scheduler sees it; later slots are still attempted.
pub async fn run_event(ctx: &Ctx, job: &Job, event: &Value) -> anyhow::Result<RunReport> {
    let time = scheduled_time(event)?;
    let slot = slot_of(job.cadence, time);
    let mut report = RunReport {
        job: job.name,
        scheduled_time: time,
        served: Vec::new(),
        skipped: Vec::new(),
    };
    let mut failures = Vec::new();
    for s in slots_for(&ctx.db, job.name, job.cadence, slot).await? {
        let Some(lease) = claim(&ctx.db, job.name, s).await? else {
            report.skipped.push(s);
            continue;
        };
        let outcome = (job.run)(ctx, s).await.map_err(|e| format!("{e:#}"));
        let finished = finish(&ctx.db, job.name, s, &outcome).await;
        lease.release().await;
        finished?;
        match outcome {
            Ok(stats) => {
                tracing::info!(job = job.name, slot = %s, stats = %stats, "slot served");
                report.served.push(SlotReport { slot: s, stats });
            }
            Err(e) => {
                tracing::error!(job = job.name, slot = %s, error = e, "slot failed");
                failures.push(format!("{s}: {e}"));
            }
        }
    }
    if failures.is_empty() {
        Ok(report)
    } else {
        anyhow::bail!("{} failed: {}", job.name, failures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_time_decides_the_slot() {
        let ev = serde_json::json!({"time": "2026-03-08T14:59:59Z"});
        let t = scheduled_time(&ev).unwrap();
        assert_eq!(
            slot_of(Cadence::Hourly { lookback: 6 }, t).to_rfc3339(),
            "2026-03-08T14:00:00+00:00"
        );
        assert_eq!(
            slot_of(Cadence::Daily, t).to_rfc3339(),
            "2026-03-08T00:00:00+00:00"
        );
        assert!(scheduled_time(&serde_json::json!({"time": "yesterday"})).is_err());
    }
}
