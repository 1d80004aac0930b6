//! Handlers of `/api/auth/`.

use std::time::Duration;

use axum::extract::State as S;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use honeydue_core::auth::{
    hash_code, hash_password_async, hash_token, new_code, new_token, verify_password_async,
};
use honeydue_core::types::{parse_name, Email, NewPassword, TimeZone};
use honeydue_core::{AppError, AppResult, Validator};
use honeydue_http::{AuthUser, ClientIp, Json, Limit};
use honeydue_mail::templates;
use honeydue_mail::OutgoingEmail;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgConnection;

use crate::{State, Urgent};
use axum::Extension;

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
const RESET_CODE_TTL: chrono::Duration = chrono::Duration::minutes(15);
const RESET_TOKEN_TTL: chrono::Duration = chrono::Duration::minutes(15);

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

fn is_unique(e: &sqlx::Error, constraint: &str) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.constraint() == Some(constraint))
}

// ---- register / login / logout -------------------------------------------

#[derive(Deserialize)]
struct RegisterIn {
    email: String,
    password: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    timezone: Option<String>,
}

/// Sign-ups per address: an hour (a household or an office behind one
/// address signs up a few people at once), a day.
const SIGNUPS_PER_ADDR_HOUR: i64 = 10;
/// See [`SIGNUPS_PER_ADDR_HOUR`].
const SIGNUPS_PER_ADDR_DAY: i64 = 30;
/// Sign-ups per hour for the whole system: a ceiling on account churn
/// (each account gets its own per-account budgets) far above organic
/// growth for an app of this size; raise it for a launch.
const SIGNUPS_PER_HOUR: i64 = 1_000;

/// Counts sign-ups in Postgres (durable: no Redis needed, and no new
/// account escapes it): per address, then for everyone. Answers 429 with
/// the time until the oldest counted sign-up leaves its window.
async fn check_signup_budget(db: &sqlx::PgPool, addr: Option<&[u8]>) -> AppResult<()> {
    let r = sqlx::query!(
        r#"SELECT
             count(*) FILTER (WHERE signup_addr_hash = $1 AND created_at > now() - interval '1 hour') AS "addr_hour!",
             count(*) FILTER (WHERE signup_addr_hash = $1) AS "addr_day!",
             count(*) FILTER (WHERE created_at > now() - interval '1 hour') AS "all_hour!"
           FROM users WHERE created_at > now() - interval '1 day'"#,
        addr
    )
    .fetch_one(db)
    .await?;
    let limited = if r.all_hour >= SIGNUPS_PER_HOUR || r.addr_hour >= SIGNUPS_PER_ADDR_HOUR {
        Some(3600)
    } else if r.addr_day >= SIGNUPS_PER_ADDR_DAY {
        Some(6 * 3600)
    } else {
        None
    };
    match limited {
        Some(retry_after_secs) => {
            tracing::warn!(
                addr_hour = r.addr_hour,
                addr_day = r.addr_day,
                all_hour = r.all_hour,
                "sign-ups limited"
            );
            Err(AppError::RateLimited { retry_after_secs })
        }
        None => Ok(()),
    }
}

