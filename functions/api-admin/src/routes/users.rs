//! App users: list and search, one user, deactivate and reactivate, grant
//! a subscription tier or the free flag.

use axum::extract::State as S;
use chrono::{DateTime, Utc};
use honeydue_core::{AppError, AppResult, Validator};
use honeydue_http::{Json, Page, Paginated, PathId, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::SearchParams;
use crate::auth::Admin;

#[derive(Debug, Serialize)]
pub(super) struct UserRow {
    id: i64,
    email: String,
    first_name: String,
    last_name: String,
    email_verified: bool,
    is_active: bool,
    tier: String,
    is_free: bool,
    created_at: DateTime<Utc>,
}

pub(super) async fn users(
    S(state): S<State>,
    _admin: Admin,
    page: Page,
    Query(p): Query<SearchParams>,
) -> AppResult<Json<Paginated<UserRow>>> {
    let pattern = p
        .search
        .map(|s| format!("%{}%", s.trim().to_lowercase().replace(['%', '_'], "")));
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM users u
            WHERE $1::text IS NULL OR u.email LIKE $1 OR lower(u.first_name || ' ' || u.last_name) LIKE $1"#,
        pattern
    )
    .fetch_one(&state.db)
    .await?;
    let rows = sqlx::query_as!(
        UserRow,
        r#"SELECT u.id, u.email, u.first_name, u.last_name, (u.email_verified_at IS NOT NULL) AS "email_verified!",
                  u.is_active, COALESCE(s.tier, 'free') AS "tier!", COALESCE(s.is_free, FALSE) AS "is_free!", u.created_at
             FROM users u LEFT JOIN user_subscriptions s ON s.user_id = u.id
            WHERE $1::text IS NULL OR u.email LIKE $1 OR lower(u.first_name || ' ' || u.last_name) LIKE $1
            ORDER BY u.id DESC LIMIT $2 OFFSET $3"#,
        pattern,
        page.limit(),
        page.offset()
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(Paginated::new(page, count, rows)))
}

pub(super) async fn user_detail(
    S(state): S<State>,
    _admin: Admin,
    PathId(id): PathId,
) -> AppResult<Json<Value>> {
    let u = sqlx::query!(
        r#"SELECT u.id, u.email, u.first_name, u.last_name, u.timezone, u.email_verified_at, u.is_active, u.created_at,
                  s.tier AS "tier?", s.expires_at AS "expires_at?", s.is_free AS "is_free?", s.source AS "source?",
                  (SELECT count(*) FROM residences r WHERE r.owner_id = u.id) AS "residences_owned!",
                  (SELECT count(*) FROM residence_members m WHERE m.user_id = u.id) AS "memberships!",
                  (SELECT count(*) FROM auth_tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL AND t.expires_at > now()) AS "active_sessions!"
             FROM users u LEFT JOIN user_subscriptions s ON s.user_id = u.id
            WHERE u.id = $1"#,
        id
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound("user"))?;
    Ok(Json(json!({
        "id": u.id, "email": u.email, "first_name": u.first_name, "last_name": u.last_name, "timezone": u.timezone,
        "email_verified_at": u.email_verified_at, "is_active": u.is_active, "created_at": u.created_at,
        "subscription": {"tier": u.tier.unwrap_or_else(|| "free".into()), "expires_at": u.expires_at,
                         "is_free": u.is_free.unwrap_or(false), "source": u.source.unwrap_or_else(|| "none".into())},
        "residences_owned": u.residences_owned, "memberships": u.memberships, "active_sessions": u.active_sessions,
    })))
}

pub(super) async fn deactivate(
    S(state): S<State>,
    admin: Admin,
    PathId(id): PathId,
) -> AppResult<Json<Value>> {
    let mut tx = state.db.begin().await?;
    let n = sqlx::query!(
        "UPDATE users SET is_active = FALSE, updated_at = now() WHERE id = $1",
        id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(AppError::NotFound("user"));
    }
    let revoked = sqlx::query_scalar!(
        "UPDATE auth_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL RETURNING token_hash",
        id
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    honeydue_http::auth::evict_tokens(&state.cache, &revoked).await;
    tracing::info!(admin_id = admin.id, user_id = id, "user deactivated");
    Ok(Json(
        json!({"id": id, "is_active": false, "sessions_revoked": revoked.len()}),
    ))
}

pub(super) async fn activate(
    S(state): S<State>,
    admin: Admin,
    PathId(id): PathId,
) -> AppResult<Json<Value>> {
    let n = sqlx::query!(
        "UPDATE users SET is_active = TRUE, updated_at = now() WHERE id = $1",
        id
    )
    .execute(&state.db)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(AppError::NotFound("user"));
    }
    tracing::info!(admin_id = admin.id, user_id = id, "user activated");
    Ok(Json(json!({"id": id, "is_active": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantIn {
    tier: Option<String>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    expires_at: Option<Option<DateTime<Utc>>>,
    is_free: Option<bool>,
}

pub(super) async fn grant(
    S(state): S<State>,
    admin: Admin,
    PathId(id): PathId,
    Json(b): Json<GrantIn>,
) -> AppResult<Json<Value>> {
    let mut v = Validator::new();
    if let Some(t) = &b.tier {
        v.check(t == "free" || t == "pro", "tier", "Use free or pro.");
    }
    v.finish()?;
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM users WHERE id = $1) AS "x!""#,
        id
    )
    .fetch_one(&state.db)
    .await?;
    if !exists {
        return Err(AppError::NotFound("user"));
    }
    let s = sqlx::query!(
        "INSERT INTO user_subscriptions (user_id, tier, expires_at, is_free, source)
         VALUES ($1, COALESCE($2, 'free'), $4, COALESCE($5, FALSE), 'admin')
         ON CONFLICT (user_id) DO UPDATE SET
            tier = COALESCE($2, user_subscriptions.tier),
            expires_at = CASE WHEN $3 THEN $4 ELSE user_subscriptions.expires_at END,
            is_free = COALESCE($5, user_subscriptions.is_free),
            source = 'admin', updated_at = now()
         RETURNING tier, expires_at, is_free",
        id,
        b.tier,
        b.expires_at.is_some(),
        b.expires_at.flatten(),
        b.is_free
    )
    .fetch_one(&state.db)
    .await?;
    tracing::info!(
        admin_id = admin.id,
        user_id = id,
        tier = s.tier,
        is_free = s.is_free,
        "subscription granted"
    );
    Ok(Json(
        json!({"user_id": id, "tier": s.tier, "expires_at": s.expires_at, "is_free": s.is_free, "source": "admin"}),
    ))
}
