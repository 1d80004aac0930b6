//! Residences (searched by name or owner) and tasks (by residence).

use axum::extract::State as S;
use honeydue_core::AppResult;
use honeydue_http::{Json, Page, Query, State};
use serde::Deserialize;
use serde_json::{json, Value};

use super::SearchParams;
use crate::auth::Admin;

pub(super) async fn residences(
    S(state): S<State>,
    _admin: Admin,
    page: Page,
    Query(p): Query<SearchParams>,
) -> AppResult<Json<Value>> {
    let pattern = p
        .search
        .map(|s| format!("%{}%", s.trim().to_lowercase().replace(['%', '_'], "")));
    let rows = sqlx::query!(
        r#"SELECT r.id, r.name, r.city, r.owner_id, u.email AS owner_email, r.created_at,
                  (SELECT count(*) FROM residence_members m WHERE m.residence_id = r.id) AS "members!",
                  (SELECT count(*) FROM tasks t WHERE t.residence_id = r.id) AS "tasks!"
             FROM residences r JOIN users u ON u.id = r.owner_id
            WHERE $1::text IS NULL OR lower(r.name) LIKE $1 OR u.email LIKE $1
            ORDER BY r.id DESC LIMIT $2 OFFSET $3"#,
        pattern,
        page.limit(),
        page.offset()
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.listing(rows.into_iter().map(|r| json!({
        "id": r.id, "name": r.name, "city": r.city, "owner_id": r.owner_id, "owner_email": r.owner_email,
        "members": r.members, "tasks": r.tasks, "created_at": r.created_at})))))
}

#[derive(Deserialize)]
pub(super) struct TaskParams {
    residence: Option<i64>,
}

pub(super) async fn tasks(
    S(state): S<State>,
    _admin: Admin,
    page: Page,
    Query(p): Query<TaskParams>,
) -> AppResult<Json<Value>> {
    let rows = sqlx::query!(
        "SELECT id, residence_id, title, next_due_date, in_progress, is_cancelled, is_archived, created_at
           FROM tasks WHERE $1::bigint IS NULL OR residence_id = $1
          ORDER BY id DESC LIMIT $2 OFFSET $3",
        p.residence,
        page.limit(),
        page.offset()
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.listing(rows.into_iter().map(|t| json!({
        "id": t.id, "residence_id": t.residence_id, "title": t.title, "next_due_date": t.next_due_date,
        "in_progress": t.in_progress, "is_cancelled": t.is_cancelled, "is_archived": t.is_archived,
        "created_at": t.created_at})))))
}
