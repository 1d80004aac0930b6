//! Handlers of `/api/admin/`.

use axum::extract::{Path, State as S};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use honeydue_core::auth::{new_token, verify_password_async};
use honeydue_core::{AppError, AppResult, Validator};
use honeydue_http::{ClientIp, Json, Page, Paginated, PathId, Query, State};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::auth::{Admin, LOGIN_PER_ACCOUNT, LOGIN_PER_IP, TOKEN_TTL_HOURS};

honeydue_http::routes! { State;
    POST "/api/admin/login/" => login, Public, "Admin sign-in";
    POST "/api/admin/logout/" => logout, Admin, "Admin sign-out";
    GET "/api/admin/me/" => me, Admin, "The signed-in admin";
    GET "/api/admin/stats/" => stats, Admin, "Counts for the dashboard";
    GET "/api/admin/settings/" => settings, Admin, "Global settings";
    PATCH "/api/admin/settings/" => update_settings, Admin, "Change global settings (limits switch)";
    GET "/api/admin/users/" => users, Admin, "Users (?search=)";
    GET "/api/admin/users/{id}/" => user_detail, Admin, "One user";
    POST "/api/admin/users/{id}/deactivate/" => deactivate, Admin, "Deactivate a user (revokes sessions)";
    POST "/api/admin/users/{id}/activate/" => activate, Admin, "Reactivate a user";
    POST "/api/admin/users/{id}/subscription/" => grant, Admin, "Grant a tier or the free flag";
    GET "/api/admin/residences/" => residences, Admin, "Residences (?search=)";
    GET "/api/admin/tasks/" => tasks, Admin, "Tasks (?residence=)";
    GET "/api/admin/lookups/{kind}/" => lookups, Admin, "A lookup table";
    POST "/api/admin/lookups/{kind}/" => create_lookup, Admin, "Add a lookup";
    PATCH "/api/admin/lookups/{kind}/{id}/" => update_lookup, Admin, "Change a lookup";
    DELETE "/api/admin/lookups/{kind}/{id}/" => delete_lookup, Admin, "Delete a lookup";
    GET "/api/admin/email-outbox/" => outbox, Admin, "The email outbox (?status=)";
    POST "/api/admin/email-outbox/{id}/resend/" => resend, Admin, "Queue an email again";
    GET "/api/admin/onboarding-emails/" => onboarding, Admin, "Onboarding emails sent (?user=, ?step=), with their delivery status";
    GET "/api/admin/job-runs/" => job_runs, Admin, "Scheduled runs (?job=): slot, status, figures, error";
}

// ---- session --------------------------------------------------------------------

#[derive(Deserialize)]
struct LoginIn {
    email: String,
    password: String,
}

async fn login(S(state): S<State>, ip: ClientIp, Json(b): Json<LoginIn>) -> AppResult<Json<Value>> {
    let email = b.email.trim().to_lowercase();
    LOGIN_PER_IP.check_addr(&state.cache, &ip).await?;
    LOGIN_PER_ACCOUNT.check(&state.cache, &email).await?;
    let row = sqlx::query!(
        "SELECT id, password_hash, name FROM admin_users WHERE email = $1 AND is_active",
        email
    )
    .fetch_optional(&state.db)
    .await?;
    let ok =
        verify_password_async(b.password, row.as_ref().map(|r| r.password_hash.clone())).await?;
    let Some(row) = row.filter(|_| ok) else {
        return Err(AppError::Unauthorized("Invalid email or password.".into()));
    };
    LOGIN_PER_ACCOUNT.reset(&state.cache, &email).await;
    let (token, hash) = new_token();
    sqlx::query!(
        "INSERT INTO admin_tokens (admin_id, token_hash, expires_at) VALUES ($1, $2, now() + make_interval(hours => $3))",
        row.id,
        hash,
        TOKEN_TTL_HOURS as i32
    )
    .execute(&state.db)
    .await?;
    sqlx::query!(
        "UPDATE admin_users SET last_login_at = now() WHERE id = $1",
        row.id
    )
    .execute(&state.db)
    .await?;
    tracing::info!(admin_id = row.id, "admin signed in");
    Ok(Json(
        json!({"token": token, "admin": {"id": row.id, "email": email, "name": row.name}}),
    ))
}

