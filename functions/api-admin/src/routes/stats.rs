//! Counts for the dashboard.

use axum::extract::State as S;
use honeydue_core::AppResult;
use honeydue_http::{Json, State};
use serde_json::{json, Value};

use crate::auth::Admin;

pub(super) async fn stats(S(state): S<State>, _admin: Admin) -> AppResult<Json<Value>> {
    let s = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM users) AS "users!",
                  (SELECT count(*) FROM users WHERE email_verified_at IS NOT NULL) AS "verified_users!",
                  (SELECT count(*) FROM users WHERE created_at > now() - interval '7 days') AS "new_users_7d!",
                  (SELECT count(*) FROM residences) AS "residences!",
                  (SELECT count(*) FROM tasks WHERE NOT is_archived) AS "tasks!",
                  (SELECT count(*) FROM task_completions WHERE completed_at > now() - interval '7 days') AS "completions_7d!",
                  (SELECT count(*) FROM user_subscriptions WHERE tier = 'pro' AND (expires_at IS NULL OR expires_at > now())) AS "pro_users!",
                  (SELECT count(*) FROM email_outbox WHERE status = 'pending') AS "emails_pending!",
                  (SELECT count(*) FROM email_outbox WHERE status = 'dead') AS "emails_dead!""#
    )
    .fetch_one(&state.db)
    .await?;
    Ok(Json(json!({
        "users": s.users, "verified_users": s.verified_users, "new_users_7d": s.new_users_7d,
        "residences": s.residences, "tasks": s.tasks, "completions_7d": s.completions_7d,
        "pro_users": s.pro_users, "emails_pending": s.emails_pending, "emails_dead": s.emails_dead,
    })))
}
