//! Global settings (the limits switch).

use axum::extract::State as S;
use honeydue_core::AppResult;
use honeydue_http::{Json, State};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Admin;

pub(super) async fn settings(S(state): S<State>, _admin: Admin) -> AppResult<Json<Value>> {
    let enabled = sqlx::query_scalar!("SELECT limits_enabled FROM app_settings")
        .fetch_one(&state.db)
        .await?;
    Ok(Json(json!({"limits_enabled": enabled})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SettingsIn {
    limits_enabled: bool,
}

pub(super) async fn update_settings(
    S(state): S<State>,
    admin: Admin,
    Json(b): Json<SettingsIn>,
) -> AppResult<Json<Value>> {
    sqlx::query!(
        "UPDATE app_settings SET limits_enabled = $1, updated_at = now()",
        b.limits_enabled
    )
    .execute(&state.db)
    .await?;
    tracing::info!(
        admin_id = admin.id,
        limits_enabled = b.limits_enabled,
        "settings changed"
    );
    Ok(Json(json!({"limits_enabled": b.limits_enabled})))
}
