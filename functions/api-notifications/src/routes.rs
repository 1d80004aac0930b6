//! Handlers of `/api/notifications/` and `/api/unsubscribe/{token}/`.

use axum::extract::{Path, State as S};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use honeydue_core::domain::notifications::{Hour, Kind};
use honeydue_core::{AppError, AppResult, Validator};
use honeydue_http::{AuthUser, Json, Page, Paginated, State};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sqlx::PgConnection;

honeydue_http::routes! { State;
    GET "/api/notifications/" => list, User, "The inbox, newest first";
    POST "/api/notifications/{id}/read/" => read_one, User, "Mark one read";
    POST "/api/notifications/read-all/" => read_all, User, "Mark all read";
    GET "/api/notifications/unread-count/" => unread_count, User, "Unread count";
    GET "/api/notifications/devices/" => devices, User, "Registered push devices";
    POST "/api/notifications/devices/" => register_device, User, "Register a push device";
    DELETE "/api/notifications/devices/{id}/" => remove_device, User, "Remove a push device";
    GET "/api/notifications/preferences/" => preferences, User, "Notification preferences";
    PATCH "/api/notifications/preferences/" => update_preferences, User, "Change notification preferences";
    GET "/api/unsubscribe/{token}/" => unsubscribe_page, Public, "Unsubscribe link (signed)";
    POST "/api/unsubscribe/{token}/" => unsubscribe_one_click, Public, "One-click unsubscribe (RFC 8058)";
}

fn id_of(raw: &str, what: &'static str) -> AppResult<i64> {
    raw.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or(AppError::NotFound(what))
}

#[derive(Debug, Serialize)]
struct NotificationOut {
    id: i64,
    kind: String,
    title: String,
    body: String,
    data: Value,
    is_read: bool,
    read_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

async fn list(
    S(state): S<State>,
    user: AuthUser,
    page: Page,
) -> AppResult<Json<Paginated<NotificationOut>>> {
    let count = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM notifications WHERE user_id = $1"#,
        user.id
    )
    .fetch_one(&state.db)
    .await?;
    let rows = sqlx::query_as!(
        NotificationOut,
        r#"SELECT id, kind, title, body, data, (read_at IS NOT NULL) AS "is_read!", read_at, created_at
             FROM notifications WHERE user_id = $1
            ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"#,
        user.id,
        page.limit(),
        page.offset()
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(Paginated::new(page, count, rows)))
}

async fn read_one(
    S(state): S<State>,
    user: AuthUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = id_of(&id, "notification")?;
    let n = sqlx::query!(
        "UPDATE notifications SET read_at = COALESCE(read_at, now()) WHERE id = $1 AND user_id = $2",
        id,
        user.id
    )
    .execute(&state.db)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(AppError::NotFound("notification"));
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn read_all(S(state): S<State>, user: AuthUser) -> AppResult<Json<Value>> {
    let n = sqlx::query!(
        "UPDATE notifications SET read_at = now() WHERE user_id = $1 AND read_at IS NULL",
        user.id
    )
    .execute(&state.db)
    .await?
    .rows_affected();
    Ok(Json(json!({"marked_read": n})))
}

async fn unread_count(S(state): S<State>, user: AuthUser) -> AppResult<Json<Value>> {
    let n = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM notifications WHERE user_id = $1 AND read_at IS NULL"#,
        user.id
    )
    .fetch_one(&state.db)
    .await?;
    Ok(Json(json!({"unread_count": n})))
}

// ---- devices ---------------------------------------------------------------------

#[derive(Debug, Serialize)]
struct DeviceOut {
    id: i64,
    platform: String,
    /// False once Apple or Google said its token is gone (registering the
    /// token again turns it back on).
    active: bool,
    created_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
}

