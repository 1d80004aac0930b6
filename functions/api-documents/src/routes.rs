//! Handlers of `/api/documents/`.

use axum::extract::State as S;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, NaiveDate, Utc};
use honeydue_core::domain::documents;
use honeydue_core::{membership, AppError, AppResult, Validator};
use honeydue_http::{AuthUser, Json, Page, Paginated, PathId, Query, State};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

/// At most this many files on one document.
const MAX_FILES: usize = 20;

honeydue_http::routes! { State;
    GET "/api/documents/" => list, User, "Documents (?residence=&type=&expiring_within=)";
    POST "/api/documents/" => create, User, "Add a document (tier-limited)";
    GET "/api/documents/{id}/" => detail, User, "One document";
    PATCH "/api/documents/{id}/" => update, User, "Change a document";
    DELETE "/api/documents/{id}/" => remove, User, "Delete a document";
}

#[derive(Debug, Serialize)]
struct DocumentOut {
    id: i64,
    residence_id: i64,
    title: String,
    doc_type: String,
    description: String,
    start_date: Option<NaiveDate>,
    expiry_date: Option<NaiveDate>,
    provider: String,
    policy_number: String,
    claim_phone: String,
    claim_email: String,
    claim_url: String,
    amount: Option<Decimal>,
    task_id: Option<i64>,
    contractor_id: Option<i64>,
    days_until_expiry: Option<i32>,
    /// Attached files (uploads), fetched through `/api/files/{id}/`.
    file_ids: Vec<uuid::Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[allow(clippy::too_many_arguments)]
async fn query(
    conn: &mut PgConnection,
    user_id: i64,
    today: NaiveDate,
    id: Option<i64>,
    residence: Option<i64>,
    doc_type: Option<&str>,
    expiring_within: Option<i32>,
    limit: i64,
    offset: i64,
) -> AppResult<(i64, Vec<DocumentOut>)> {
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM documents d
             JOIN residence_members m ON m.residence_id = d.residence_id AND m.user_id = $1
            WHERE ($2::bigint IS NULL OR d.id = $2)
              AND ($3::bigint IS NULL OR d.residence_id = $3)
              AND ($4::text IS NULL OR d.doc_type = $4)
              AND ($5::int IS NULL OR (d.expiry_date >= $6 AND d.expiry_date <= $6 + $5))"#,
        user_id,
        id,
        residence,
        doc_type,
        expiring_within,
        today
    )
    .fetch_one(&mut *conn)
    .await?;
    let rows = sqlx::query_as!(
        DocumentOut,
        r#"SELECT d.id, d.residence_id, d.title, d.doc_type, d.description, d.start_date, d.expiry_date,
                  d.provider, d.policy_number, d.claim_phone, d.claim_email, d.claim_url, d.amount,
                  d.task_id, d.contractor_id, (d.expiry_date - $6) AS days_until_expiry,
                  ARRAY(SELECT f.upload_id FROM document_files f WHERE f.document_id = d.id ORDER BY f.upload_id) AS "file_ids!",
                  d.created_at, d.updated_at
             FROM documents d
             JOIN residence_members m ON m.residence_id = d.residence_id AND m.user_id = $1
            WHERE ($2::bigint IS NULL OR d.id = $2)
              AND ($3::bigint IS NULL OR d.residence_id = $3)
              AND ($4::text IS NULL OR d.doc_type = $4)
              AND ($5::int IS NULL OR (d.expiry_date >= $6 AND d.expiry_date <= $6 + $5))
            ORDER BY d.expiry_date NULLS LAST, d.id
            LIMIT $7 OFFSET $8"#,
        user_id,
        id,
        residence,
        doc_type,
        expiring_within,
        today,
        limit,
        offset
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok((count, rows))
}

async fn load(conn: &mut PgConnection, user: &AuthUser, id: i64) -> AppResult<DocumentOut> {
    let today = membership::today_in(&user.timezone);
    query(conn, user.id, today, Some(id), None, None, None, 1, 0)
        .await?
        .1
        .into_iter()
        .next()
        .ok_or(AppError::NotFound("document"))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    residence: Option<i64>,
    #[serde(rename = "type")]
    doc_type: Option<String>,
    expiring_within: Option<i32>,
}

async fn list(
    S(state): S<State>,
    user: AuthUser,
    page: Page,
    Query(p): Query<ListParams>,
) -> AppResult<Json<Paginated<DocumentOut>>> {
    let mut v = Validator::new();
    if let Some(t) = &p.doc_type {
        v.check(documents::is_type(t), "type", "Unknown document type.");
    }
    if let Some(d) = p.expiring_within {
        v.check(
            (0..=3650).contains(&d),
            "expiring_within",
            "Between 0 and 3650 days.",
        );
    }
    v.finish()?;
    let mut conn = state.db.acquire().await?;
    let today = membership::today_in(&user.timezone);
    let (count, rows) = query(
        &mut conn,
        user.id,
        today,
        None,
        p.residence,
        p.doc_type.as_deref(),
        p.expiring_within,
        page.limit(),
        page.offset(),
    )
    .await?;
    Ok(Json(Paginated::new(page, count, rows)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentIn {
    residence_id: Option<i64>,
    title: Option<String>,
    doc_type: Option<String>,
    description: Option<String>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    start_date: Option<Option<NaiveDate>>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    expiry_date: Option<Option<NaiveDate>>,
    provider: Option<String>,
    policy_number: Option<String>,
    claim_phone: Option<String>,
    claim_email: Option<String>,
    claim_url: Option<String>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    amount: Option<Option<Decimal>>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    task_id: Option<Option<i64>>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    contractor_id: Option<Option<i64>>,
    /// Creating: files to attach (as `add_file_ids`). Changing (kept for
    /// older clients): the caller's own files on the document become
    /// exactly these; files other members attached stay, listed or not.
    upload_ids: Option<Vec<uuid::Uuid>>,
    /// Files to attach: confirmed `document_file` uploads the caller made
    /// for this residence (files already attached may be listed too).
    add_file_ids: Option<Vec<uuid::Uuid>>,
    /// Files to detach, any of the document's (ids it does not have are
    /// ignored). Not when creating.
    remove_file_ids: Option<Vec<uuid::Uuid>>,
}

async fn validate(
    conn: &mut PgConnection,
    user_id: i64,
    residence_id: i64,
    b: &mut DocumentIn,
    creating: bool,
    current: Option<&DocumentOut>,
) -> AppResult<()> {
    let mut v = Validator::new();
    v.text("title", b.title.as_deref(), creating, 200);
    match &b.doc_type {
        Some(t) => v.check(documents::is_type(t), "doc_type", documents::expected()),
        None if creating => v.add("doc_type", "This field is required."),
        None => {}
    }
    v.max_len("description", b.description.as_deref(), 10_000);
    v.max_len("provider", b.provider.as_deref(), 200);
    v.max_len("policy_number", b.policy_number.as_deref(), 100);
    v.max_len("claim_phone", b.claim_phone.as_deref(), 50);
    v.max_len("claim_url", b.claim_url.as_deref(), 500);
    v.email("claim_email", &mut b.claim_email);
    v.url("claim_url", b.claim_url.as_deref());
    if let Some(Some(a)) = b.amount {
        v.money("amount", a);
    }
    for (field, ids) in [
        ("upload_ids", &b.upload_ids),
        ("add_file_ids", &b.add_file_ids),
        ("remove_file_ids", &b.remove_file_ids),
    ] {
        v.check(
            ids.as_ref().is_none_or(|ids| ids.len() <= MAX_FILES),
            field,
            format!("At most {MAX_FILES} files."),
        );
    }
    if creating {
        v.check(
            b.remove_file_ids.is_none(),
            "remove_file_ids",
            "A new document has no files to remove.",
        );
    } else if b.upload_ids.is_some() && (b.add_file_ids.is_some() || b.remove_file_ids.is_some()) {
        v.add(
            "upload_ids",
            "Use add_file_ids and remove_file_ids instead of upload_ids, not both.",
        );
    }
    if let (Some(add), Some(remove)) = (&b.add_file_ids, &b.remove_file_ids) {
        v.check(
            !add.iter().any(|f| remove.contains(f)),
            "remove_file_ids",
            "A file cannot be added and removed at once.",
        );
    }
    let start = b
        .start_date
        .unwrap_or_else(|| current.and_then(|c| c.start_date));
    let expiry = b
        .expiry_date
        .unwrap_or_else(|| current.and_then(|c| c.expiry_date));
    if let (Some(s), Some(e)) = (start, expiry) {
        v.check(s <= e, "expiry_date", "Must not be before the start date.");
    }
    if let Some(Some(t)) = b.task_id {
        let ok = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM tasks WHERE id = $1 AND residence_id = $2) AS "x!""#,
            t,
            residence_id
        )
        .fetch_one(&mut *conn)
        .await?;
        v.check(ok, "task_id", "Unknown task in this residence.");
    }
    if let Some(Some(c)) = b.contractor_id {
        let ok = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM contractors WHERE id = $1 AND (residence_id = $3 OR (residence_id IS NULL AND owner_id = $2))) AS "x!""#,
            c,
            user_id,
            residence_id
        )
        .fetch_one(&mut *conn)
        .await?;
        v.check(ok, "contractor_id", "Unknown contractor.");
    }
    v.finish()
}

