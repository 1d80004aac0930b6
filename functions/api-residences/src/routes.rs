//! Handlers of `/api/residences/`.

use axum::extract::{Path, State as S};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use honeydue_core::domain::board::{column, Column, TaskState};
use honeydue_core::domain::roles::Role;
use honeydue_core::{membership, AppError, AppResult, Validator};
use honeydue_http::{AuthUser, ClientIp, Json, Limit, Page, Paginated, PathId, State};
use rand::Rng;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

honeydue_http::routes! { State;
    GET "/api/residences/" => list, User, "Residences the caller belongs to";
    POST "/api/residences/" => create, User, "Create a residence (tier-limited)";
    POST "/api/residences/join/" => join, User, "Join a residence with a share code";
    GET "/api/residences/{id}/" => detail, User, "One residence";
    PATCH "/api/residences/{id}/" => update, User, "Change a residence (owner, member)";
    DELETE "/api/residences/{id}/" => remove, User, "Delete a residence (owner)";
    GET "/api/residences/{id}/share/" => get_share, User, "The active share code (owner)";
    POST "/api/residences/{id}/share/" => create_share, User, "Create or replace the share code (owner)";
    DELETE "/api/residences/{id}/share/" => revoke_share, User, "Revoke the share code (owner)";
    GET "/api/residences/{id}/users/" => members, User, "Members and their roles";
    DELETE "/api/residences/{id}/users/{user_id}/" => remove_member, User, "Remove a member (owner)";
    POST "/api/residences/{id}/leave/" => leave, User, "Leave a residence (not the owner)";
    GET "/api/residences/{id}/summary/" => summary, User, "Task counts per column and spend this year";
}

