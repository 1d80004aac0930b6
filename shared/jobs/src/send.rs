//! Fan-out: in-app notifications and outbox emails written in the same
//! transaction as the ledger rows that claim them, so a message is recorded
//! as sent exactly when it is committed for delivery.

use honeydue_mail::templates::Rendered;
use honeydue_mail::OutgoingEmail;
use sqlx::PgConnection;

use crate::Ctx;

/// The notification kinds and their hours, defined once in
/// `honeydue_core`, for the scheduled functions built on this crate.
pub use honeydue_core::domain::notifications::{Hour, Kind};

/// In-app notifications and their pushes, written by every event the same
/// way (`honeydue_core::notify`).
pub use honeydue_core::notify::{notify, Notice};

/// The unsubscribe page for `user_id` and `kind` (a notification kind, or
/// `all`).
pub fn unsubscribe_url(ctx: &Ctx, user_id: i64, kind: &str) -> String {
    honeydue_mail::events::unsubscribe_url(&ctx.app.base_url, ctx.secret(), user_id, kind)
}

/// An outbox email for a user, with List-Unsubscribe (RFC 2369) and
/// one-click unsubscribe (RFC 8058) for `unsubscribe_kind`.
pub fn email(
    ctx: &Ctx,
    user_id: i64,
    to: &str,
    kind: &'static str,
    unsubscribe_kind: &str,
    rendered: Rendered,
    dedupe_key: Option<String>,
) -> OutgoingEmail {
    OutgoingEmail {
        user_id: Some(user_id),
        kind,
        to: to.to_string(),
        subject: rendered.subject,
        text: rendered.text,
        html: Some(rendered.html),
        dedupe_key,
        headers: honeydue_mail::events::unsubscribe_headers(&unsubscribe_url(
            ctx,
            user_id,
            unsubscribe_kind,
        )),
    }
}

/// Writes `emails` to the outbox in one statement; returns how many were
/// new.
pub async fn enqueue_all(conn: &mut PgConnection, emails: &[OutgoingEmail]) -> sqlx::Result<u64> {
    honeydue_mail::enqueue_many(conn, emails).await
}