async fn create(
    S(state): S<State>,
    user: AuthUser,
    Json(mut b): Json<DocumentIn>,
) -> AppResult<impl IntoResponse> {
    let residence_id = b
        .residence_id
        .ok_or_else(|| AppError::field("residence_id", "This field is required."))?;
    let mut tx = state.db.begin().await?;
    membership::writer(&mut tx, user.id, residence_id).await?;
    validate(&mut tx, user.id, residence_id, &mut b, true, None).await?;
    let owner = honeydue_core::limits::residence_owner(&mut tx, residence_id).await?;
    honeydue_core::limits::check(&mut tx, owner, honeydue_core::limits::Resource::Documents)
        .await?;
    let id = sqlx::query_scalar!(
        "INSERT INTO documents (residence_id, created_by, title, doc_type, description, start_date, expiry_date, provider,
                                policy_number, claim_phone, claim_email, claim_url, amount, task_id, contractor_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
        residence_id,
        user.id,
        b.title.as_deref().unwrap_or_default().trim(),
        b.doc_type.as_deref().unwrap_or("other"),
        b.description.clone().unwrap_or_default(),
        b.start_date.flatten(),
        b.expiry_date.flatten(),
        b.provider.clone().unwrap_or_default(),
        b.policy_number.clone().unwrap_or_default(),
        b.claim_phone.clone().unwrap_or_default(),
        b.claim_email.clone().unwrap_or_default(),
        b.claim_url.clone().unwrap_or_default(),
        b.amount.flatten(),
        b.task_id.flatten(),
        b.contractor_id.flatten()
    )
    .fetch_one(&mut *tx)
    .await?;
    change_files(&mut tx, user.id, residence_id, id, &b).await?;
    let out = load(&mut tx, &user, id).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// Applies a body's file changes to a document. Any member who may write
/// the residence may attach files, but only confirmed `document_file`
/// uploads they made themselves for this residence, and may detach any of
/// the document's files (every member sees them all). A change touches only
/// the files it names, so a member who adds their own files never drops a
/// co-member's: `add_file_ids` attaches, `remove_file_ids` detaches, and the
/// older `upload_ids` makes the caller's own files on the document exactly
/// the ones listed, keeping everyone else's (on a new document it simply
/// attaches). The caller holds the document's row lock (or just made it).
async fn change_files(
    conn: &mut PgConnection,
    user_id: i64,
    residence_id: i64,
    document_id: i64,
    b: &DocumentIn,
) -> AppResult<()> {
    if let Some(keep) = &b.upload_ids {
        sqlx::query!(
            "DELETE FROM document_files f USING uploads u
              WHERE f.document_id = $1 AND u.id = f.upload_id AND u.user_id = $2
                AND NOT (f.upload_id = ANY($3))",
            document_id,
            user_id,
            keep.as_slice()
        )
        .execute(&mut *conn)
        .await?;
        add_files(
            &mut *conn,
            user_id,
            residence_id,
            document_id,
            keep,
            "upload_ids",
        )
        .await?;
    }
    if let Some(remove) = &b.remove_file_ids {
        sqlx::query!(
            "DELETE FROM document_files WHERE document_id = $1 AND upload_id = ANY($2)",
            document_id,
            remove.as_slice()
        )
        .execute(&mut *conn)
        .await?;
    }
    if let Some(add) = &b.add_file_ids {
        add_files(
            &mut *conn,
            user_id,
            residence_id,
            document_id,
            add,
            "add_file_ids",
        )
        .await?;
    }
    if b.upload_ids.is_some() || b.add_file_ids.is_some() {
        let n = sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM document_files WHERE document_id = $1"#,
            document_id
        )
        .fetch_one(&mut *conn)
        .await?;
        if n > MAX_FILES as i64 {
            let field = if b.add_file_ids.is_some() {
                "add_file_ids"
            } else {
                "upload_ids"
            };
            return Err(AppError::field(
                field,
                format!("A document holds at most {MAX_FILES} files."),
            ));
        }
    }
    Ok(())
}