#[derive(Debug, Serialize)]
struct ResidenceOut {
    id: i64,
    name: String,
    residence_type_id: Option<i32>,
    street: String,
    city: String,
    state: String,
    postal_code: String,
    country: String,
    year_built: Option<i32>,
    sqft: Option<i32>,
    bedrooms: Option<i32>,
    bathrooms: Option<Decimal>,
    purchase_date: Option<NaiveDate>,
    notes: String,
    image_upload_id: Option<uuid::Uuid>,
    owner_id: i64,
    is_owner: bool,
    role: String,
    member_count: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

async fn load(db: &sqlx::PgPool, user_id: i64, id: i64) -> AppResult<ResidenceOut> {
    sqlx::query_as!(
        ResidenceOut,
        r#"SELECT r.id, r.name, r.residence_type_id, r.street, r.city, r.state, r.postal_code, r.country,
                  r.year_built, r.sqft, r.bedrooms, r.bathrooms, r.purchase_date, r.notes, r.image_upload_id,
                  r.owner_id, (r.owner_id = $1) AS "is_owner!", m.role,
                  (SELECT count(*) FROM residence_members x WHERE x.residence_id = r.id) AS "member_count!",
                  r.created_at, r.updated_at
             FROM residences r
             JOIN residence_members m ON m.residence_id = r.id AND m.user_id = $1
            WHERE r.id = $2"#,
        user_id,
        id
    )
    .fetch_optional(db)
    .await?
    .ok_or(AppError::NotFound("residence"))
}

async fn list(
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
struct ResidenceIn {
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

fn map_fk(e: sqlx::Error) -> AppError {
    match &e {
        sqlx::Error::Database(d) if d.constraint() == Some("residences_residence_type_id_fkey") => {
            AppError::field("residence_type_id", "Unknown residence type.")
        }
        _ => e.into(),
    }
}

async fn create(
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
    .map_err(map_fk)?;
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

async fn detail(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
) -> AppResult<Json<ResidenceOut>> {
    Ok(Json(load(&state.db, user.id, id).await?))
}

async fn update(
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
    .map_err(map_fk)?;
    Ok(Json(load(&state.db, user.id, id).await?))
}

async fn remove(S(state): S<State>, user: AuthUser, PathId(id): PathId) -> AppResult<StatusCode> {
    let mut conn = state.db.acquire().await?;
    membership::owner(&mut conn, user.id, id).await?;
    sqlx::query!("DELETE FROM residences WHERE id = $1", id)
        .execute(&mut *conn)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- sharing -------------------------------------------------------------------

/// Share codes: 8 characters from an alphabet without look-alikes (32
/// symbols: 40 bits), single-use unless the owner allows more joins.
///
/// Guessing is limited for the whole system, not per caller, in Postgres
/// (so it holds without Redis and across new accounts): every failed entry
/// is recorded; past [`FREE_FAILURES`] in a day an account or an address
/// waits 1 minute, doubling with each further failure (at most a day); and
/// past [`GLOBAL_FAILURES_PER_HOUR`] failures in the last hour nobody may
/// try until the oldest leaves the hour. So at most 7,200 wrong guesses a
/// day are made against 32^8 = 1.1e12 codes: with 10,000 live codes an
/// attacker needs 1.1e8 guesses per code found on average, about 42 years
/// of the whole system's budget (README, "Security").
const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Characters in a share code.
const CODE_LEN: usize = 8;
/// Failed entries per account or per address in a day before back-off.
const FREE_FAILURES: i64 = 5;
/// Failed entries in the whole system per hour before every join waits.
const GLOBAL_FAILURES_PER_HOUR: i64 = 300;

fn new_share_code() -> String {
    let mut rng = rand::rngs::OsRng;
    (0..CODE_LEN)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareIn {
    role: Option<String>,
    expires_in_hours: Option<i64>,
    max_uses: Option<i64>,
}

async fn share_out(db: &sqlx::PgPool, id: i64) -> AppResult<Value> {
    let s = sqlx::query!(
        "SELECT code, role, expires_at, created_at, max_uses, uses FROM residence_share_codes
          WHERE residence_id = $1 AND expires_at > now() AND uses < max_uses",
        id
    )
    .fetch_optional(db)
    .await?
    .ok_or(AppError::NotFound("share code"))?;
    Ok(
        json!({"code": s.code, "role": s.role, "expires_at": s.expires_at, "created_at": s.created_at,
              "max_uses": s.max_uses, "uses": s.uses}),
    )
}

async fn get_share(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
) -> AppResult<Json<Value>> {
    let mut conn = state.db.acquire().await?;
    membership::owner(&mut conn, user.id, id).await?;
    Ok(Json(share_out(&state.db, id).await?))
}

async fn create_share(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
    raw: axum::body::Bytes,
) -> AppResult<impl IntoResponse> {
    // The body is optional: an empty POST takes the defaults.
    let body: ShareIn = if raw.iter().all(|b| b.is_ascii_whitespace()) {
        ShareIn::default()
    } else {
        honeydue_http::extract::parse_json(&raw)?
    };
    let mut conn = state.db.acquire().await?;
    membership::owner(&mut conn, user.id, id).await?;
    let mut v = Validator::new();
    let role = body.role.unwrap_or_else(|| "member".into());
    v.check(
        role == "member" || role == "viewer",
        "role",
        "Use member or viewer.",
    );
    let hours = body.expires_in_hours.unwrap_or(168);
    v.check(
        (1..=720).contains(&hours),
        "expires_in_hours",
        "Between 1 and 720 hours.",
    );
    let max_uses = body.max_uses.unwrap_or(1);
    v.check(
        (1..=10).contains(&max_uses),
        "max_uses",
        "Between 1 and 10 joins.",
    );
    v.finish()?;
    // One active code per residence: a new one replaces the old. Retry on
    // the (unlikely) collision of a random code with another residence's.
    for _ in 0..5 {
        let r = sqlx::query!(
            "INSERT INTO residence_share_codes (residence_id, code, role, created_by, expires_at, max_uses)
             VALUES ($1, $2, $3, $4, now() + make_interval(hours => $5), $6)
             ON CONFLICT (residence_id) DO UPDATE
               SET code = EXCLUDED.code, role = EXCLUDED.role, created_by = EXCLUDED.created_by,
                   expires_at = EXCLUDED.expires_at, created_at = now(),
                   max_uses = EXCLUDED.max_uses, uses = 0",
            id,
            new_share_code(),
            role,
            user.id,
            hours as i32,
            max_uses as i32
        )
        .execute(&mut *conn)
        .await;
        match r {
            Ok(_) => return Ok((StatusCode::CREATED, Json(share_out(&state.db, id).await?))),
            Err(sqlx::Error::Database(d))
                if d.constraint() == Some("residence_share_codes_code_key") =>
            {
                continue
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(AppError::Internal(anyhow_err(
        "could not find a free share code",
    )))
}

fn anyhow_err(m: &str) -> anyhow::Error {
    anyhow::anyhow!(m.to_string())
}

async fn revoke_share(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
) -> AppResult<StatusCode> {
    let mut conn = state.db.acquire().await?;
    membership::owner(&mut conn, user.id, id).await?;
    sqlx::query!(
        "DELETE FROM residence_share_codes WHERE residence_id = $1",
        id
    )
    .execute(&mut *conn)
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct JoinIn {
    code: String,
}

/// Share-code attempts per account (Redis, a fast first gate; the durable
/// limits are [`check_join_budget`]'s).
const JOIN_PER_ACCOUNT: Limit = Limit {
    scope: "join:acct",
    max: 10,
    window: std::time::Duration::from_secs(15 * 60),
};
/// Share-code attempts per client address (Redis, as above).
const JOIN_PER_IP: Limit = Limit {
    scope: "join:ip",
    max: 30,
    window: std::time::Duration::from_secs(15 * 60),
};

/// The durable join limits (see [`ALPHABET`]): 429 with the wait when the
/// whole system's hourly budget of failures is spent, or when this account
/// or address is in back-off.
async fn check_join_budget(db: &sqlx::PgPool, user_id: i64, addr: Option<&[u8]>) -> AppResult<()> {
    let r = sqlx::query!(
        r#"SELECT
             count(*) FILTER (WHERE failed_at > now() - interval '1 hour') AS "global_hour!",
             EXTRACT(EPOCH FROM (min(failed_at) FILTER (WHERE failed_at > now() - interval '1 hour')
                                 + interval '1 hour' - now()))::bigint AS global_wait_secs,
             count(*) FILTER (WHERE user_id = $1) AS "account!",
             count(*) FILTER (WHERE addr_hash = $2) AS "addr!",
             EXTRACT(EPOCH FROM (now() - max(failed_at) FILTER (WHERE user_id = $1 OR addr_hash = $2)))::bigint
               AS since_last_secs
           FROM share_code_failures WHERE failed_at > now() - interval '1 day'"#,
        user_id,
        addr
    )
    .fetch_one(db)
    .await?;
    if r.global_hour >= GLOBAL_FAILURES_PER_HOUR {
        tracing::warn!(
            failures_last_hour = r.global_hour,
            "share-code joins paused for everyone"
        );
        return Err(AppError::RateLimited {
            retry_after_secs: r.global_wait_secs.unwrap_or(60).max(1) as u64,
        });
    }
    let failures = r.account.max(r.addr);
    if failures >= FREE_FAILURES {
        let wait = 60i64
            .saturating_mul(1i64 << (failures - FREE_FAILURES).min(20))
            .min(86_400);
        let since = r.since_last_secs.unwrap_or(i64::MAX);
        if since < wait {
            return Err(AppError::RateLimited {
                retry_after_secs: (wait - since).max(1) as u64,
            });
        }
    }
    Ok(())
}

async fn join(
    S(state): S<State>,
    ip: ClientIp,
    user: AuthUser,
    Json(body): Json<JoinIn>,
) -> AppResult<impl IntoResponse> {
    JOIN_PER_IP.check_addr(&state.cache, &ip).await?;
    JOIN_PER_ACCOUNT
        .check(&state.cache, &user.id.to_string())
        .await?;
    let code = body.code.trim().to_ascii_uppercase();
    if code.len() != CODE_LEN || !code.bytes().all(|b| ALPHABET.contains(&b)) {
        return Err(AppError::field(
            "code",
            "Enter the 8-character code you were given.",
        ));
    }
    let addr = ip.0.as_deref().map(honeydue_core::auth::hash_token);
    check_join_budget(&state.db, user.id, addr.as_deref()).await?;
    let mut tx = state.db.begin().await?;
    let share = sqlx::query!(
        "SELECT id, residence_id, role, max_uses, uses FROM residence_share_codes
          WHERE code = $1 AND expires_at > now() AND uses < max_uses
          FOR UPDATE",
        code
    )
    .fetch_optional(&mut *tx)
    .await?;
    let Some(share) = share else {
        drop(tx);
        sqlx::query!(
            "WITH old AS (DELETE FROM share_code_failures WHERE failed_at < now() - interval '2 days')
             INSERT INTO share_code_failures (user_id, addr_hash) VALUES ($1, $2)",
            user.id,
            addr
        )
        .execute(&state.db)
        .await?;
        return Err(AppError::NotFound("share code"));
    };
    let inserted = sqlx::query!(
        "INSERT INTO residence_members (residence_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (residence_id, user_id) DO NOTHING",
        share.residence_id,
        user.id,
        share.role
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(AppError::conflict(
            "already_member",
            "You are already a member of this residence.",
        ));
    }
    // A code is used up after its joins: it stops working.
    if share.uses + 1 >= share.max_uses {
        sqlx::query!("DELETE FROM residence_share_codes WHERE id = $1", share.id)
            .execute(&mut *tx)
            .await?;
    } else {
        sqlx::query!(
            "UPDATE residence_share_codes SET uses = uses + 1 WHERE id = $1",
            share.id
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(load(&state.db, user.id, share.residence_id).await?),
    ))
}

#[derive(Debug, Serialize)]
struct MemberOut {
    id: i64,
    email: String,
    first_name: String,
    last_name: String,
    role: String,
    joined_at: DateTime<Utc>,
}

async fn members(
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

async fn remove_member(
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

async fn leave(S(state): S<State>, user: AuthUser, PathId(id): PathId) -> AppResult<StatusCode> {
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

async fn summary(S(state): S<State>, user: AuthUser, PathId(id): PathId) -> AppResult<Json<Value>> {
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
