//! `Authorization: Token <key>` (the app's form) or `Bearer <key>`.

use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use honeydue_cache::Cache;
use honeydue_core::auth::hash_token;
use honeydue_core::AppError;
use sqlx::PgPool;

/// The authenticated app user behind a request.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AuthUser {
    /// `users.id`.
    pub id: i64,
    /// The user's email address.
    pub email: String,
    /// Whether the email address has been verified.
    pub email_verified: bool,
    /// IANA time zone name.
    pub timezone: String,
    /// `auth_tokens.id` of the token used (logout revokes it).
    pub token_id: i64,
}

/// The token text from an `Authorization` header, if it has one of the
/// accepted schemes.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    if (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        && !token.is_empty()
        && token.len() <= 256
    {
        Some(token)
    } else {
        None
    }
}

/// How long a token lookup may be served from Redis. Logout and password
/// changes evict at once; this bounds staleness only when Redis was down
/// during the eviction.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(60);

/// A login token unused for this many days stops working (it slides: each
/// use, recorded at most hourly, restarts the count), besides its absolute
/// lifetime (`TOKEN_TTL_DAYS`).
pub const TOKEN_IDLE_DAYS: i32 = 30;

/// The cache key of a token (by its stored hash, never the token).
pub fn token_cache_key(hash: &[u8]) -> String {
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("tok:{hex}")
}

/// Forgets cached lookups of these token hashes (logout, password change).
pub async fn evict_tokens(cache: &Cache, hashes: &[Vec<u8>]) {
    let keys: Vec<String> = hashes.iter().map(|h| token_cache_key(h)).collect();
    cache.delete(&keys).await;
}

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    PgPool: FromRef<S>,
    Cache: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(user) = parts.extensions.get::<AuthUser>() {
            return Ok(user.clone());
        }
        let token = bearer_token(parts).ok_or_else(|| {
            AppError::Unauthorized("Authentication credentials were not provided.".into())
        })?;
        let pool = PgPool::from_ref(state);
        let cache = Cache::from_ref(state);
        let hash = hash_token(token);
        let key = token_cache_key(&hash);
        if let Some(user) = cache
            .get(&key)
            .await
            .and_then(|v| serde_json::from_str::<AuthUser>(&v).ok())
        {
            parts.extensions.insert(user.clone());
            return Ok(user);
        }
        let row = sqlx::query!(
            r#"SELECT t.id AS token_id, u.id AS user_id, u.email, u.timezone,
                      (u.email_verified_at IS NOT NULL) AS "verified!",
                  EXTRACT(EPOCH FROM (t.expires_at - now()))::bigint AS "expires_in_secs!",
                  (t.last_used_at < now() - interval '1 hour') AS "stale_use!"
                 FROM auth_tokens t
                 JOIN users u ON u.id = t.user_id
                WHERE t.token_hash = $1
                  AND t.revoked_at IS NULL
                  AND t.expires_at > now()
                  AND t.last_used_at > now() - make_interval(days => $2)
                  AND u.is_active"#,
            hash,
            TOKEN_IDLE_DAYS
        )
        .fetch_optional(&pool)
        .await?
        .ok_or_else(|| AppError::Unauthorized("Invalid or expired token.".into()))?;
        if row.stale_use {
            // Sliding expiry: record the use, at most once an hour.
            sqlx::query!(
                "UPDATE auth_tokens SET last_used_at = now() WHERE id = $1",
                row.token_id
            )
            .execute(&pool)
            .await?;
        }
        let user = AuthUser {
            id: row.user_id,
            email: row.email,
            email_verified: row.verified,
            timezone: row.timezone,
            token_id: row.token_id,
        };
        if cache.is_configured() {
            let ttl = TOKEN_CACHE_TTL.min(Duration::from_secs(row.expires_in_secs.max(1) as u64));
            if let Ok(v) = serde_json::to_string(&user) {
                cache.set(&key, &v, ttl).await;
            }
        }
        parts.extensions.insert(user.clone());
        Ok(user)
    }
}
