//! The handlers `make bench` measures, written once and served two ways:
//! directly by axum (`bench-direct`, the upper bound) and as a Lambda
//! function (`bench-noop`, through the shim or `cargo lambda watch`).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use sqlx::PgPool;

/// `GET /noop` answers a constant; `GET /users` lists 20 users (a real
/// indexed query) when a database is configured.
pub fn app(pool: Option<PgPool>) -> Router {
    Router::new()
        .route("/noop", get(|| async { Json(json!({"ok": true})) }))
        .route("/users", get(users))
        .with_state(pool)
}

async fn users(State(pool): State<Option<PgPool>>) -> Json<Value> {
    let Some(pool) = pool else {
        return Json(json!({"error": "no DATABASE_URL"}));
    };
    let rows: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, email FROM users ORDER BY id LIMIT 20")
            .fetch_all(&pool)
            .await
            .unwrap_or_default();
    Json(json!(rows
        .into_iter()
        .map(|(id, email)| json!({"id": id, "email": email}))
        .collect::<Vec<_>>()))
}

/// The pool, when `DATABASE_URL` is set: the functions' own pool
/// (`honeydue_core::db::pool`, its settings included), 16 connections.
pub fn pool_from_env() -> Option<PgPool> {
    let url = std::env::var("DATABASE_URL").ok()?;
    honeydue_core::db::pool(&honeydue_core::config::DbConfig {
        url: honeydue_core::config::Secret::new(url),
        max_connections: 16,
        acquire_timeout_ms: honeydue_core::config::DbConfig::DEFAULT_ACQUIRE_TIMEOUT_MS,
    })
    .ok()
}