async fn devices(S(state): S<State>, user: AuthUser) -> AppResult<Json<Vec<DeviceOut>>> {
    let rows = sqlx::query_as!(
        DeviceOut,
        "SELECT id, platform, active, created_at, last_seen_at FROM devices WHERE user_id = $1 ORDER BY id",
        user.id
    )
    .fetch_all(&state.db)
    .await?;
    Ok(Json(rows))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceIn {
    platform: String,
    token: String,
}

/// Registers the caller's push device. A push token belongs to one app
/// install, so whoever registered it last owns it: registering a token
/// that another account holds moves it here (a reinstalled app or a phone
/// that changed hands must work without its previous owner's help). It
/// never moves silently: the other account's device row is removed (it gets
/// no more pushes through this token) and that account gets an in-app
/// `device_moved` notification, which names neither the token nor the
/// account it went to. Refusing with 409 was the alternative; it would
/// strand every legitimate re-registration.
async fn register_device(
    S(state): S<State>,
    user: AuthUser,
    Json(b): Json<DeviceIn>,
) -> AppResult<impl IntoResponse> {
    let mut v = Validator::new();
    v.check(
        b.platform == "ios" || b.platform == "android",
        "platform",
        "Use ios or android.",
    );
    let token = b.token.trim();
    v.check(
        !token.is_empty() && token.len() <= 4096,
        "token",
        "Give the device's push token.",
    );
    v.finish()?;
    let mut tx = state.db.begin().await?;
    // Registers the token, or locks the row that already has it.
    let held = sqlx::query!(
        "INSERT INTO devices (user_id, platform, token) VALUES ($1, $2, $3)
         ON CONFLICT (platform, token) DO UPDATE
            SET last_seen_at = now(), active = TRUE, deactivated_at = NULL, deactivated_reason = NULL
         RETURNING id, user_id",
        user.id,
        b.platform,
        token
    )
    .fetch_one(&mut *tx)
    .await?;
    let id = if held.user_id == user.id {
        held.id
    } else {
        // Another account's device: its row goes, this account gets a new
        // one (no id or dates carried over), and its owner is told.
        sqlx::query!("DELETE FROM devices WHERE id = $1", held.id)
            .execute(&mut *tx)
            .await?;
        let id = sqlx::query_scalar!(
            "INSERT INTO devices (user_id, platform, token) VALUES ($1, $2, $3) RETURNING id",
            user.id,
            b.platform,
            token
        )
        .fetch_one(&mut *tx)
        .await?;
        let device = if b.platform == "ios" {
            "iOS"
        } else {
            "Android"
        };
        honeydue_core::notify::notify(
            &mut tx,
            &[honeydue_core::notify::Notice {
                user_id: held.user_id,
                kind: "device_moved",
                title: "A device was moved to another account".into(),
                body: format!(
                    "An {device} device that received this account's notifications was registered \
                     by another honeyDue account and no longer receives them. If that was not you, \
                     sign in again on that device."
                ),
                data: json!({"device_id": held.id, "platform": b.platform}),
            }],
        )
        .await?;
        id
    };
    let d = sqlx::query_as!(
        DeviceOut,
        "SELECT id, platform, active, created_at, last_seen_at FROM devices WHERE id = $1",
        id
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(d)))
}

async fn remove_device(
    S(state): S<State>,
    user: AuthUser,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let id = id_of(&id, "device")?;
    let n = sqlx::query!(
        "DELETE FROM devices WHERE id = $1 AND user_id = $2",
        id,
        user.id
    )
    .execute(&state.db)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(AppError::NotFound("device"));
    }
    Ok(StatusCode::NO_CONTENT)
}

// ---- preferences -----------------------------------------------------------------

struct Prefs {
    kinds: Value,
    email_enabled: bool,
    push_enabled: bool,
    /// Local hours [start, end) when pushes wait.
    quiet_hours: Option<(i16, i16)>,
    due_soon_hour: Option<i16>,
    overdue_hour: Option<i16>,
    digest_hour: Option<i16>,
}

