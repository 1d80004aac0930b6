//! Passwords: a reset through an emailed code (forgot, verify the code,
//! reset), and a change by the signed-in user. Both sign out every session.

use axum::extract::State as S;
use axum::Extension;
use chrono::Utc;
use honeydue_core::auth::{hash_password_async, hash_token, new_token};
use honeydue_core::types::{Email, NewPassword};
use honeydue_core::{AppError, AppResult};
use honeydue_http::{AuthUser, ClientIp, Json};
use honeydue_mail::templates;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::PgConnection;

use super::{
    check_current_password, fresh_code, issue_token, outbox_email, redeem_code, CODE_PER_ACCOUNT,
    CODE_PER_IP, SEND_PER_ACCOUNT, SEND_PER_IP,
};
use crate::{State, Urgent};

const RESET_CODE_TTL: chrono::Duration = chrono::Duration::minutes(15);
const RESET_TOKEN_TTL: chrono::Duration = chrono::Duration::minutes(15);

// ---- password reset ----------------------------------------------------------

#[derive(Deserialize)]
pub(super) struct ForgotIn {
    email: String,
}

const FORGOT_DETAIL: &str = "If an account exists for this address, a reset code has been sent.";

pub(super) async fn forgot_password(
    S(state): S<State>,
    Extension(urgent): Extension<Urgent>,
    ip: ClientIp,
    Json(body): Json<ForgotIn>,
) -> AppResult<Json<Value>> {
    let email = match Email::parse(&body.email) {
        Ok(e) => e,
        Err(m) => return Err(AppError::field("email", m)),
    };
    SEND_PER_IP.check_addr(&state.cache, &ip).await?;
    // Over the per-account limit the answer is the same; only no mail goes
    // out (the answer must not tell whether the account exists).
    if SEND_PER_ACCOUNT
        .check(&state.cache, email.as_str())
        .await
        .is_err()
    {
        return Ok(Json(json!({"detail": FORGOT_DETAIL})));
    }
    let mut tx = state.db.begin().await?;
    let user = sqlx::query!(
        "SELECT id, first_name FROM users WHERE email = $1 AND is_active",
        email.as_str()
    )
    .fetch_optional(&mut *tx)
    .await?;
    let mut mail_id = None;
    if let Some(u) = user {
        let code = fresh_code(&mut tx, u.id, "reset_password", RESET_CODE_TTL).await?;
        let msg = templates::password_reset(&state.cfg.app.name, &u.first_name, &code);
        mail_id = honeydue_mail::enqueue(
            &mut tx,
            &outbox_email(u.id, "password_reset", email.as_str(), msg),
        )
        .await?;
    }
    tx.commit().await?;
    urgent.send(&state.db, mail_id);
    Ok(Json(json!({"detail": FORGOT_DETAIL})))
}

#[derive(Deserialize)]
pub(super) struct VerifyResetIn {
    email: String,
    code: String,
}

pub(super) async fn verify_reset_code(
    S(state): S<State>,
    ip: ClientIp,
    Json(body): Json<VerifyResetIn>,
) -> AppResult<Json<Value>> {
    let email = body.email.trim().to_lowercase();
    CODE_PER_IP.check_addr(&state.cache, &ip).await?;
    CODE_PER_ACCOUNT.check(&state.cache, &email).await?;
    let mut tx = state.db.begin().await?;
    let user_id = sqlx::query_scalar!("SELECT id FROM users WHERE email = $1 AND is_active", email)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(AppError::BadRequestCode {
            code: "invalid_code",
            message: "The code is invalid or has expired. Ask for a new one.".into(),
        })?;
    if let Err(e) = redeem_code(&mut tx, user_id, "reset_password", &body.code).await {
        tx.commit().await?;
        return Err(e);
    }
    let (reset_token, hash) = new_token();
    sqlx::query!(
        "INSERT INTO user_codes (user_id, purpose, code_hash, expires_at, max_attempts)
         VALUES ($1, 'reset_token', $2, $3, 1)",
        user_id,
        hash,
        Utc::now() + RESET_TOKEN_TTL
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(
        json!({"reset_token": reset_token, "expires_in": RESET_TOKEN_TTL.num_seconds()}),
    ))
}

#[derive(Deserialize)]
pub(super) struct ResetIn {
    reset_token: String,
    new_password: String,
}

