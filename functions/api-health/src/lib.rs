//! `GET /api/health/`: answers without touching the database, so it stays
//! cheap enough to poll.

use axum::Router;
use honeydue_http::Json;
use serde_json::{json, Value};

honeydue_http::routes! { ();
    GET "/api/health/" => health, Public, "Liveness and version (no database)";
}

/// The function's router.
pub fn app() -> Router {
    honeydue_http::finish(router(), honeydue_http::DEFAULT_BODY_LIMIT)
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "version": honeydue_core::VERSION}))
}