impl Prefs {
    /// The user's hour for a setting (`None`: the default).
    fn hour(&self, h: Hour) -> Option<i16> {
        match h {
            Hour::DueSoon => self.due_soon_hour,
            Hour::Overdue => self.overdue_hour,
            Hour::Digest => self.digest_hour,
        }
    }
}

async fn load_prefs(conn: &mut PgConnection, user_id: i64) -> AppResult<Prefs> {
    let row = sqlx::query!(
        "SELECT kinds, email_enabled, push_enabled, quiet_hours_start, quiet_hours_end, due_soon_hour, overdue_hour,
                digest_hour
           FROM notification_preferences WHERE user_id = $1",
        user_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some(r) => Prefs {
            kinds: r.kinds,
            email_enabled: r.email_enabled,
            push_enabled: r.push_enabled,
            quiet_hours: r.quiet_hours_start.zip(r.quiet_hours_end),
            due_soon_hour: r.due_soon_hour,
            overdue_hour: r.overdue_hour,
            digest_hour: r.digest_hour,
        },
        None => Prefs {
            kinds: json!({}),
            email_enabled: true,
            push_enabled: true,
            quiet_hours: None,
            due_soon_hour: None,
            overdue_hour: None,
            digest_hour: None,
        },
    })
}

fn prefs_out(p: &Prefs, timezone: &str) -> Value {
    let mut kinds = Map::new();
    for k in Kind::PREFERENCES.map(Kind::as_str) {
        let stored = &p.kinds[k];
        kinds.insert(
            k.into(),
            json!({
                "enabled": stored["enabled"].as_bool().unwrap_or(true),
                "email": stored["email"].as_bool().unwrap_or(true),
                "push": stored["push"].as_bool().unwrap_or(true),
            }),
        );
    }
    let mut hours = Map::new();
    for h in Hour::ALL {
        let v = p.hour(h);
        hours.insert(
            h.kind().as_str().into(),
            json!({"hour": v, "default_utc_hour": h.default_utc_hour(), "uses_default": v.is_none()}),
        );
    }
    json!({
        "kinds": kinds,
        "email_enabled": p.email_enabled,
        "push_enabled": p.push_enabled,
        "quiet_hours": p.quiet_hours.map(|(start, end)| json!({"start": start, "end": end})),
        "timezone": timezone,
        "hours": hours,
    })
}

