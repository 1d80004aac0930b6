//! Outbox delivery over SMTP (lettre): claim due rows with
//! `FOR UPDATE SKIP LOCKED` (so concurrent dispatchers never take the same
//! row), send, and record the outcome. Transient failures (SMTP down, 4xx)
//! retry with exponential back-off; permanent ones (5xx, a malformed
//! address) are marked dead for an admin to see. Nothing committed is lost:
//! a row leaves `pending` only when the server accepted it or refused it for
//! good.

use std::time::{Duration, Instant};

use anyhow::Context;
use honeydue_core::{Env, Secret};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;
use sqlx::PgPool;

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// STARTTLS on a submission port (587): Fastmail and most providers.
    StartTls,
    /// TLS from the first byte (465).
    Tls,
    /// Plain text (local test servers only).
    None,
}

/// SMTP settings.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// `SMTP_HOST`.
    pub host: String,
    /// `SMTP_PORT` (default: 587 STARTTLS, 465 TLS, 25 none).
    pub port: u16,
    /// `SMTP_SECURITY`: `starttls` (default), `tls` or `none`.
    pub security: Security,
    /// `SMTP_USERNAME` + `SMTP_PASSWORD`.
    pub credentials: Option<(String, Secret<String>)>,
    /// `SMTP_TIMEOUT_SECS` (default 10).
    pub timeout: Duration,
}

impl SmtpConfig {
    /// Reads the `SMTP_*` variables.
    pub fn read(env: &mut Env) -> Option<Self> {
        let host = env.required::<String>("SMTP_HOST");
        let security = match env
            .or("SMTP_SECURITY", "starttls".to_string())
            .to_ascii_lowercase()
            .as_str()
        {
            "starttls" => Security::StartTls,
            "tls" => Security::Tls,
            "none" => Security::None,
            other => {
                env.problem(format!(
                    "SMTP_SECURITY must be starttls, tls or none, got {other:?}"
                ));
                Security::StartTls
            }
        };
        let default_port = match security {
            Security::StartTls => 587,
            Security::Tls => 465,
            Security::None => 25,
        };
        let port = env.or("SMTP_PORT", default_port);
        let user: Option<String> = env.optional("SMTP_USERNAME");
        let pass: Option<String> = env.optional("SMTP_PASSWORD");
        let credentials = match (user, pass) {
            (Some(u), Some(p)) => Some((u, Secret::new(p))),
            (None, None) => None,
            _ => {
                env.problem("SMTP_USERNAME and SMTP_PASSWORD go together");
                None
            }
        };
        let timeout = Duration::from_secs(env.or("SMTP_TIMEOUT_SECS", 10u64));
        Some(Self {
            host: host?,
            port,
            security,
            credentials,
            timeout,
        })
    }
}

/// A configured SMTP client, built once per process.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// Builds the transport (no connection yet).
    pub fn new(cfg: &SmtpConfig, from: &str) -> anyhow::Result<Self> {
        let from: Mailbox = from.parse().context("MAIL_FROM is not a valid address")?;
        let builder = match cfg.security {
            Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&cfg.host)?,
            Security::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&cfg.host)?,
            Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&cfg.host),
        };
        let mut builder = builder.port(cfg.port).timeout(Some(cfg.timeout));
        if let Some((u, p)) = &cfg.credentials {
            builder = builder.credentials(Credentials::new(u.clone(), p.expose().clone()));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }
}

/// What one dispatch run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Accepted by the server.
    pub sent: u32,
    /// Failed for now; will be retried.
    pub retried: u32,
    /// Failed for good.
    pub dead: u32,
}

/// Delivery policy.
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

enum Outcome {
    Sent,
    Retry(String),
    Dead(String),
}

