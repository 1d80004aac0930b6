//! `/api/calendar/`: a revocable per-user iCal feed of due tasks, for
//! calendar apps that subscribe by URL (they cannot send a token header,
//! so the secret is in the URL; only its hash is stored).
//!
//! The feed lists the caller's live tasks (their residences; assigned to
//! them or to nobody, as reminders do) due from 30 days ago to a year
//! ahead, one all-day event per task on its next due date, at most 1,000.

use axum::extract::{Path, State as S};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use honeydue_core::auth::{hash_token, new_token};
use honeydue_core::{AppError, AppResult};
use honeydue_http::{AuthUser, Json};
use serde_json::{json, Value};

use crate::State;

honeydue_http::routes! { State;
    GET "/api/calendar/feed/" => feed_status, User, "Whether the caller has a calendar feed";
    POST "/api/calendar/feed/" => feed_create, User, "Create or rotate the calendar feed (returns its secret URL once)";
    DELETE "/api/calendar/feed/" => feed_revoke, User, "Revoke the calendar feed";
    GET "/api/calendar/{token}" => feed, Public, "The iCal feed ({token}.ics)";
}

async fn feed_status(S(state): S<State>, user: AuthUser) -> AppResult<Json<Value>> {
    let created = sqlx::query_scalar!(
        "SELECT created_at FROM calendar_feeds WHERE user_id = $1",
        user.id
    )
    .fetch_optional(&state.db)
    .await?;
    Ok(Json(
        json!({"active": created.is_some(), "created_at": created}),
    ))
}

async fn feed_create(S(state): S<State>, user: AuthUser) -> AppResult<impl IntoResponse> {
    let (token, hash) = new_token();
    sqlx::query!(
        "INSERT INTO calendar_feeds (user_id, token_hash) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET token_hash = EXCLUDED.token_hash, created_at = now()",
        user.id,
        hash
    )
    .execute(&state.db)
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "url": format!("{}/api/calendar/{token}.ics", state.cfg.app.base_url),
            "detail": "Subscribe to this URL in your calendar app. Anyone with it can read your due tasks; rotate or revoke it here.",
        })),
    ))
}

async fn feed_revoke(S(state): S<State>, user: AuthUser) -> AppResult<StatusCode> {
    let n = sqlx::query!("DELETE FROM calendar_feeds WHERE user_id = $1", user.id)
        .execute(&state.db)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(AppError::NotFound("calendar feed"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Escapes iCal TEXT (RFC 5545 3.3.11).
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Folds a content line at 75 octets (RFC 5545 3.1), CRLF-terminated.
fn line(out: &mut String, l: &str) {
    let mut width = 0;
    for c in l.chars() {
        let n = c.len_utf8();
        if width + n > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += n;
    }
    out.push_str("\r\n");
}

/// One all-day event per task.
pub struct Event {
    /// Task id.
    pub id: i64,
    /// Title.
    pub title: String,
    /// Residence name.
    pub residence: String,
    /// Due date.
    pub due: NaiveDate,
}

/// The VCALENDAR document.
pub fn ical(app: &str, events: &[Event], now: chrono::DateTime<Utc>) -> String {
    let mut out = String::new();
    let stamp = now.format("%Y%m%dT%H%M%SZ").to_string();
    line(&mut out, "BEGIN:VCALENDAR");
    line(&mut out, "VERSION:2.0");
    line(&mut out, &format!("PRODID:-//{}//Tasks//EN", text(app)));
    line(&mut out, "CALSCALE:GREGORIAN");
    line(
        &mut out,
        &format!("X-WR-CALNAME:{}", text(&format!("{app} tasks"))),
    );
    for e in events {
        line(&mut out, "BEGIN:VEVENT");
        line(
            &mut out,
            &format!("UID:task-{}-{}@honeydue", e.id, e.due.format("%Y%m%d")),
        );
        line(&mut out, &format!("DTSTAMP:{stamp}"));
        line(
            &mut out,
            &format!("DTSTART;VALUE=DATE:{}", e.due.format("%Y%m%d")),
        );
        let end = e.due.succ_opt().unwrap_or(e.due);
        line(
            &mut out,
            &format!("DTEND;VALUE=DATE:{}", end.format("%Y%m%d")),
        );
        line(&mut out, &format!("SUMMARY:{}", text(&e.title)));
        line(&mut out, &format!("LOCATION:{}", text(&e.residence)));
        line(&mut out, "TRANSP:TRANSPARENT");
        line(&mut out, "END:VEVENT");
    }
    line(&mut out, "END:VCALENDAR");
    out
}

async fn feed(S(state): S<State>, Path(token): Path<String>) -> AppResult<Response> {
    let token = token
        .strip_suffix(".ics")
        .ok_or(AppError::NotFound("calendar feed"))?;
    let user = sqlx::query_scalar!(
        "SELECT f.user_id FROM calendar_feeds f JOIN users u ON u.id = f.user_id
          WHERE f.token_hash = $1 AND u.is_active",
        hash_token(token)
    )
    .fetch_optional(&state.db)
    .await?
    .ok_or(AppError::NotFound("calendar feed"))?;
    let events = sqlx::query_as!(
        Event,
        r#"SELECT t.id, t.title, r.name AS residence, t.next_due_date AS "due!"
             FROM tasks t
             JOIN residence_members m ON m.residence_id = t.residence_id AND m.user_id = $1
             JOIN residences r ON r.id = t.residence_id
            WHERE NOT t.is_archived AND NOT t.is_cancelled
              AND (t.assigned_to = $1 OR t.assigned_to IS NULL)
              AND t.next_due_date BETWEEN current_date - 30 AND current_date + 365
            ORDER BY t.next_due_date, t.id
            LIMIT 1000"#,
        user
    )
    .fetch_all(&state.db)
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CACHE_CONTROL, "private, max-age=900"),
        ],
        ical(&state.cfg.app.name, &events, Utc::now()),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_folds() {
        let e = Event {
            id: 7,
            title: "Clean gutters, front; back\\side".into(),
            residence: "Maple House".into(),
            due: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
        };
        let now = "2026-11-25T10:00:00Z".parse().unwrap();
        let cal = ical("honeyDue", &[e], now);
        assert!(cal.starts_with("BEGIN:VCALENDAR\r\n"));
        assert!(cal.ends_with("END:VCALENDAR\r\n"));
        assert!(cal.contains("SUMMARY:Clean gutters\\, front\\; back\\\\side\r\n"));
        assert!(cal.contains("DTSTART;VALUE=DATE:20261231\r\nDTEND;VALUE=DATE:20270101\r\n"));
        assert!(cal.contains("UID:task-7-20261231@honeydue\r\n"));
        let long = ical("x".repeat(100).as_str(), &[], now);
        assert!(long.lines().all(|l| l.len() <= 75), "{long}");
        assert!(
            long.contains("\r\n x"),
            "continuation lines start with a space"
        );
    }
}
