//! The `api-subscriptions` function: the caller's plan (tier, expiry,
//! limits, usage) and the tiers on offer. Store receipts (App Store, Google
//! Play) and their webhooks are not part of this function yet.

use axum::extract::State as S;
use axum::Router;
use honeydue_core::limits::{self, Resource};
use honeydue_core::AppResult;
use honeydue_http::{AuthUser, Json};
pub use honeydue_http::{Config, State};
use serde_json::{json, Map, Value};

honeydue_http::routes! { State;
    GET "/api/subscription/status/" => status, User, "The caller's plan: tier, expiry, limits, usage";
    GET "/api/subscription/tiers/" => tiers, Public, "Tiers and their limits";
}

/// The function's router.
pub fn app(state: State) -> Router {
    honeydue_http::finish(router(), 1024).with_state(state)
}

async fn status(S(state): S<State>, user: AuthUser) -> AppResult<Json<Value>> {
    let mut conn = state.db.acquire().await?;
    let plan = limits::plan(&mut conn, user.id).await?;
    let mut l = Map::new();
    let mut u = Map::new();
    for r in Resource::ALL {
        l.insert(r.name().into(), json!(plan.limit(r)));
        u.insert(
            r.name().into(),
            json!(limits::usage(&mut conn, user.id, r).await?),
        );
    }
    Ok(Json(json!({
        "tier": plan.tier,
        "expires_at": plan.expires_at,
        "is_free": plan.is_free,
        "limits_enabled": plan.limits_enabled,
        "limits": l,
        "usage": u,
        "max_upload_bytes": plan.max_upload_bytes,
    })))
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
