//! A home's members: list them, remove one (the owner), leave (anyone but
//! the owner).

use axum::extract::{Path, State as S};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use honeydue_core::domain::roles::Role;
use honeydue_core::{membership, AppError, AppResult};
use honeydue_http::{AuthUser, Json, PathId, State};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub(super) struct MemberOut {
    id: i64,
    email: String,
    first_name: String,
    last_name: String,
    role: String,
    joined_at: DateTime<Utc>,
}

pub(super) async fn members(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
) -> AppResult<Json<Vec<MemberOut>>> {
    let mut conn = state.db.acquire().await?;
    membership::role(&mut conn, user.id, id).await?;
    let rows = sqlx::query_as!(
        MemberOut,
        "SELECT u.id, u.email, u.first_name, u.last_name, m.role, m.joined_at
           FROM residence_members m JOIN users u ON u.id = m.user_id
          WHERE m.residence_id = $1
          ORDER BY (m.role = 'owner') DESC, m.joined_at, u.id",
        id
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(Json(rows))
}

pub(super) async fn remove_member(
    S(state): S<State>,
    user: AuthUser,
    Path((id, member_id)): Path<(i64, i64)>,
) -> AppResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    membership::owner(&mut tx, user.id, id).await?;
    if member_id == user.id {
        return Err(AppError::conflict(
            "owner_cannot_leave",
            "The owner cannot be removed; delete the residence instead.",
        ));
    }
    let n = sqlx::query!(
        "DELETE FROM residence_members WHERE residence_id = $1 AND user_id = $2 AND role <> 'owner'",
        id,
        member_id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(AppError::NotFound("member"));
    }
    unassign(&mut tx, id, member_id).await?;
    // The removed member knows the share code (they joined with it): it
    // stops working, and the owner shares a new one.
    sqlx::query!(
        "DELETE FROM residence_share_codes WHERE residence_id = $1",
        id
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Tasks assigned to someone who is no longer a member go back to
/// everyone (reminders reach all members again).
async fn unassign(conn: &mut sqlx::PgConnection, residence: i64, user_id: i64) -> AppResult<()> {
    sqlx::query!(
        "UPDATE tasks SET assigned_to = NULL WHERE residence_id = $1 AND assigned_to = $2",
        residence,
        user_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn leave(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
) -> AppResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    if membership::role(&mut tx, user.id, id).await? == Role::Owner {
        return Err(AppError::conflict(
            "owner_cannot_leave",
            "The owner cannot leave; delete the residence instead.",
        ));
    }
    sqlx::query!(
        "DELETE FROM residence_members WHERE residence_id = $1 AND user_id = $2",
        id,
        user.id
    )
    .execute(&mut *tx)
    .await?;
    unassign(&mut tx, id, user.id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
