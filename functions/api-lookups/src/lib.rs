//! `GET /api/static_data/`: residence types, task categories, priorities,
//! frequencies (with reminder offsets), contractor specialties and document
//! types in one bundle. Public (the app loads it before sign-in).
//!
//! The bundle's ETag is the lookups' version, which a trigger bumps on every
//! lookup write: a matching `If-None-Match` costs one one-row query and
//! answers 304. The bundle itself is cached in Redis per version.

use std::time::Duration;

use axum::extract::State as S;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use honeydue_core::domain::documents;
use honeydue_core::AppResult;
pub use honeydue_http::{Config, State};
use serde_json::{json, Value};

honeydue_http::routes! { State;
    GET "/api/static_data/" => static_data, Public, "Lookups bundle (ETag; If-None-Match gives 304)";
}

/// The function's router.
pub fn app(state: State) -> Router {
    honeydue_http::finish(router(), 1024).with_state(state)
}

fn etag(version: i64) -> String {
    format!("\"lookups-{version}\"")
}

async fn static_data(S(state): S<State>, headers: HeaderMap) -> AppResult<Response> {
    let version = sqlx::query_scalar!("SELECT version FROM lookup_version")
        .fetch_one(&state.db)
        .await?;
    let tag = etag(version);
    if honeydue_http::none_match(&headers, &tag) {
        let mut r = StatusCode::NOT_MODIFIED.into_response();
        r.headers_mut()
            .insert(header::ETAG, HeaderValue::from_str(&tag).expect("ascii"));
        return Ok(r);
    }
    let key = format!("lookups:{version}");
    let body = match state.cache.get(&key).await {
        Some(b) => b,
        None => {
            let b = bundle(&state, version).await?.to_string();
            state.cache.set(&key, &b, Duration::from_secs(3600)).await;
            b
        }
    };
    let mut r = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    r.headers_mut()
        .insert(header::ETAG, HeaderValue::from_str(&tag).expect("ascii"));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=0, must-revalidate"),
    );
    Ok(r)
}

async fn bundle(state: &State, version: i64) -> AppResult<Value> {
    let db = &state.db;
    let residence_types =
        sqlx::query!("SELECT id, name FROM residence_types ORDER BY sort_order, id")
            .fetch_all(db)
            .await?
            .into_iter()
            .map(|r| json!({"id": r.id, "name": r.name}))
            .collect::<Vec<_>>();
    let categories =
        sqlx::query!("SELECT id, name, icon, color FROM task_categories ORDER BY sort_order, id")
            .fetch_all(db)
            .await?
            .into_iter()
            .map(|r| json!({"id": r.id, "name": r.name, "icon": r.icon, "color": r.color}))
            .collect::<Vec<_>>();
    let priorities =
        sqlx::query!("SELECT id, name, level, color FROM task_priorities ORDER BY sort_order, id")
            .fetch_all(db)
            .await?
            .into_iter()
            .map(|r| json!({"id": r.id, "name": r.name, "level": r.level, "color": r.color}))
            .collect::<Vec<_>>();
    let frequencies = sqlx::query!(
        "SELECT id, name, interval_days, interval_months, reminder_offsets FROM task_frequencies ORDER BY sort_order, id"
    )
    .fetch_all(db)
    .await?
    .into_iter()
    .map(|r| {
        json!({"id": r.id, "name": r.name, "interval_days": r.interval_days,
               "interval_months": r.interval_months, "reminder_offsets": r.reminder_offsets})
    })
    .collect::<Vec<_>>();
    let specialties =
        sqlx::query!("SELECT id, name FROM contractor_specialties ORDER BY sort_order, id")
            .fetch_all(db)
            .await?
            .into_iter()
            .map(|r| json!({"id": r.id, "name": r.name}))
            .collect::<Vec<_>>();
    Ok(json!({
        "version": version,
        "residence_types": residence_types,
        "task_categories": categories,
        "task_priorities": priorities,
        "task_frequencies": frequencies,
        "contractor_specialties": specialties,
        "document_types": documents::TYPES,
    }))
}
