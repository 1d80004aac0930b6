//! Handlers of `/api/contractors/`.

use axum::extract::State as S;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use honeydue_core::{membership, AppError, AppResult, Validator};
use honeydue_http::{AuthUser, Json, Page, Paginated, PathId, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::PgConnection;

honeydue_http::routes! { State;
    GET "/api/contractors/" => list, User, "Contractors (?residence=&specialty=&favorite=)";
    POST "/api/contractors/" => create, User, "Add a contractor (tier-limited)";
    GET "/api/contractors/{id}/" => detail, User, "One contractor";
    PATCH "/api/contractors/{id}/" => update, User, "Change a contractor";
    DELETE "/api/contractors/{id}/" => remove, User, "Delete a contractor";
    POST "/api/contractors/{id}/toggle-favorite/" => toggle_favorite, User, "Toggle favourite";
    GET "/api/contractors/{id}/tasks/" => tasks, User, "Tasks linked to a contractor";
}

#[derive(Debug, Serialize)]
struct ContractorOut {
    id: i64,
    residence_id: Option<i64>,
    name: String,
    company: String,
    phone: String,
    email: String,
    website: String,
    notes: String,
    is_favorite: bool,
    specialty_ids: Vec<i32>,
    is_mine: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Contractors the user can see, filtered; newest first.
#[allow(clippy::too_many_arguments)]
async fn query(
    conn: &mut PgConnection,
    user_id: i64,
    id: Option<i64>,
    residence: Option<i64>,
    specialty: Option<i32>,
    favorite: Option<bool>,
    limit: i64,
    offset: i64,
) -> AppResult<(i64, Vec<ContractorOut>)> {
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM contractors c
            WHERE c.id IN (SELECT v.id FROM contractors v WHERE v.owner_id = $1 AND v.residence_id IS NULL
                           UNION ALL
                           SELECT v.id FROM residence_members m JOIN contractors v ON v.residence_id = m.residence_id
                            WHERE m.user_id = $1)
              AND ($2::bigint IS NULL OR c.id = $2)
              AND ($3::bigint IS NULL OR c.residence_id = $3)
              AND ($4::int IS NULL OR EXISTS (SELECT 1 FROM contractor_specialty_links l
                                              WHERE l.contractor_id = c.id AND l.specialty_id = $4))
              AND ($5::bool IS NULL OR c.is_favorite = $5)"#,
        user_id,
        id,
        residence,
        specialty,
        favorite
    )
    .fetch_one(&mut *conn)
    .await?;
    let rows = sqlx::query_as!(
        ContractorOut,
        r#"SELECT c.id, c.residence_id, c.name, c.company, c.phone, c.email, c.website, c.notes, c.is_favorite,
                  ARRAY(SELECT l.specialty_id FROM contractor_specialty_links l WHERE l.contractor_id = c.id
                        ORDER BY l.specialty_id) AS "specialty_ids!",
                  (c.owner_id = $1) AS "is_mine!", c.created_at, c.updated_at
             FROM contractors c
            WHERE c.id IN (SELECT v.id FROM contractors v WHERE v.owner_id = $1 AND v.residence_id IS NULL
                           UNION ALL
                           SELECT v.id FROM residence_members m JOIN contractors v ON v.residence_id = m.residence_id
                            WHERE m.user_id = $1)
              AND ($2::bigint IS NULL OR c.id = $2)
              AND ($3::bigint IS NULL OR c.residence_id = $3)
              AND ($4::int IS NULL OR EXISTS (SELECT 1 FROM contractor_specialty_links l
                                              WHERE l.contractor_id = c.id AND l.specialty_id = $4))
              AND ($5::bool IS NULL OR c.is_favorite = $5)
            ORDER BY c.is_favorite DESC, c.name, c.id
            LIMIT $6 OFFSET $7"#,
        user_id,
        id,
        residence,
        specialty,
        favorite,
        limit,
        offset
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok((count, rows))
}

async fn load(conn: &mut PgConnection, user_id: i64, id: i64) -> AppResult<ContractorOut> {
    query(conn, user_id, Some(id), None, None, None, 1, 0)
        .await?
        .1
        .into_iter()
        .next()
        .ok_or(AppError::NotFound("contractor"))
}

/// The caller may change the contractor: it is shared with a residence they
/// may write to, or it is their own private one. (A contractor shared with
/// a residence belongs to that household: whoever added it loses it when
/// they leave.)
async fn require_write(conn: &mut PgConnection, user_id: i64, id: i64) -> AppResult<ContractorOut> {
    let c = load(conn, user_id, id).await?;
    if let Some(r) = c.residence_id {
        membership::writer(conn, user_id, r).await?;
    }
    Ok(c)
}

#[derive(Debug, Deserialize)]
struct ListParams {
    residence: Option<i64>,
    specialty: Option<i32>,
    favorite: Option<bool>,
}

async fn list(
    S(state): S<State>,
    user: AuthUser,
    page: Page,
    Query(p): Query<ListParams>,
) -> AppResult<Json<Paginated<ContractorOut>>> {
    let mut conn = state.db.acquire().await?;
    let (count, rows) = query(
        &mut conn,
        user.id,
        None,
        p.residence,
        p.specialty,
        p.favorite,
        page.limit(),
        page.offset(),
    )
    .await?;
    Ok(Json(Paginated::new(page, count, rows)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContractorIn {
    name: Option<String>,
    company: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    website: Option<String>,
    notes: Option<String>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    residence_id: Option<Option<i64>>,
    specialty_ids: Option<Vec<i32>>,
    is_favorite: Option<bool>,
}

async fn validate(
    conn: &mut PgConnection,
    user_id: i64,
    b: &mut ContractorIn,
    creating: bool,
) -> AppResult<()> {
    let mut v = Validator::new();
    v.text("name", b.name.as_deref(), creating, 200);
    v.max_len("company", b.company.as_deref(), 200);
    v.max_len("phone", b.phone.as_deref(), 50);
    v.max_len("website", b.website.as_deref(), 500);
    v.max_len("notes", b.notes.as_deref(), 10_000);
    v.email("email", &mut b.email);
    v.url("website", b.website.as_deref());
    if let Some(ids) = &b.specialty_ids {
        v.check(ids.len() <= 20, "specialty_ids", "At most 20 specialties.");
        let known: i64 = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM contractor_specialties WHERE id = ANY($1)"#,
            ids
        )
        .fetch_one(&mut *conn)
        .await?;
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        v.check(
            known as usize == distinct.len(),
            "specialty_ids",
            "Unknown specialty.",
        );
    }
    v.finish()?;
    if let Some(Some(r)) = b.residence_id {
        membership::writer(conn, user_id, r).await?;
    }
    Ok(())
}

async fn set_specialties(conn: &mut PgConnection, id: i64, ids: &[i32]) -> AppResult<()> {
    sqlx::query!(
        "DELETE FROM contractor_specialty_links WHERE contractor_id = $1",
        id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO contractor_specialty_links (contractor_id, specialty_id)
         SELECT $1, s FROM unnest($2::int[]) s ON CONFLICT DO NOTHING",
        id,
        ids
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn create(
    S(state): S<State>,
    user: AuthUser,
    Json(mut b): Json<ContractorIn>,
) -> AppResult<impl IntoResponse> {
    let mut tx = state.db.begin().await?;
    validate(&mut tx, user.id, &mut b, true).await?;
    honeydue_core::limits::check(
        &mut tx,
        user.id,
        honeydue_core::limits::Resource::Contractors,
    )
    .await?;
    let id = sqlx::query_scalar!(
        "INSERT INTO contractors (owner_id, residence_id, name, company, phone, email, website, notes, is_favorite)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        user.id,
        b.residence_id.flatten(),
        b.name.as_deref().unwrap_or_default().trim(),
        b.company.clone().unwrap_or_default(),
        b.phone.clone().unwrap_or_default(),
        b.email.clone().unwrap_or_default(),
        b.website.clone().unwrap_or_default(),
        b.notes.clone().unwrap_or_default(),
        b.is_favorite.unwrap_or(false)
    )
    .fetch_one(&mut *tx)
    .await?;
    if let Some(ids) = &b.specialty_ids {
        set_specialties(&mut tx, id, ids).await?;
    }
    let out = load(&mut tx, user.id, id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(out)))
}

async fn detail(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
) -> AppResult<Json<ContractorOut>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(load(&mut conn, user.id, id).await?))
}

async fn update(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
    Json(mut b): Json<ContractorIn>,
) -> AppResult<Json<ContractorOut>> {
    let mut tx = state.db.begin().await?;
    let current = require_write(&mut tx, user.id, id).await?;
    if b.residence_id.is_some_and(|r| r != current.residence_id) && !current.is_mine {
        return Err(AppError::Forbidden(
            "Only the person who added a contractor can move it to another residence or make it private.".into(),
        ));
    }
    validate(&mut tx, user.id, &mut b, false).await?;
    sqlx::query!(
        "UPDATE contractors SET name = COALESCE($2, name), company = COALESCE($3, company), phone = COALESCE($4, phone),
                email = COALESCE($5, email), website = COALESCE($6, website), notes = COALESCE($7, notes),
                residence_id = CASE WHEN $8 THEN $9 ELSE residence_id END,
                is_favorite = COALESCE($10, is_favorite), updated_at = now()
          WHERE id = $1",
        id,
        b.name.as_deref().map(str::trim),
        b.company,
        b.phone,
        b.email,
        b.website,
        b.notes,
        b.residence_id.is_some(),
        b.residence_id.flatten(),
        b.is_favorite
    )
    .execute(&mut *tx)
    .await?;
    if let Some(ids) = &b.specialty_ids {
        set_specialties(&mut tx, id, ids).await?;
    }
    let out = load(&mut tx, user.id, id).await?;
    tx.commit().await?;
    Ok(Json(out))
}

async fn remove(S(state): S<State>, user: AuthUser, PathId(id): PathId) -> AppResult<StatusCode> {
    let mut conn = state.db.acquire().await?;
    require_write(&mut conn, user.id, id).await?;
    sqlx::query!("DELETE FROM contractors WHERE id = $1", id)
        .execute(&mut *conn)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn toggle_favorite(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
) -> AppResult<Json<ContractorOut>> {
    let mut conn = state.db.acquire().await?;
    require_write(&mut conn, user.id, id).await?;
    sqlx::query!(
        "UPDATE contractors SET is_favorite = NOT is_favorite, updated_at = now() WHERE id = $1",
        id
    )
    .execute(&mut *conn)
    .await?;
    Ok(Json(load(&mut conn, user.id, id).await?))
}

async fn tasks(S(state): S<State>, user: AuthUser, PathId(id): PathId) -> AppResult<Json<Value>> {
    let mut conn = state.db.acquire().await?;
    load(&mut conn, user.id, id).await?;
    // Only tasks in residences the caller belongs to.
    let rows = sqlx::query!(
        "SELECT t.id, t.residence_id, t.title, t.next_due_date, t.is_cancelled, t.is_archived
           FROM tasks t JOIN residence_members m ON m.residence_id = t.residence_id AND m.user_id = $1
          WHERE t.contractor_id = $2
          ORDER BY t.next_due_date NULLS LAST, t.id",
        user.id,
        id
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(Json(json!(rows
        .into_iter()
        .map(|t| json!({"id": t.id, "residence_id": t.residence_id, "title": t.title,
                        "next_due_date": t.next_due_date, "is_cancelled": t.is_cancelled, "is_archived": t.is_archived}))
        .collect::<Vec<_>>())))
}
