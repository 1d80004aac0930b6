//! The admin realm's credentials.

use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use honeydue_core::auth::hash_token;
use honeydue_core::AppError;
use honeydue_http::auth::bearer_token;
use honeydue_http::Limit;
use sqlx::PgPool;

/// Admin sign-in attempts per address.
pub const LOGIN_PER_IP: Limit = Limit {
    scope: "admin-login:ip",
    max: 20,
    window: Duration::from_secs(15 * 60),
};
/// Admin sign-in attempts per account.
pub const LOGIN_PER_ACCOUNT: Limit = Limit {
    scope: "admin-login:acct",
    max: 5,
    window: Duration::from_secs(15 * 60),
};
/// Admin sessions last a working day.
pub const TOKEN_TTL_HOURS: i64 = 12;

/// The signed-in admin.
#[derive(Debug, Clone)]
pub struct Admin {
    /// `admin_users.id`.
    pub id: i64,
    /// Address.
    pub email: String,
    /// `admin_tokens.id` of the token used.
    pub token_id: i64,
}

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    PgPool: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)
            .ok_or_else(|| AppError::Unauthorized("Admin credentials were not provided.".into()))?;
        let pool = PgPool::from_ref(state);
        let row = sqlx::query!(
            "SELECT t.id AS token_id, a.id, a.email FROM admin_tokens t JOIN admin_users a ON a.id = t.admin_id
              WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > now() AND a.is_active",
            hash_token(token)
        )
        .fetch_optional(&pool)
        .await?
        .ok_or_else(|| AppError::Unauthorized("Invalid or expired admin token.".into()))?;
        Ok(Admin {
            id: row.id,
            email: row.email,
            token_id: row.token_id,
        })
    }
}
