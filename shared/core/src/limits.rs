//! Subscription tiers: what a user may create.
//!
//! A household's resources count against the residence owner's tier (a
//! member who adds a task to someone else's home uses the owner's plan);
//! uploads count against the uploader, whatever their purpose. A global
//! switch turns limits off; an admin-granted free flag bypasses them.
//! Checks lock the charged user's row, so two concurrent creates cannot both
//! slip under a limit.
//!
//! Limits live in `tier_limits` (NULL = unlimited):
//!
//! | tier | residences | tasks | contractors | documents | upload files | upload bytes | largest upload |
//! |---|---|---|---|---|---|---|---|
//! | free | 1 | 30 | 10 | 10 | 200 | 500 MiB | 10 MiB |
//! | pro | - | - | - | - | 5,000 | 10 GiB | 50 MiB |

use serde::Serialize;
use sqlx::PgConnection;

use crate::{AppError, AppResult};

/// What can be limited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    /// Residences owned.
    Residences,
    /// Tasks in residences owned.
    Tasks,
    /// Contractors added.
    Contractors,
    /// Documents in residences owned.
    Documents,
    /// Files uploaded (any purpose) and still stored: pending, confirmed,
    /// or marked for deletion until the cleanup has removed them.
    Uploads,
    /// Bytes of those files; an upload is charged its declared size when it
    /// is presigned.
    UploadBytes,
}

impl Resource {
    /// All resources.
    pub const ALL: [Resource; 6] = [
        Resource::Residences,
        Resource::Tasks,
        Resource::Contractors,
        Resource::Documents,
        Resource::Uploads,
        Resource::UploadBytes,
    ];

    /// Its name in API answers.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Residences => "residences",
            Resource::Tasks => "tasks",
            Resource::Contractors => "contractors",
            Resource::Documents => "documents",
            Resource::Uploads => "uploads",
            Resource::UploadBytes => "upload_bytes",
        }
    }
}

/// A user's effective plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// `free` or `pro` (an expired pro is free).
    pub tier: String,
    /// When a pro subscription ends.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Admin-granted bypass.
    pub is_free: bool,
    /// The global switch.
    pub limits_enabled: bool,
    /// Limits of the tier (None = unlimited), in [`Resource::ALL`] order.
    pub limits: [Option<i64>; 6],
    /// Largest upload in bytes.
    pub max_upload_bytes: i64,
}

impl Plan {
    /// Whether limits apply to this user at all.
    pub fn limited(&self) -> bool {
        self.limits_enabled && !self.is_free
    }

    /// The limit on `r` (None = unlimited).
    pub fn limit(&self, r: Resource) -> Option<i64> {
        if !self.limited() {
            return None;
        }
        let i = Resource::ALL.iter().position(|x| *x == r).unwrap_or(0);
        self.limits[i]
    }
}

/// The effective plan of `user_id`.
pub async fn plan(conn: &mut PgConnection, user_id: i64) -> AppResult<Plan> {
    let r = sqlx::query!(
        r#"SELECT COALESCE(CASE WHEN s.tier = 'pro' AND (s.expires_at IS NULL OR s.expires_at > now()) THEN 'pro' END, 'free') AS "tier!",
                  s.expires_at AS "expires_at?", COALESCE(s.is_free, FALSE) AS "is_free!",
                  (SELECT limits_enabled FROM app_settings) AS "limits_enabled!"
             FROM (SELECT $1::bigint AS id) u
             LEFT JOIN user_subscriptions s ON s.user_id = u.id"#,
        user_id
    )
    .fetch_one(&mut *conn)
    .await?;
    let l = sqlx::query!(
        "SELECT max_residences, max_tasks, max_contractors, max_documents, max_upload_files, max_upload_total_bytes,
                max_upload_bytes
           FROM tier_limits WHERE tier = $1",
        r.tier
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Plan {
        tier: r.tier,
        expires_at: r.expires_at,
        is_free: r.is_free,
        limits_enabled: r.limits_enabled,
        limits: [
            l.max_residences.map(i64::from),
            l.max_tasks.map(i64::from),
            l.max_contractors.map(i64::from),
            l.max_documents.map(i64::from),
            l.max_upload_files.map(i64::from),
            l.max_upload_total_bytes,
        ],
        max_upload_bytes: l.max_upload_bytes,
    })
}

