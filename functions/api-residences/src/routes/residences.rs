//! The homes themselves: list, create, read, change, delete, and a summary
//! of one home's tasks and spend.

use axum::extract::State as S;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{Datelike, NaiveDate};
use honeydue_core::domain::board::{column, Column, TaskState};
use honeydue_core::{membership, AppError, AppResult, OnConstraint, Validator};
use honeydue_http::{AuthUser, Json, Page, Paginated, PathId, State};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{load, ResidenceOut};

pub(super) async fn list(
    S(state): S<State>,
    user: AuthUser,
    page: Page,
) -> AppResult<Json<Paginated<ResidenceOut>>> {
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM residence_members WHERE user_id = $1"#,
        user.id
    )
    .fetch_one(&state.db)
    .await?;
    let rows = sqlx::query_as!(
        ResidenceOut,
        r#"SELECT r.id, r.name, r.residence_type_id, r.street, r.city, r.state, r.postal_code, r.country,
                  r.year_built, r.sqft, r.bedrooms, r.bathrooms, r.purchase_date, r.notes, r.image_upload_id,
                  r.owner_id, (r.owner_id = $1) AS "is_owner!", m.role,
                  (SELECT count(*) FROM residence_members x WHERE x.residence_id = r.id) AS "member_count!",
                  r.created_at, r.updated_at
             FROM residence_members m
             JOIN residences r ON r.id = m.residence_id
            WHERE m.user_id = $1
            ORDER BY r.name, r.id
            LIMIT $2 OFFSET $3"#,
        user.id,
        page.limit(),
        page.offset()
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(Paginated::new(page, count, rows)))
}

/// Body of create (all fields) and update (any subset).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResidenceIn {
    name: Option<String>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    residence_type_id: Option<Option<i32>>,
    street: Option<String>,
    city: Option<String>,
    state: Option<String>,
    postal_code: Option<String>,
    country: Option<String>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    year_built: Option<Option<i32>>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    sqft: Option<Option<i32>>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    bedrooms: Option<Option<i32>>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    bathrooms: Option<Option<f64>>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    purchase_date: Option<Option<NaiveDate>>,
    notes: Option<String>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    image_upload_id: Option<Option<uuid::Uuid>>,
}

fn text(v: &mut Validator, field: &str, value: &Option<String>, max: usize) {
    if let Some(s) = value {
        v.check(
            s.chars().count() <= max,
            field,
            format!("Enter at most {max} characters."),
        );
    }
}

fn validate(body: &ResidenceIn, creating: bool) -> AppResult<()> {
    let mut v = Validator::new();
    match &body.name {
        Some(n) => v.check(!n.trim().is_empty(), "name", "This field may not be blank."),
        None if creating => v.add("name", "This field is required."),
        None => {}
    }
    text(&mut v, "name", &body.name, 100);
    for (f, val) in [
        ("street", &body.street),
        ("city", &body.city),
        ("state", &body.state),
        ("postal_code", &body.postal_code),
        ("country", &body.country),
    ] {
        text(&mut v, f, val, 200);
    }
    text(&mut v, "notes", &body.notes, 10_000);
    if let Some(Some(y)) = body.year_built {
        v.check(
            (1600..=2200).contains(&y),
            "year_built",
            "Enter a year between 1600 and 2200.",
        );
    }
    for (f, val) in [("sqft", body.sqft), ("bedrooms", body.bedrooms)] {
        if let Some(Some(n)) = val {
            v.check(n >= 0, f, "Must be zero or more.");
        }
    }
    if let Some(Some(b)) = body.bathrooms {
        v.check(
            // NUMERIC(4,1): at most 999.9.
            (0.0..1000.0).contains(&b) && (b * 10.0).fract() == 0.0,
            "bathrooms",
            "Use a number like 2 or 2.5.",
        );
    }
    v.finish()
}

