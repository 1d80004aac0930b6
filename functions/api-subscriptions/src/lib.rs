//! The `api-subscriptions` function: the caller's plan (tier, expiry,
//! limits, usage), the tiers on offer, App Store purchases (signed
//! transactions verified against Apple's root, restore, and App Store
//! Server Notifications v2, idempotent by notification id; each
//! subscription's state only moves forward, so neither a replayed
//! transaction nor a late notification undoes a newer one or a refund), and
//! Google Play purchases the same way (purchase tokens looked up with the
//! Play Developer API, real-time developer notifications as Pub/Sub pushes
//! checked against Google's keys).

pub mod appstore;
pub mod play;
pub mod stores;

use axum::extract::State as S;
use axum::{Extension, Router};
use honeydue_core::limits::{self, Resource};
use honeydue_core::AppResult;
use honeydue_http::{AuthUser, Json};
pub use honeydue_http::{Config, State};
use serde_json::{json, Map, Value};
use sqlx::PgConnection;

pub use stores::{Apple, Stores};

honeydue_http::routes! { State;
    GET "/api/subscription/status/" => status, User, "The caller's plan: tier, expiry, limits, usage";
    GET "/api/subscription/tiers/" => tiers, Public, "Tiers and their limits";
    POST "/api/subscription/verify/" => stores::verify, User, "Verify a purchase (App Store signed transaction, or Google Play purchase token)";
    POST "/api/subscription/restore/" => stores::restore, User, "Restore purchases (App Store signed transactions, or Google Play purchase tokens)";
    POST "/api/subscription/webhook/apple/" => stores::apple_webhook, Public, "App Store Server Notifications v2 (signed, idempotent)";
    POST "/api/subscription/webhook/google/" => stores::google_webhook, Public, "Google Play real-time developer notifications (Pub/Sub push, Google-signed OIDC token, idempotent)";
}

/// The function's router without store settings: the App Store routes
/// answer `not_configured` (tests).
pub fn app(state: State) -> Router {
    app_with(state, Stores::default())
}

/// The router as `main` runs it
/// (`honeydue_http::start(&Api::new("api-subscriptions", app_started))`):
/// the common state and the store settings (`APPLE_*`), both read at cold
/// start from one environment.
pub fn app_started((state, stores): (State, Stores)) -> Router {
    app_with(state, stores)
}

/// The router with these store settings.
pub fn app_with(state: State, stores: Stores) -> Router {
    honeydue_http::finish(router(), 256 * 1024)
        .layer(Extension(stores))
        .with_state(state)
}

async fn status(S(state): S<State>, user: AuthUser) -> AppResult<Json<Value>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(plan_json(&mut conn, user.id).await?))
}

/// The caller's plan as `status/` shows it.
pub async fn plan_json(conn: &mut PgConnection, user_id: i64) -> AppResult<Value> {
    let plan = limits::plan(&mut *conn, user_id).await?;
    let source = sqlx::query_scalar!(
        "SELECT source FROM user_subscriptions WHERE user_id = $1",
        user_id
    )
    .fetch_optional(&mut *conn)
    .await?
    .unwrap_or_else(|| "none".to_string());
    let mut l = Map::new();
    let mut u = Map::new();
    for r in Resource::ALL {
        l.insert(r.name().into(), json!(plan.limit(r)));
        u.insert(
            r.name().into(),
            json!(limits::usage(&mut *conn, user_id, r).await?),
        );
    }
    Ok(json!({
        "tier": plan.tier,
        "expires_at": plan.expires_at,
        "source": source,
        "is_free": plan.is_free,
        "limits_enabled": plan.limits_enabled,
        "limits": l,
        "usage": u,
        "max_upload_bytes": plan.max_upload_bytes,
    }))
}

async fn tiers(S(state): S<State>) -> AppResult<Json<Value>> {
    let rows = sqlx::query!(
        "SELECT tier, display_name, max_residences, max_tasks, max_contractors, max_documents, max_upload_bytes
           FROM tier_limits ORDER BY (tier = 'pro'), tier"
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(json!(rows
        .into_iter()
        .map(|r| json!({
            "tier": r.tier, "display_name": r.display_name,
            "limits": {"residences": r.max_residences, "tasks": r.max_tasks, "contractors": r.max_contractors, "documents": r.max_documents},
            "max_upload_bytes": r.max_upload_bytes,
        }))
        .collect::<Vec<_>>())))
}
