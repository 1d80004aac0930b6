//! The `api-uploads` function: clients upload straight to the bucket with a
//! presigned PUT (5 minutes, content type and length bound), confirm (the
//! function HEADs the object: size and type must match), and download through
//! a 302 to a presigned GET after a membership check.
//!
//! Every upload, whatever its purpose, is charged to the uploader's quota
//! (files and bytes by tier, see `honeydue_core::limits`) when it is
//! presigned. Confirming an `avatar` upload makes it the caller's avatar
//! (`users.avatar_upload_id`); the avatar it replaces is marked `deleted`
//! (no longer served nor counted) and `cron-cleanup` removes its file, then
//! its row. Confirmed uploads nothing references go with the cleanup too.

use std::time::Duration;

use axum::extract::{FromRef, Path, State as S};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use honeydue_cache::Cache;
use honeydue_core::config::AppConfig;
use honeydue_core::{limits, membership, AppError, AppResult, Env, Validator};
use honeydue_http::{AppState, AuthUser, Json};
use honeydue_storage::{Storage, StorageConfig};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::PgPool;

/// Content types accepted.
pub const ALLOWED_TYPES: [&str; 6] = [
    "image/jpeg",
    "image/png",
    "image/heic",
    "image/webp",
    "image/gif",
    "application/pdf",
];
/// Purposes accepted.
pub const PURPOSES: [&str; 4] = [
    "residence_image",
    "completion_photo",
    "document_file",
    "avatar",
];
/// Lifetime of a presigned URL.
pub const URL_TTL: Duration = Duration::from_secs(300);

/// Shared state: the usual plus the bucket.
#[derive(Clone)]
pub struct Uploads {
    /// Database, cache, configuration.
    pub base: honeydue_http::State,
    /// The bucket.
    pub storage: Storage,
}

impl FromRef<Uploads> for PgPool {
    fn from_ref(s: &Uploads) -> PgPool {
        s.base.db.clone()
    }
}

impl FromRef<Uploads> for Cache {
    fn from_ref(s: &Uploads) -> Cache {
        s.base.cache.clone()
    }
}

/// At cold start `S3_*` is read from the environment the common settings
/// come from (every problem named with theirs), and the bucket's client is
/// built after the common state.
impl AppState for Uploads {
    type Settings = StorageConfig;

    fn read(env: &mut Env, _: &AppConfig) -> Option<StorageConfig> {
        StorageConfig::read(env)
    }

    async fn build(base: honeydue_http::State, cfg: StorageConfig) -> anyhow::Result<Self> {
        let storage = Storage::new(&cfg).await;
        Ok(Self { base, storage })
    }
}

honeydue_http::routes! { Uploads;
    POST "/api/uploads/presign/" => presign, User, "A presigned PUT for a new upload (5 minutes; files and bytes quota by tier)";
    POST "/api/uploads/{id}/confirm/" => confirm, User, "Confirm an upload (size and type checked); an avatar becomes the caller's";
    GET "/api/files/{id}/" => download, User, "302 to a presigned GET (members only)";
}

/// The function's router (`main`: `honeydue_http::start(&Api::new("api-uploads", app))`).
pub fn app(state: Uploads) -> Router {
    honeydue_http::finish(router(), 16 * 1024).with_state(state)
}

fn upload_id(raw: &str) -> AppResult<uuid::Uuid> {
    raw.parse().map_err(|_| AppError::NotFound("upload"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PresignIn {
    purpose: String,
    filename: String,
    content_type: String,
    size: i64,
    residence_id: Option<i64>,
}

async fn presign(
    S(state): S<Uploads>,
    user: AuthUser,
    Json(b): Json<PresignIn>,
) -> AppResult<impl IntoResponse> {
    let mut tx = state.base.db.begin().await?;
    let plan = limits::plan(&mut tx, user.id).await?;
    let mut v = Validator::new();
    v.check(
        PURPOSES.contains(&b.purpose.as_str()),
        "purpose",
        "Use residence_image, completion_photo, document_file or avatar.",
    );
    let name = b.filename.trim();
    v.check(
        !name.is_empty() && name.chars().count() <= 255 && !name.contains(['/', '\\']),
        "filename",
        "Give a file name of at most 255 characters, without slashes.",
    );
    let ct = b.content_type.trim().to_ascii_lowercase();
    v.check(
        ALLOWED_TYPES.contains(&ct.as_str()),
        "content_type",
        format!("Allowed: {}.", ALLOWED_TYPES.join(", ")),
    );
    v.check(b.size > 0, "size", "Must be more than zero.");
    v.check(
        b.size <= plan.max_upload_bytes,
        "size",
        format!(
            "Files are limited to {} MB on your plan.",
            plan.max_upload_bytes / 1_048_576
        ),
    );
    v.check(
        b.purpose == "avatar" || b.residence_id.is_some(),
        "residence_id",
        "This field is required for this purpose.",
    );
    v.finish()?;
    if let Some(r) = b.residence_id {
        membership::writer(&mut tx, user.id, r).await?;
    }
    // Charged to the caller, whatever the purpose or residence; their row
    // stays locked until the insert commits.
    limits::check_upload(&mut tx, user.id, b.size).await?;
    let id = uuid::Uuid::new_v4();
    let key = format!("uploads/{}", id.simple());
    sqlx::query!(
        "INSERT INTO uploads (id, user_id, residence_id, purpose, object_key, filename, content_type, size_bytes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        id,
        user.id,
        b.residence_id,
        b.purpose,
        key,
        name,
        ct,
        b.size
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let url = state
        .storage
        .presign_put(&key, &ct, b.size, URL_TTL)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": id,
            "upload_url": url,
            "method": "PUT",
            "headers": {"content-type": ct, "content-length": b.size.to_string()},
            "expires_in": URL_TTL.as_secs(),
        })),
    ))
}

