//! Deleting the account, after handing the homes it shares over.

use axum::extract::State as S;
use axum::http::StatusCode;
use honeydue_core::AppResult;
use honeydue_http::{AuthUser, Json};
use honeydue_mail::templates;
use serde::Deserialize;
use serde_json::json;
use sqlx::PgConnection;

use super::{check_current_password, outbox_email};
use crate::State;

/// Before an account goes, every home it owns that has other members gets
/// a new owner: the longest-standing member (one who may edit before a
/// viewer), who is told by email and in the app. The home keeps its tasks,
/// documents, files and members, and contractors the leaving owner shared
/// with it move to the new owner. Homes nobody else shares go with the
/// account. Returns how many homes changed hands.
async fn hand_over_homes(conn: &mut PgConnection, state: &State, user_id: i64) -> AppResult<usize> {
    let heirs = sqlx::query!(
        r#"WITH heirs AS (
             SELECT DISTINCT ON (r.id) r.id AS residence_id, m.user_id AS heir
               FROM residences r
               JOIN residence_members m ON m.residence_id = r.id AND m.user_id <> r.owner_id
              WHERE r.owner_id = $1
              ORDER BY r.id, (m.role = 'member') DESC, m.joined_at, m.user_id)
           UPDATE residences r SET owner_id = h.heir, updated_at = now()
             FROM heirs h
            WHERE r.id = h.residence_id
        RETURNING r.id, r.name, h.heir"#,
        user_id
    )
    .fetch_all(&mut *conn)
    .await?;
    for h in &heirs {
        sqlx::query!(
            "UPDATE residence_members SET role = 'owner' WHERE residence_id = $1 AND user_id = $2",
            h.id,
            h.heir
        )
        .execute(&mut *conn)
        .await?;
        sqlx::query!(
            "UPDATE contractors SET owner_id = $3, updated_at = now() WHERE owner_id = $1 AND residence_id = $2",
            user_id,
            h.id,
            h.heir
        )
        .execute(&mut *conn)
        .await?;
        let heir = sqlx::query!("SELECT email, first_name FROM users WHERE id = $1", h.heir)
            .fetch_one(&mut *conn)
            .await?;
        let msg = templates::home_transferred(&state.cfg.app.name, &heir.first_name, &h.name);
        honeydue_mail::enqueue(
            &mut *conn,
            &outbox_email(h.heir, "home_transferred", &heir.email, msg),
        )
        .await?;
        honeydue_core::notify::notify(
            conn,
            &[honeydue_core::notify::Notice {
                user_id: h.heir,
                kind: "shared",
                title: format!("You now own {}", h.name),
                body: "Its owner deleted their account; you now own it.".into(),
                data: json!({"event": "ownership_transferred", "residence_id": h.id}),
            }],
        )
        .await?;
    }
    Ok(heirs.len())
}

#[derive(Deserialize)]
pub(super) struct DeleteIn {
    password: String,
}

pub(super) async fn delete_account(
    S(state): S<State>,
    user: AuthUser,
    Json(body): Json<DeleteIn>,
) -> AppResult<StatusCode> {
    check_current_password(&state, &user, "password", body.password).await?;
    let tokens = sqlx::query_scalar!(
        "SELECT token_hash FROM auth_tokens WHERE user_id = $1",
        user.id
    )
    .fetch_all(&state.db)
    .await?;
    let mut tx = state.db.begin().await?;
    let handed = hand_over_homes(&mut tx, &state, user.id).await?;
    // What is the user's alone hangs off users with ON DELETE CASCADE: their
    // tokens, codes, devices, memberships, and homes nobody else shares.
    sqlx::query!("DELETE FROM users WHERE id = $1", user.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    if handed > 0 {
        tracing::info!(user_id = user.id, homes = handed, "homes handed over");
    }
    honeydue_http::auth::evict_tokens(&state.cache, &tokens).await;
    tracing::info!(user_id = user.id, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}