/// A residence image must be the caller's own confirmed residence image
/// upload, made for this residence when it exists (`residence`): a foreign
/// upload id is refused, not linked.
async fn check_image(
    conn: &mut sqlx::PgConnection,
    user_id: i64,
    upload: Option<uuid::Uuid>,
    residence: Option<i64>,
) -> AppResult<()> {
    let Some(id) = upload else { return Ok(()) };
    let ok = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM uploads WHERE id = $1 AND user_id = $2
                           AND status = 'confirmed' AND purpose = 'residence_image'
                           AND ($3::bigint IS NULL OR residence_id = $3)) AS "x!""#,
        id,
        user_id,
        residence
    )
    .fetch_one(conn)
    .await?;
    if ok {
        Ok(())
    } else {
        Err(AppError::field(
            "image_upload_id",
            "Use a confirmed residence image you uploaded.",
        ))
    }
}

fn bathrooms(v: Option<f64>) -> Option<Decimal> {
    v.and_then(|b| format!("{b:.1}").parse::<Decimal>().ok())
}

fn unknown_residence_type() -> AppError {
    AppError::field("residence_type_id", "Unknown residence type.")
}

pub(super) async fn create(
    S(state): S<State>,
    user: AuthUser,
    Json(body): Json<ResidenceIn>,
) -> AppResult<impl IntoResponse> {
    validate(&body, true)?;
    let mut tx = state.db.begin().await?;
    check_image(&mut tx, user.id, body.image_upload_id.flatten(), None).await?;
    honeydue_core::limits::check(
        &mut tx,
        user.id,
        honeydue_core::limits::Resource::Residences,
    )
    .await?;
    let id = sqlx::query_scalar!(
        "INSERT INTO residences (owner_id, name, residence_type_id, street, city, state, postal_code, country,
                                 year_built, sqft, bedrooms, bathrooms, purchase_date, notes, image_upload_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
        user.id,
        body.name.as_deref().unwrap_or_default().trim(),
        body.residence_type_id.flatten(),
        body.street.clone().unwrap_or_default(),
        body.city.clone().unwrap_or_default(),
        body.state.clone().unwrap_or_default(),
        body.postal_code.clone().unwrap_or_default(),
        body.country.clone().unwrap_or_default(),
        body.year_built.flatten(),
        body.sqft.flatten(),
        body.bedrooms.flatten(),
        bathrooms(body.bathrooms.flatten()),
        body.purchase_date.flatten(),
        body.notes.clone().unwrap_or_default(),
        body.image_upload_id.flatten(),
    )
    .fetch_one(&mut *tx)
    .await
    .on_constraint("residences_residence_type_id_fkey", unknown_residence_type)?;
    sqlx::query!(
        "INSERT INTO residence_members (residence_id, user_id, role) VALUES ($1, $2, 'owner')",
        id,
        user.id
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(load(&state.db, user.id, id).await?),
    ))
}

pub(super) async fn detail(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
) -> AppResult<Json<ResidenceOut>> {
    Ok(Json(load(&state.db, user.id, id).await?))
}