async fn preferences(S(state): S<State>, user: AuthUser) -> AppResult<Json<Value>> {
    let mut conn = state.db.acquire().await?;
    let p = load_prefs(&mut conn, user.id).await?;
    Ok(Json(prefs_out(&p, &user.timezone)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KindIn {
    enabled: Option<bool>,
    email: Option<bool>,
    push: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuietIn {
    start: i16,
    end: i16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrefsIn {
    kinds: Option<std::collections::BTreeMap<String, KindIn>>,
    email_enabled: Option<bool>,
    push_enabled: Option<bool>,
    /// `{"start": h, "end": h}` (local hours, `end` excluded, wrapping past
    /// midnight when `start > end`), or null for none.
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    quiet_hours: Option<Option<QuietIn>>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    due_soon_hour: Option<Option<i16>>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    overdue_hour: Option<Option<i16>>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    digest_hour: Option<Option<i16>>,
}

async fn update_preferences(
    S(state): S<State>,
    user: AuthUser,
    Json(b): Json<PrefsIn>,
) -> AppResult<Json<Value>> {
    let mut v = Validator::new();
    if let Some(kinds) = &b.kinds {
        for k in kinds.keys() {
            v.check(
                Kind::preference(k).is_some(),
                &format!("kinds.{k}"),
                "Unknown notification kind.",
            );
        }
    }
    for (f, h) in [
        (Hour::DueSoon.column(), b.due_soon_hour),
        (Hour::Overdue.column(), b.overdue_hour),
        (Hour::Digest.column(), b.digest_hour),
    ] {
        if let Some(Some(h)) = h {
            v.check((0..=23).contains(&h), f, "An hour from 0 to 23.");
        }
    }
    if let Some(Some(q)) = &b.quiet_hours {
        v.check(
            (0..=23).contains(&q.start) && (0..=23).contains(&q.end),
            "quiet_hours",
            "Hours from 0 to 23.",
        );
        v.check(
            q.start != q.end,
            "quiet_hours",
            "Start and end must differ (a window of at least an hour).",
        );
    }
    v.finish()?;
    let mut tx = state.db.begin().await?;
    let mut p = load_prefs(&mut tx, user.id).await?;
    if let Some(kinds) = &b.kinds {
        let obj = p.kinds.as_object_mut().expect("kinds is an object");
        for (k, val) in kinds {
            let entry = obj.entry(k.clone()).or_insert_with(|| json!({}));
            if let Some(e) = val.enabled {
                entry["enabled"] = json!(e);
            }
            if let Some(e) = val.email {
                entry["email"] = json!(e);
            }
            if let Some(e) = val.push {
                entry["push"] = json!(e);
            }
        }
    }
    if let Some(e) = b.email_enabled {
        p.email_enabled = e;
    }
    if let Some(e) = b.push_enabled {
        p.push_enabled = e;
    }
    if let Some(q) = b.quiet_hours {
        p.quiet_hours = q.map(|q| (q.start, q.end));
    }
    if let Some(h) = b.due_soon_hour {
        p.due_soon_hour = h;
    }
    if let Some(h) = b.overdue_hour {
        p.overdue_hour = h;
    }
    if let Some(h) = b.digest_hour {
        p.digest_hour = h;
    }
    save_prefs(&mut tx, user.id, &p).await?;
    tx.commit().await?;
    Ok(Json(prefs_out(&p, &user.timezone)))
}

async fn save_prefs(conn: &mut PgConnection, user_id: i64, p: &Prefs) -> AppResult<()> {
    sqlx::query!(
        "INSERT INTO notification_preferences (user_id, kinds, email_enabled, push_enabled, quiet_hours_start,
                                               quiet_hours_end, due_soon_hour, overdue_hour, digest_hour)
         VALUES ($1, $2, $3, $7, $8, $9, $4, $5, $6)
         ON CONFLICT (user_id) DO UPDATE SET kinds = EXCLUDED.kinds, email_enabled = EXCLUDED.email_enabled,
               push_enabled = EXCLUDED.push_enabled, quiet_hours_start = EXCLUDED.quiet_hours_start,
               quiet_hours_end = EXCLUDED.quiet_hours_end,
               due_soon_hour = EXCLUDED.due_soon_hour, overdue_hour = EXCLUDED.overdue_hour,
               digest_hour = EXCLUDED.digest_hour, updated_at = now()",
        user_id,
        p.kinds,
        p.email_enabled,
        p.due_soon_hour,
        p.overdue_hour,
        p.digest_hour,
        p.push_enabled,
        p.quiet_hours.map(|q| q.0),
        p.quiet_hours.map(|q| q.1)
    )
    .execute(conn)
    .await?;
    Ok(())
}

// ---- unsubscribe -------------------------------------------------------------------

/// The `(user_id, kind)` of a signed unsubscribe token whose kind is known
/// and whose user still exists; anything else is a 404. Changes nothing.
async fn unsubscribe_target(
    conn: &mut PgConnection,
    state: &State,
    token: &str,
) -> AppResult<(i64, String)> {
    let secret = state
        .cfg
        .app
        .secret
        .as_ref()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("APP_SECRET is not set")))?;
    let (user_id, kind) = honeydue_mail::unsubscribe::verify(secret.expose(), token)
        .ok_or(AppError::NotFound("unsubscribe link"))?;
    if kind != "all" && Kind::preference(&kind).is_none() {
        return Err(AppError::NotFound("unsubscribe link"));
    }
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM users WHERE id = $1) AS "x!""#,
        user_id
    )
    .fetch_one(&mut *conn)
    .await?;
    if !exists {
        return Err(AppError::NotFound("unsubscribe link"));
    }
    Ok((user_id, kind))
}

