//! Tasks: the board, CRUD and actions.

use axum::extract::State as S;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use honeydue_core::config::AppConfig;
use honeydue_core::domain::board::{column, Column, TaskState, SHOWN};
use honeydue_core::domain::recurrence::{self, Anchor};
use honeydue_core::{iso, limits, membership, AppError, AppResult, Validator};
use honeydue_http::{AuthUser, IdempotencyKey, Json, PathId, Query, State};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::postgres::PgRow;
use sqlx::{Column as _, PgConnection, Row, TypeInfo};

honeydue_http::routes! { State;
    GET "/api/tasks/" => board_all, User, "The board across all the caller's residences (?days=)";
    POST "/api/tasks/" => create, User, "Create a task (tier-limited; Idempotency-Key)";
    GET "/api/tasks/by-residence/{id}/" => board_residence, User, "One residence's board (?days=)";
    GET "/api/tasks/{id}/" => detail, User, "One task";
    PATCH "/api/tasks/{id}/" => update, User, "Change a task";
    DELETE "/api/tasks/{id}/" => remove, User, "Delete a task";
    POST "/api/tasks/{id}/mark-in-progress/" => mark_in_progress, User, "Mark in progress";
    POST "/api/tasks/{id}/cancel/" => cancel, User, "Cancel";
    POST "/api/tasks/{id}/uncancel/" => uncancel, User, "Undo a cancel";
    POST "/api/tasks/{id}/archive/" => archive, User, "Archive";
    POST "/api/tasks/{id}/unarchive/" => unarchive, User, "Unarchive (tier-limited)";
    POST "/api/tasks/{id}/skip/" => skip, User, "Skip to the next occurrence";
    POST "/api/tasks/{id}/reschedule/" => reschedule, User, "Move this occurrence";
}

/// A task row with what its column and recurrence depend on, read by
/// [`load_tasks`] (`task_select!`'s columns, in this order).
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub id: i64,
    pub residence_id: i64,
    pub title: String,
    pub description: String,
    pub category_id: Option<i32>,
    pub priority_id: Option<i32>,
    pub frequency_id: Option<i32>,
    pub custom_interval_days: Option<i32>,
    pub recurrence_anchor: String,
    pub due_date: Option<NaiveDate>,
    pub next_due_date: Option<NaiveDate>,
    pub assigned_to: Option<i64>,
    pub contractor_id: Option<i64>,
    pub estimated_cost: Option<Decimal>,
    pub in_progress: bool,
    pub is_cancelled: bool,
    pub is_archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub freq_days: Option<i32>,
    pub freq_months: Option<i32>,
    pub completion_count: i64,
    pub last_completed_at: Option<DateTime<Utc>>,
}

impl TaskRow {
    /// Decodes a row of `task_select!` by position: sqlx's derived
    /// `FromRow` looks each column up by a hash of its name and checks its
    /// type, for every row (4,600 times a 200-task board). With `check`,
    /// each column's name and type are compared with the field's, NULL or
    /// not; the rows of one statement share one description, so
    /// [`load_tasks`] checks the first row only.
    fn decode(row: &PgRow, check: bool) -> Result<Self, sqlx::Error> {
        fn get<'r, T>(row: &'r PgRow, i: usize, name: &str, check: bool) -> Result<T, sqlx::Error>
        where
            T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
        {
            if check {
                let column = row.try_column(i)?;
                if column.name() != name || !T::compatible(column.type_info()) {
                    return Err(sqlx::Error::ColumnDecode {
                        index: i.to_string(),
                        source: format!(
                            "expected `{name}` ({}), the statement has `{}` ({})",
                            T::type_info().name(),
                            column.name(),
                            column.type_info().name()
                        )
                        .into(),
                    });
                }
            }
            row.try_get_unchecked(i)
        }
        macro_rules! fields {
            ($($i:literal $field:ident),* $(,)?) => {
                Ok(Self { $($field: get(row, $i, stringify!($field), check)?,)* })
            };
        }
        fields!(
            0 id, 1 residence_id, 2 title, 3 description, 4 category_id, 5 priority_id,
            6 frequency_id, 7 custom_interval_days, 8 recurrence_anchor, 9 due_date,
            10 next_due_date, 11 assigned_to, 12 contractor_id, 13 estimated_cost,
            14 in_progress, 15 is_cancelled, 16 is_archived, 17 created_at, 18 updated_at,
            19 freq_days, 20 freq_months, 21 completion_count, 22 last_completed_at,
        )
    }

    pub fn interval(&self) -> Option<recurrence::Interval> {
        recurrence::interval(self.custom_interval_days, self.freq_days, self.freq_months)
    }
    pub fn anchor(&self) -> Anchor {
        Anchor::parse(&self.recurrence_anchor).unwrap_or(Anchor::DueDate)
    }
    pub fn column(&self, today: NaiveDate, days: i64) -> Column {
        column(
            &TaskState {
                cancelled: self.is_cancelled,
                in_progress: self.in_progress,
                next_due: self.next_due_date,
                recurring: self.interval().is_some(),
                has_completion: self.completion_count > 0,
            },
            today,
            days,
        )
    }
    /// The task as the API shows it, in `column` (its column today).
    fn out(&self, column: Column) -> TaskOut<'_> {
        TaskOut {
            assigned_to: self.assigned_to,
            category_id: self.category_id,
            completion_count: self.completion_count,
            contractor_id: self.contractor_id,
            created_at: self.created_at,
            custom_interval_days: self.custom_interval_days,
            description: &self.description,
            due_date: self.due_date,
            estimated_cost: &self.estimated_cost,
            frequency_id: self.frequency_id,
            id: self.id,
            in_progress: self.in_progress,
            is_archived: self.is_archived,
            is_cancelled: self.is_cancelled,
            is_recurring: self.interval().is_some(),
            kanban_column: if self.is_archived {
                "archived"
            } else {
                column.name()
            },
            last_completed_at: self.last_completed_at,
            next_due_date: self.next_due_date,
            priority_id: self.priority_id,
            recurrence_anchor: &self.recurrence_anchor,
            residence_id: self.residence_id,
            title: &self.title,
            updated_at: self.updated_at,
        }
    }

    pub fn to_json(&self, today: NaiveDate, days: i64) -> Value {
        serde_json::to_value(self.out(self.column(today, days))).expect("a task serializes")
    }
}

