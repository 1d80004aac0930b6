//! The email outbox (list, queue an email again) and the onboarding emails
//! sent, with their delivery status.

use axum::extract::State as S;
use honeydue_core::{AppError, AppResult};
use honeydue_http::{Json, Page, PathId, Query, State};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Admin;

#[derive(Deserialize)]
pub(super) struct OutboxParams {
    status: Option<String>,
}

pub(super) async fn outbox(
    S(state): S<State>,
    _admin: Admin,
    page: Page,
    Query(p): Query<OutboxParams>,
) -> AppResult<Json<Value>> {
    if let Some(s) = &p.status {
        if !["pending", "sent", "dead"].contains(&s.as_str()) {
            return Err(AppError::field("status", "Use pending, sent or dead."));
        }
    }
    // Bodies are not listed, nor the subject of an email that carries a
    // one-time code (redacted once sent; hidden here while pending).
    let rows = sqlx::query!(
        r#"SELECT id, user_id, kind, to_address,
                  CASE WHEN kind = ANY($4) THEN $5 ELSE subject END AS "subject!",
                  status, attempts, next_attempt_at, last_error, created_at, sent_at
           FROM email_outbox WHERE $1::text IS NULL OR status = $1
          ORDER BY id DESC LIMIT $2 OFFSET $3"#,
        p.status,
        page.limit(),
        page.offset(),
        honeydue_mail::CODE_KINDS as &[&str],
        "[carries a one-time code]"
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.listing(rows.into_iter().map(|r| json!({
        "id": r.id, "user_id": r.user_id, "kind": r.kind, "to": r.to_address, "subject": r.subject, "status": r.status,
        "attempts": r.attempts, "next_attempt_at": r.next_attempt_at, "last_error": r.last_error,
        "created_at": r.created_at, "sent_at": r.sent_at})))))
}

pub(super) async fn resend(
    S(state): S<State>,
    admin: Admin,
    PathId(id): PathId,
) -> AppResult<Json<Value>> {
    let kind = sqlx::query_scalar!("SELECT kind FROM email_outbox WHERE id = $1", id)
        .fetch_optional(&state.db)
        .await?
        .ok_or(AppError::NotFound("email"))?;
    if honeydue_mail::CODE_KINDS.contains(&kind.as_str()) {
        return Err(AppError::conflict(
            "one_time_code",
            "This email carried a one-time code, which is not kept; the user asks for a new code instead.",
        ));
    }
    let row = sqlx::query!(
        "UPDATE email_outbox SET status = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL
          WHERE id = $1 RETURNING id, status",
        id
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound("email"))?;
    tracing::info!(admin_id = admin.id, email_id = id, "email queued again");
    Ok(Json(json!({"id": row.id, "status": row.status})))
}

#[derive(Deserialize)]
pub(super) struct PushParams {
    status: Option<String>,
    user: Option<i64>,
}

/// The push outbox, newest first: what went to which device of whom, and
/// how its delivery went (device tokens are not shown).
pub(super) async fn push_outbox(
    S(state): S<State>,
    _admin: Admin,
    page: Page,
    Query(p): Query<PushParams>,
) -> AppResult<Json<Value>> {
    const STATUSES: [&str; 5] = ["pending", "sent", "dead", "dropped", "expired"];
    if let Some(s) = &p.status {
        if !STATUSES.contains(&s.as_str()) {
            return Err(AppError::field(
                "status",
                "Use pending, sent, dead, dropped or expired.",
            ));
        }
    }
    let rows = sqlx::query!(
        r#"SELECT o.id, o.user_id, o.device_id, d.platform, d.active AS device_active, o.notification_id, o.kind,
                  o.title, o.status, o.attempts, o.next_attempt_at, o.last_error, o.created_at, o.sent_at
             FROM push_outbox o JOIN devices d ON d.id = o.device_id
            WHERE ($1::text IS NULL OR o.status = $1) AND ($2::bigint IS NULL OR o.user_id = $2)
            ORDER BY o.id DESC LIMIT $3 OFFSET $4"#,
        p.status,
        p.user,
        page.limit(),
        page.offset()
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.listing(rows.into_iter().map(|r| json!({
        "id": r.id, "user_id": r.user_id, "device_id": r.device_id, "platform": r.platform,
        "device_active": r.device_active, "notification_id": r.notification_id, "kind": r.kind, "title": r.title,
        "status": r.status, "attempts": r.attempts, "next_attempt_at": r.next_attempt_at,
        "last_error": r.last_error, "created_at": r.created_at, "sent_at": r.sent_at})))))
}

#[derive(Deserialize)]
pub(super) struct OnboardingParams {
    user: Option<i64>,
    step: Option<String>,
}

/// Onboarding emails: which step went to whom, when, and whether the email
/// was delivered (resend through its outbox row).
pub(super) async fn onboarding(
    S(state): S<State>,
    _admin: Admin,
    page: Page,
    Query(p): Query<OnboardingParams>,
) -> AppResult<Json<Value>> {
    if let Some(s) = &p.step {
        if !["welcome", "verify_reminder", "no_residence", "no_tasks"].contains(&s.as_str()) {
            return Err(AppError::field(
                "step",
                "Use welcome, verify_reminder, no_residence or no_tasks.",
            ));
        }
    }
    let rows = sqlx::query!(
        r#"SELECT o.user_id, u.email, o.step, o.sent_for, o.sent_at, o.outbox_id,
                  e.status AS "email_status?"
             FROM onboarding_emails o
             JOIN users u ON u.id = o.user_id
             LEFT JOIN email_outbox e ON e.id = o.outbox_id
            WHERE ($1::bigint IS NULL OR o.user_id = $1) AND ($2::text IS NULL OR o.step = $2)
            ORDER BY o.sent_at DESC, o.user_id, o.step
            LIMIT $3 OFFSET $4"#,
        p.user,
        p.step,
        page.limit(),
        page.offset()
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.listing(rows.into_iter().map(|r| json!({
        "user_id": r.user_id, "email": r.email, "step": r.step, "sent_for": r.sent_for, "sent_at": r.sent_at,
        "outbox_id": r.outbox_id, "email_status": r.email_status})))))
}
