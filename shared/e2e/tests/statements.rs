//! No N+1 queries: every list that grows with a household or an install
//! runs the same number of SQL statements for a few rows as for many
//! (statements counted as sqlx executes them, honeydue_testkit::statements),
//! against a real Postgres through each function's router.

use honeydue_http::{Config, State};
use honeydue_testkit::fixtures::{admin, exec, residence, user};
use honeydue_testkit::statements::Counter;
use honeydue_testkit::{TestClient, TestDb};
use serde_json::json;

/// `n` more of everything a list shows, for `owner`'s `home` (and `n`
/// more users and homes for the admin's lists).
async fn grow(db: &TestDb, owner: i64, home: i64, n: i64) {
    let p = &db.pool;
    exec(
        p,
        &format!(
            "INSERT INTO tasks (residence_id, created_by, title, due_date, next_due_date, assigned_to)
             SELECT {home}, {owner}, 'task ' || g, current_date + (g % 40) - 10, current_date + (g % 40) - 10, {owner}
               FROM generate_series(1, {n}) g"
        ),
    )
    .await;
    exec(
        p,
        &format!(
            "INSERT INTO task_completions (task_id, completed_at, notes)
             SELECT (SELECT min(id) FROM tasks WHERE residence_id = {home}), now() - make_interval(days => g), 'done'
               FROM generate_series(1, {n}) g"
        ),
    )
    .await;
    exec(
        p,
        &format!(
            "INSERT INTO documents (residence_id, title, doc_type, expiry_date)
             SELECT {home}, 'doc ' || g, 'warranty', current_date + g FROM generate_series(1, {n}) g"
        ),
    )
    .await;
    exec(
        p,
        &format!(
            "INSERT INTO contractors (owner_id, name) SELECT {owner}, 'pro ' || g FROM generate_series(1, {n}) g"
        ),
    )
    .await;
    exec(
        p,
        &format!(
            "INSERT INTO notifications (user_id, kind, title) SELECT {owner}, 'completed', 'n ' || g
               FROM generate_series(1, {n}) g"
        ),
    )
    .await;
    exec(
        p,
        &format!(
            "WITH u AS (INSERT INTO users (email, password_hash) SELECT 'grow' || g || '-' || md5(random()::text) || '@example.com', 'x'
                          FROM generate_series(1, {n}) g RETURNING id),
                  r AS (INSERT INTO residences (owner_id, name) SELECT id, 'Home of ' || id FROM u RETURNING id, owner_id)
             INSERT INTO residence_members (residence_id, user_id, role)
             SELECT id, owner_id, 'owner' FROM r
             UNION ALL SELECT id, {owner}, 'member' FROM r"
        ),
    )
    .await;
    exec(
        p,
        &format!(
            "INSERT INTO email_outbox (kind, to_address, subject, body_text)
             SELECT 'welcome', 'x' || g || '@example.com', 'Welcome', 'Hi' FROM generate_series(1, {n}) g"
        ),
    )
    .await;
}

/// The statements of `GET path` as `token` on `c` (after one call that
/// warms whatever is loaded once).
async fn statements(c: &TestClient, counter: &Counter, path: &str, token: &str) -> usize {
    let r = c.get(path, Some(token)).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    counter.take();
    let r = c.get(path, Some(token)).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    counter.take()
}

#[tokio::test]
async fn every_list_runs_as_many_statements_for_many_rows_as_for_a_few() {
    let db = TestDb::new().await;
    let (ann, token) = user(&db.pool, "ann@example.com").await;
    let home = residence(&db.pool, ann, "Home").await;
    admin(&db.pool, "root@example.com", "admin-password").await;
    let state = || State::new(Config::for_tests(&db.url, None), db.pool.clone());
    let admin = TestClient::new(api_admin::app(state()));
    let admin_token = admin
        .post(
            "/api/admin/login/",
            json!({"email": "root@example.com", "password": "admin-password"}),
            None,
        )
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let tasks = TestClient::new(api_tasks::app(state()));
    let user_lists = [
        (&tasks, "/api/tasks/".to_string()),
        (&tasks, format!("/api/tasks/by-residence/{home}/")),
        (
            &tasks,
            "/api/task-completions/?task=FIRST_TASK&page_size=100".into(),
        ),
        (
            &TestClient::new(api_documents::app(state())),
            "/api/documents/?page_size=100".into(),
        ),
        (
            &TestClient::new(api_contractors::app(state())),
            "/api/contractors/?page_size=100".into(),
        ),
        (
            &TestClient::new(api_notifications::app(state())),
            "/api/notifications/?page_size=100".into(),
        ),
        (
            &TestClient::new(api_residences::app(state())),
            "/api/residences/".into(),
        ),
    ];
    let admin_lists = [
        "/api/admin/users/?page_size=100".to_string(),
        "/api/admin/residences/?page_size=100".into(),
        format!("/api/admin/tasks/?residence={home}&page_size=100"),
        "/api/admin/email-outbox/?page_size=100".into(),
        "/api/admin/push-outbox/?page_size=100".into(),
    ];
    let apps: Vec<(&TestClient, &String, &String)> = user_lists
        .iter()
        .map(|(c, path)| (*c, path, &token))
        .chain(admin_lists.iter().map(|path| (&admin, path, &admin_token)))
        .collect();
    let counter = Counter::install();
    let mut few = Vec::new();
    grow(&db, ann, home, 3).await;
    let first_task: i64 = sqlx::query_scalar("SELECT min(id) FROM tasks")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    for (c, path, t) in &apps {
        let path = path.replace("FIRST_TASK", &first_task.to_string());
        few.push(statements(c, &counter, &path, t).await);
    }
    grow(&db, ann, home, 60).await;
    let mut report = Vec::new();
    for ((c, path, t), before) in apps.iter().zip(&few) {
        let path = path.replace("FIRST_TASK", &first_task.to_string());
        let after = statements(c, &counter, &path, t).await;
        assert!(
            *before > 0,
            "{path}: no statement counted (is sqlx logging?)"
        );
        report.push(format!("{path}: {before} -> {after}"));
        assert_eq!(
            after, *before,
            "{path} runs more statements for more rows (N+1?): {before} -> {after}"
        );
    }
    println!(
        "statements per request (3 rows -> 63 rows):\n{}",
        report.join("\n")
    );
}