/// A task as the API shows it. Fields in alphabetical order: the order
/// serde_json gives an object's keys, so the typed answer has the same
/// bytes as the `json!` one it replaced (a test compares them).
#[derive(Serialize)]
struct TaskOut<'a> {
    assigned_to: Option<i64>,
    category_id: Option<i32>,
    completion_count: i64,
    contractor_id: Option<i64>,
    #[serde(serialize_with = "iso::datetime")]
    created_at: DateTime<Utc>,
    custom_interval_days: Option<i32>,
    description: &'a str,
    #[serde(serialize_with = "iso::opt_date")]
    due_date: Option<NaiveDate>,
    estimated_cost: &'a Option<Decimal>,
    frequency_id: Option<i32>,
    id: i64,
    in_progress: bool,
    is_archived: bool,
    is_cancelled: bool,
    is_recurring: bool,
    kanban_column: &'static str,
    #[serde(serialize_with = "iso::opt_datetime")]
    last_completed_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "iso::opt_date")]
    next_due_date: Option<NaiveDate>,
    priority_id: Option<i32>,
    recurrence_anchor: &'a str,
    residence_id: i64,
    title: &'a str,
    #[serde(serialize_with = "iso::datetime")]
    updated_at: DateTime<Utc>,
}

/// A board column (fields alphabetical, as [`TaskOut`]).
#[derive(Serialize)]
struct ColumnOut<'a> {
    actions: &'static [&'static str],
    color: &'static str,
    count: usize,
    display_name: &'static str,
    name: &'static str,
    tasks: Vec<TaskOut<'a>>,
}

/// A board (fields alphabetical, as [`TaskOut`]).
#[derive(Serialize)]
struct BoardOut<'a> {
    columns: Vec<ColumnOut<'a>>,
    #[serde(serialize_with = "iso::date")]
    date: NaiveDate,
    days_threshold: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    residence_id: Option<i64>,
}

/// Which tasks `load_tasks` reads.
#[derive(Debug, Clone, Copy)]
pub enum Which {
    /// One task, archived or not.
    One(i64),
    /// A residence's unarchived tasks.
    Residence(i64),
    /// The unarchived tasks of all the user's residences.
    All,
}

/// The columns of a `TaskRow` and the tables they come from; membership
/// (`$1`, the user) is part of every read.
macro_rules! task_select {
    () => {
        "SELECT t.id, t.residence_id, t.title, t.description, t.category_id, t.priority_id, t.frequency_id,
                t.custom_interval_days, t.recurrence_anchor, t.due_date, t.next_due_date, t.assigned_to,
                t.contractor_id, t.estimated_cost, t.in_progress, t.is_cancelled, t.is_archived,
                t.created_at, t.updated_at,
                f.interval_days AS freq_days, f.interval_months AS freq_months,
                t.completion_count, t.last_completed_at
           FROM tasks t
           JOIN residence_members m ON m.residence_id = t.residence_id AND m.user_id = $1
           LEFT JOIN task_frequencies f ON f.id = t.frequency_id
          "
    };
}

