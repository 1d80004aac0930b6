//! Email: templates and the transactional outbox.
//!
//! A message is *enqueued* by inserting an `email_outbox` row inside the same
//! transaction as the change that causes it, so a committed change always has
//! its email and a rolled-back one never does. Delivery over SMTP is the
//! dispatcher's job.

pub mod deliver;
pub mod events;
pub mod templates;

use sqlx::PgConnection;

/// Kinds of email that carry a one-time code. Once such an email is sent
/// (or given up on) its subject and bodies are replaced by
/// [`REDACTED`] in the outbox, the admin views never show them, they are
/// never resent (the user asks for a new code), and cleanup deletes the
/// rows after a day.
pub const CODE_KINDS: &[&str] = &["verify_email", "password_reset"];

/// What stays of a code-bearing email's subject and text after delivery.
pub const REDACTED: &str = "[one-time code removed after delivery]";

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
    /// Extra headers (`List-Unsubscribe`, ...).
    pub headers: Vec<(String, String)>,
}

/// Writes `email` to the outbox on `conn` (pass the transaction of the change
/// that causes it). Returns the row id, or `None` if `dedupe_key` was already
/// used.
pub async fn enqueue(conn: &mut PgConnection, email: &OutgoingEmail) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        r#"INSERT INTO email_outbox (user_id, kind, to_address, subject, body_text, body_html, dedupe_key, headers)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (dedupe_key) DO NOTHING
           RETURNING id"#,
        email.user_id,
        email.kind,
        email.to,
        email.subject,
        email.text,
        email.html,
        email.dedupe_key,
        headers_json(email),
    )
    .fetch_optional(conn)
    .await
}

/// Writes many emails to the outbox in one statement (scheduled jobs).
/// Returns how many were new (a used `dedupe_key` is skipped).
pub async fn enqueue_many(conn: &mut PgConnection, emails: &[OutgoingEmail]) -> sqlx::Result<u64> {
    if emails.is_empty() {
        return Ok(0);
    }
    let users: Vec<Option<i64>> = emails.iter().map(|e| e.user_id).collect();
    let kinds: Vec<String> = emails.iter().map(|e| e.kind.to_string()).collect();
    let to: Vec<String> = emails.iter().map(|e| e.to.clone()).collect();
    let subjects: Vec<String> = emails.iter().map(|e| e.subject.clone()).collect();
    let texts: Vec<String> = emails.iter().map(|e| e.text.clone()).collect();
    let htmls: Vec<Option<String>> = emails.iter().map(|e| e.html.clone()).collect();
    let keys: Vec<Option<String>> = emails.iter().map(|e| e.dedupe_key.clone()).collect();
    let headers: Vec<serde_json::Value> = emails.iter().map(headers_json).collect();
    let done = sqlx::query!(
        r#"INSERT INTO email_outbox (user_id, kind, to_address, subject, body_text, body_html, dedupe_key, headers)
           SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[])
           ON CONFLICT (dedupe_key) DO NOTHING"#,
        &users as &[Option<i64>],
        &kinds,
        &to,
        &subjects,
        &texts,
        &htmls as &[Option<String>],
        &keys as &[Option<String>],
        &headers
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

fn headers_json(email: &OutgoingEmail) -> serde_json::Value {
    serde_json::Value::Object(
        email
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}

/// Signed, stateless unsubscribe links: `{user_id}.{kind}.{signature}`,
/// where `kind` is a notification kind or `all`.
pub mod unsubscribe {
    use honeydue_core::auth::{sign, verify_signature};

    fn message(user_id: i64, kind: &str) -> String {
        format!("unsubscribe:{user_id}:{kind}")
    }

    /// The token for `user_id` and `kind`.
    pub fn token(secret: &str, user_id: i64, kind: &str) -> String {
        format!(
            "{user_id}.{kind}.{}",
            sign(secret.as_bytes(), &message(user_id, kind))
        )
    }

    /// The `(user_id, kind)` a valid token stands for.
    pub fn verify(secret: &str, token: &str) -> Option<(i64, String)> {
        let mut parts = token.splitn(3, '.');
        let user_id: i64 = parts.next()?.parse().ok()?;
        let kind = parts.next()?;
        let sig = parts.next()?;
        verify_signature(secret.as_bytes(), &message(user_id, kind), sig)
            .then(|| (user_id, kind.to_string()))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn round_trip_and_tamper() {
            let t = super::token("s3cret-s3cret-s3cret", 42, "daily_digest");
            assert_eq!(
                super::verify("s3cret-s3cret-s3cret", &t),
                Some((42, "daily_digest".into()))
            );
            assert_eq!(super::verify("other-secret-value!!", &t), None);
            let forged = t.replacen("42.", "43.", 1);
            assert_eq!(super::verify("s3cret-s3cret-s3cret", &forged), None);
            assert_eq!(super::verify("s3cret-s3cret-s3cret", "garbage"), None);
        }
    }
}
