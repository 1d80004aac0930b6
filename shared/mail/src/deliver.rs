//! Outbox delivery over SMTP (lettre). Due rows are claimed with
//! `FOR UPDATE SKIP LOCKED` (so concurrent dispatchers never take the same
//! row) in a short transaction that leases them (`next_attempt_at` moves a
//! few minutes ahead, so a dispatcher that dies mid-send gives them back);
//! then each is sent and its outcome recorded at once, one row at a time.
//! Recording a delivery is retried while the database is briefly
//! unreachable, so a restart does not turn into a second copy.
//!
//! * a 5xx or a malformed address: dead, for an admin to see;
//! * a 4xx about this message: retried with exponential back-off;
//! * the server unreachable (refused, timed out, TLS): the run stops and
//!   gives the unsent rows back due now, their attempt not counted, so an
//!   outage delays mail until the next run after it ends and never uses up
//!   a message's attempts.
//!
//! Each message's `Message-ID` is derived from its row, so the rare copy
//! sent twice (the server accepted it, then the connection or the
//! recording failed) is the same message to the recipient's mail client.
//! Nothing committed is lost: a row leaves `pending` only when the server
//! accepted it or refused it for good.

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

/// The outboxes' shared policy, back-off and lease (`honeydue_core::outbox`).
pub use honeydue_core::outbox::{backoff, Policy, LEASE};

enum Outcome {
    Sent,
    Retry(String),
    Dead(String),
    Unreachable(String),
}

fn build(
    mailer: &Mailer,
    id: i64,
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
        .message_id(Some(format!(
            "<outbox-{id}@{}>",
            mailer.from.email.domain()
        )))
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

/// How long `deliver_now` leases the rows it claims. Urgent mail is sent
/// from the background of a request, which can stop at any point: a worker
/// replaced between invocations (over its memory), a Lambda environment
/// frozen after its answer. Its row is then due again this soon (the next
/// dispatcher run takes it), not after the dispatcher's five-minute lease;
/// it outlasts the 30 s the sender allows itself, so a live sender is never
/// raced.
pub const URGENT_LEASE: Duration = Duration::from_secs(45);

/// Delivers due outbox rows until none are left or the budget is spent.
pub async fn dispatch(pool: &PgPool, mailer: &Mailer, policy: Policy) -> anyhow::Result<Stats> {
    deliver(pool, mailer, policy, None, LEASE).await
}

/// Delivers the outbox rows `ids` now, if still pending and not taken by a
/// dispatcher (urgent mail such as codes, right after its transaction
/// commits), leasing them for `URGENT_LEASE`. A failure is recorded as the
/// dispatcher would, which then retries it; nothing is lost by calling
/// this, or by not calling it, or by its caller stopping half-way.
pub async fn deliver_now(pool: &PgPool, mailer: &Mailer, ids: &[i64]) -> anyhow::Result<Stats> {
    deliver(pool, mailer, Policy::default(), Some(ids), URGENT_LEASE).await
}

async fn deliver(
    pool: &PgPool,
    mailer: &Mailer,
    policy: Policy,
    only: Option<&[i64]>,
    lease: Duration,
) -> anyhow::Result<Stats> {
    let started = Instant::now();
    let mut stats = Stats::default();
    loop {
        let rows = sqlx::query!(
            r#"UPDATE email_outbox o
                  SET attempts = o.attempts + 1, next_attempt_at = now() + make_interval(secs => $3)
                 FROM (SELECT id FROM email_outbox
                        WHERE status = 'pending' AND next_attempt_at <= now()
                          AND ($2::bigint[] IS NULL OR id = ANY ($2))
                        ORDER BY next_attempt_at, id
                        LIMIT $1
                        FOR UPDATE SKIP LOCKED) due
                WHERE o.id = due.id
            RETURNING o.id, o.to_address, o.subject, o.body_text, o.body_html, o.headers, o.attempts"#,
            policy.batch,
            only as Option<&[i64]>,
            lease.as_secs_f64()
        )
        .fetch_all(pool)
        .await?;
        let claimed = rows.len() as i64;
        let mut unsent: Vec<i64> = rows.iter().map(|r| r.id).collect();
        unsent.reverse();
        for r in rows {
            unsent.pop();
            let outcome = match build(
                mailer,
                r.id,
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
                    Err(e) if e.is_transient() => Outcome::Retry(e.to_string()),
                    Err(e) => Outcome::Unreachable(format!("{e:#}")),
                },
            };
            let (status, wait, error) = match outcome {
                Outcome::Sent => {
                    stats.sent += 1;
                    ("sent", Duration::ZERO, None)
                }
                Outcome::Retry(e) if r.attempts < policy.max_attempts => {
                    let wait = backoff(r.attempts - 1);
                    tracing::warn!(
                        email_id = r.id,
                        error = e,
                        retry_in_s = wait.as_secs(),
                        "email delivery failed; will retry"
                    );
                    stats.retried += 1;
                    ("pending", wait, Some(e))
                }
                Outcome::Retry(e) | Outcome::Dead(e) => {
                    tracing::error!(email_id = r.id, error = e, "email delivery failed for good");
                    stats.dead += 1;
                    ("dead", Duration::ZERO, Some(e))
                }
                Outcome::Unreachable(e) => {
                    // The server, not the message: give this row and the
                    // rest back, due now and uncounted, and stop.
                    unsent.push(r.id);
                    tracing::warn!(
                        error = e,
                        unsent = unsent.len(),
                        "SMTP server unreachable; the next run retries"
                    );
                    stats.retried += unsent.len() as u32;
                    sqlx::query!(
                        "UPDATE email_outbox SET attempts = attempts - 1, next_attempt_at = now(), last_error = $2
                          WHERE id = ANY($1) AND status = 'pending'",
                        &unsent,
                        e
                    )
                    .execute(pool)
                    .await?;
                    return Ok(stats);
                }
            };
            record(pool, r.id, status, wait, error.as_deref()).await?;
        }
        if claimed < policy.batch || started.elapsed() > policy.budget {
            break;
        }
    }
    Ok(stats)
}

/// Records one row's outcome, retrying while the database is unreachable
/// (a restart, a failover) for up to `honeydue_core::outbox::PATIENCE`: a sent message
/// whose delivery is not recorded is sent again after its lease. Emails
/// that carried a one-time code keep no trace of it once done with.
async fn record(
    pool: &PgPool,
    id: i64,
    status: &str,
    wait: Duration,
    error: Option<&str>,
) -> anyhow::Result<()> {
    honeydue_core::outbox::patiently("recording a delivery", || {
        sqlx::query!(
            "UPDATE email_outbox
                SET status = $2, last_error = $4,
                    sent_at = CASE WHEN $2 = 'sent' THEN now() END,
                    next_attempt_at = now() + make_interval(secs => $3),
                    subject = CASE WHEN $2 <> 'pending' AND kind = ANY($5) THEN $6 ELSE subject END,
                    body_text = CASE WHEN $2 <> 'pending' AND kind = ANY($5) THEN $6 ELSE body_text END,
                    body_html = CASE WHEN $2 <> 'pending' AND kind = ANY($5) THEN NULL ELSE body_html END
              WHERE id = $1",
            id,
            status,
            wait.as_secs_f64(),
            error,
            crate::CODE_KINDS as &[&str],
            crate::REDACTED
        )
        .execute(pool)
    })
    .await
    .map(drop)
}