/// Loads the tasks `which` names that `user_id` may see. Each shape is a
/// statement of its own, so Postgres keeps one generic plan per shape: a
/// single catch-all statement (`$2 IS NULL OR t.id = $2 ...`) had to be
/// planned again at every call, its generic plan reading every task of
/// every residence of the user (measured at 1M tasks: 0.7-2.9 ms of
/// planning per board, 17 ms for the generic plan).
pub async fn load_tasks(
    conn: &mut PgConnection,
    user_id: i64,
    which: Which,
) -> AppResult<Vec<TaskRow>> {
    let (sql, id) = match which {
        Which::One(id) => (concat!(task_select!(), "WHERE t.id = $2"), Some(id)),
        Which::Residence(id) => (
            concat!(
                task_select!(),
                "WHERE t.residence_id = $2 AND NOT t.is_archived ORDER BY t.next_due_date NULLS LAST, t.id"
            ),
            Some(id),
        ),
        Which::All => (
            concat!(
                task_select!(),
                "WHERE NOT t.is_archived ORDER BY t.next_due_date NULLS LAST, t.id"
            ),
            None,
        ),
    };
    let mut query = sqlx::query(sql).bind(user_id);
    if let Some(id) = id {
        query = query.bind(id);
    }
    let rows = query.fetch_all(conn).await?;
    Ok(rows
        .iter()
        .enumerate()
        .map(|(i, row)| TaskRow::decode(row, i == 0))
        .collect::<Result<_, _>>()?)
}

/// One task the user can see, or 404.
pub async fn load_task(conn: &mut PgConnection, user_id: i64, id: i64) -> AppResult<TaskRow> {
    load_tasks(conn, user_id, Which::One(id))
        .await?
        .into_iter()
        .next()
        .ok_or(AppError::NotFound("task"))
}

// ---- board -----------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct BoardParams {
    days: Option<i64>,
}

fn days(p: &BoardParams) -> AppResult<i64> {
    let d = p.days.unwrap_or(30);
    if (1..=365).contains(&d) {
        Ok(d)
    } else {
        Err(AppError::field("days", "Must be between 1 and 365."))
    }
}

/// A board's JSON grows by about 560 bytes per task (measured); its buffer
/// is sized up front, with some headroom, instead of being copied as it
/// grows.
const BOARD_BYTES_PER_TASK: usize = 640;

/// The board's JSON: each row's column decided once, the tasks written
/// straight to the answer's bytes.
fn board(rows: &[TaskRow], today: NaiveDate, days: i64, residence_id: Option<i64>) -> Vec<u8> {
    let placed: Vec<(Column, &TaskRow)> = rows.iter().map(|t| (t.column(today, days), t)).collect();
    let columns = SHOWN
        .iter()
        .map(|c| {
            let mut tasks: Vec<&TaskRow> = placed
                .iter()
                .filter(|(col, _)| col == c)
                .map(|(_, t)| *t)
                .collect();
            if *c == Column::Completed {
                tasks.sort_by_key(|t| std::cmp::Reverse(t.last_completed_at));
            }
            ColumnOut {
                actions: c.actions(),
                color: c.color(),
                count: tasks.len(),
                display_name: c.display_name(),
                name: c.name(),
                tasks: tasks.iter().map(|t| t.out(*c)).collect(),
            }
        })
        .collect();
    let mut out = Vec::with_capacity(1024 + rows.len() * BOARD_BYTES_PER_TASK);
    serde_json::to_writer(
        &mut out,
        &BoardOut {
            columns,
            date: today,
            days_threshold: days,
            residence_id,
        },
    )
    .expect("a board serializes");
    out
}

/// A JSON answer with a content ETag; `If-None-Match` on it gives 304.
///
/// The tag is the answer's 128-bit XXH3: a validator only has to change
/// when the answer does, which a 128-bit hash does for any edit but with a
/// chance of 2^-128 (it needs no resistance to forgery: only the caller
/// sees the tag, of an answer only they may read). It replaced a
/// truncated SHA-256, 5-7% of the function's CPU samples per 200-task
/// board in issue 17's profiles (scripts/bench_notes.md).
fn with_etag(headers: &HeaderMap, text: Vec<u8>) -> Response {
    let tag = format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(&text));
    let mut r = if honeydue_http::none_match(headers, &tag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            text,
        )
            .into_response()
    };
    r.headers_mut()
        .insert(header::ETAG, HeaderValue::from_str(&tag).expect("hex"));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    r
}

async fn board_all(
    S(state): S<State>,
    user: AuthUser,
    headers: HeaderMap,
    Query(p): Query<BoardParams>,
) -> AppResult<Response> {
    let days = days(&p)?;
    let mut conn = state.db.acquire().await?;
    let rows = load_tasks(&mut conn, user.id, Which::All).await?;
    let today = membership::today_in(&user.timezone);
    Ok(with_etag(&headers, board(&rows, today, days, None)))
}

