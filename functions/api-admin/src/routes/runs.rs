//! Scheduled runs (`job_runs`).

use axum::extract::State as S;
use honeydue_core::AppResult;
use honeydue_http::{Json, Page, Query, State};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Admin;

#[derive(Deserialize)]
pub(super) struct JobRunParams {
    job: Option<String>,
}

/// Scheduled runs, newest slot first.
pub(super) async fn job_runs(
    S(state): S<State>,
    _admin: Admin,
    page: Page,
    Query(p): Query<JobRunParams>,
) -> AppResult<Json<Value>> {
    let rows = sqlx::query!(
        "SELECT job, scheduled_for, status, attempts, started_at, finished_at, stats, last_error
           FROM job_runs WHERE $1::text IS NULL OR job = $1
          ORDER BY scheduled_for DESC, job LIMIT $2 OFFSET $3",
        p.job,
        page.limit(),
        page.offset()
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.listing(rows.into_iter().map(|r| json!({
        "job": r.job, "scheduled_for": r.scheduled_for, "status": r.status, "attempts": r.attempts,
        "started_at": r.started_at, "finished_at": r.finished_at, "stats": r.stats, "last_error": r.last_error,
    })))))
}