/// What `user_id` uses of `r` now.
pub async fn usage(conn: &mut PgConnection, user_id: i64, r: Resource) -> AppResult<i64> {
    let n = match r {
        Resource::Residences => {
            sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM residences WHERE owner_id = $1"#, user_id)
                .fetch_one(&mut *conn)
                .await?
        }
        Resource::Tasks => {
            sqlx::query_scalar!(
                r#"SELECT count(*) AS "n!" FROM tasks t JOIN residences r ON r.id = t.residence_id
                    WHERE r.owner_id = $1 AND NOT t.is_archived"#,
                user_id
            )
            .fetch_one(&mut *conn)
            .await?
        }
        Resource::Contractors => {
            sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM contractors WHERE owner_id = $1"#, user_id)
                .fetch_one(&mut *conn)
                .await?
        }
        Resource::Documents => {
            sqlx::query_scalar!(
                r#"SELECT count(*) AS "n!" FROM documents d JOIN residences r ON r.id = d.residence_id WHERE r.owner_id = $1"#,
                user_id
            )
            .fetch_one(&mut *conn)
            .await?
        }
        Resource::Uploads => {
            sqlx::query_scalar!(
                r#"SELECT count(*) AS "n!" FROM uploads WHERE user_id = $1"#,
                user_id
            )
            .fetch_one(&mut *conn)
            .await?
        }
        Resource::UploadBytes => {
            sqlx::query_scalar!(
                r#"SELECT COALESCE(sum(size_bytes), 0)::bigint AS "n!" FROM uploads
                    WHERE user_id = $1"#,
                user_id
            )
            .fetch_one(&mut *conn)
            .await?
        }
    };
    Ok(n)
}

/// Fails with 403 `limit_exceeded` when `user_id` may not add one more `r`
/// (for [`Resource::UploadBytes`]: when no byte is left; uploads use
/// [`check_upload`]). Call inside the creating transaction.
pub async fn check(conn: &mut PgConnection, user_id: i64, r: Resource) -> AppResult<()> {
    lock_user(conn, user_id).await?;
    let p = plan(conn, user_id).await?;
    let Some(limit) = p.limit(r) else {
        return Ok(());
    };
    let used = usage(conn, user_id, r).await?;
    if used >= limit {
        return Err(AppError::LimitExceeded {
            resource: r.name().to_string(),
            limit,
            usage: used,
        });
    }
    Ok(())
}

/// Fails with 403 `limit_exceeded` when `user_id` (the uploader) may not add
/// one more upload of `size_bytes`: `uploads` when the file count is
/// reached, else `upload_bytes` (usage in bytes) when the file does not fit
/// in what is left. Call inside the transaction that inserts the upload.
pub async fn check_upload(conn: &mut PgConnection, user_id: i64, size_bytes: i64) -> AppResult<()> {
    lock_user(conn, user_id).await?;
    let p = plan(conn, user_id).await?;
    if let Some(limit) = p.limit(Resource::Uploads) {
        let used = usage(conn, user_id, Resource::Uploads).await?;
        if used >= limit {
            return Err(AppError::LimitExceeded {
                resource: Resource::Uploads.name().to_string(),
                limit,
                usage: used,
            });
        }
    }
    if let Some(limit) = p.limit(Resource::UploadBytes) {
        let used = usage(conn, user_id, Resource::UploadBytes).await?;
        if used.saturating_add(size_bytes) > limit {
            return Err(AppError::LimitExceeded {
                resource: Resource::UploadBytes.name().to_string(),
                limit,
                usage: used,
            });
        }
    }
    Ok(())
}

/// Locks the charged user's row until the transaction ends, so concurrent
/// checks for the same user run one after the other.
async fn lock_user(conn: &mut PgConnection, user_id: i64) -> AppResult<()> {
    sqlx::query!("SELECT id FROM users WHERE id = $1 FOR UPDATE", user_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(())
}

/// The owner of a residence (whose plan its tasks and documents use).
pub async fn residence_owner(conn: &mut PgConnection, residence_id: i64) -> AppResult<i64> {
    Ok(sqlx::query_scalar!(
        "SELECT owner_id FROM residences WHERE id = $1",
        residence_id
    )
    .fetch_one(conn)
    .await?)
}
