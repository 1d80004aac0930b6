//! The emails of notifications written as things happen (a task completed
//! or assigned, a member joined a home): for each notification, one email
//! to its recipient when their preferences allow it (all email on, the
//! kind turned on and its email on), to a verified address of an active
//! account, with the one-click unsubscribe link for its kind. Written in
//! the transaction of the event, deduplicated by the notification, so a
//! retried event mails nothing twice.

use honeydue_core::config::AppConfig;
use honeydue_core::domain::notifications::Kind;
use sqlx::PgConnection;

use crate::templates::notice;
use crate::OutgoingEmail;

/// The signed unsubscribe page of `user_id` for `kind` (a notification
/// kind, or `all`).
pub fn unsubscribe_url(base_url: &str, secret: &str, user_id: i64, kind: &str) -> String {
    format!(
        "{base_url}/api/unsubscribe/{}/",
        crate::unsubscribe::token(secret, user_id, kind)
    )
}

/// The `List-Unsubscribe` headers (RFC 2369, and RFC 8058 one-click) that
/// carry `url`.
pub fn unsubscribe_headers(url: &str) -> Vec<(String, String)> {
    vec![
        ("List-Unsubscribe".into(), format!("<{url}>")),
        (
            "List-Unsubscribe-Post".into(),
            "List-Unsubscribe=One-Click".into(),
        ),
    ]
}

/// What an event tells people: the notifications and their pushes
/// (`honeydue_core::notify`), then their emails ([`enqueue_for`]), in the
/// caller's transaction.
pub async fn notify(
    conn: &mut PgConnection,
    app: &AppConfig,
    notices: &[honeydue_core::notify::Notice],
) -> sqlx::Result<()> {
    let ids = honeydue_core::notify::notify(&mut *conn, notices).await?;
    enqueue_for(conn, app, &ids).await?;
    Ok(())
}

/// Queues the emails of `notifications` (ids written in this transaction)
/// that their recipients' preferences allow; returns how many were new.
/// Without `APP_SECRET` (no unsubscribe link can be signed) nothing is
/// queued.
pub async fn enqueue_for(
    conn: &mut PgConnection,
    app: &AppConfig,
    notifications: &[i64],
) -> sqlx::Result<u64> {
    let Some(secret) = app.secret.as_ref() else {
        if !notifications.is_empty() {
            tracing::warn!("APP_SECRET is not set: event emails are not sent (they need a signed unsubscribe link)");
        }
        return Ok(0);
    };
    if notifications.is_empty() {
        return Ok(0);
    }
    let rows = sqlx::query!(
        r#"SELECT n.id, n.user_id, n.kind, n.title, n.body, u.email, u.first_name
             FROM notifications n
             JOIN users u ON u.id = n.user_id AND u.is_active AND u.email_verified_at IS NOT NULL
             LEFT JOIN notification_preferences p ON p.user_id = n.user_id
            WHERE n.id = ANY($1)
              AND COALESCE(p.email_enabled, TRUE)
              AND COALESCE((p.kinds -> n.kind ->> 'enabled')::boolean, TRUE)
              AND COALESCE((p.kinds -> n.kind ->> 'email')::boolean, TRUE)"#,
        notifications
    )
    .fetch_all(&mut *conn)
    .await?;
    let emails: Vec<OutgoingEmail> = rows
        .into_iter()
        .filter_map(|r| {
            let kind = Kind::preference(&r.kind)?.as_str();
            let url = unsubscribe_url(&app.base_url, secret.expose(), r.user_id, kind);
            let headers = unsubscribe_headers(&url);
            let rendered = notice(
                &app.name,
                &app.base_url,
                &r.first_name,
                &r.title,
                &[r.body],
                &[],
                &url,
            );
            Some(OutgoingEmail {
                user_id: Some(r.user_id),
                kind,
                to: r.email,
                subject: rendered.subject,
                text: rendered.text,
                html: Some(rendered.html),
                dedupe_key: Some(format!("notification:{}", r.id)),
                headers,
            })
        })
        .collect();
    crate::enqueue_many(conn, &emails).await
}
