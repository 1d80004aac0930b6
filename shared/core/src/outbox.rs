//! What the outboxes (email, push) share: how many rows a run takes and for
//! how long, the back-off between attempts, the lease on a claimed row, and
//! recording an outcome patiently while the database is briefly away.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;

/// A dispatcher run's limits.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Rows claimed per transaction.
    pub batch: i64,
    /// Attempts before a transiently failing row is given up.
    pub max_attempts: i32,
    /// Stop claiming new batches after this long.
    pub budget: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            batch: 50,
            max_attempts: 20,
            budget: Duration::from_secs(50),
        }
    }
}

/// Back-off before attempt `n + 1`: 1 min doubling, at most 6 h (20
/// attempts span about three days).
pub fn backoff(attempts: i32) -> Duration {
    let mins = 1u64 << attempts.clamp(0, 9);
    Duration::from_secs((mins * 60).min(6 * 3600))
}

/// How long a claimed row stays leased to the dispatcher that claimed it: a
/// dispatcher that dies mid-send gives its rows back when it ends.
pub const LEASE: Duration = Duration::from_secs(300);

/// How long [`patiently`] retries while the database is unreachable.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Runs `op` until it succeeds, retrying every 500 ms for up to
/// [`PATIENCE`] while the database is unreachable (a restart, a failover):
/// a delivery that happened but is not recorded would happen again.
pub async fn patiently<T, F, Fut>(what: &'static str, mut op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = sqlx::Result<T>>,
{
    let started = Instant::now();
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if crate::error::db_unavailable(&e) && started.elapsed() < PATIENCE => {
                tracing::warn!(error = %e, what, "database unavailable; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e).context(what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_a_minute_to_six_hours() {
        assert_eq!(backoff(0), Duration::from_secs(60));
        assert_eq!(backoff(3), Duration::from_secs(480));
        assert_eq!(backoff(19), Duration::from_secs(6 * 3600));
    }

    #[tokio::test]
    async fn patiently_retries_while_the_database_is_away_and_not_otherwise() {
        let mut calls = 0;
        let v = patiently("test", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(sqlx::Error::PoolTimedOut)
                } else {
                    Ok(n)
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(v, 3);
        let mut calls = 0;
        let e = patiently("test", || {
            calls += 1;
            async { Err::<(), _>(sqlx::Error::RowNotFound) }
        })
        .await;
        assert!(e.is_err());
        assert_eq!(calls, 1, "a real error is not retried");
    }
}
