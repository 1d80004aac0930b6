//! Sharing a home: the owner's share code (read, create or replace,
//! revoke), and joining with a code, limited against guessing.

use axum::extract::State as S;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use honeydue_core::{membership, AppError, AppResult, Validator};
use honeydue_http::{AuthUser, ClientIp, Json, Limit, PathId, State};
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Value};

use super::load;

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

pub(super) async fn get_share(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
) -> AppResult<Json<Value>> {
    let mut conn = state.db.acquire().await?;
    membership::owner(&mut conn, user.id, id).await?;
    Ok(Json(share_out(&state.db, id).await?))
}

pub(super) async fn create_share(
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
            Err(e) if honeydue_core::constraint::violates(&e, "residence_share_codes_code_key") => {
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

pub(super) async fn revoke_share(
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
pub(super) struct JoinIn {
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

pub(super) async fn join(
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
    // The home's other members are told who joined (kind `shared`).
    let joined = sqlx::query!(
        r#"SELECT r.name, COALESCE(NULLIF(trim(u.first_name), ''), 'Someone') AS "who!"
             FROM residences r, users u WHERE r.id = $1 AND u.id = $2"#,
        share.residence_id,
        user.id
    )
    .fetch_one(&mut *tx)
    .await?;
    let others = sqlx::query_scalar!(
        "SELECT user_id FROM residence_members WHERE residence_id = $1 AND user_id <> $2",
        share.residence_id,
        user.id
    )
    .fetch_all(&mut *tx)
    .await?;
    let notices: Vec<honeydue_core::notify::Notice> = others
        .into_iter()
        .map(|to| honeydue_core::notify::Notice {
            user_id: to,
            kind: "shared",
            title: format!("{} joined {}", joined.who, joined.name),
            body: format!("{} now shares {} with you.", joined.who, joined.name),
            data: json!({"event": "member_joined", "residence_id": share.residence_id, "user_id": user.id}),
        })
        .collect();
    honeydue_mail::events::notify(&mut tx, &state.cfg.app, &notices).await?;
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