pub(super) async fn reset_password(
    S(state): S<State>,
    Json(body): Json<ResetIn>,
) -> AppResult<Json<Value>> {
    let password =
        NewPassword::parse(&body.new_password).map_err(|m| AppError::field("new_password", m))?;
    let invalid = || AppError::BadRequestCode {
        code: "invalid_token",
        message: "The reset token is invalid or has expired. Start again.".into(),
    };
    let token_hash = hash_token(body.reset_token.trim());
    // The token first (one indexed lookup): a request with a made-up token
    // never costs a password hash.
    let live = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM user_codes
                           WHERE purpose = 'reset_token' AND code_hash = $1
                             AND consumed_at IS NULL AND expires_at > now()) AS "x!""#,
        token_hash
    )
    .fetch_one(&state.db)
    .await?;
    if !live {
        return Err(invalid());
    }
    let hash = hash_password_async(password.expose().to_string()).await?;
    let mut tx = state.db.begin().await?;
    let row = sqlx::query!(
        "UPDATE user_codes SET consumed_at = now()
          WHERE purpose = 'reset_token' AND code_hash = $1
            AND consumed_at IS NULL AND expires_at > now()
          RETURNING user_id",
        token_hash
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(invalid)?;
    let user_id = row.user_id;
    let revoked = set_password(&mut tx, &state, user_id, &hash).await?;
    // Whoever reset the password proved they read the mailbox.
    sqlx::query!(
        "UPDATE users SET email_verified_at = COALESCE(email_verified_at, now()) WHERE id = $1",
        user_id
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    honeydue_http::auth::evict_tokens(&state.cache, &revoked).await;
    tracing::info!(user_id, "password reset");
    Ok(Json(
        json!({"detail": "Your password has been reset. Sign in with the new one."}),
    ))
}

/// Sets the password, revokes every token, consumes every open code and
/// reset token, revokes the calendar feed and forgets the push devices, and
/// tells the user by email; returns
/// the revoked token hashes for the caller to evict from the cache after
/// its commit (evicting earlier would let a request in between re-cache a
/// token that is about to be revoked).
async fn set_password(
    conn: &mut PgConnection,
    state: &State,
    user_id: i64,
    hash: &str,
) -> AppResult<Vec<Vec<u8>>> {
    let u = sqlx::query!(
        "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1 RETURNING email, first_name",
        user_id,
        hash
    )
    .fetch_one(&mut *conn)
    .await?;
    let revoked = sqlx::query_scalar!(
        "UPDATE auth_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL RETURNING token_hash",
        user_id
    )
    .fetch_all(&mut *conn)
    .await?;
    // Every other credential of the account ends with the old password:
    // open codes and reset tokens, the calendar feed's secret URL, and the
    // push devices (they register again at the next sign-in).
    sqlx::query!(
        "UPDATE user_codes SET consumed_at = now() WHERE user_id = $1 AND consumed_at IS NULL",
        user_id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!("DELETE FROM calendar_feeds WHERE user_id = $1", user_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query!("DELETE FROM devices WHERE user_id = $1", user_id)
        .execute(&mut *conn)
        .await?;
    let msg = templates::password_changed(&state.cfg.app.name, &u.first_name);
    honeydue_mail::enqueue(
        conn,
        &outbox_email(user_id, "password_changed", &u.email, msg),
    )
    .await?;
    Ok(revoked)
}

// ---- change password -------------------------------------------------------

#[derive(Deserialize)]
pub(super) struct ChangeIn {
    current_password: String,
    new_password: String,
}

pub(super) async fn change_password(
    S(state): S<State>,
    user: AuthUser,
    Json(body): Json<ChangeIn>,
) -> AppResult<Json<Value>> {
    let password =
        NewPassword::parse(&body.new_password).map_err(|m| AppError::field("new_password", m))?;
    check_current_password(&state, &user, "current_password", body.current_password).await?;
    let hash = hash_password_async(password.expose().to_string()).await?;
    let mut tx = state.db.begin().await?;
    let revoked = set_password(&mut tx, &state, user.id, &hash).await?;
    let token = issue_token(&mut tx, &state, user.id).await?;
    tx.commit().await?;
    honeydue_http::auth::evict_tokens(&state.cache, &revoked).await;
    tracing::info!(user_id = user.id, "password changed");
    Ok(Json(
        json!({"detail": "Password changed; other sessions were signed out.", "token": token}),
    ))
}