/// Attaches `files` to a document: each a confirmed `document_file` upload
/// the caller made for this residence, or a file the document already has
/// (which stays as it is). Any other id is a 422 on `field`.
async fn add_files(
    conn: &mut PgConnection,
    user_id: i64,
    residence_id: i64,
    document_id: i64,
    files: &[uuid::Uuid],
    field: &str,
) -> AppResult<()> {
    let mut distinct = files.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let usable = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM uploads u
            WHERE u.id = ANY($1)
              AND (EXISTS (SELECT 1 FROM document_files f WHERE f.document_id = $2 AND f.upload_id = u.id)
                   OR (u.status = 'confirmed' AND u.purpose = 'document_file'
                       AND u.residence_id = $3 AND u.user_id = $4))"#,
        distinct.as_slice(),
        document_id,
        residence_id,
        user_id
    )
    .fetch_one(&mut *conn)
    .await?;
    if usable as usize != distinct.len() {
        return Err(AppError::field(
            field,
            "Use confirmed files you uploaded for this residence.",
        ));
    }
    sqlx::query!(
        "INSERT INTO document_files (document_id, upload_id)
         SELECT $1, u.id FROM uploads u
          WHERE u.id = ANY($2) AND u.status = 'confirmed' AND u.purpose = 'document_file'
            AND u.residence_id = $3 AND u.user_id = $4
         ON CONFLICT DO NOTHING",
        document_id,
        distinct.as_slice(),
        residence_id,
        user_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn detail(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
) -> AppResult<Json<DocumentOut>> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(load(&mut conn, &user, id).await?))
}

