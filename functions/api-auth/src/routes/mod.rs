//! Handlers of `/api/auth/`, one module per resource: `session` (register,
//! sign in and out, the signed-in user), `verification` (the email address's
//! code), `password` (reset and change) and `account` (deletion). The route
//! table and what several of them share (rate limits, the user as clients
//! see it, tokens, codes, outbox emails, the current-password check) live
//! here.

mod account;
mod password;
mod session;
mod verification;

use std::time::Duration;

use chrono::{DateTime, Utc};
use honeydue_core::auth::{hash_code, new_code, new_token, verify_password_async};
use honeydue_core::{AppError, AppResult};
use honeydue_http::{AuthUser, Limit};
use honeydue_mail::templates;
use honeydue_mail::OutgoingEmail;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;

use crate::State;
use account::delete_account;
use password::{change_password, forgot_password, reset_password, verify_reset_code};
use session::{login, logout, me, register, update_me};
use verification::{resend_verification, verify_email};

/// Password guesses per account.
const LOGIN_PER_ACCOUNT: Limit = Limit {
    scope: "login:acct",
    max: 10,
    window: Duration::from_secs(15 * 60),
};
/// Password guesses per client address.
const LOGIN_PER_IP: Limit = Limit {
    scope: "login:ip",
    max: 50,
    window: Duration::from_secs(15 * 60),
};
/// Code entries per account (verification and reset codes).
const CODE_PER_ACCOUNT: Limit = Limit {
    scope: "code:acct",
    max: 10,
    window: Duration::from_secs(15 * 60),
};
/// Code entries per client address.
const CODE_PER_IP: Limit = Limit {
    scope: "code:ip",
    max: 30,
    window: Duration::from_secs(15 * 60),
};
/// Codes sent per account (resend, forgot password).
const SEND_PER_ACCOUNT: Limit = Limit {
    scope: "send:acct",
    max: 5,
    window: Duration::from_secs(60 * 60),
};
/// Codes requested per client address.
const SEND_PER_IP: Limit = Limit {
    scope: "send:ip",
    max: 30,
    window: Duration::from_secs(60 * 60),
};

const VERIFY_TTL: chrono::Duration = chrono::Duration::hours(24);

honeydue_http::routes! { State;
    POST "/api/auth/register/" => register, Public, "Create an account; returns a token and the user";
    POST "/api/auth/login/" => login, Public, "Sign in; returns a token";
    POST "/api/auth/logout/" => logout, User, "Revoke the token used";
    GET "/api/auth/me/" => me, User, "The signed-in user";
    PATCH "/api/auth/me/" => update_me, User, "Change names, time zone, preferences";
    POST "/api/auth/verify-email/" => verify_email, User, "Verify the email address with the emailed code";
    POST "/api/auth/resend-verification/" => resend_verification, User, "Email a new verification code";
    POST "/api/auth/forgot-password/" => forgot_password, Public, "Email a password reset code (always 200)";
    POST "/api/auth/verify-reset-code/" => verify_reset_code, Public, "Exchange a reset code for a reset token";
    POST "/api/auth/reset-password/" => reset_password, Public, "Set a new password with a reset token";
    POST "/api/auth/change-password/" => change_password, User, "Change the password; signs out every session";
    DELETE "/api/auth/account/" => delete_account, User, "Delete the account and everything it owns";
}

/// The user as clients see it.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct UserOut {
    id: i64,
    email: String,
    first_name: String,
    last_name: String,
    timezone: String,
    email_verified: bool,
    preferences: Value,
    date_joined: DateTime<Utc>,
    /// The current avatar (an upload; `GET /api/files/{id}/` serves it).
    avatar_upload_id: Option<String>,
}

