//! Redis as an optional cache and rate-limit store.
//!
//! Redis is never a hard dependency: [`Cache::new`] cannot fail, a missing
//! `REDIS_URL` disables it, and every operation answers "unknown" (a cache
//! miss, an allowed attempt) when Redis is down, slow or absent. After a
//! failure the cache stays away from Redis for a short back-off, so an outage
//! costs each request at most one short timeout, and only now and then.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::Mutex;

/// How long one Redis round trip may take before it counts as a failure.
const OP_TIMEOUT: Duration = Duration::from_millis(250);
/// How long to stay away from Redis after a failure.
const BACKOFF: Duration = Duration::from_secs(5);

/// A cheap-to-clone handle on the optional Redis.
#[derive(Clone)]
pub struct Cache {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    /// Unix millis before which Redis is not tried again.
    skip_until_ms: AtomicU64,
    prefix: String,
}

/// What a rate-limit check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Under the limit (or Redis unavailable: fail open).
    Allowed,
    /// Over the limit; retry after this many seconds.
    Limited {
        /// Seconds until the window resets.
        retry_after_secs: u64,
    },
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Cache {
    /// A cache on `url` (`redis://host:port/db`), or a disabled one when
    /// `url` is `None` or malformed. Opens no connection yet.
    pub fn new(url: Option<&str>) -> Self {
        let inner = url.and_then(|u| match redis::Client::open(u) {
            Ok(client) => Some(Arc::new(Inner {
                client,
                conn: Mutex::new(None),
                skip_until_ms: AtomicU64::new(0),
                prefix: "hd:".to_string(),
            })),
            Err(e) => {
                tracing::warn!(error = %e, "REDIS_URL is malformed; running without a cache");
                None
            }
        });
        Self { inner }
    }

    /// A cache that never stores anything.
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Whether a Redis URL was configured (not whether it is up).
    pub fn is_configured(&self) -> bool {
        self.inner.is_some()
    }

    async fn conn(&self) -> Option<(Arc<Inner>, ConnectionManager)> {
        let inner = self.inner.as_ref()?;
        if now_ms() < inner.skip_until_ms.load(Ordering::Relaxed) {
            return None;
        }
        let mut slot = inner.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Some((inner.clone(), c.clone()));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(OP_TIMEOUT)
            .set_response_timeout(OP_TIMEOUT)
            .set_number_of_retries(1)
            .set_max_delay(200);
        let made = tokio::time::timeout(
            OP_TIMEOUT * 2,
            ConnectionManager::new_with_config(inner.client.clone(), config),
        )
        .await;
        match made {
            Ok(Ok(c)) => {
                *slot = Some(c.clone());
                Some((inner.clone(), c))
            }
            Ok(Err(e)) => {
                self.failed(inner, &e.to_string());
                None
            }
            Err(_) => {
                self.failed(inner, "connect timed out");
                None
            }
        }
    }

    fn failed(&self, inner: &Inner, error: &str) {
        let until = now_ms() + BACKOFF.as_millis() as u64;
        let before = inner.skip_until_ms.swap(until, Ordering::Relaxed);
        if before < now_ms() {
            // Log once per back-off window, not once per request.
            tracing::warn!(
                error,
                backoff_ms = BACKOFF.as_millis() as u64,
                "redis unavailable; continuing without it"
            );
        }
    }

    async fn run<T, F, Fut>(&self, op: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager, String) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let (inner, conn) = self.conn().await?;
        match tokio::time::timeout(OP_TIMEOUT, op(conn, inner.prefix.clone())).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.failed(&inner, &e.to_string());
                None
            }
            Err(_) => {
                self.failed(&inner, "operation timed out");
                None
            }
        }
    }

    /// A cached string, or `None` (absent, or Redis unavailable).
    pub async fn get(&self, key: &str) -> Option<String> {
        let key = key.to_string();
        self.run(|mut c, p| async move {
            redis::cmd("GET")
                .arg(format!("{p}{key}"))
                .query_async::<Option<String>>(&mut c)
                .await
        })
        .await
        .flatten()
    }

    /// Stores a string for `ttl`; silently skipped when Redis is unavailable.
    pub async fn set(&self, key: &str, value: &str, ttl: Duration) {
        let (key, value) = (key.to_string(), value.to_string());
        let secs = ttl.as_secs().max(1);
        self.run(|mut c, p| async move {
            redis::cmd("SET")
                .arg(format!("{p}{key}"))
                .arg(value)
                .arg("EX")
                .arg(secs)
                .query_async::<()>(&mut c)
                .await
        })
        .await;
    }

    /// Removes keys; silently skipped when Redis is unavailable.
    pub async fn delete(&self, keys: &[String]) {
        if keys.is_empty() {
            return;
        }
        let keys = keys.to_vec();
        self.run(|mut c, p| async move {
            let mut cmd = redis::cmd("DEL");
            for k in keys {
                cmd.arg(format!("{p}{k}"));
            }
            cmd.query_async::<()>(&mut c).await
        })
        .await;
    }

    /// Counts one attempt against `limit` per `window` for `key` (fixed
    /// window). Fails open: when Redis is unavailable the attempt is allowed.
    pub async fn hit(&self, key: &str, limit: u64, window: Duration) -> RateDecision {
        let key = format!("rl:{key}");
        let secs = window.as_secs().max(1);
        let counted = self
            .run(|mut c, p| async move {
                let full = format!("{p}{key}");
                let (count, ttl): (u64, i64) = redis::pipe()
                    .atomic()
                    .cmd("INCR")
                    .arg(&full)
                    .cmd("EXPIRE")
                    .arg(&full)
                    .arg(secs)
                    .arg("NX")
                    .ignore()
                    .cmd("TTL")
                    .arg(&full)
                    .query_async(&mut c)
                    .await?;
                Ok((count, ttl))
            })
            .await;
        match counted {
            Some((count, ttl)) if count > limit => RateDecision::Limited {
                retry_after_secs: u64::try_from(ttl).unwrap_or(secs).max(1),
            },
            _ => RateDecision::Allowed,
        }
    }

    /// Forgets the attempts counted for `key` (after a success).
    pub async fn reset_hits(&self, key: &str) {
        self.delete(&[format!("rl:{key}")]).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn disabled_cache_misses_and_allows() {
        let c = Cache::disabled();
        assert!(!c.is_configured());
        assert_eq!(c.get("k").await, None);
        c.set("k", "v", Duration::from_secs(5)).await;
        assert_eq!(
            c.hit("k", 0, Duration::from_secs(5)).await,
            RateDecision::Allowed
        );
    }

    #[tokio::test]
    async fn unreachable_redis_fails_open_fast() {
        // Port 1 on loopback: nothing listens there.
        let c = Cache::new(Some("redis://127.0.0.1:1/"));
        assert!(c.is_configured());
        assert_eq!(c.get("k").await, None);
        assert_eq!(
            c.hit("k", 0, Duration::from_secs(5)).await,
            RateDecision::Allowed
        );
    }

    #[tokio::test]
    async fn real_redis_counts_and_expires() {
        let redis = honeydue_testkit::redis::TestRedis::start();
        let c = Cache::new(Some(&redis.url()));
        let key = "test:counts";
        for _ in 0..3 {
            assert_eq!(
                c.hit(key, 3, Duration::from_secs(60)).await,
                RateDecision::Allowed
            );
        }
        match c.hit(key, 3, Duration::from_secs(60)).await {
            RateDecision::Limited { retry_after_secs } => {
                assert!((1..=60).contains(&retry_after_secs))
            }
            other => panic!("expected limited, got {other:?}"),
        }
        c.reset_hits(key).await;
        assert_eq!(
            c.hit(key, 3, Duration::from_secs(60)).await,
            RateDecision::Allowed
        );
        c.set("v", "hello", Duration::from_secs(60)).await;
        assert_eq!(c.get("v").await.as_deref(), Some("hello"));
        c.delete(&["v".to_string()]).await;
        assert_eq!(c.get("v").await, None);
    }

    #[tokio::test]
    async fn redis_stopping_mid_flight_fails_open() {
        let mut redis = honeydue_testkit::redis::TestRedis::start();
        let c = Cache::new(Some(&redis.url()));
        c.set("a", "1", Duration::from_secs(60)).await;
        assert_eq!(c.get("a").await.as_deref(), Some("1"));
        redis.stop();
        assert_eq!(c.get("a").await, None);
        assert_eq!(
            c.hit("b", 0, Duration::from_secs(60)).await,
            RateDecision::Allowed
        );
    }
}