async fn update(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
    Json(mut b): Json<DocumentIn>,
) -> AppResult<Json<DocumentOut>> {
    let mut tx = state.db.begin().await?;
    let current = load(&mut tx, &user, id).await?;
    membership::writer(&mut tx, user.id, current.residence_id).await?;
    // Serialise changes of one document (its files and their count).
    sqlx::query!("SELECT id FROM documents WHERE id = $1 FOR UPDATE", id)
        .fetch_one(&mut *tx)
        .await?;
    if b.residence_id.is_some_and(|r| r != current.residence_id) {
        return Err(AppError::field(
            "residence_id",
            "A document cannot move to another residence.",
        ));
    }
    validate(
        &mut tx,
        user.id,
        current.residence_id,
        &mut b,
        false,
        Some(&current),
    )
    .await?;
    sqlx::query!(
        "UPDATE documents SET title = COALESCE($2, title), doc_type = COALESCE($3, doc_type),
                description = COALESCE($4, description),
                start_date = CASE WHEN $5 THEN $6 ELSE start_date END,
                expiry_date = CASE WHEN $7 THEN $8 ELSE expiry_date END,
                provider = COALESCE($9, provider), policy_number = COALESCE($10, policy_number),
                claim_phone = COALESCE($11, claim_phone), claim_email = COALESCE($12, claim_email),
                claim_url = COALESCE($13, claim_url),
                amount = CASE WHEN $14 THEN $15 ELSE amount END,
                task_id = CASE WHEN $16 THEN $17 ELSE task_id END,
                contractor_id = CASE WHEN $18 THEN $19 ELSE contractor_id END,
                updated_at = now()
          WHERE id = $1",
        id,
        b.title.as_deref().map(str::trim),
        b.doc_type,
        b.description,
        b.start_date.is_some(),
        b.start_date.flatten(),
        b.expiry_date.is_some(),
        b.expiry_date.flatten(),
        b.provider,
        b.policy_number,
        b.claim_phone,
        b.claim_email,
        b.claim_url,
        b.amount.is_some(),
        b.amount.flatten(),
        b.task_id.is_some(),
        b.task_id.flatten(),
        b.contractor_id.is_some(),
        b.contractor_id.flatten()
    )
    .execute(&mut *tx)
    .await?;
    change_files(&mut tx, user.id, current.residence_id, id, &b).await?;
    let out = load(&mut tx, &user, id).await?;
    tx.commit().await?;
    Ok(Json(out))
}

async fn remove(S(state): S<State>, user: AuthUser, PathId(id): PathId) -> AppResult<StatusCode> {
    let mut conn = state.db.acquire().await?;
    let d = load(&mut conn, &user, id).await?;
    membership::writer(&mut conn, user.id, d.residence_id).await?;
    sqlx::query!("DELETE FROM documents WHERE id = $1", id)
        .execute(&mut *conn)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