async fn board_residence(
    S(state): S<State>,
    user: AuthUser,
    headers: HeaderMap,
    PathId(id): PathId,
    Query(p): Query<BoardParams>,
) -> AppResult<Response> {
    let days = days(&p)?;
    let mut conn = state.db.acquire().await?;
    // Membership is part of the read itself; only an empty board asks
    // whether the residence is the caller's at all (404), saving the
    // hottest read a round trip to the database.
    let rows = load_tasks(&mut conn, user.id, Which::Residence(id)).await?;
    if rows.is_empty() {
        membership::role(&mut conn, user.id, id).await?;
    }
    let today = membership::today_in(&user.timezone);
    Ok(with_etag(&headers, board(&rows, today, days, Some(id))))
}

// ---- CRUD ------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskIn {
    residence_id: Option<i64>,
    title: Option<String>,
    description: Option<String>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    category_id: Option<Option<i32>>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    priority_id: Option<Option<i32>>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    frequency_id: Option<Option<i32>>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    custom_interval_days: Option<Option<i32>>,
    recurrence_anchor: Option<String>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    due_date: Option<Option<NaiveDate>>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    assigned_to: Option<Option<i64>>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    contractor_id: Option<Option<i64>>,
    #[serde(default, deserialize_with = "honeydue_http::extract::nullable")]
    estimated_cost: Option<Option<Decimal>>,
}

/// Checks fields and the references that must lie inside the residence.
async fn validate(
    conn: &mut PgConnection,
    user_id: i64,
    residence_id: i64,
    b: &TaskIn,
    creating: bool,
) -> AppResult<()> {
    let mut v = Validator::new();
    match &b.title {
        Some(t) => {
            v.check(
                !t.trim().is_empty(),
                "title",
                "This field may not be blank.",
            );
            v.check(
                t.chars().count() <= 200,
                "title",
                "Enter at most 200 characters.",
            );
        }
        None if creating => v.add("title", "This field is required."),
        None => {}
    }
    if let Some(d) = &b.description {
        v.check(
            d.chars().count() <= 10_000,
            "description",
            "Enter at most 10000 characters.",
        );
    }
    if let Some(Some(n)) = b.custom_interval_days {
        v.check(
            (1..=3650).contains(&n),
            "custom_interval_days",
            "Between 1 and 3650 days.",
        );
    }
    if let Some(a) = &b.recurrence_anchor {
        v.check(
            Anchor::parse(a).is_some(),
            "recurrence_anchor",
            "Use due_date or completion.",
        );
    }
    if let Some(Some(c)) = b.estimated_cost {
        v.money("estimated_cost", c);
    }
    if let Some(Some(u)) = b.assigned_to {
        let member = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM residence_members WHERE residence_id = $1 AND user_id = $2) AS "x!""#,
            residence_id,
            u
        )
        .fetch_one(&mut *conn)
        .await?;
        v.check(
            member,
            "assigned_to",
            "Assign the task to a member of the residence.",
        );
    }
    if let Some(Some(c)) = b.contractor_id {
        let visible = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM contractors
                               WHERE id = $1 AND (residence_id = $3 OR (residence_id IS NULL AND owner_id = $2))) AS "x!""#,
            c,
            user_id,
            residence_id
        )
        .fetch_one(&mut *conn)
        .await?;
        v.check(visible, "contractor_id", "Unknown contractor.");
    }
    for (field, id, table) in [
        ("category_id", b.category_id.flatten(), "task_categories"),
        ("priority_id", b.priority_id.flatten(), "task_priorities"),
        ("frequency_id", b.frequency_id.flatten(), "task_frequencies"),
    ] {
        if let Some(id) = id {
            let exists: bool = sqlx::query_scalar(&format!(
                "SELECT EXISTS (SELECT 1 FROM {table} WHERE id = $1)"
            ))
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
            v.check(exists, field, "Unknown value.");
        }
    }
    v.finish()
}