fn build(
    mailer: &Mailer,
    to: &str,
    subject: &str,
    text: &str,
    html: Option<&str>,
    headers: &serde_json::Value,
) -> Result<Message, String> {
    let to: Mailbox = to
        .parse()
        .map_err(|e| format!("bad recipient address: {e}"))?;
    let mut b = Message::builder()
        .from(mailer.from.clone())
        .to(to)
        .subject(subject);
    if let Some(map) = headers.as_object() {
        for (k, v) in map {
            let name = HeaderName::new_from_ascii(k.clone())
                .map_err(|_| format!("bad header name {k:?}"))?;
            b = b.raw_header(HeaderValue::new(
                name,
                v.as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    let built = match html {
        Some(h) => b.multipart(MultiPart::alternative_plain_html(
            text.to_string(),
            h.to_string(),
        )),
        None => b.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(text.to_string()),
        ),
    };
    built.map_err(|e| format!("cannot build message: {e}"))
}

/// Delivers due outbox rows until none are left or the budget is spent.
pub async fn dispatch(pool: &PgPool, mailer: &Mailer, policy: Policy) -> anyhow::Result<Stats> {
    deliver(pool, mailer, policy, None).await
}

/// Delivers the outbox rows `ids` now, if still pending and not taken by a
/// dispatcher (urgent mail such as codes, right after its transaction
/// commits). A failure is recorded as the dispatcher would, which then
/// retries it; nothing is lost by calling this, or by not calling it.
pub async fn deliver_now(pool: &PgPool, mailer: &Mailer, ids: &[i64]) -> anyhow::Result<Stats> {
    deliver(pool, mailer, Policy::default(), Some(ids)).await
}

async fn deliver(
    pool: &PgPool,
    mailer: &Mailer,
    policy: Policy,
    only: Option<&[i64]>,
) -> anyhow::Result<Stats> {
    let started = Instant::now();
    let mut stats = Stats::default();
    loop {
        let mut tx = pool.begin().await?;
        let rows = sqlx::query!(
            "SELECT id, to_address, subject, body_text, body_html, headers, attempts FROM email_outbox
              WHERE status = 'pending' AND next_attempt_at <= now()
                AND ($2::bigint[] IS NULL OR id = ANY ($2))
              ORDER BY next_attempt_at, id
              LIMIT $1
              FOR UPDATE SKIP LOCKED",
            policy.batch,
            only as Option<&[i64]>
        )
        .fetch_all(&mut *tx)
        .await?;
        let claimed = rows.len() as i64;
        let claimed_ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        for r in rows {
            let outcome = match build(
                mailer,
                &r.to_address,
                &r.subject,
                &r.body_text,
                r.body_html.as_deref(),
                &r.headers,
            ) {
                Err(e) => Outcome::Dead(e),
                Ok(msg) => match mailer.transport.send(msg).await {
                    Ok(_) => Outcome::Sent,
                    Err(e) if e.is_permanent() => Outcome::Dead(e.to_string()),
                    Err(e) => Outcome::Retry(e.to_string()),
                },
            };
            match outcome {
                Outcome::Sent => {
                    sqlx::query!(
                        "UPDATE email_outbox SET status = 'sent', sent_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = $1",
                        r.id
                    )
                    .execute(&mut *tx)
                    .await?;
                    stats.sent += 1;
                }
                Outcome::Retry(e) if r.attempts + 1 < policy.max_attempts => {
                    let wait = backoff(r.attempts);
                    sqlx::query!(
                        "UPDATE email_outbox SET attempts = attempts + 1, last_error = $2,
                                next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1",
                        r.id,
                        e,
                        wait.as_secs_f64()
                    )
                    .execute(&mut *tx)
                    .await?;
                    tracing::warn!(
                        email_id = r.id,
                        error = e,
                        retry_in_s = wait.as_secs(),
                        "email delivery failed; will retry"
                    );
                    stats.retried += 1;
                }
                Outcome::Retry(e) | Outcome::Dead(e) => {
                    sqlx::query!(
                        "UPDATE email_outbox SET status = 'dead', attempts = attempts + 1, last_error = $2 WHERE id = $1",
                        r.id,
                        e
                    )
                    .execute(&mut *tx)
                    .await?;
                    tracing::error!(email_id = r.id, error = e, "email delivery failed for good");
                    stats.dead += 1;
                }
            }
        }
        // Emails that carried a one-time code keep no trace of it once they
        // are done with (sent or given up).
        if !claimed_ids.is_empty() {
            sqlx::query!(
                "UPDATE email_outbox SET subject = $2, body_text = $2, body_html = NULL
              WHERE id = ANY($1) AND status <> 'pending' AND kind = ANY($3)",
                &claimed_ids,
                crate::REDACTED,
                crate::CODE_KINDS as &[&str]
            )
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        if claimed < policy.batch || started.elapsed() > policy.budget {
            break;
        }
    }
    Ok(stats)
}
