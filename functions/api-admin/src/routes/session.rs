//! The admin's session: sign in, sign out, who is signed in.

use axum::extract::State as S;
use axum::http::StatusCode;
use honeydue_core::auth::{new_token, verify_password_async};
use honeydue_core::{AppError, AppResult};
use honeydue_http::{ClientIp, Json, State};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Admin, LOGIN_PER_ACCOUNT, LOGIN_PER_IP, TOKEN_TTL_HOURS};

#[derive(Deserialize)]
pub(super) struct LoginIn {
    email: String,
    password: String,
}

pub(super) async fn login(
    S(state): S<State>,
    ip: ClientIp,
    Json(b): Json<LoginIn>,
) -> AppResult<Json<Value>> {
    let email = b.email.trim().to_lowercase();
    LOGIN_PER_IP.check_addr(&state.cache, &ip).await?;
    LOGIN_PER_ACCOUNT.check(&state.cache, &email).await?;
    let row = sqlx::query!(
        "SELECT id, password_hash, name FROM admin_users WHERE email = $1 AND is_active",
        email
    )
    .fetch_optional(&state.db)
    .await?;
    let ok =
        verify_password_async(b.password, row.as_ref().map(|r| r.password_hash.clone())).await?;
    let Some(row) = row.filter(|_| ok) else {
        return Err(AppError::Unauthorized("Invalid email or password.".into()));
    };
    LOGIN_PER_ACCOUNT.reset(&state.cache, &email).await;
    let (token, hash) = new_token();
    sqlx::query!(
        "INSERT INTO admin_tokens (admin_id, token_hash, expires_at) VALUES ($1, $2, now() + make_interval(hours => $3))",
        row.id,
        hash,
        TOKEN_TTL_HOURS as i32
    )
    .execute(&state.db)
    .await?;
    sqlx::query!(
        "UPDATE admin_users SET last_login_at = now() WHERE id = $1",
        row.id
    )
    .execute(&state.db)
    .await?;
    tracing::info!(admin_id = row.id, "admin signed in");
    Ok(Json(
        json!({"token": token, "admin": {"id": row.id, "email": email, "name": row.name}}),
    ))
}

pub(super) async fn logout(S(state): S<State>, admin: Admin) -> AppResult<StatusCode> {
    sqlx::query!(
        "UPDATE admin_tokens SET revoked_at = now() WHERE id = $1",
        admin.token_id
    )
    .execute(&state.db)
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn me(admin: Admin) -> Json<Value> {
    Json(json!({"id": admin.id, "email": admin.email}))
}
