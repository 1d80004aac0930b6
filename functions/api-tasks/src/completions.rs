//! Completions: record one (idempotently), list them, undo one.

use axum::extract::State as S;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use honeydue_core::domain::recurrence;
use honeydue_core::notify::Notice;
use honeydue_core::{membership, AppError, AppResult, OnConstraint, Validator};
use honeydue_http::{AuthUser, IdempotencyKey, Json, Page, Paginated, PathId, Query, State};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgConnection;

use crate::tasks::load_task;

honeydue_http::routes! { State;
    GET "/api/task-completions/" => list, User, "Completions of a task (?task=)";
    POST "/api/task-completions/" => create, User, "Complete a task (Idempotency-Key)";
    DELETE "/api/task-completions/{id}/" => remove, User, "Undo a completion";
}

#[derive(Debug, Serialize, sqlx::FromRow)]
struct CompletionOut {
    id: i64,
    task_id: i64,
    completed_by: Option<i64>,
    completed_at: DateTime<Utc>,
    occurrence_date: Option<chrono::NaiveDate>,
    notes: String,
    actual_cost: Option<Decimal>,
    rating: Option<i16>,
    contractor_id: Option<i64>,
    created_at: DateTime<Utc>,
    /// Photos (uploads), fetched through `/api/files/{id}/`.
    image_ids: Vec<uuid::Uuid>,
}

async fn load_completion(conn: &mut PgConnection, id: i64) -> AppResult<CompletionOut> {
    Ok(sqlx::query_as!(
        CompletionOut,
        r#"SELECT c.id, c.task_id, c.completed_by, c.completed_at, c.occurrence_date, c.notes, c.actual_cost, c.rating,
                  c.contractor_id, c.created_at,
                  ARRAY(SELECT i.upload_id FROM completion_images i WHERE i.completion_id = c.id ORDER BY i.upload_id) AS "image_ids!"
             FROM task_completions c WHERE c.id = $1"#,
        id
    )
    .fetch_one(conn)
    .await?)
}

#[derive(Debug, Deserialize)]
struct ListParams {
    task: Option<i64>,
}