async fn load_user(conn: &mut PgConnection, id: i64) -> AppResult<UserOut> {
    sqlx::query_as!(
        UserOut,
        r#"SELECT id, email, first_name, last_name, timezone,
                  (email_verified_at IS NOT NULL) AS "email_verified!",
                  preferences, created_at AS date_joined,
                  avatar_upload_id::text AS avatar_upload_id
             FROM users WHERE id = $1"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(AppError::NotFound("user"))
}

async fn issue_token(conn: &mut PgConnection, state: &State, user_id: i64) -> AppResult<String> {
    let (token, hash) = new_token();
    let expires = Utc::now() + chrono::Duration::days(state.cfg.app.token_ttl_days);
    sqlx::query!(
        "INSERT INTO auth_tokens (user_id, token_hash, expires_at) VALUES ($1, $2, $3)",
        user_id,
        hash,
        expires
    )
    .execute(conn)
    .await?;
    Ok(token)
}

/// Replaces any open code of `purpose` with a fresh one; returns the code.
async fn fresh_code(
    conn: &mut PgConnection,
    user_id: i64,
    purpose: &str,
    ttl: chrono::Duration,
) -> AppResult<String> {
    sqlx::query!(
        "UPDATE user_codes SET consumed_at = now()
          WHERE user_id = $1 AND purpose = $2 AND consumed_at IS NULL",
        user_id,
        purpose
    )
    .execute(&mut *conn)
    .await?;
    let code = new_code();
    sqlx::query!(
        "INSERT INTO user_codes (user_id, purpose, code_hash, expires_at) VALUES ($1, $2, $3, $4)",
        user_id,
        purpose,
        hash_code(user_id, purpose, &code),
        Utc::now() + ttl
    )
    .execute(conn)
    .await?;
    Ok(code)
}

/// Checks `code` against the user's open code of `purpose`: consumes it on a
/// match, counts an attempt otherwise. Expired, used-up and wrong codes all
/// answer the same 400.
async fn redeem_code(
    conn: &mut PgConnection,
    user_id: i64,
    purpose: &str,
    code: &str,
) -> AppResult<()> {
    let invalid = || AppError::BadRequestCode {
        code: "invalid_code",
        message: "The code is invalid or has expired. Ask for a new one.".into(),
    };
    let row = sqlx::query!(
        "SELECT id, code_hash FROM user_codes
          WHERE user_id = $1 AND purpose = $2 AND consumed_at IS NULL
            AND expires_at > now() AND attempts < max_attempts
          ORDER BY created_at DESC LIMIT 1
          FOR UPDATE",
        user_id,
        purpose
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(invalid)?;
    let wanted = hash_code(user_id, purpose, code);
    if row.code_hash == wanted {
        sqlx::query!(
            "UPDATE user_codes SET consumed_at = now() WHERE id = $1",
            row.id
        )
        .execute(&mut *conn)
        .await?;
        Ok(())
    } else {
        sqlx::query!(
            "UPDATE user_codes SET attempts = attempts + 1 WHERE id = $1",
            row.id
        )
        .execute(&mut *conn)
        .await?;
        Err(invalid())
    }
}

fn outbox_email(
    user_id: i64,
    kind: &'static str,
    to: &str,
    r: templates::Rendered,
) -> OutgoingEmail {
    OutgoingEmail {
        user_id: Some(user_id),
        kind,
        to: to.to_string(),
        subject: r.subject,
        text: r.text,
        html: Some(r.html),
        dedupe_key: None,
        headers: Vec::new(),
    }
}

async fn check_current_password(
    state: &State,
    user: &AuthUser,
    field: &str,
    password: String,
) -> AppResult<()> {
    LOGIN_PER_ACCOUNT.check(&state.cache, &user.email).await?;
    let phc = sqlx::query_scalar!("SELECT password_hash FROM users WHERE id = $1", user.id)
        .fetch_one(&state.db)
        .await?;
    if verify_password_async(password, Some(phc)).await? {
        Ok(())
    } else {
        Err(AppError::field(field, "Incorrect password."))
    }
}
