//! Who may see and change a residence. Every residence-scoped query goes
//! through here first: a residence outside the caller's memberships is a
//! 404, never someone else's data; a viewer who tries to write gets 403.

use sqlx::PgConnection;

use crate::domain::roles::Role;
use crate::{AppError, AppResult};

/// The caller's role in `residence_id`, or 404.
pub async fn role(conn: &mut PgConnection, user_id: i64, residence_id: i64) -> AppResult<Role> {
    let role = sqlx::query_scalar!(
        "SELECT role FROM residence_members WHERE residence_id = $1 AND user_id = $2",
        residence_id,
        user_id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(AppError::NotFound("residence"))?;
    Role::parse(&role).ok_or_else(|| AppError::Internal(anyhow::anyhow!("unknown role {role:?}")))
}

/// The caller's role, which must allow writing (owner or member).
pub async fn writer(conn: &mut PgConnection, user_id: i64, residence_id: i64) -> AppResult<Role> {
    let r = role(conn, user_id, residence_id).await?;
    if r.can_write() {
        Ok(r)
    } else {
        Err(AppError::Forbidden(
            "Viewers cannot change this residence.".into(),
        ))
    }
}

/// The caller must own the residence.
pub async fn owner(conn: &mut PgConnection, user_id: i64, residence_id: i64) -> AppResult<()> {
    match role(conn, user_id, residence_id).await? {
        Role::Owner => Ok(()),
        _ => Err(AppError::Forbidden("Only the owner can do this.".into())),
    }
}

/// The caller's local date (their profile's time zone; UTC if unknown).
pub fn today_in(tz: &str) -> chrono::NaiveDate {
    let tz: chrono_tz::Tz = tz.parse().unwrap_or(chrono_tz::UTC);
    chrono::Utc::now().with_timezone(&tz).date_naive()
}