async fn register(
    S(state): S<State>,
    Extension(urgent): Extension<Urgent>,
    ip: ClientIp,
    Json(body): Json<RegisterIn>,
) -> AppResult<impl IntoResponse> {
    let mut v = Validator::new();
    let email = v.take("email", Email::parse(&body.email));
    let password = v.take("password", NewPassword::parse(&body.password));
    let first = v.take("first_name", parse_name(&body.first_name));
    let last = v.take("last_name", parse_name(&body.last_name));
    let tz = v.take(
        "timezone",
        TimeZone::parse(body.timezone.as_deref().unwrap_or("UTC")),
    );
    v.finish()?;
    let (email, password, first, last, tz) = (
        email.expect("validated"),
        password.expect("validated"),
        first.expect("validated"),
        last.expect("validated"),
        tz.expect("validated"),
    );
    // Cheap checks before the expensive hash.
    let addr = ip.0.as_deref().map(hash_token);
    check_signup_budget(&state.db, addr.as_deref()).await?;
    let taken = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM users WHERE email = $1) AS "x!""#,
        email.as_str()
    )
    .fetch_one(&state.db)
    .await?;
    if taken {
        return Err(email_taken());
    }
    let hash = hash_password_async(password.expose().to_string()).await?;

    let mut tx = state.db.begin().await?;
    let inserted = sqlx::query_scalar!(
        "INSERT INTO users (email, password_hash, first_name, last_name, timezone, signup_addr_hash)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        email.as_str(),
        hash,
        first,
        last,
        tz.name(),
        addr
    )
    .fetch_one(&mut *tx)
    .await;
    let user_id = match inserted {
        Ok(id) => id,
        Err(e) if is_unique(&e, "users_email_key") => return Err(email_taken()),
        Err(e) => return Err(e.into()),
    };
    let token = issue_token(&mut tx, &state, user_id).await?;
    let code = fresh_code(&mut tx, user_id, "verify_email", VERIFY_TTL).await?;
    let msg = templates::verify_email(&state.cfg.app.name, &first, &code);
    let mail_id = honeydue_mail::enqueue(
        &mut tx,
        &outbox_email(user_id, "verify_email", email.as_str(), msg),
    )
    .await?;
    let user = load_user(&mut tx, user_id).await?;
    tx.commit().await?;
    urgent.send(&state.db, mail_id);
    tracing::info!(user_id, "registered");
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "user": user})),
    ))
}

fn email_taken() -> AppError {
    AppError::conflict("email_taken", "An account with this email already exists.")
}

#[derive(Deserialize)]
struct LoginIn {
    email: String,
    password: String,
}

fn invalid_credentials() -> AppError {
    AppError::Unauthorized("Invalid email or password.".into())
}

async fn login(
    S(state): S<State>,
    ip: ClientIp,
    Json(body): Json<LoginIn>,
) -> AppResult<Json<Value>> {
    let email = body.email.trim().to_lowercase();
    LOGIN_PER_IP.check_addr(&state.cache, &ip).await?;
    LOGIN_PER_ACCOUNT.check(&state.cache, &email).await?;
    let row = sqlx::query!(
        "SELECT id, password_hash FROM users WHERE email = $1 AND is_active",
        email
    )
    .fetch_optional(&state.db)
    .await?;
    let ok =
        verify_password_async(body.password, row.as_ref().map(|r| r.password_hash.clone())).await?;
    let Some(row) = row.filter(|_| ok) else {
        return Err(invalid_credentials());
    };
    LOGIN_PER_ACCOUNT.reset(&state.cache, &email).await;
    let mut conn = state.db.acquire().await?;
    let token = issue_token(&mut conn, &state, row.id).await?;
    let user = load_user(&mut conn, row.id).await?;
    tracing::info!(user_id = row.id, "logged in");
    Ok(Json(json!({"token": token, "user": user})))
}

async fn logout(S(state): S<State>, user: AuthUser) -> AppResult<StatusCode> {
    let hash = sqlx::query_scalar!(
        "UPDATE auth_tokens SET revoked_at = now() WHERE id = $1 RETURNING token_hash",
        user.token_id
    )
    .fetch_one(&state.db)
    .await?;
    honeydue_http::auth::evict_tokens(&state.cache, &[hash]).await;
    Ok(StatusCode::NO_CONTENT)
}

// ---- me --------------------------------------------------------------------

