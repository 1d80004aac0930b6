//! Accounts and sessions: register, sign in, sign out, and the signed-in
//! user (`me`).

use axum::extract::State as S;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Extension;
use honeydue_core::auth::{hash_password_async, hash_token, verify_password_async};
use honeydue_core::types::{parse_name, Email, NewPassword, TimeZone};
use honeydue_core::{AppError, AppResult, OnConstraint, Validator};
use honeydue_http::{AuthUser, ClientIp, Json};
use honeydue_mail::templates;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    fresh_code, issue_token, load_user, outbox_email, UserOut, LOGIN_PER_ACCOUNT, LOGIN_PER_IP,
    VERIFY_TTL,
};
use crate::{State, Urgent};

// ---- register / login / logout -------------------------------------------

#[derive(Deserialize)]
pub(super) struct RegisterIn {
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

pub(super) async fn register(
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
    let user_id = sqlx::query_scalar!(
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
    .await
    .on_constraint("users_email_key", email_taken)?;
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
pub(super) struct LoginIn {
    email: String,
    password: String,
}

fn invalid_credentials() -> AppError {
    AppError::Unauthorized("Invalid email or password.".into())
}

pub(super) async fn login(
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

pub(super) async fn logout(S(state): S<State>, user: AuthUser) -> AppResult<StatusCode> {
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

pub(super) async fn me(S(state): S<State>, user: AuthUser) -> AppResult<Json<UserOut>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(load_user(&mut conn, user.id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MeIn {
    first_name: Option<String>,
    last_name: Option<String>,
    timezone: Option<String>,
    preferences: Option<Value>,
}

/// Largest `preferences` object, serialised.
const PREFERENCES_MAX_BYTES: usize = 8 * 1024;

pub(super) async fn update_me(
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
