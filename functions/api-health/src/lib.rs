//! `GET /api/health/`: answers without touching the database, so it stays
//! cheap enough to poll.

use axum::routing::get;
use axum::Router;
use honeydue_http::Json;
use serde_json::{json, Value};

/// The function's router.
pub fn app() -> Router {
    honeydue_http::finish(
        Router::new().route("/api/health/", get(health)),
        honeydue_http::DEFAULT_BODY_LIMIT,
    )
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "version": honeydue_core::VERSION}))
}