async fn create(
    S(state): S<State>,
    user: AuthUser,
    IdempotencyKey(idem): IdempotencyKey,
    Json(b): Json<TaskIn>,
) -> AppResult<impl IntoResponse> {
    let residence_id = b
        .residence_id
        .ok_or_else(|| AppError::field("residence_id", "This field is required."))?;
    let mut tx = state.db.begin().await?;
    membership::writer(&mut tx, user.id, residence_id).await?;
    if let Some(key) = &idem {
        // A retry of a create already recorded: the same task, no change.
        // One key's creates are serialised, so a concurrent retry waits
        // here and then finds the task.
        sqlx::query!(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, $2))",
            key,
            user.id
        )
        .execute(&mut *tx)
        .await?;
        let existing = sqlx::query_scalar!(
            "SELECT id FROM tasks WHERE created_by = $1 AND idempotency_key = $2",
            user.id,
            key
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = existing {
            let task = load_task(&mut tx, user.id, id).await?;
            tx.commit().await?;
            let today = membership::today_in(&user.timezone);
            return Ok((StatusCode::OK, Json(task.to_json(today, 30))));
        }
    }
    validate(&mut tx, user.id, residence_id, &b, true).await?;
    let owner = limits::residence_owner(&mut tx, residence_id).await?;
    limits::check(&mut tx, owner, limits::Resource::Tasks).await?;
    let due = b.due_date.flatten();
    let id = sqlx::query_scalar!(
        "INSERT INTO tasks (residence_id, created_by, title, description, category_id, priority_id, frequency_id,
                            custom_interval_days, recurrence_anchor, due_date, next_due_date, assigned_to,
                            contractor_id, estimated_cost, idempotency_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14) RETURNING id",
        residence_id,
        user.id,
        b.title.as_deref().unwrap_or_default().trim(),
        b.description.clone().unwrap_or_default(),
        b.category_id.flatten(),
        b.priority_id.flatten(),
        b.frequency_id.flatten(),
        b.custom_interval_days.flatten(),
        b.recurrence_anchor.clone().unwrap_or_else(|| "due_date".into()),
        due,
        b.assigned_to.flatten(),
        b.contractor_id.flatten(),
        b.estimated_cost.flatten(),
        idem,
    )
    .fetch_one(&mut *tx)
    .await?;
    if let Some(a) = b.assigned_to.flatten().filter(|a| *a != user.id) {
        notify_assigned(
            &mut tx,
            &state.cfg.app,
            a,
            id,
            b.title.as_deref().unwrap_or_default(),
        )
        .await?;
    }
    let task = load_task(&mut tx, user.id, id).await?;
    tx.commit().await?;
    let today = membership::today_in(&user.timezone);
    Ok((StatusCode::CREATED, Json(task.to_json(today, 30))))
}

async fn notify_assigned(
    conn: &mut PgConnection,
    app: &AppConfig,
    to: i64,
    task_id: i64,
    title: &str,
) -> AppResult<()> {
    honeydue_mail::events::notify(
        conn,
        app,
        &[honeydue_core::notify::Notice {
            user_id: to,
            kind: "assigned",
            title: "A task was assigned to you".into(),
            body: title.into(),
            data: json!({"task_id": task_id}),
        }],
    )
    .await?;
    Ok(())
}

async fn detail(S(state): S<State>, user: AuthUser, PathId(id): PathId) -> AppResult<Json<Value>> {
    let mut conn = state.db.acquire().await?;
    let t = load_task(&mut conn, user.id, id).await?;
    Ok(Json(t.to_json(membership::today_in(&user.timezone), 30)))
}

async fn update(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
    Json(b): Json<TaskIn>,
) -> AppResult<Json<Value>> {
    let mut tx = state.db.begin().await?;
    let current = load_task(&mut tx, user.id, id).await?;
    membership::writer(&mut tx, user.id, current.residence_id).await?;
    if b.residence_id.is_some_and(|r| r != current.residence_id) {
        return Err(AppError::field(
            "residence_id",
            "A task cannot move to another residence.",
        ));
    }
    validate(&mut tx, user.id, current.residence_id, &b, false).await?;
    let set = |o: bool| o;
    // A new due date restarts the series from it.
    sqlx::query!(
        "UPDATE tasks SET
            title = COALESCE($2, title),
            description = COALESCE($3, description),
            category_id = CASE WHEN $4 THEN $5 ELSE category_id END,
            priority_id = CASE WHEN $6 THEN $7 ELSE priority_id END,
            frequency_id = CASE WHEN $8 THEN $9 ELSE frequency_id END,
            custom_interval_days = CASE WHEN $10 THEN $11 ELSE custom_interval_days END,
            recurrence_anchor = COALESCE($12, recurrence_anchor),
            due_date = CASE WHEN $13 THEN $14 ELSE due_date END,
            next_due_date = CASE WHEN $13 THEN $14 ELSE next_due_date END,
            assigned_to = CASE WHEN $15 THEN $16 ELSE assigned_to END,
            contractor_id = CASE WHEN $17 THEN $18 ELSE contractor_id END,
            estimated_cost = CASE WHEN $19 THEN $20 ELSE estimated_cost END,
            updated_at = now()
          WHERE id = $1",
        id,
        b.title.as_deref().map(str::trim),
        b.description,
        set(b.category_id.is_some()),
        b.category_id.flatten(),
        set(b.priority_id.is_some()),
        b.priority_id.flatten(),
        set(b.frequency_id.is_some()),
        b.frequency_id.flatten(),
        set(b.custom_interval_days.is_some()),
        b.custom_interval_days.flatten(),
        b.recurrence_anchor,
        set(b.due_date.is_some()),
        b.due_date.flatten(),
        set(b.assigned_to.is_some()),
        b.assigned_to.flatten(),
        set(b.contractor_id.is_some()),
        b.contractor_id.flatten(),
        set(b.estimated_cost.is_some()),
        b.estimated_cost.flatten(),
    )
    .execute(&mut *tx)
    .await?;
    if let Some(a) = b
        .assigned_to
        .flatten()
        .filter(|a| *a != user.id && Some(*a) != current.assigned_to)
    {
        notify_assigned(&mut tx, &state.cfg.app, a, id, &current.title).await?;
    }
    let t = load_task(&mut tx, user.id, id).await?;
    tx.commit().await?;
    Ok(Json(t.to_json(membership::today_in(&user.timezone), 30)))
}

