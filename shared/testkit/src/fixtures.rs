//! Rows tests need, inserted directly (the auth function's own tests cover
//! how they are made through the API).

use sqlx::PgPool;

/// A user with a login token: `(user_id, token)`.
pub async fn user(pool: &PgPool, email: &str) -> (i64, String) {
    user_in(pool, email, "UTC").await
}

/// A user in a time zone, with a login token.
pub async fn user_in(pool: &PgPool, email: &str, timezone: &str) -> (i64, String) {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (email, password_hash, first_name, timezone, email_verified_at)
         VALUES ($1, 'not-a-hash', split_part($1, '@', 1), $2, now()) RETURNING id",
    )
    .bind(email)
    .bind(timezone)
    .fetch_one(pool)
    .await
    .expect("insert user");
    let (token, hash) = honeydue_core::auth::new_token();
    sqlx::query("INSERT INTO auth_tokens (user_id, token_hash, expires_at) VALUES ($1, $2, now() + interval '1 day')")
        .bind(id)
        .bind(hash)
        .execute(pool)
        .await
        .expect("insert token");
    (id, token)
}

/// An admin (the separate realm) who signs in with `password`: their id.
pub async fn admin(pool: &PgPool, email: &str, password: &str) -> i64 {
    let hash = honeydue_core::auth::hash_password(password).expect("hash");
    sqlx::query_scalar(
        "INSERT INTO admin_users (email, password_hash, name) VALUES ($1, $2, 'Root') RETURNING id",
    )
    .bind(email)
    .bind(hash)
    .fetch_one(pool)
    .await
    .expect("insert admin")
}

/// A residence owned by `owner`, with `others` as members of the given role.
pub async fn residence(pool: &PgPool, owner: i64, name: &str) -> i64 {
    let id: i64 =
        sqlx::query_scalar("INSERT INTO residences (owner_id, name) VALUES ($1, $2) RETURNING id")
            .bind(owner)
            .bind(name)
            .fetch_one(pool)
            .await
            .expect("insert residence");
    add_member(pool, id, owner, "owner").await;
    id
}

/// Adds a member.
pub async fn add_member(pool: &PgPool, residence: i64, user: i64, role: &str) {
    sqlx::query("INSERT INTO residence_members (residence_id, user_id, role) VALUES ($1, $2, $3)")
        .bind(residence)
        .bind(user)
        .bind(role)
        .execute(pool)
        .await
        .expect("insert member");
}

/// An upload row (no object in a bucket): `(uploader, residence, purpose,
/// status)` as the uploads function would leave it.
pub async fn upload(
    pool: &PgPool,
    user: i64,
    residence: Option<i64>,
    purpose: &str,
    status: &str,
) -> uuid::Uuid {
    let id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO uploads (id, user_id, residence_id, purpose, object_key, filename, content_type, size_bytes, status)
         VALUES ($1, $2, $3, $4, $5, 'file.jpg', 'image/jpeg', 10, $6)",
    )
    .bind(id)
    .bind(user)
    .bind(residence)
    .bind(purpose)
    .bind(format!("uploads/{}", id.simple()))
    .bind(status)
    .execute(pool)
    .await
    .expect("insert upload");
    id
}

/// A live task due on `due` (`YYYY-MM-DD`), of the frequency named
/// `frequency` (`None` = a one-off), assigned to `assignee`.
pub async fn task(
    pool: &PgPool,
    residence: i64,
    title: &str,
    due: &str,
    frequency: Option<&str>,
    assignee: Option<i64>,
) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO tasks (residence_id, title, due_date, next_due_date, frequency_id, assigned_to)
         VALUES ($1, $2, $3::date, $3::date, (SELECT id FROM task_frequencies WHERE name = $4), $5)
         RETURNING id",
    )
    .bind(residence)
    .bind(title)
    .bind(due)
    .bind(frequency)
    .bind(assignee)
    .fetch_one(pool)
    .await
    .expect("insert task")
}

/// A document of `doc_type` expiring on `expiry` (`YYYY-MM-DD`).
pub async fn document(
    pool: &PgPool,
    residence: i64,
    title: &str,
    doc_type: &str,
    expiry: &str,
) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO documents (residence_id, title, doc_type, expiry_date) VALUES ($1, $2, $3, $4::date) RETURNING id",
    )
    .bind(residence)
    .bind(title)
    .bind(doc_type)
    .bind(expiry)
    .fetch_one(pool)
    .await
    .expect("insert document")
}

/// Runs one statement (test set-up that needs no helper of its own).
pub async fn exec(pool: &PgPool, sql: &str) {
    sqlx::query(sql)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Outbox rows of `kind` for `user`: `(subject, text, headers)`.
pub async fn outbox(
    pool: &PgPool,
    user: i64,
    kind: &str,
) -> Vec<(String, String, serde_json::Value)> {
    sqlx::query_as(
        "SELECT subject, body_text, headers FROM email_outbox WHERE user_id = $1 AND kind = $2 ORDER BY id",
    )
    .bind(user)
    .bind(kind)
    .fetch_all(pool)
    .await
    .expect("read outbox")
}

/// In-app notifications of `kind` for `user`: `(title, data)`.
pub async fn notifications(
    pool: &PgPool,
    user: i64,
    kind: &str,
) -> Vec<(String, serde_json::Value)> {
    sqlx::query_as(
        "SELECT title, data FROM notifications WHERE user_id = $1 AND kind = $2 ORDER BY id",
    )
    .bind(user)
    .bind(kind)
    .fetch_all(pool)
    .await
    .expect("read notifications")
}
