//! Codes by email in seconds: right after the transaction that wrote a
//! code's outbox row commits, a background task delivers that row over SMTP
//! (`deliver_now`, which claims it with `SKIP LOCKED` like the dispatcher).
//! The response never waits for it, so its timing says nothing about
//! whether an account exists. If SMTP is not configured here, is down, or
//! the process is frozen after the response (Lambda), the row stays pending
//! and `cron-email-dispatch` delivers it within a minute.

use std::sync::Arc;
use std::time::Duration;

use honeydue_core::Env;
use honeydue_mail::deliver::{deliver_now, Mailer, SmtpConfig};
use sqlx::PgPool;

/// The SMTP client for urgent mail, when `SMTP_HOST` is set.
#[derive(Clone, Default)]
pub struct Urgent(Option<Arc<Mailer>>);

impl Urgent {
    /// From the process environment (`SMTP_*`, sender `from`). A bad SMTP
    /// setting is logged and urgent delivery is off; the dispatcher, which
    /// requires a valid one, still delivers.
    pub fn from_process_env(from: &str) -> Self {
        if std::env::var("SMTP_HOST").map_or(true, |h| h.trim().is_empty()) {
            return Self(None);
        }
        let mut env = Env::from_process();
        let cfg = SmtpConfig::read(&mut env);
        let built = env
            .finish()
            .map_err(anyhow::Error::from)
            .and_then(|()| Mailer::new(&cfg.expect("checked"), from));
        match built {
            Ok(m) => Self::new(m),
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "SMTP settings unusable; codes wait for the dispatcher"
                );
                Self(None)
            }
        }
    }

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
