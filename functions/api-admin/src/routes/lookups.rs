//! The editable lookup tables: list, add, change, delete.

use axum::extract::{Path, State as S};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use honeydue_core::{AppError, AppResult, Validator};
use honeydue_http::{Json, State};
use serde_json::{Map, Value};

use crate::auth::Admin;

/// The editable lookup tables and their columns (name, then extras). The
/// table name is taken from this list only, never from the request.
const LOOKUPS: &[(&str, &[&str])] = &[
    ("residence_types", &["name", "sort_order"]),
    ("task_categories", &["name", "icon", "color", "sort_order"]),
    ("task_priorities", &["name", "level", "color", "sort_order"]),
    (
        "task_frequencies",
        &[
            "name",
            "interval_days",
            "interval_months",
            "reminder_offsets",
            "sort_order",
        ],
    ),
    ("contractor_specialties", &["name", "sort_order"]),
];

fn lookup_table(kind: &str) -> AppResult<(&'static str, &'static [&'static str])> {
    LOOKUPS
        .iter()
        .find(|(t, _)| *t == kind)
        .map(|(t, c)| (*t, *c))
        .ok_or(AppError::NotFound("lookup kind"))
}

pub(super) async fn lookups(
    S(state): S<State>,
    _admin: Admin,
    Path(kind): Path<String>,
) -> AppResult<Json<Value>> {
    let (table, _) = lookup_table(&kind)?;
    let rows: Vec<Value> = sqlx::query_scalar(&format!(
        "SELECT to_jsonb(x) FROM {table} x ORDER BY sort_order, id"
    ))
    .fetch_all(&state.db)
    .await?;
    Ok(Json(Value::Array(rows)))
}

/// Checks a lookup body against the table's columns; returns the values as
/// a JSON object Postgres can read with `jsonb_populate_record`.
fn lookup_values(cols: &[&str], body: &Value, creating: bool) -> AppResult<Map<String, Value>> {
    let obj = body
        .as_object()
        .ok_or_else(|| AppError::BadRequest("Send a JSON object.".into()))?;
    let mut v = Validator::new();
    for k in obj.keys() {
        v.check(
            cols.contains(&k.as_str()),
            k,
            "Unknown field for this lookup.",
        );
    }
    match obj.get("name") {
        Some(Value::String(n)) => v.check(
            !n.trim().is_empty() && n.chars().count() <= 100,
            "name",
            "Enter a name of at most 100 characters.",
        ),
        Some(_) => v.add("name", "Must be a string."),
        None if creating => v.add("name", "This field is required."),
        None => {}
    }
    v.finish()?;
    Ok(obj.clone())
}

/// A lookup write's failure: its table's `<table>_name_key` is a duplicate
/// name; a check or type failure (on a table chosen at run time, so by
/// SQLSTATE) is a 422, a reference to it a 409.
fn lookup_conflict(table: &str, e: sqlx::Error) -> AppError {
    if honeydue_core::constraint::violates(&e, &format!("{table}_name_key")) {
        return AppError::conflict("duplicate_name", "A lookup with this name already exists.");
    }
    match &e {
        sqlx::Error::Database(d)
            if d.code().as_deref() == Some("23514") || d.code().as_deref() == Some("22P02") =>
        {
            AppError::field("non_field_errors", "Invalid values for this lookup.")
        }
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23503") => {
            AppError::conflict("in_use", "This lookup is in use.")
        }
        _ => e.into(),
    }
}

pub(super) async fn create_lookup(
    S(state): S<State>,
    admin: Admin,
    Path(kind): Path<String>,
    Json(body): Json<Value>,
) -> AppResult<impl IntoResponse> {
    let (table, cols) = lookup_table(&kind)?;
    let values = lookup_values(cols, &body, true)?;
    let keys: Vec<&str> = values.keys().map(String::as_str).collect();
    let list = keys.join(", ");
    let row: Value = sqlx::query_scalar(&format!(
        "INSERT INTO {table} ({list}) SELECT {list} FROM jsonb_populate_record(NULL::{table}, $1) RETURNING to_jsonb({table}.*)"
    ))
    .bind(Value::Object(values.clone()))
    .fetch_one(&state.db)
    .await
    .map_err(|e| lookup_conflict(table, e))?;
    tracing::info!(admin_id = admin.id, table, "lookup created");
    Ok((StatusCode::CREATED, Json(row)))
}

pub(super) async fn update_lookup(
    S(state): S<State>,
    admin: Admin,
    Path((kind, id)): Path<(String, i32)>,
    Json(body): Json<Value>,
) -> AppResult<Json<Value>> {
    let (table, cols) = lookup_table(&kind)?;
    let values = lookup_values(cols, &body, false)?;
    if values.is_empty() {
        return Err(AppError::BadRequest("Nothing to change.".into()));
    }
    let sets: Vec<String> = values.keys().map(|k| format!("{k} = r.{k}")).collect();
    let row: Option<Value> = sqlx::query_scalar(&format!(
        "UPDATE {table} t SET {} FROM jsonb_populate_record(NULL::{table}, $1) r WHERE t.id = $2 RETURNING to_jsonb(t.*)",
        sets.join(", ")
    ))
    .bind(Value::Object(values))
    .bind(id)
    .fetch_optional(&state.db)
    .await
    .map_err(|e| lookup_conflict(table, e))?;
    tracing::info!(admin_id = admin.id, table, id, "lookup changed");
    row.map(Json).ok_or(AppError::NotFound("lookup"))
}

pub(super) async fn delete_lookup(
    S(state): S<State>,
    admin: Admin,
    Path((kind, id)): Path<(String, i32)>,
) -> AppResult<StatusCode> {
    let (table, _) = lookup_table(&kind)?;
    let n = sqlx::query(&format!("DELETE FROM {table} WHERE id = $1"))
        .bind(id)
        .execute(&state.db)
        .await
        .map_err(|e| lookup_conflict(table, e))?
        .rows_affected();
    if n == 0 {
        return Err(AppError::NotFound("lookup"));
    }
    tracing::info!(admin_id = admin.id, table, id, "lookup deleted");
    Ok(StatusCode::NO_CONTENT)
}