pub(super) async fn update(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
    Json(body): Json<ResidenceIn>,
) -> AppResult<Json<ResidenceOut>> {
    let mut conn = state.db.acquire().await?;
    membership::writer(&mut conn, user.id, id).await?;
    validate(&body, false)?;
    check_image(&mut conn, user.id, body.image_upload_id.flatten(), Some(id)).await?;
    // For nullable fields: absent = keep, null = clear.
    let set = |o: &Option<Option<i32>>| o.is_some();
    sqlx::query!(
        "UPDATE residences SET
            name = COALESCE($2, name),
            residence_type_id = CASE WHEN $3 THEN $4 ELSE residence_type_id END,
            street = COALESCE($5, street), city = COALESCE($6, city), state = COALESCE($7, state),
            postal_code = COALESCE($8, postal_code), country = COALESCE($9, country),
            year_built = CASE WHEN $10 THEN $11 ELSE year_built END,
            sqft = CASE WHEN $12 THEN $13 ELSE sqft END,
            bedrooms = CASE WHEN $14 THEN $15 ELSE bedrooms END,
            bathrooms = CASE WHEN $16 THEN $17 ELSE bathrooms END,
            purchase_date = CASE WHEN $18 THEN $19 ELSE purchase_date END,
            notes = COALESCE($20, notes),
            image_upload_id = CASE WHEN $21 THEN $22 ELSE image_upload_id END,
            updated_at = now()
          WHERE id = $1",
        id,
        body.name.as_deref().map(str::trim),
        set(&body.residence_type_id),
        body.residence_type_id.flatten(),
        body.street,
        body.city,
        body.state,
        body.postal_code,
        body.country,
        set(&body.year_built),
        body.year_built.flatten(),
        set(&body.sqft),
        body.sqft.flatten(),
        set(&body.bedrooms),
        body.bedrooms.flatten(),
        body.bathrooms.is_some(),
        bathrooms(body.bathrooms.flatten()),
        body.purchase_date.is_some(),
        body.purchase_date.flatten(),
        body.notes,
        body.image_upload_id.is_some(),
        body.image_upload_id.flatten(),
    )
    .execute(&mut *conn)
    .await
    .on_constraint("residences_residence_type_id_fkey", unknown_residence_type)?;
    Ok(Json(load(&state.db, user.id, id).await?))
}

pub(super) async fn remove(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
) -> AppResult<StatusCode> {
    let mut conn = state.db.acquire().await?;
    membership::owner(&mut conn, user.id, id).await?;
    sqlx::query!("DELETE FROM residences WHERE id = $1", id)
        .execute(&mut *conn)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn summary(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
) -> AppResult<Json<Value>> {
    let mut conn = state.db.acquire().await?;
    membership::role(&mut conn, user.id, id).await?;
    let today = membership::today_in(&user.timezone);
    let tasks = sqlx::query!(
        r#"SELECT t.is_cancelled, t.in_progress, t.next_due_date,
                  (t.custom_interval_days IS NOT NULL OR f.interval_days IS NOT NULL OR f.interval_months IS NOT NULL) AS "recurring!",
                  EXISTS (SELECT 1 FROM task_completions c WHERE c.task_id = t.id) AS "has_completion!"
             FROM tasks t LEFT JOIN task_frequencies f ON f.id = t.frequency_id
            WHERE t.residence_id = $1 AND NOT t.is_archived"#,
        id
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut counts = serde_json::Map::new();
    for c in honeydue_core::domain::board::SHOWN {
        counts.insert(c.name().into(), json!(0));
    }
    for t in &tasks {
        let col = column(
            &TaskState {
                cancelled: t.is_cancelled,
                in_progress: t.in_progress,
                next_due: t.next_due_date,
                recurring: t.recurring,
                has_completion: t.has_completion,
            },
            today,
            30,
        );
        if col != Column::Cancelled {
            let e = counts.entry(col.name()).or_insert(json!(0));
            *e = json!(e.as_i64().unwrap_or(0) + 1);
        }
    }
    let year_start = NaiveDate::from_ymd_opt(today.year(), 1, 1).expect("valid date");
    let spend = sqlx::query_scalar!(
        r#"SELECT COALESCE(sum(c.actual_cost), 0) AS "spend!"
             FROM task_completions c JOIN tasks t ON t.id = c.task_id
            WHERE t.residence_id = $1
              AND (c.completed_at AT TIME ZONE $2)::date >= $3"#,
        id,
        user.timezone,
        year_start
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Json(json!({
        "residence_id": id,
        "task_counts": counts,
        "total_tasks": tasks.iter().filter(|t| !t.is_cancelled).count(),
        "spend_this_year": spend.to_string(),
        "year": today.year(),
    })))
}