async fn list(
    S(state): S<State>,
    user: AuthUser,
    page: Page,
    Query(p): Query<ListParams>,
) -> AppResult<Json<Paginated<CompletionOut>>> {
    let task_id = p.task.ok_or_else(|| {
        AppError::field(
            "task",
            "Give the task whose completions to list (?task=ID).",
        )
    })?;
    let mut conn = state.db.acquire().await?;
    load_task(&mut conn, user.id, task_id).await?;
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM task_completions WHERE task_id = $1"#,
        task_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let rows = sqlx::query_as!(
        CompletionOut,
        r#"SELECT c.id, c.task_id, c.completed_by, c.completed_at, c.occurrence_date, c.notes, c.actual_cost, c.rating,
                  c.contractor_id, c.created_at,
                  ARRAY(SELECT i.upload_id FROM completion_images i WHERE i.completion_id = c.id ORDER BY i.upload_id) AS "image_ids!"
             FROM task_completions c WHERE c.task_id = $1
            ORDER BY c.completed_at DESC, c.id DESC LIMIT $2 OFFSET $3"#,
        task_id,
        page.limit(),
        page.offset()
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(Json(Paginated::new(page, count, rows)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompletionIn {
    task_id: i64,
    completed_at: Option<DateTime<Utc>>,
    notes: Option<String>,
    actual_cost: Option<Decimal>,
    rating: Option<i16>,
    contractor_id: Option<i64>,
    /// The occurrence (due date) being completed, as the client saw it: if
    /// the task has moved on (someone else completed it), 409 instead of
    /// completing the next one by mistake.
    occurrence_date: Option<chrono::NaiveDate>,
    /// Confirmed `completion_photo` uploads of this residence (at most 10).
    upload_ids: Option<Vec<uuid::Uuid>>,
}

/// 409: the occurrence the client means is already completed (the task
/// has moved on, or a concurrent completion got there first).
fn occurrence_completed() -> AppError {
    AppError::conflict("already_completed", "This occurrence is already completed.")
}

async fn create(
    S(state): S<State>,
    user: AuthUser,
    IdempotencyKey(idem): IdempotencyKey,
    Json(b): Json<CompletionIn>,
) -> AppResult<impl IntoResponse> {
    let now = Utc::now();
    let completed_at = b.completed_at.unwrap_or(now);
    let mut v = Validator::new();
    v.check(
        completed_at <= now + chrono::Duration::minutes(5),
        "completed_at",
        "Cannot be in the future.",
    );
    v.check(
        b.notes.as_ref().is_none_or(|n| n.chars().count() <= 10_000),
        "notes",
        "Enter at most 10000 characters.",
    );
    if let Some(c) = b.actual_cost {
        v.money("actual_cost", c);
    }
    v.check(
        b.rating.is_none_or(|r| (1..=5).contains(&r)),
        "rating",
        "Rate from 1 to 5.",
    );
    let uploads = b.upload_ids.clone().unwrap_or_default();
    v.check(uploads.len() <= 10, "upload_ids", "At most 10 photos.");
    v.finish()?;

    let mut tx = state.db.begin().await?;
    let task = load_task(&mut tx, user.id, b.task_id).await?;
    membership::writer(&mut tx, user.id, task.residence_id).await?;
    // Serialise completions of one task.
    sqlx::query!("SELECT id FROM tasks WHERE id = $1 FOR UPDATE", task.id)
        .fetch_one(&mut *tx)
        .await?;
    if let Some(key) = &idem {
        let existing = sqlx::query_scalar!(
            "SELECT id FROM task_completions WHERE task_id = $1 AND idempotency_key = $2",
            task.id,
            key
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(cid) = existing {
            // A retry of a completion already recorded: same answer, no change.
            let completion = load_completion(&mut tx, cid).await?;
            let t = load_task(&mut tx, user.id, task.id).await?;
            tx.commit().await?;
            let today = membership::today_in(&user.timezone);
            return Ok((
                StatusCode::OK,
                Json(json!({"completion": completion, "task": t.to_json(today, 30)})),
            ));
        }
    }
    if task.is_cancelled {
        return Err(AppError::conflict(
            "task_cancelled",
            "The task is cancelled; uncancel it first.",
        ));
    }
    // Re-read under the lock: the row may have moved on since load_task.
    let task = load_task(&mut tx, user.id, task.id).await?;
    let recurring = task.interval().is_some();
    if !recurring && task.completion_count > 0 && task.next_due_date.is_none() {
        return Err(AppError::conflict(
            "already_completed",
            "This task is already completed.",
        ));
    }
    if let Some(c) = b.contractor_id {
        let visible = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM contractors WHERE id = $1 AND (residence_id = $3 OR (residence_id IS NULL AND owner_id = $2))) AS "x!""#,
            c,
            user.id,
            task.residence_id
        )
        .fetch_one(&mut *tx)
        .await?;
        if !visible {
            return Err(AppError::field("contractor_id", "Unknown contractor."));
        }
    }
    let occurrence = task.next_due_date;
    if b.occurrence_date.is_some() && b.occurrence_date != occurrence {
        return Err(occurrence_completed());
    }
    let cid = sqlx::query_scalar!(
        "INSERT INTO task_completions (task_id, completed_by, completed_at, occurrence_date, previous_due_date,
                                       notes, actual_cost, rating, contractor_id, idempotency_key)
         VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9) RETURNING id",
        task.id,
        user.id,
        completed_at,
        occurrence,
        b.notes.clone().unwrap_or_default(),
        b.actual_cost,
        b.rating,
        b.contractor_id,
        idem,
    )
    .fetch_one(&mut *tx)
    .await
    .on_constraint("task_completions_occurrence_key", occurrence_completed)?;
    if !uploads.is_empty() {
        // Only confirmed photos uploaded for this residence, by this user.
        let attached = sqlx::query!(
            "INSERT INTO completion_images (completion_id, upload_id)
             SELECT $1, u.id FROM uploads u
              WHERE u.id = ANY($2) AND u.status = 'confirmed' AND u.purpose = 'completion_photo'
                AND u.residence_id = $3 AND u.user_id = $4
             ON CONFLICT DO NOTHING",
            cid,
            &uploads,
            task.residence_id,
            user.id
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let mut distinct = uploads.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if attached as usize != distinct.len() {
            return Err(AppError::field(
                "upload_ids",
                "Use confirmed photos you uploaded for this residence.",
            ));
        }
    }
    let tz: chrono_tz::Tz = user.timezone.parse().unwrap_or(chrono_tz::UTC);
    let completed_on = completed_at.with_timezone(&tz).date_naive();
    let next = recurrence::next_after_completion(
        task.due_date,
        occurrence,
        completed_on,
        task.interval(),
        task.anchor(),
    );
    sqlx::query!(
        "UPDATE tasks SET next_due_date = $2, in_progress = FALSE, updated_at = now() WHERE id = $1",
        task.id,
        next
    )
    .execute(&mut *tx)
    .await?;
    // Tell the other members, as their preferences say.
    let others = sqlx::query_scalar!(
        "SELECT user_id FROM residence_members WHERE residence_id = $1 AND user_id <> $2",
        task.residence_id,
        user.id
    )
    .fetch_all(&mut *tx)
    .await?;
    let data = json!({"task_id": task.id, "completion_id": cid, "completed_by": user.id});
    let notices: Vec<Notice> = others
        .into_iter()
        .map(|to| Notice {
            user_id: to,
            kind: "completed",
            title: "A task was completed".into(),
            body: task.title.clone(),
            data: data.clone(),
        })
        .collect();
    honeydue_mail::events::notify(&mut tx, &state.cfg.app, &notices).await?;
    let completion = load_completion(&mut tx, cid).await?;
    let t = load_task(&mut tx, user.id, task.id).await?;
    tx.commit().await?;
    let today = membership::today_in(&user.timezone);
    Ok((
        StatusCode::CREATED,
        Json(json!({"completion": completion, "task": t.to_json(today, 30)})),
    ))
}

async fn remove(S(state): S<State>, user: AuthUser, PathId(id): PathId) -> AppResult<Json<Value>> {
    let mut tx = state.db.begin().await?;
    let c = sqlx::query!(
        "SELECT c.task_id, c.previous_due_date,
                (c.id = (SELECT c2.id FROM task_completions c2 WHERE c2.task_id = c.task_id
                          ORDER BY c2.completed_at DESC, c2.id DESC LIMIT 1)) AS latest
           FROM task_completions c WHERE c.id = $1",
        id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AppError::NotFound("completion"))?;
    // Outside the caller's residences the completion does not exist.
    let task = load_task(&mut tx, user.id, c.task_id)
        .await
        .map_err(|_| AppError::NotFound("completion"))?;
    membership::writer(&mut tx, user.id, task.residence_id).await?;
    sqlx::query!("SELECT id FROM tasks WHERE id = $1 FOR UPDATE", task.id)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query!("DELETE FROM task_completions WHERE id = $1", id)
        .execute(&mut *tx)
        .await?;
    if c.latest == Some(true) {
        // Undoing the latest completion puts the task back where it was.
        sqlx::query!(
            "UPDATE tasks SET next_due_date = $2, updated_at = now() WHERE id = $1",
            task.id,
            c.previous_due_date
        )
        .execute(&mut *tx)
        .await?;
    }
    let t = load_task(&mut tx, user.id, task.id).await?;
    tx.commit().await?;
    Ok(Json(
        json!({"task": t.to_json(membership::today_in(&user.timezone), 30)}),
    ))
}