async fn confirm(
    S(state): S<Uploads>,
    user: AuthUser,
    Path(raw): Path<String>,
) -> AppResult<Json<Value>> {
    let id = upload_id(&raw)?;
    // A replaced avatar (`deleted`) is gone, for its uploader too.
    let u = sqlx::query!(
        "SELECT object_key, content_type, size_bytes, status FROM uploads
          WHERE id = $1 AND user_id = $2 AND status <> 'deleted'",
        id,
        user.id
    )
    .fetch_optional(&state.base.db)
    .await?
    .ok_or(AppError::NotFound("upload"))?;
    if u.status != "confirmed" {
        let info = state.storage.head(&u.object_key).await?.ok_or_else(|| {
            AppError::conflict(
                "not_uploaded",
                "The file has not been uploaded yet (or the URL expired).",
            )
        })?;
        let type_ok = info
            .content_type
            .as_deref()
            .map(|t| t.eq_ignore_ascii_case(&u.content_type))
            .unwrap_or(false);
        if info.size != u.size_bytes || !type_ok {
            // Not what was announced: remove it, keep the row pending.
            state.storage.delete(&u.object_key).await?;
            return Err(AppError::field(
                "file",
                format!(
                    "The uploaded file ({} bytes, {}) does not match what was announced ({} bytes, {}).",
                    info.size,
                    info.content_type.unwrap_or_default(),
                    u.size_bytes,
                    u.content_type
                ),
            ));
        }
    }
    // The user's row, then the upload's: the order of presign's quota check,
    // so one user's confirms queue and a replaced avatar is marked once.
    let mut tx = state.base.db.begin().await?;
    let current = sqlx::query_scalar!(
        r#"SELECT avatar_upload_id AS "avatar_upload_id?" FROM users WHERE id = $1 FOR UPDATE"#,
        user.id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AppError::NotFound("upload"))?;
    // No row: the cleanup job removed it meanwhile (it holds the rows it
    // deletes, so this waits for it), or it was replaced as an avatar.
    let purpose = sqlx::query_scalar!(
        r#"UPDATE uploads SET status = 'confirmed', confirmed_at = COALESCE(confirmed_at, now())
            WHERE id = $1 AND user_id = $2 AND status <> 'deleted'
            RETURNING purpose AS "purpose!""#,
        id,
        user.id
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AppError::NotFound("upload"))?;
    if purpose == "avatar" && current != Some(id) {
        sqlx::query!(
            "UPDATE users SET avatar_upload_id = $2 WHERE id = $1",
            user.id,
            id
        )
        .execute(&mut *tx)
        .await?;
        if let Some(old) = current {
            sqlx::query!(
                "UPDATE uploads SET status = 'deleted', deleted_at = now()
                  WHERE id = $1 AND purpose = 'avatar' AND status <> 'deleted'",
                old
            )
            .execute(&mut *tx)
            .await?;
        }
    }
    tx.commit().await?;
    Ok(Json(
        json!({"id": id, "status": "confirmed", "size": u.size_bytes, "content_type": u.content_type}),
    ))
}

async fn download(
    S(state): S<Uploads>,
    user: AuthUser,
    Path(raw): Path<String>,
) -> AppResult<Response> {
    let id = upload_id(&raw)?;
    // Visible to the uploader, and to members of the upload's residence.
    let key = sqlx::query_scalar!(
        "SELECT u.object_key FROM uploads u
          WHERE u.id = $1 AND u.status = 'confirmed'
            AND (u.user_id = $2 OR EXISTS (SELECT 1 FROM residence_members m
                                           WHERE m.residence_id = u.residence_id AND m.user_id = $2))",
        id,
        user.id
    )
    .fetch_optional(&state.base.db)
    .await?
    .ok_or(AppError::NotFound("file"))?;
    let url = state.storage.presign_get(&key, URL_TTL).await?;
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, url),
            (header::CACHE_CONTROL, "private, no-store".to_string()),
        ],
    )
        .into_response())
}
