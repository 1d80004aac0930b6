//! Email: templates and the transactional outbox.
//!
//! A message is *enqueued* by inserting an `email_outbox` row inside the same
//! transaction as the change that causes it, so a committed change always has
//! its email and a rolled-back one never does. Delivery over SMTP is the
//! dispatcher's job.

pub mod templates;

use sqlx::PgConnection;

/// A message ready for the outbox.
#[derive(Debug, Clone)]
pub struct OutgoingEmail {
    /// Recipient user, if any (kept for admin views and account deletion).
    pub user_id: Option<i64>,
    /// What kind of message this is (`verify_email`, `password_reset`, ...).
    pub kind: &'static str,
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text part.
    pub text: String,
    /// HTML part.
    pub html: Option<String>,
    /// Unique key: a second enqueue with the same key is a no-op.
    pub dedupe_key: Option<String>,
}

/// Writes `email` to the outbox on `conn` (pass the transaction of the change
/// that causes it). Returns the row id, or `None` if `dedupe_key` was already
/// used.
pub async fn enqueue(conn: &mut PgConnection, email: &OutgoingEmail) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        r#"INSERT INTO email_outbox (user_id, kind, to_address, subject, body_text, body_html, dedupe_key)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (dedupe_key) DO NOTHING
           RETURNING id"#,
        email.user_id,
        email.kind,
        email.to,
        email.subject,
        email.text,
        email.html,
        email.dedupe_key,
    )
    .fetch_optional(conn)
    .await
}