async fn me(S(state): S<State>, user: AuthUser) -> AppResult<Json<UserOut>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(load_user(&mut conn, user.id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MeIn {
    first_name: Option<String>,
    last_name: Option<String>,
    timezone: Option<String>,
    preferences: Option<Value>,
}

/// Largest `preferences` object, serialised.
const PREFERENCES_MAX_BYTES: usize = 8 * 1024;

async fn update_me(
    S(state): S<State>,
    user: AuthUser,
    Json(body): Json<MeIn>,
) -> AppResult<Json<UserOut>> {
    let mut v = Validator::new();
    let first = body
        .first_name
        .as_deref()
        .and_then(|n| v.take("first_name", parse_name(n)));
    let last = body
        .last_name
        .as_deref()
        .and_then(|n| v.take("last_name", parse_name(n)));
    let tz = body
        .timezone
        .as_deref()
        .and_then(|t| v.take("timezone", TimeZone::parse(t)));
    if let Some(p) = &body.preferences {
        v.check(p.is_object(), "preferences", "Must be a JSON object.");
        v.check(
            p.to_string().len() <= PREFERENCES_MAX_BYTES,
            "preferences",
            format!("Must be at most {PREFERENCES_MAX_BYTES} bytes."),
        );
    }
    v.finish()?;
    let mut conn = state.db.acquire().await?;
    sqlx::query!(
        "UPDATE users SET first_name = COALESCE($2, first_name),
                          last_name = COALESCE($3, last_name),
                          timezone = COALESCE($4, timezone),
                          preferences = COALESCE($5, preferences),
                          updated_at = now()
          WHERE id = $1",
        user.id,
        first,
        last,
        tz.map(|t| t.name()),
        body.preferences
    )
    .execute(&mut *conn)
    .await?;
    Ok(Json(load_user(&mut conn, user.id).await?))
}

// ---- email verification ----------------------------------------------------

#[derive(Deserialize)]
struct CodeIn {
    code: String,
}

async fn verify_email(
    S(state): S<State>,
    ip: ClientIp,
    user: AuthUser,
    Json(body): Json<CodeIn>,
) -> AppResult<Json<Value>> {
    CODE_PER_IP.check_addr(&state.cache, &ip).await?;
    CODE_PER_ACCOUNT.check(&state.cache, &user.email).await?;
    if user.email_verified {
        return Err(AppError::conflict(
            "already_verified",
            "This email address is already verified.",
        ));
    }
    let mut tx = state.db.begin().await?;
    let redeemed = redeem_code(&mut tx, user.id, "verify_email", &body.code).await;
    if let Err(e) = redeemed {
        // Keep the attempt count even though the request fails.
        tx.commit().await?;
        return Err(e);
    }
    sqlx::query!(
        "UPDATE users SET email_verified_at = now(), updated_at = now() WHERE id = $1",
        user.id
    )
    .execute(&mut *tx)
    .await?;
    let out = load_user(&mut tx, user.id).await?;
    tx.commit().await?;
    Ok(Json(json!({"detail": "Email verified.", "user": out})))
}

async fn resend_verification(
    S(state): S<State>,
    Extension(urgent): Extension<Urgent>,
    ip: ClientIp,
    user: AuthUser,
) -> AppResult<Json<Value>> {
    if user.email_verified {
        return Err(AppError::conflict(
            "already_verified",
            "This email address is already verified.",
        ));
    }
    SEND_PER_IP.check_addr(&state.cache, &ip).await?;
    SEND_PER_ACCOUNT.check(&state.cache, &user.email).await?;
    let mut tx = state.db.begin().await?;
    let first = sqlx::query_scalar!("SELECT first_name FROM users WHERE id = $1", user.id)
        .fetch_one(&mut *tx)
        .await?;
    let code = fresh_code(&mut tx, user.id, "verify_email", VERIFY_TTL).await?;
    let msg = templates::verify_email(&state.cfg.app.name, &first, &code);
    let mail_id = honeydue_mail::enqueue(
        &mut tx,
        &outbox_email(user.id, "verify_email", &user.email, msg),
    )
    .await?;
    tx.commit().await?;
    urgent.send(&state.db, mail_id);
    Ok(Json(
        json!({"detail": "A new verification code has been sent."}),
    ))
}

// ---- password reset ----------------------------------------------------------

#[derive(Deserialize)]
struct ForgotIn {
    email: String,
}

const FORGOT_DETAIL: &str = "If an account exists for this address, a reset code has been sent.";

async fn forgot_password(
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
struct VerifyResetIn {
    email: String,
    code: String,
}

async fn verify_reset_code(
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
struct ResetIn {
    reset_token: String,
    new_password: String,
}

async fn reset_password(S(state): S<State>, Json(body): Json<ResetIn>) -> AppResult<Json<Value>> {
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

// ---- change password / delete account -------------------------------------

#[derive(Deserialize)]
struct ChangeIn {
    current_password: String,
    new_password: String,
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

async fn change_password(
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

/// Before an account goes, every home it owns that has other members gets
/// a new owner: the longest-standing member (one who may edit before a
/// viewer), who is told by email and in the app. The home keeps its tasks,
/// documents, files and members, and contractors the leaving owner shared
/// with it move to the new owner. Homes nobody else shares go with the
/// account. Returns how many homes changed hands.
async fn hand_over_homes(conn: &mut PgConnection, state: &State, user_id: i64) -> AppResult<usize> {
    let heirs = sqlx::query!(
        r#"WITH heirs AS (
             SELECT DISTINCT ON (r.id) r.id AS residence_id, m.user_id AS heir
               FROM residences r
               JOIN residence_members m ON m.residence_id = r.id AND m.user_id <> r.owner_id
              WHERE r.owner_id = $1
              ORDER BY r.id, (m.role = 'member') DESC, m.joined_at, m.user_id)
           UPDATE residences r SET owner_id = h.heir, updated_at = now()
             FROM heirs h
            WHERE r.id = h.residence_id
        RETURNING r.id, r.name, h.heir"#,
        user_id
    )
    .fetch_all(&mut *conn)
    .await?;
    for h in &heirs {
        sqlx::query!(
            "UPDATE residence_members SET role = 'owner' WHERE residence_id = $1 AND user_id = $2",
            h.id,
            h.heir
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query!(
            "UPDATE contractors SET owner_id = $3, updated_at = now() WHERE owner_id = $1 AND residence_id = $2",
            user_id,
            h.id,
            h.heir
        )
        .execute(&mut *conn)
        .await?;
        let heir = sqlx::query!("SELECT email, first_name FROM users WHERE id = $1", h.heir)
            .fetch_one(&mut *conn)
            .await?;
        let msg = templates::home_transferred(&state.cfg.app.name, &heir.first_name, &h.name);
        honeydue_mail::enqueue(
            &mut *conn,
            &outbox_email(h.heir, "home_transferred", &heir.email, msg),
        )
        .await?;
        sqlx::query!(
            "INSERT INTO notifications (user_id, kind, title, body, data)
             VALUES ($1, 'shared', $2, 'Its owner deleted their account; you now own it.', $3)",
            h.heir,
            format!("You now own {}", h.name),
            json!({"event": "ownership_transferred", "residence_id": h.id})
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(heirs.len())
}

#[derive(Deserialize)]
struct DeleteIn {
    password: String,
}

async fn delete_account(
    S(state): S<State>,
    user: AuthUser,
    Json(body): Json<DeleteIn>,
) -> AppResult<StatusCode> {
    check_current_password(&state, &user, "password", body.password).await?;
    let tokens = sqlx::query_scalar!(
        "SELECT token_hash FROM auth_tokens WHERE user_id = $1",
        user.id
    )
    .fetch_all(&state.db)
    .await?;
    let mut tx = state.db.begin().await?;
    let handed = hand_over_homes(&mut tx, &state, user.id).await?;
    // What is the user's alone hangs off users with ON DELETE CASCADE: their
    // tokens, codes, devices, memberships, and homes nobody else shares.
    sqlx::query!("DELETE FROM users WHERE id = $1", user.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    if handed > 0 {
        tracing::info!(user_id = user.id, homes = handed, "homes handed over");
    }
    honeydue_http::auth::evict_tokens(&state.cache, &tokens).await;
    tracing::info!(user_id = user.id, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}