async fn remove(S(state): S<State>, user: AuthUser, PathId(id): PathId) -> AppResult<StatusCode> {
    let mut conn = state.db.acquire().await?;
    let t = load_task(&mut conn, user.id, id).await?;
    membership::writer(&mut conn, user.id, t.residence_id).await?;
    sqlx::query!("DELETE FROM tasks WHERE id = $1", id)
        .execute(&mut *conn)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- actions ---------------------------------------------------------------------

/// Loads a task the caller may change, applies `sql` with the task id as $1,
/// and answers the updated task.
async fn act(
    state: &State,
    user: &AuthUser,
    id: i64,
    check: impl FnOnce(&TaskRow) -> AppResult<()>,
    sql: &str,
) -> AppResult<Json<Value>> {
    let mut tx = state.db.begin().await?;
    let t = load_task(&mut tx, user.id, id).await?;
    membership::writer(&mut tx, user.id, t.residence_id).await?;
    check(&t)?;
    sqlx::query(sql).bind(id).execute(&mut *tx).await?;
    let t = load_task(&mut tx, user.id, id).await?;
    tx.commit().await?;
    Ok(Json(t.to_json(membership::today_in(&user.timezone), 30)))
}

fn not_cancelled(t: &TaskRow) -> AppResult<()> {
    if t.is_cancelled {
        Err(AppError::conflict(
            "task_cancelled",
            "The task is cancelled; uncancel it first.",
        ))
    } else {
        Ok(())
    }
}

async fn mark_in_progress(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
) -> AppResult<Json<Value>> {
    act(
        &state,
        &user,
        id,
        not_cancelled,
        "UPDATE tasks SET in_progress = TRUE, updated_at = now() WHERE id = $1",
    )
    .await
}

async fn cancel(S(state): S<State>, user: AuthUser, PathId(id): PathId) -> AppResult<Json<Value>> {
    act(&state, &user, id, |_| Ok(()), "UPDATE tasks SET is_cancelled = TRUE, in_progress = FALSE, updated_at = now() WHERE id = $1").await
}

async fn uncancel(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
) -> AppResult<Json<Value>> {
    act(
        &state,
        &user,
        id,
        |_| Ok(()),
        "UPDATE tasks SET is_cancelled = FALSE, updated_at = now() WHERE id = $1",
    )
    .await
}

async fn archive(S(state): S<State>, user: AuthUser, PathId(id): PathId) -> AppResult<Json<Value>> {
    act(&state, &user, id, |_| Ok(()), "UPDATE tasks SET is_archived = TRUE, in_progress = FALSE, updated_at = now() WHERE id = $1").await
}

async fn unarchive(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
) -> AppResult<Json<Value>> {
    // An archived task does not count against the plan; bringing it back does.
    let mut tx = state.db.begin().await?;
    let t = load_task(&mut tx, user.id, id).await?;
    membership::writer(&mut tx, user.id, t.residence_id).await?;
    if t.is_archived {
        let owner = limits::residence_owner(&mut tx, t.residence_id).await?;
        limits::check(&mut tx, owner, limits::Resource::Tasks).await?;
    }
    sqlx::query!(
        "UPDATE tasks SET is_archived = FALSE, updated_at = now() WHERE id = $1",
        id
    )
    .execute(&mut *tx)
    .await?;
    let t = load_task(&mut tx, user.id, id).await?;
    tx.commit().await?;
    Ok(Json(t.to_json(membership::today_in(&user.timezone), 30)))
}

async fn skip(S(state): S<State>, user: AuthUser, PathId(id): PathId) -> AppResult<Json<Value>> {
    let mut tx = state.db.begin().await?;
    let t = load_task(&mut tx, user.id, id).await?;
    membership::writer(&mut tx, user.id, t.residence_id).await?;
    not_cancelled(&t)?;
    let occurrence = t.next_due_date.ok_or_else(|| {
        AppError::conflict("no_due_date", "Only a task with a due date can be skipped.")
    })?;
    let next = recurrence::next_after_skip(t.due_date, occurrence, t.interval(), t.anchor())
        .ok_or_else(|| {
            AppError::conflict("not_recurring", "Only a recurring task can be skipped.")
        })?;
    sqlx::query!(
        "UPDATE tasks SET next_due_date = $2, in_progress = FALSE, updated_at = now() WHERE id = $1",
        id,
        next
    )
    .execute(&mut *tx)
    .await?;
    let t = load_task(&mut tx, user.id, id).await?;
    tx.commit().await?;
    Ok(Json(t.to_json(membership::today_in(&user.timezone), 30)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RescheduleIn {
    due_date: NaiveDate,
}

async fn reschedule(
    S(state): S<State>,
    user: AuthUser,
    PathId(id): PathId,
    Json(b): Json<RescheduleIn>,
) -> AppResult<Json<Value>> {
    let mut tx = state.db.begin().await?;
    let t = load_task(&mut tx, user.id, id).await?;
    membership::writer(&mut tx, user.id, t.residence_id).await?;
    not_cancelled(&t)?;
    // Moves this occurrence only; a due-date-anchored series keeps its
    // rhythm from its first due date (which the new date starts if unset).
    sqlx::query!(
        "UPDATE tasks SET next_due_date = $2, due_date = COALESCE(due_date, $2), updated_at = now() WHERE id = $1",
        id,
        b.due_date
    )
    .execute(&mut *tx)
    .await?;
    let t = load_task(&mut tx, user.id, id).await?;
    tx.commit().await?;
    Ok(Json(t.to_json(membership::today_in(&user.timezone), 30)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The board as it was built before the typed answer (`json!` objects),
    /// kept as the reference the typed one must match byte for byte.
    fn reference(
        rows: &[TaskRow],
        today: NaiveDate,
        days: i64,
        residence_id: Option<i64>,
    ) -> String {
        let task = |t: &TaskRow| {
            json!({
                "id": t.id, "residence_id": t.residence_id, "title": t.title, "description": t.description,
                "category_id": t.category_id, "priority_id": t.priority_id, "frequency_id": t.frequency_id,
                "custom_interval_days": t.custom_interval_days, "recurrence_anchor": t.recurrence_anchor,
                "due_date": t.due_date, "next_due_date": t.next_due_date, "assigned_to": t.assigned_to,
                "contractor_id": t.contractor_id, "estimated_cost": t.estimated_cost, "in_progress": t.in_progress,
                "is_cancelled": t.is_cancelled, "is_archived": t.is_archived, "is_recurring": t.interval().is_some(),
                "kanban_column": if t.is_archived { "archived" } else { t.column(today, days).name() },
                "completion_count": t.completion_count, "last_completed_at": t.last_completed_at,
                "created_at": t.created_at, "updated_at": t.updated_at,
            })
        };
        let columns: Vec<Value> = SHOWN
            .iter()
            .map(|c| {
                let mut tasks: Vec<&TaskRow> = rows.iter().filter(|t| t.column(today, days) == *c).collect();
                if *c == Column::Completed {
                    tasks.sort_by_key(|t| std::cmp::Reverse(t.last_completed_at));
                }
                json!({"name": c.name(), "display_name": c.display_name(), "color": c.color(), "actions": c.actions(),
                       "count": tasks.len(), "tasks": tasks.iter().map(|t| task(t)).collect::<Vec<_>>()})
            })
            .collect();
        let mut b = json!({"days_threshold": days, "date": today, "columns": columns});
        if let Some(id) = residence_id {
            b["residence_id"] = json!(id);
        }
        b.to_string()
    }

    fn row(i: i64, today: NaiveDate) -> TaskRow {
        // Whole seconds, milliseconds and microseconds: each fraction width
        // a Postgres timestamp can give (honeydue_core::iso's tests cover
        // nanoseconds).
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 8, 30, 0).unwrap()
            + chrono::Duration::seconds(i * 3_601)
            + chrono::Duration::microseconds((i % 3) * 250_000 + (i % 2) * 17);
        TaskRow {
            id: i,
            residence_id: 7,
            title: format!("Task \"{i}\" — gutters ✓ <b>"),
            description: if i % 3 == 0 {
                String::new()
            } else {
                format!("line\nbreak {i}")
            },
            category_id: (i % 2 == 0).then_some(i as i32),
            priority_id: (i % 4 == 1).then_some(2),
            frequency_id: (i % 5 != 0).then_some(1 + (i % 8) as i32),
            custom_interval_days: (i % 7 == 0).then_some(10),
            recurrence_anchor: if i % 2 == 0 {
                "due_date".into()
            } else {
                "completion".into()
            },
            due_date: (i % 11 != 0).then(|| today + chrono::Duration::days(i % 60 - 20)),
            next_due_date: (i % 11 != 0).then(|| today + chrono::Duration::days(i % 60 - 20)),
            assigned_to: (i % 3 == 1).then_some(42),
            contractor_id: (i % 9 == 0).then_some(5),
            estimated_cost: (i % 4 == 0).then(|| Decimal::new(12_345 + i, 2)),
            in_progress: i % 13 == 0,
            is_cancelled: i % 17 == 0,
            is_archived: i % 19 == 0,
            created_at: at,
            updated_at: at + chrono::Duration::minutes(i),
            freq_days: (i % 5 == 1).then_some(7),
            freq_months: (i % 5 == 2).then_some(1),
            completion_count: i % 6,
            last_completed_at: (i % 6 != 0).then(|| at + chrono::Duration::hours(i % 50)),
        }
    }

    #[test]
    fn the_typed_board_has_the_bytes_of_the_json_one() {
        let today = NaiveDate::from_ymd_opt(2026, 6, 10).unwrap();
        let rows: Vec<TaskRow> = (1..=300).map(|i| row(i, today)).collect();
        for (days, residence) in [(30, Some(7)), (7, None), (365, Some(7)), (1, None)] {
            let typed = String::from_utf8(board(&rows, today, days, residence)).unwrap();
            assert_eq!(
                typed,
                reference(&rows, today, days, residence),
                "days {days}"
            );
            // Every column of the product appears, with tasks in several.
            let v: Value = serde_json::from_str(&typed).unwrap();
            let counts: Vec<u64> = v["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["count"].as_u64().unwrap())
                .collect();
            assert_eq!(counts.len(), SHOWN.len());
            assert!(counts.iter().filter(|n| **n > 0).count() >= 3, "{counts:?}");
        }
        assert_eq!(
            String::from_utf8(board(&[], today, 30, None)).unwrap(),
            reference(&[], today, 30, None)
        );
        // One task alone, as the detail routes show it.
        let t = row(8, today);
        assert_eq!(t.to_json(today, 30).to_string(), {
            let b: Value =
                serde_json::from_str(&reference(std::slice::from_ref(&t), today, 30, None))
                    .unwrap();
            b["columns"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|c| c["tasks"].get(0).cloned())
                .unwrap()
                .to_string()
        });
    }

    /// A row with `TaskRow`'s columns, as `task_select!` names and types
    /// them, with NULL where a column may be NULL.
    const ROW: &str = "SELECT 1::int8 AS id, 2::int8 AS residence_id, 'Gutters' AS title,
        '' AS description, NULL::int4 AS category_id, NULL::int4 AS priority_id,
        NULL::int4 AS frequency_id, NULL::int4 AS custom_interval_days,
        'due_date' AS recurrence_anchor, NULL::date AS due_date, DATE '2026-06-10' AS next_due_date,
        NULL::int8 AS assigned_to, NULL::int8 AS contractor_id, NULL::numeric AS estimated_cost,
        false AS in_progress, false AS is_cancelled, false AS is_archived,
        now() AS created_at, now() AS updated_at, NULL::int4 AS freq_days,
        NULL::int4 AS freq_months, 0::int8 AS completion_count,
        NULL::timestamptz AS last_completed_at";

    async fn decode(sql: &str, check: bool) -> Result<TaskRow, sqlx::Error> {
        use sqlx::Connection;
        let mut conn = PgConnection::connect(&honeydue_testkit::db::server_url())
            .await
            .unwrap();
        let row = sqlx::query(sql).fetch_one(&mut conn).await.unwrap();
        TaskRow::decode(&row, check)
    }

    #[tokio::test]
    async fn a_statement_whose_columns_are_not_task_rows_is_refused_by_the_checked_decode() {
        let t = decode(ROW, true).await.unwrap();
        assert_eq!((t.id, t.residence_id, t.title.as_str()), (1, 2, "Gutters"));
        assert_eq!(t.next_due_date, NaiveDate::from_ymd_opt(2026, 6, 10));
        // Two columns of one type in each other's place: only the names
        // tell them apart.
        let swapped = ROW
            .replace("NULL::date AS due_date", "NULL::date AS next_due_date_")
            .replace(
                "DATE '2026-06-10' AS next_due_date",
                "DATE '2026-06-10' AS due_date",
            )
            .replace("next_due_date_", "next_due_date");
        let err = decode(&swapped, true).await.unwrap_err().to_string();
        assert!(err.contains("expected `due_date`"), "{err}");
        // A type that does not fit, in a column that is NULL in this row.
        let wider = ROW.replace(
            "NULL::int4 AS custom_interval_days",
            "NULL::int8 AS custom_interval_days",
        );
        let err = decode(&wider, true).await.unwrap_err().to_string();
        assert!(err.contains("custom_interval_days"), "{err}");
        // Unchecked (the rows after the first), the same statement decodes.
        assert!(decode(&wider, false).await.is_ok());
    }
}