async fn logout(S(state): S<State>, admin: Admin) -> AppResult<StatusCode> {
    sqlx::query!(
        "UPDATE admin_tokens SET revoked_at = now() WHERE id = $1",
        admin.token_id
    )
    .execute(&state.db)
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn me(admin: Admin) -> Json<Value> {
    Json(json!({"id": admin.id, "email": admin.email}))
}

// ---- stats and settings ---------------------------------------------------------------

async fn stats(S(state): S<State>, _admin: Admin) -> AppResult<Json<Value>> {
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

async fn settings(S(state): S<State>, _admin: Admin) -> AppResult<Json<Value>> {
    let enabled = sqlx::query_scalar!("SELECT limits_enabled FROM app_settings")
        .fetch_one(&state.db)
        .await?;
    Ok(Json(json!({"limits_enabled": enabled})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingsIn {
    limits_enabled: bool,
}

async fn update_settings(
    S(state): S<State>,
    admin: Admin,
    Json(b): Json<SettingsIn>,
) -> AppResult<Json<Value>> {
    sqlx::query!(
        "UPDATE app_settings SET limits_enabled = $1, updated_at = now()",
        b.limits_enabled
    )
    .execute(&state.db)
    .await?;
    tracing::info!(
        admin_id = admin.id,
        limits_enabled = b.limits_enabled,
        "settings changed"
    );
    Ok(Json(json!({"limits_enabled": b.limits_enabled})))
}

// ---- users ----------------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct UserRow {
    id: i64,
    email: String,
    first_name: String,
    last_name: String,
    email_verified: bool,
    is_active: bool,
    tier: String,
    is_free: bool,
    created_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct SearchParams {
    search: Option<String>,
}

async fn users(
    S(state): S<State>,
    _admin: Admin,
    page: Page,
    Query(p): Query<SearchParams>,
) -> AppResult<Json<Paginated<UserRow>>> {
    let pattern = p
        .search
        .map(|s| format!("%{}%", s.trim().to_lowercase().replace(['%', '_'], "")));
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM users u
            WHERE $1::text IS NULL OR u.email LIKE $1 OR lower(u.first_name || ' ' || u.last_name) LIKE $1"#,
        pattern
    )
    .fetch_one(&state.db)
    .await?;
    let rows = sqlx::query_as!(
        UserRow,
        r#"SELECT u.id, u.email, u.first_name, u.last_name, (u.email_verified_at IS NOT NULL) AS "email_verified!",
                  u.is_active, COALESCE(s.tier, 'free') AS "tier!", COALESCE(s.is_free, FALSE) AS "is_free!", u.created_at
             FROM users u LEFT JOIN user_subscriptions s ON s.user_id = u.id
            WHERE $1::text IS NULL OR u.email LIKE $1 OR lower(u.first_name || ' ' || u.last_name) LIKE $1
            ORDER BY u.id DESC LIMIT $2 OFFSET $3"#,
        pattern,
        page.limit(),
        page.offset()
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(Paginated::new(page, count, rows)))
}

async fn user_detail(
    S(state): S<State>,
    _admin: Admin,
    PathId(id): PathId,
) -> AppResult<Json<Value>> {
    let u = sqlx::query!(
        r#"SELECT u.id, u.email, u.first_name, u.last_name, u.timezone, u.email_verified_at, u.is_active, u.created_at,
                  s.tier AS "tier?", s.expires_at AS "expires_at?", s.is_free AS "is_free?", s.source AS "source?",
                  (SELECT count(*) FROM residences r WHERE r.owner_id = u.id) AS "residences_owned!",
                  (SELECT count(*) FROM residence_members m WHERE m.user_id = u.id) AS "memberships!",
                  (SELECT count(*) FROM auth_tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL AND t.expires_at > now()) AS "active_sessions!"
             FROM users u LEFT JOIN user_subscriptions s ON s.user_id = u.id
            WHERE u.id = $1"#,
        id
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound("user"))?;
    Ok(Json(json!({
        "id": u.id, "email": u.email, "first_name": u.first_name, "last_name": u.last_name, "timezone": u.timezone,
        "email_verified_at": u.email_verified_at, "is_active": u.is_active, "created_at": u.created_at,
        "subscription": {"tier": u.tier.unwrap_or_else(|| "free".into()), "expires_at": u.expires_at,
                         "is_free": u.is_free.unwrap_or(false), "source": u.source.unwrap_or_else(|| "none".into())},
        "residences_owned": u.residences_owned, "memberships": u.memberships, "active_sessions": u.active_sessions,
    })))
}

async fn deactivate(
    S(state): S<State>,
    admin: Admin,
    PathId(id): PathId,
) -> AppResult<Json<Value>> {
    let mut tx = state.db.begin().await?;
    let n = sqlx::query!(
        "UPDATE users SET is_active = FALSE, updated_at = now() WHERE id = $1",
        id
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(AppError::NotFound("user"));
    }
    let revoked = sqlx::query_scalar!(
        "UPDATE auth_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL RETURNING token_hash",
        id
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    honeydue_http::auth::evict_tokens(&state.cache, &revoked).await;
    tracing::info!(admin_id = admin.id, user_id = id, "user deactivated");
    Ok(Json(
        json!({"id": id, "is_active": false, "sessions_revoked": revoked.len()}),
    ))
}

async fn activate(S(state): S<State>, admin: Admin, PathId(id): PathId) -> AppResult<Json<Value>> {
    let n = sqlx::query!(
        "UPDATE users SET is_active = TRUE, updated_at = now() WHERE id = $1",
        id
    )
    .execute(&state.db)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(AppError::NotFound("user"));
    }
    tracing::info!(admin_id = admin.id, user_id = id, "user activated");
    Ok(Json(json!({"id": id, "is_active": true})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantIn {
    tier: Option<String>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    expires_at: Option<Option<DateTime<Utc>>>,
    is_free: Option<bool>,
}

async fn grant(
    S(state): S<State>,
    admin: Admin,
    PathId(id): PathId,
    Json(b): Json<GrantIn>,
) -> AppResult<Json<Value>> {
    let mut v = Validator::new();
    if let Some(t) = &b.tier {
        v.check(t == "free" || t == "pro", "tier", "Use free or pro.");
    }
    v.finish()?;
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM users WHERE id = $1) AS "x!""#,
        id
    )
    .fetch_one(&state.db)
    .await?;
    if !exists {
        return Err(AppError::NotFound("user"));
    }
    let s = sqlx::query!(
        "INSERT INTO user_subscriptions (user_id, tier, expires_at, is_free, source)
         VALUES ($1, COALESCE($2, 'free'), $4, COALESCE($5, FALSE), 'admin')
         ON CONFLICT (user_id) DO UPDATE SET
            tier = COALESCE($2, user_subscriptions.tier),
            expires_at = CASE WHEN $3 THEN $4 ELSE user_subscriptions.expires_at END,
            is_free = COALESCE($5, user_subscriptions.is_free),
            source = 'admin', updated_at = now()
         RETURNING tier, expires_at, is_free",
        id,
        b.tier,
        b.expires_at.is_some(),
        b.expires_at.flatten(),
        b.is_free
    )
    .fetch_one(&state.db)
    .await?;
    tracing::info!(
        admin_id = admin.id,
        user_id = id,
        tier = s.tier,
        is_free = s.is_free,
        "subscription granted"
    );
    Ok(Json(
        json!({"user_id": id, "tier": s.tier, "expires_at": s.expires_at, "is_free": s.is_free, "source": "admin"}),
    ))
}

// ---- residences and tasks -------------------------------------------------------------

async fn residences(
    S(state): S<State>,
    _admin: Admin,
    page: Page,
    Query(p): Query<SearchParams>,
) -> AppResult<Json<Value>> {
    let pattern = p
        .search
        .map(|s| format!("%{}%", s.trim().to_lowercase().replace(['%', '_'], "")));
    let rows = sqlx::query!(
        r#"SELECT r.id, r.name, r.city, r.owner_id, u.email AS owner_email, r.created_at,
                  (SELECT count(*) FROM residence_members m WHERE m.residence_id = r.id) AS "members!",
                  (SELECT count(*) FROM tasks t WHERE t.residence_id = r.id) AS "tasks!"
             FROM residences r JOIN users u ON u.id = r.owner_id
            WHERE $1::text IS NULL OR lower(r.name) LIKE $1 OR u.email LIKE $1
            ORDER BY r.id DESC LIMIT $2 OFFSET $3"#,
        pattern,
        page.limit(),
        page.offset()
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.listing(rows.into_iter().map(|r| json!({
        "id": r.id, "name": r.name, "city": r.city, "owner_id": r.owner_id, "owner_email": r.owner_email,
        "members": r.members, "tasks": r.tasks, "created_at": r.created_at})))))
}

#[derive(Deserialize)]
struct TaskParams {
    residence: Option<i64>,
}

async fn tasks(
    S(state): S<State>,
    _admin: Admin,
    page: Page,
    Query(p): Query<TaskParams>,
) -> AppResult<Json<Value>> {
    let rows = sqlx::query!(
        "SELECT id, residence_id, title, next_due_date, in_progress, is_cancelled, is_archived, created_at
           FROM tasks WHERE $1::bigint IS NULL OR residence_id = $1
          ORDER BY id DESC LIMIT $2 OFFSET $3",
        p.residence,
        page.limit(),
        page.offset()
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.listing(rows.into_iter().map(|t| json!({
        "id": t.id, "residence_id": t.residence_id, "title": t.title, "next_due_date": t.next_due_date,
        "in_progress": t.in_progress, "is_cancelled": t.is_cancelled, "is_archived": t.is_archived,
        "created_at": t.created_at})))))
}

// ---- lookups -------------------------------------------------------------------------------

/// The editable lookup tables and their columns (name, then extras). The
/// table name is taken from this list only, never from the request.
const LOOKUPS: &[(&str, &[&str])] = &[
    ("residence_types", &["name", "sort_order"]),
    ("task_categories", &["name", "icon", "color", "sort_order"]),
    ("task_priorities", &["name", "level", "color", "sort_order"]),
    (
        "task_frequencies",
        &[
            "name",
            "interval_days",
            "interval_months",
            "reminder_offsets",
            "sort_order",
        ],
    ),
    ("contractor_specialties", &["name", "sort_order"]),
];

fn lookup_table(kind: &str) -> AppResult<(&'static str, &'static [&'static str])> {
    LOOKUPS
        .iter()
        .find(|(t, _)| *t == kind)
        .map(|(t, c)| (*t, *c))
        .ok_or(AppError::NotFound("lookup kind"))
}

async fn lookups(
    S(state): S<State>,
    _admin: Admin,
    Path(kind): Path<String>,
) -> AppResult<Json<Value>> {
    let (table, _) = lookup_table(&kind)?;
    let rows: Vec<Value> = sqlx::query_scalar(&format!(
        "SELECT to_jsonb(x) FROM {table} x ORDER BY sort_order, id"
    ))
    .fetch_all(&state.db)
    .await?;
    Ok(Json(Value::Array(rows)))
}

/// Checks a lookup body against the table's columns; returns the values as
/// a JSON object Postgres can read with `jsonb_populate_record`.
fn lookup_values(cols: &[&str], body: &Value, creating: bool) -> AppResult<Map<String, Value>> {
    let obj = body
        .as_object()
        .ok_or_else(|| AppError::BadRequest("Send a JSON object.".into()))?;
    let mut v = Validator::new();
    for k in obj.keys() {
        v.check(
            cols.contains(&k.as_str()),
            k,
            "Unknown field for this lookup.",
        );
    }
    match obj.get("name") {
        Some(Value::String(n)) => v.check(
            !n.trim().is_empty() && n.chars().count() <= 100,
            "name",
            "Enter a name of at most 100 characters.",
        ),
        Some(_) => v.add("name", "Must be a string."),
        None if creating => v.add("name", "This field is required."),
        None => {}
    }
    v.finish()?;
    Ok(obj.clone())
}

fn lookup_conflict(e: sqlx::Error) -> AppError {
    match &e {
        sqlx::Error::Database(d) if d.constraint().is_some_and(|c| c.ends_with("_name_key")) => {
            AppError::conflict("duplicate_name", "A lookup with this name already exists.")
        }
        sqlx::Error::Database(d)
            if d.code().as_deref() == Some("23514") || d.code().as_deref() == Some("22P02") =>
        {
            AppError::field("non_field_errors", "Invalid values for this lookup.")
        }
        sqlx::Error::Database(d) if d.code().as_deref() == Some("23503") => {
            AppError::conflict("in_use", "This lookup is in use.")
        }
        _ => e.into(),
    }
}

async fn create_lookup(
    S(state): S<State>,
    admin: Admin,
    Path(kind): Path<String>,
    Json(body): Json<Value>,
) -> AppResult<impl IntoResponse> {
    let (table, cols) = lookup_table(&kind)?;
    let values = lookup_values(cols, &body, true)?;
    let keys: Vec<&str> = values.keys().map(String::as_str).collect();
    let list = keys.join(", ");
    let row: Value = sqlx::query_scalar(&format!(
        "INSERT INTO {table} ({list}) SELECT {list} FROM jsonb_populate_record(NULL::{table}, $1) RETURNING to_jsonb({table}.*)"
    ))
    .bind(Value::Object(values.clone()))
    .fetch_one(&state.db)
    .await
    .map_err(lookup_conflict)?;
    tracing::info!(admin_id = admin.id, table, "lookup created");
    Ok((StatusCode::CREATED, Json(row)))
}

async fn update_lookup(
    S(state): S<State>,
    admin: Admin,
    Path((kind, id)): Path<(String, i32)>,
    Json(body): Json<Value>,
) -> AppResult<Json<Value>> {
    let (table, cols) = lookup_table(&kind)?;
    let values = lookup_values(cols, &body, false)?;
    if values.is_empty() {
        return Err(AppError::BadRequest("Nothing to change.".into()));
    }
    let sets: Vec<String> = values.keys().map(|k| format!("{k} = r.{k}")).collect();
    let row: Option<Value> = sqlx::query_scalar(&format!(
        "UPDATE {table} t SET {} FROM jsonb_populate_record(NULL::{table}, $1) r WHERE t.id = $2 RETURNING to_jsonb(t.*)",
        sets.join(", ")
    ))
    .bind(Value::Object(values))
    .bind(id)
    .fetch_optional(&state.db)
    .await
    .map_err(lookup_conflict)?;
    tracing::info!(admin_id = admin.id, table, id, "lookup changed");
    row.map(Json).ok_or(AppError::NotFound("lookup"))
}

async fn delete_lookup(
    S(state): S<State>,
    admin: Admin,
    Path((kind, id)): Path<(String, i32)>,
) -> AppResult<StatusCode> {
    let (table, _) = lookup_table(&kind)?;
    let n = sqlx::query(&format!("DELETE FROM {table} WHERE id = $1"))
        .bind(id)
        .execute(&state.db)
        .await
        .map_err(lookup_conflict)?
        .rows_affected();
    if n == 0 {
        return Err(AppError::NotFound("lookup"));
    }
    tracing::info!(admin_id = admin.id, table, id, "lookup deleted");
    Ok(StatusCode::NO_CONTENT)
}

// ---- email outbox ------------------------------------------------------------------------

#[derive(Deserialize)]
struct OutboxParams {
    status: Option<String>,
}

async fn outbox(
    S(state): S<State>,
    _admin: Admin,
    page: Page,
    Query(p): Query<OutboxParams>,
) -> AppResult<Json<Value>> {
    if let Some(s) = &p.status {
        if !["pending", "sent", "dead"].contains(&s.as_str()) {
            return Err(AppError::field("status", "Use pending, sent or dead."));
        }
    }
    // Bodies are not listed, nor the subject of an email that carries a
    // one-time code (redacted once sent; hidden here while pending).
    let rows = sqlx::query!(
        r#"SELECT id, user_id, kind, to_address,
                  CASE WHEN kind = ANY($4) THEN $5 ELSE subject END AS "subject!",
                  status, attempts, next_attempt_at, last_error, created_at, sent_at
           FROM email_outbox WHERE $1::text IS NULL OR status = $1
          ORDER BY id DESC LIMIT $2 OFFSET $3"#,
        p.status,
        page.limit(),
        page.offset(),
        honeydue_mail::CODE_KINDS as &[&str],
        "[carries a one-time code]"
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.listing(rows.into_iter().map(|r| json!({
        "id": r.id, "user_id": r.user_id, "kind": r.kind, "to": r.to_address, "subject": r.subject, "status": r.status,
        "attempts": r.attempts, "next_attempt_at": r.next_attempt_at, "last_error": r.last_error,
        "created_at": r.created_at, "sent_at": r.sent_at})))))
}

#[derive(Deserialize)]
struct OnboardingParams {
    user: Option<i64>,
    step: Option<String>,
}

/// Onboarding emails: which step went to whom, when, and whether the email
/// was delivered (resend through its outbox row).
async fn onboarding(
    S(state): S<State>,
    _admin: Admin,
    page: Page,
    Query(p): Query<OnboardingParams>,
) -> AppResult<Json<Value>> {
    if let Some(s) = &p.step {
        if !["welcome", "verify_reminder", "no_residence", "no_tasks"].contains(&s.as_str()) {
            return Err(AppError::field(
                "step",
                "Use welcome, verify_reminder, no_residence or no_tasks.",
            ));
        }
    }
    let rows = sqlx::query!(
        r#"SELECT o.user_id, u.email, o.step, o.sent_for, o.sent_at, o.outbox_id,
                  e.status AS "email_status?"
             FROM onboarding_emails o
             JOIN users u ON u.id = o.user_id
             LEFT JOIN email_outbox e ON e.id = o.outbox_id
            WHERE ($1::bigint IS NULL OR o.user_id = $1) AND ($2::text IS NULL OR o.step = $2)
            ORDER BY o.sent_at DESC, o.user_id, o.step
            LIMIT $3 OFFSET $4"#,
        p.user,
        p.step,
        page.limit(),
        page.offset()
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.listing(rows.into_iter().map(|r| json!({
        "user_id": r.user_id, "email": r.email, "step": r.step, "sent_for": r.sent_for, "sent_at": r.sent_at,
        "outbox_id": r.outbox_id, "email_status": r.email_status})))))
}

#[derive(Deserialize)]
struct JobRunParams {
    job: Option<String>,
}

/// Scheduled runs, newest slot first.
async fn job_runs(
    S(state): S<State>,
    _admin: Admin,
    page: Page,
    Query(p): Query<JobRunParams>,
) -> AppResult<Json<Value>> {
    let rows = sqlx::query!(
        "SELECT job, scheduled_for, status, attempts, started_at, finished_at, stats, last_error
           FROM job_runs WHERE $1::text IS NULL OR job = $1
          ORDER BY scheduled_for DESC, job LIMIT $2 OFFSET $3",
        p.job,
        page.limit(),
        page.offset()
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(page.listing(rows.into_iter().map(|r| json!({
        "job": r.job, "scheduled_for": r.scheduled_for, "status": r.status, "attempts": r.attempts,
        "started_at": r.started_at, "finished_at": r.finished_at, "stats": r.stats, "last_error": r.last_error,
    })))))
}

async fn resend(S(state): S<State>, admin: Admin, PathId(id): PathId) -> AppResult<Json<Value>> {
    let kind = sqlx::query_scalar!("SELECT kind FROM email_outbox WHERE id = $1", id)
        .fetch_optional(&state.db)
        .await?
        .ok_or(AppError::NotFound("email"))?;
    if honeydue_mail::CODE_KINDS.contains(&kind.as_str()) {
        return Err(AppError::conflict(
            "one_time_code",
            "This email carried a one-time code, which is not kept; the user asks for a new code instead.",
        ));
    }
    let row = sqlx::query!(
        "UPDATE email_outbox SET status = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL
          WHERE id = $1 RETURNING id, status",
        id
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound("email"))?;
    tracing::info!(admin_id = admin.id, email_id = id, "email queued again");
    Ok(Json(json!({"id": row.id, "status": row.status})))
}
