//! Codes by email in seconds: right after the transaction that wrote a
//! code's outbox row commits, a background task delivers that row over SMTP
//! (`deliver_now`, which claims it with `SKIP LOCKED` like the dispatcher).
//! The response never waits for it, so its timing says nothing about
//! whether an account exists. If SMTP is not configured here or is down,
//! the row stays pending and `cron-email-dispatch` (every minute) delivers
//! it; if the process stops half-way (frozen after the response on Lambda,
//! or a worker replaced between invocations under the shim), its claim
//! lapses after `URGENT_LEASE` (45 s) and the next dispatcher run takes it.

use std::sync::Arc;
use std::time::Duration;

use honeydue_core::config::AppConfig;
use honeydue_core::Env;
use honeydue_mail::deliver::{deliver_now, Mailer, SmtpConfig};
use sqlx::PgPool;

/// The SMTP client for urgent mail, when `SMTP_HOST` is set.
#[derive(Clone, Default)]
pub struct Urgent(Option<Arc<Mailer>>);

/// Read at cold start from the environment the common settings come from.
/// Without `SMTP_HOST` there is no urgent mail (`cron-email-dispatch`
/// delivers within a minute); with it, the other `SMTP_*` settings and the
/// sender (`MAIL_FROM`) must make a usable client, and each bad one is
/// named with every other problem at init.
impl honeydue_http::Extra for Urgent {
    fn read(env: &mut Env, app: &AppConfig) -> Option<Self> {
        if env.optional::<String>("SMTP_HOST").is_none() {
            return Some(Self(None));
        }
        let cfg = SmtpConfig::read(env)?;
        match Mailer::new(&cfg, &app.mail_from) {
            Ok(mailer) => Some(Self::new(mailer)),
            Err(e) => {
                env.problem(format!("SMTP settings unusable: {e:#}"));
                None
            }
        }
    }
}

impl Urgent {
    /// With this client.
    pub fn new(mailer: Mailer) -> Self {
        Self(Some(Arc::new(mailer)))
    }

    /// Delivers outbox row `id` in the background (call after commit).
    pub fn send(&self, db: &PgPool, id: Option<i64>) {
        let (Some(mailer), Some(id)) = (self.0.clone(), id) else {
            return;
        };
        let db = db.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(Duration::from_secs(30), deliver_now(&db, &mailer, &[id]))
                .await
            {
                Ok(Ok(s)) if s.sent == 1 => tracing::info!(email_id = id, "code delivered at once"),
                Ok(Ok(_)) => tracing::warn!(
                    email_id = id,
                    "code not delivered at once; the dispatcher retries"
                ),
                Ok(Err(e)) => tracing::warn!(
                    email_id = id,
                    error = format!("{e:#}"),
                    "urgent delivery failed"
                ),
                Err(_) => tracing::warn!(email_id = id, "urgent delivery timed out"),
            }
        });
    }
}
