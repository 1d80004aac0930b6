//! Rate limits over the optional Redis: fixed windows per subject (an
//! account, an address). When Redis is down the limit is not enforced —
//! failing open is the rule: a cache outage must never lock users out.

use std::time::Duration;

use honeydue_cache::{Cache, RateDecision};
use honeydue_core::auth::sha256_hex;
use honeydue_core::{AppError, AppResult};

/// A named limit: at most `max` hits per `window`.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Key prefix, unique per limit.
    pub scope: &'static str,
    /// Hits allowed per window.
    pub max: u64,
    /// Window length.
    pub window: Duration,
}

impl Limit {
    /// Counts a hit for `subject` (hashed: keys never carry addresses);
    /// 429 with `Retry-After` once over the limit.
    pub async fn check(&self, cache: &Cache, subject: &str) -> AppResult<()> {
        match cache.hit(&self.key(subject), self.max, self.window).await {
            RateDecision::Allowed => Ok(()),
            RateDecision::Limited { retry_after_secs } => {
                tracing::warn!(scope = self.scope, retry_after_secs, "rate limited");
                Err(AppError::RateLimited { retry_after_secs })
            }
        }
    }

    /// Counts a hit for the caller's address. A request without one (no
    /// `sourceIp` in its event) is not counted at all: lumping every such
    /// request into one bucket would let one caller lock out the others
    /// (the per-account limits still apply).
    pub async fn check_addr(&self, cache: &Cache, ip: &crate::ClientIp) -> AppResult<()> {
        match &ip.0 {
            Some(addr) => self.check(cache, addr).await,
            None => Ok(()),
        }
    }

    /// Forgets `subject`'s hits (after a success).
    pub async fn reset(&self, cache: &Cache, subject: &str) {
        cache.reset_hits(&self.key(subject)).await;
    }

    fn key(&self, subject: &str) -> String {
        format!("{}:{}", self.scope, sha256_hex(subject))
    }
}
