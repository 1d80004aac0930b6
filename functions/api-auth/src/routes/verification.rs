//! The email address's verification: the emailed code, and a new code on
//! request.

use axum::extract::State as S;
use axum::Extension;
use honeydue_core::{AppError, AppResult};
use honeydue_http::{AuthUser, ClientIp, Json};
use honeydue_mail::templates;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    fresh_code, load_user, outbox_email, redeem_code, CODE_PER_ACCOUNT, CODE_PER_IP,
    SEND_PER_ACCOUNT, SEND_PER_IP, VERIFY_TTL,
};
use crate::{State, Urgent};

#[derive(Deserialize)]
pub(super) struct CodeIn {
    code: String,
}

pub(super) async fn verify_email(
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

pub(super) async fn resend_verification(
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