/// Applies a signed unsubscribe token: `all` turns email off, a kind turns
/// that kind's email off. Idempotent.
async fn apply_unsubscribe(state: &State, token: &str) -> AppResult<String> {
    let mut tx = state.db.begin().await?;
    let (user_id, kind) = unsubscribe_target(&mut tx, state, token).await?;
    let mut p = load_prefs(&mut tx, user_id).await?;
    if kind == "all" {
        p.email_enabled = false;
    } else {
        let obj = p.kinds.as_object_mut().expect("kinds is an object");
        obj.entry(kind.clone()).or_insert_with(|| json!({}))["email"] = json!(false);
    }
    save_prefs(&mut tx, user_id, &p).await?;
    tx.commit().await?;
    Ok(kind)
}

/// What a kind's unsubscribe stops, for the pages.
fn emails_of(kind: &str) -> String {
    if kind == "all" {
        "emails from honeyDue".to_string()
    } else {
        format!("{} emails", kind.replace('_', " "))
    }
}

const INVALID_LINK: &str = "This unsubscribe link is not valid.";

/// A small page of the unsubscribe flow; with `confirm`, the form that
/// POSTs back to the page's own URL.
fn unsubscribe_html(status: StatusCode, text: &str, confirm: bool) -> Response {
    // No `action`: the form posts to the URL the page was served from. The
    // field is RFC 8058's, so the form's POST is the mail clients' one.
    let form = if confirm {
        "<form method=\"post\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
         <button type=\"submit\">Unsubscribe</button></form>"
    } else {
        ""
    };
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>honeyDue</title></head>\
         <body style=\"font-family:sans-serif;max-width:480px;margin:3em auto\"><h1>honeyDue</h1><p>{}</p>{form}</body></html>",
        honeydue_mail::templates::escape(text)
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                 frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// The link in the email. Mail scanners and link previews follow links, so
/// GET only asks: a page with one button that POSTs back here. Nothing
/// changes until then.
async fn unsubscribe_page(S(state): S<State>, Path(token): Path<String>) -> Response {
    let target = match state.db.acquire().await {
        Ok(mut conn) => unsubscribe_target(&mut conn, &state, &token).await,
        Err(e) => Err(e.into()),
    };
    match target {
        Ok((_, kind)) => unsubscribe_html(
            StatusCode::OK,
            &format!("Stop receiving {}?", emails_of(&kind)),
            true,
        ),
        Err(AppError::NotFound(_)) => unsubscribe_html(StatusCode::NOT_FOUND, INVALID_LINK, false),
        Err(e) => e.into_response(),
    }
}

/// Unsubscribes: RFC 8058 one-click (`List-Unsubscribe-Post`), where the
/// mail client POSTs `List-Unsubscribe=One-Click` form-encoded, and the
/// confirmation page's button. Any body is accepted, none too: the signed
/// token is what authorises, and the POST is what says someone meant it
/// (scanners and link previews only GET). A browser (it asks for HTML) gets
/// a page, anything else JSON.
async fn unsubscribe_one_click(
    S(state): S<State>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    match (apply_unsubscribe(&state, &token).await, wants_html) {
        (Ok(kind), false) => Json(json!({"unsubscribed": kind})).into_response(),
        (Ok(kind), true) => unsubscribe_html(
            StatusCode::OK,
            &format!("You will not receive any more {}.", emails_of(&kind)),
            false,
        ),
        (Err(AppError::NotFound(_)), true) => {
            unsubscribe_html(StatusCode::NOT_FOUND, INVALID_LINK, false)
        }
        (Err(e), _) => e.into_response(),
    }
}
