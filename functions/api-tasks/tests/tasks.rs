use api_tasks::{app, Config, State};
use axum::http::Method;
use chrono::NaiveDate;
use honeydue_testkit::fixtures::{add_member, residence, upload, user, user_in};
use honeydue_testkit::{TestClient, TestDb};
use serde_json::{json, Value};

async fn spawn() -> (TestDb, TestClient) {
    let db = TestDb::new().await;
    let state = State::new(Config::for_tests(&db.url, None), db.pool.clone());
    (db, TestClient::new(app(state)))
}

const MONTHLY: i64 = 5;
const ANNUALLY: i64 = 8;
const WEEKLY: i64 = 3;

async fn task(c: &TestClient, token: &str, body: Value) -> Value {
    let r = c.post("/api/tasks/", body, Some(token)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

async fn complete(c: &TestClient, token: &str, task_id: i64, at: &str) -> Value {
    let r = c
        .post(
            "/api/task-completions/",
            json!({"task_id": task_id, "completed_at": at}),
            Some(token),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

fn column_of(board: &Value, task_id: i64) -> String {
    for col in board["columns"].as_array().unwrap() {
        if col["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == task_id)
        {
            return col["name"].as_str().unwrap().to_string();
        }
    }
    "absent".into()
}

fn today_in(tz: &str) -> NaiveDate {
    let tz: chrono_tz::Tz = tz.parse().unwrap();
    chrono::Utc::now().with_timezone(&tz).date_naive()
}

#[tokio::test]
async fn crud_validation_and_scope() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let (v, tv) = user(&db.pool, "v@example.com").await;
    let (_, tx) = user(&db.pool, "x@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    add_member(&db.pool, home, v, "viewer").await;

    let t = task(&c, &ta, json!({"residence_id": home, "title": "Clean gutters", "category_id": 5, "priority_id": 2,
                                 "frequency_id": ANNUALLY, "due_date": "2030-10-01", "estimated_cost": "150.00", "assigned_to": a})).await;
    let id = t["id"].as_i64().unwrap();
    assert_eq!(t["next_due_date"], "2030-10-01");
    assert_eq!(t["is_recurring"], true);
    assert_eq!(t["kanban_column"], "upcoming");
    assert_eq!(t["estimated_cost"], "150.00");

    let r = c
        .patch(
            &format!("/api/tasks/{id}/"),
            json!({"title": "Clean all gutters", "priority_id": null}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["title"], "Clean all gutters");
    assert_eq!(r.json()["priority_id"], Value::Null);
    assert_eq!(r.json()["category_id"], 5);

    // Validation.
    let r = c.post("/api/tasks/", json!({"residence_id": home, "title": " ", "category_id": 999, "custom_interval_days": 0,
                                         "recurrence_anchor": "moon", "assigned_to": 987654, "estimated_cost": "-1"}), Some(&ta)).await;
    assert_eq!(r.status, 422);
    let f = &r.json()["error"]["fields"];
    for k in [
        "title",
        "category_id",
        "custom_interval_days",
        "recurrence_anchor",
        "assigned_to",
        "estimated_cost",
    ] {
        assert!(f[k].is_array(), "{k}: {f}");
    }
    assert_eq!(
        c.post("/api/tasks/", json!({"title": "x"}), Some(&ta))
            .await
            .status,
        422
    );
    let other = residence(&db.pool, a, "Cabin").await;
    let r = c
        .patch(
            &format!("/api/tasks/{id}/"),
            json!({"residence_id": other}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 422);

    // Scope: outsiders get 404, viewers 403 on writes.
    assert_eq!(
        c.get(&format!("/api/tasks/{id}/"), Some(&tx)).await.status,
        404
    );
    assert_eq!(
        c.patch(
            &format!("/api/tasks/{id}/"),
            json!({"title": "mine"}),
            Some(&tx)
        )
        .await
        .status,
        404
    );
    assert_eq!(
        c.delete(&format!("/api/tasks/{id}/"), None, Some(&tx))
            .await
            .status,
        404
    );
    assert_eq!(
        c.post(&format!("/api/tasks/{id}/cancel/"), json!({}), Some(&tx))
            .await
            .status,
        404
    );
    assert_eq!(
        c.post(
            "/api/tasks/",
            json!({"residence_id": home, "title": "sneaky"}),
            Some(&tx)
        )
        .await
        .status,
        404
    );
    assert_eq!(
        c.get(&format!("/api/tasks/by-residence/{home}/"), Some(&tx))
            .await
            .status,
        404
    );
    assert_eq!(
        column_of(&c.get("/api/tasks/", Some(&tx)).await.json(), id),
        "absent"
    );
    assert_eq!(
        c.get(&format!("/api/task-completions/?task={id}"), Some(&tx))
            .await
            .status,
        404
    );
    assert_eq!(
        c.post("/api/task-completions/", json!({"task_id": id}), Some(&tx))
            .await
            .status,
        404
    );
    assert_eq!(
        c.get(&format!("/api/tasks/{id}/"), Some(&tv)).await.status,
        200
    );
    assert_eq!(
        c.patch(
            &format!("/api/tasks/{id}/"),
            json!({"title": "v"}),
            Some(&tv)
        )
        .await
        .status,
        403
    );
    assert_eq!(
        c.post("/api/task-completions/", json!({"task_id": id}), Some(&tv))
            .await
            .status,
        403
    );
    assert_eq!(
        c.post(&format!("/api/tasks/{id}/archive/"), json!({}), Some(&tv))
            .await
            .status,
        403
    );

    assert_eq!(
        c.delete(&format!("/api/tasks/{id}/"), None, Some(&ta))
            .await
            .status,
        204
    );
    assert_eq!(
        c.get(&format!("/api/tasks/{id}/"), Some(&ta)).await.status,
        404
    );
}

#[tokio::test]
async fn board_columns_and_boundaries_in_two_time_zones() {
    let (db, c) = spawn().await;
    // UTC+14 and UTC-11: their dates differ by one or two days.
    let (east, te) = user_in(&db.pool, "east@example.com", "Pacific/Kiritimati").await;
    let (west, tw) = user_in(&db.pool, "west@example.com", "Pacific/Pago_Pago").await;
    let home = residence(&db.pool, east, "Home").await;
    add_member(&db.pool, home, west, "member").await;
    let te_today = today_in("Pacific/Kiritimati");
    let d = |n: i64| (te_today + chrono::Duration::days(n)).to_string();

    let mk = |title: &str, due: Option<String>| json!({"residence_id": home, "title": title, "frequency_id": MONTHLY, "due_date": due});
    let yesterday = task(&c, &te, mk("yesterday", Some(d(-1)))).await["id"]
        .as_i64()
        .unwrap();
    let today = task(&c, &te, mk("today", Some(d(0)))).await["id"]
        .as_i64()
        .unwrap();
    let edge = task(&c, &te, mk("edge", Some(d(30)))).await["id"]
        .as_i64()
        .unwrap();
    let beyond = task(&c, &te, mk("beyond", Some(d(31)))).await["id"]
        .as_i64()
        .unwrap();
    let undated = task(&c, &te, json!({"residence_id": home, "title": "undated"})).await["id"]
        .as_i64()
        .unwrap();
    let busy = task(&c, &te, mk("busy", Some(d(-10)))).await["id"]
        .as_i64()
        .unwrap();
    c.post(
        &format!("/api/tasks/{busy}/mark-in-progress/"),
        json!({}),
        Some(&te),
    )
    .await;
    let gone = task(&c, &te, mk("gone", Some(d(1)))).await["id"]
        .as_i64()
        .unwrap();
    c.post(&format!("/api/tasks/{gone}/cancel/"), json!({}), Some(&te))
        .await;
    let once = task(
        &c,
        &te,
        json!({"residence_id": home, "title": "once", "due_date": d(2)}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    complete(&c, &te, once, "2026-01-01T00:00:00Z").await;

    let b = c
        .get(&format!("/api/tasks/by-residence/{home}/"), Some(&te))
        .await
        .json();
    let names: Vec<&str> = b["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "overdue",
            "due_soon",
            "upcoming",
            "in_progress",
            "completed"
        ]
    );
    assert_eq!(b["days_threshold"], 30);
    assert_eq!(column_of(&b, yesterday), "overdue");
    assert_eq!(column_of(&b, today), "due_soon");
    assert_eq!(column_of(&b, edge), "due_soon");
    assert_eq!(column_of(&b, beyond), "upcoming");
    assert_eq!(column_of(&b, undated), "upcoming");
    assert_eq!(column_of(&b, busy), "in_progress");
    assert_eq!(column_of(&b, gone), "absent", "cancelled tasks are hidden");
    assert_eq!(column_of(&b, once), "completed");
    let overdue = &b["columns"][0];
    assert_eq!(overdue["count"], 1);
    assert!(overdue["actions"]
        .as_array()
        .unwrap()
        .contains(&json!("complete")));

    // The same tasks seen from UTC-11: "yesterday" in UTC+14 is today or tomorrow there.
    let b = c
        .get(&format!("/api/tasks/by-residence/{home}/"), Some(&tw))
        .await
        .json();
    assert_eq!(column_of(&b, yesterday), "due_soon");
    assert_eq!(column_of(&b, today), "due_soon");
    // ?days narrows "due soon".
    let b = c
        .get(
            &format!("/api/tasks/by-residence/{home}/?days=7"),
            Some(&te),
        )
        .await
        .json();
    assert_eq!(column_of(&b, edge), "upcoming");
    assert_eq!(c.get("/api/tasks/?days=0", Some(&te)).await.status, 422);
    // The all-residences board has them too.
    assert_eq!(
        column_of(&c.get("/api/tasks/", Some(&tw)).await.json(), beyond),
        "upcoming"
    );
}

#[tokio::test]
async fn board_etags_change_when_the_board_does() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    let id = task(&c, &ta, json!({"residence_id": home, "title": "t", "frequency_id": WEEKLY, "due_date": "2030-01-01"})).await["id"].as_i64().unwrap();
    let path = format!("/api/tasks/by-residence/{home}/");
    let r = c.get(&path, Some(&ta)).await;
    let tag = r.headers["etag"].to_str().unwrap().to_string();
    let r = c
        .send_raw(
            Method::GET,
            &path,
            None,
            Some(&ta),
            &[("if-none-match", &tag)],
        )
        .await;
    assert_eq!(r.status, 304);
    c.post(
        &format!("/api/tasks/{id}/mark-in-progress/"),
        json!({}),
        Some(&ta),
    )
    .await;
    let r = c
        .send_raw(
            Method::GET,
            &path,
            None,
            Some(&ta),
            &[("if-none-match", &tag)],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_ne!(r.headers["etag"].to_str().unwrap(), tag);
}

#[tokio::test]
async fn recurrence_month_ends_leap_days_and_anchors() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let home = residence(&db.pool, a, "Home").await;

    let m = task(&c, &ta, json!({"residence_id": home, "title": "m", "frequency_id": MONTHLY, "due_date": "2026-01-31"})).await["id"].as_i64().unwrap();
    let r = complete(&c, &ta, m, "2026-01-31T12:00:00Z").await;
    assert_eq!(r["task"]["next_due_date"], "2026-02-28");
    assert_eq!(r["completion"]["occurrence_date"], "2026-01-31");
    let r = complete(&c, &ta, m, "2026-02-28T12:00:00Z").await;
    assert_eq!(
        r["task"]["next_due_date"], "2026-03-31",
        "the series keeps its 31st"
    );

    let leap = task(&c, &ta, json!({"residence_id": home, "title": "leap", "frequency_id": ANNUALLY, "due_date": "2024-02-29"})).await["id"].as_i64().unwrap();
    let r = complete(&c, &ta, leap, "2024-02-29T10:00:00Z").await;
    assert_eq!(r["task"]["next_due_date"], "2025-02-28");

    // Late completion jumps to the first future occurrence of the series.
    let late = task(&c, &ta, json!({"residence_id": home, "title": "late", "frequency_id": MONTHLY, "due_date": "2026-01-01"})).await["id"].as_i64().unwrap();
    let r = complete(&c, &ta, late, "2026-03-15T12:00:00Z").await;
    assert_eq!(r["task"]["next_due_date"], "2026-04-01");

    // Completion-anchored custom interval.
    let ca = task(
        &c,
        &ta,
        json!({"residence_id": home, "title": "filter", "custom_interval_days": 10,
                                  "recurrence_anchor": "completion", "due_date": "2026-01-01"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let r = complete(&c, &ta, ca, "2026-01-05T12:00:00Z").await;
    assert_eq!(r["task"]["next_due_date"], "2026-01-15");
}

#[tokio::test]
async fn skip_reschedule_and_undo() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    let w = task(&c, &ta, json!({"residence_id": home, "title": "w", "frequency_id": WEEKLY, "due_date": "2026-01-01"})).await["id"].as_i64().unwrap();
    let r = c
        .post(&format!("/api/tasks/{w}/skip/"), json!({}), Some(&ta))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["next_due_date"], "2026-01-08");
    let r = c
        .post(
            &format!("/api/tasks/{w}/reschedule/"),
            json!({"due_date": "2026-01-10"}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.json()["next_due_date"], "2026-01-10");
    assert_eq!(
        c.post(
            &format!("/api/tasks/{w}/reschedule/"),
            json!({"due_date": "soon"}),
            Some(&ta)
        )
        .await
        .status,
        422
    );

    // Complete twice, then undo: the latest restores the date, an older one does not move it.
    let first = complete(&c, &ta, w, "2026-01-10T12:00:00Z").await;
    assert_eq!(first["task"]["next_due_date"], "2026-01-15");
    let second = complete(&c, &ta, w, "2026-01-15T12:00:00Z").await;
    assert_eq!(second["task"]["next_due_date"], "2026-01-22");
    let second_id = second["completion"]["id"].as_i64().unwrap();
    let first_id = first["completion"]["id"].as_i64().unwrap();
    let r = c
        .delete(
            &format!("/api/task-completions/{second_id}/"),
            None,
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["task"]["next_due_date"], "2026-01-15");
    let r = c
        .delete(
            &format!("/api/task-completions/{first_id}/"),
            None,
            Some(&ta),
        )
        .await;
    assert_eq!(
        r.json()["task"]["next_due_date"],
        "2026-01-10",
        "now the latest: restores its date"
    );
    assert_eq!(
        c.delete(
            &format!("/api/task-completions/{first_id}/"),
            None,
            Some(&ta)
        )
        .await
        .status,
        404
    );

    // One-off tasks cannot be skipped; cancelled ones cannot be completed.
    let once = task(
        &c,
        &ta,
        json!({"residence_id": home, "title": "once", "due_date": "2026-02-01"}),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let r = c
        .post(&format!("/api/tasks/{once}/skip/"), json!({}), Some(&ta))
        .await;
    assert_eq!(r.status, 409);
    c.post(&format!("/api/tasks/{once}/cancel/"), json!({}), Some(&ta))
        .await;
    let r = c
        .post(
            "/api/task-completions/",
            json!({"task_id": once}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 409);
    c.post(
        &format!("/api/tasks/{once}/uncancel/"),
        json!({}),
        Some(&ta),
    )
    .await;
    let r = c
        .post(&format!("/api/tasks/{once}/archive/"), json!({}), Some(&ta))
        .await;
    assert_eq!(r.json()["kanban_column"], "archived");
    let r = c
        .post(
            &format!("/api/tasks/{once}/unarchive/"),
            json!({}),
            Some(&ta),
        )
        .await;
    assert_ne!(r.json()["kanban_column"], "archived");
}

#[tokio::test]
async fn completions_are_idempotent_and_once_per_occurrence() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let (b, _) = user(&db.pool, "b@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    add_member(&db.pool, home, b, "member").await;
    let w = task(&c, &ta, json!({"residence_id": home, "title": "w", "frequency_id": WEEKLY, "due_date": "2026-01-01"})).await["id"].as_i64().unwrap();
    let body = json!({"task_id": w, "completed_at": "2026-01-01T09:00:00Z", "rating": 5, "actual_cost": "20.00", "notes": "done"});
    let key = [("idempotency-key", "tap-1")];
    let send = |body: Value| {
        let c = c.clone();
        let ta = ta.clone();
        async move {
            c.send_raw(
                Method::POST,
                "/api/task-completions/",
                Some(body.to_string().into_bytes()),
                Some(&ta),
                &key,
            )
            .await
        }
    };
    let r1 = send(body.clone()).await;
    assert_eq!(r1.status, 201, "{}", r1.text());
    let r2 = send(body.clone()).await;
    assert_eq!(r2.status, 200, "a retry is harmless");
    assert_eq!(r1.json()["completion"]["id"], r2.json()["completion"]["id"]);
    assert_eq!(
        r2.json()["task"]["next_due_date"],
        "2026-01-08",
        "not advanced twice"
    );
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM task_completions")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 1);

    // A second completion of the same occurrence (another device) is a conflict.
    let r = c
        .post(
            "/api/task-completions/",
            json!({"task_id": w, "occurrence_date": "2026-01-01"}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), "already_completed");

    // Validation.
    let r = c.post("/api/task-completions/", json!({"task_id": w, "rating": 6, "actual_cost": "-3", "completed_at": "2999-01-01T00:00:00Z"}), Some(&ta)).await;
    assert_eq!(r.status, 422);
    for k in ["rating", "actual_cost", "completed_at"] {
        assert!(r.json()["error"]["fields"][k].is_array(), "{k}");
    }
    assert_eq!(c.get("/api/task-completions/", Some(&ta)).await.status, 422);
    let r = c
        .get(&format!("/api/task-completions/?task={w}"), Some(&ta))
        .await;
    assert_eq!(r.json()["count"], 1);
    assert_eq!(r.json()["results"][0]["rating"], 5);

    // The other member was told, the one who completed was not; b has no
    // device, so nothing was pushed.
    let notes: Vec<(i64, String)> = sqlx::query_as("SELECT user_id, kind FROM notifications")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(notes, vec![(b, "completed".to_string())]);
    let pushed: i64 = sqlx::query_scalar("SELECT count(*) FROM push_outbox")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(pushed, 0);

    // One-off: done once, then 409.
    let once = task(&c, &ta, json!({"residence_id": home, "title": "once"})).await["id"]
        .as_i64()
        .unwrap();
    let r = c
        .post(
            "/api/task-completions/",
            json!({"task_id": once}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.json()["task"]["kanban_column"], "completed");
    assert_eq!(
        c.post(
            "/api/task-completions/",
            json!({"task_id": once}),
            Some(&ta)
        )
        .await
        .status,
        409
    );
}

#[tokio::test]
async fn completion_photos_must_be_the_callers_confirmed_uploads() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let (b, _) = user(&db.pool, "b@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    add_member(&db.pool, home, b, "member").await;
    let w = task(&c, &ta, json!({"residence_id": home, "title": "w", "frequency_id": WEEKLY, "due_date": "2026-01-01"})).await["id"].as_i64().unwrap();
    let mine = upload(&db.pool, a, Some(home), "completion_photo", "confirmed").await;
    let pending = upload(&db.pool, a, Some(home), "completion_photo", "pending").await;
    let bens = upload(&db.pool, b, Some(home), "completion_photo", "confirmed").await;
    for bad in [pending, bens, uuid::Uuid::new_v4()] {
        let r = c
            .post(
                "/api/task-completions/",
                json!({"task_id": w, "upload_ids": [bad]}),
                Some(&ta),
            )
            .await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
        assert!(r.json()["error"]["fields"]["upload_ids"].is_array());
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM task_completions")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "a refused photo refuses the completion");
    let r = c
        .post(
            "/api/task-completions/",
            json!({"task_id": w, "upload_ids": [mine]}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["completion"]["image_ids"], json!([mine]));
    let r = c
        .get(&format!("/api/task-completions/?task={w}"), Some(&ta))
        .await;
    assert_eq!(r.json()["results"][0]["image_ids"], json!([mine]));
}

/// Every task route that names a task or a completion: an outsider gets
/// 404 for all of them, a viewer gets 403 for every write, and nothing
/// changes.
#[tokio::test]
async fn outsiders_and_viewers_on_every_task_route() {
    let (db, c) = spawn().await;
    let p = &db.pool;
    let (ann, ta) = user(p, "ann@example.com").await;
    let (vic, tv) = user(p, "vic@example.com").await;
    let (_, tx) = user(p, "xena@example.com").await;
    let home = residence(p, ann, "Home").await;
    add_member(p, home, vic, "viewer").await;
    let task =
        honeydue_testkit::fixtures::task(p, home, "Filters", "2026-06-10", Some("Monthly"), None)
            .await;
    let r = c
        .post(
            "/api/task-completions/",
            json!({"task_id": task}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let completion = r.json()["completion"]["id"].as_i64().unwrap();
    let before: (String, Option<NaiveDate>, bool, bool, bool) = sqlx::query_as(
        "SELECT title, next_due_date, in_progress, is_cancelled, is_archived FROM tasks WHERE id = $1",
    )
    .bind(task)
    .fetch_one(p)
    .await
    .unwrap();
    let mut checked = 0;
    for r in api_tasks::routes()
        .iter()
        .filter(|r| r.path.contains("{id}"))
    {
        let id = if r.path.starts_with("/api/task-completions/") {
            completion
        } else if r.path.contains("by-residence") {
            home
        } else {
            task
        };
        let path = r.path.replace("{id}", &id.to_string());
        let method: Method = r.method.parse().unwrap();
        let body = match r.handler {
            "update" => Some(json!({"title": "Hijacked"})),
            "reschedule" => Some(json!({"due_date": "2030-01-01"})),
            _ if method == Method::POST => Some(json!({})),
            _ => None,
        };
        let outsider = c.send(method.clone(), &path, body.clone(), Some(&tx)).await;
        assert_eq!(
            outsider.status,
            404,
            "outsider {} {}: {}",
            r.method,
            r.path,
            outsider.text()
        );
        if method != Method::GET {
            let viewer = c.send(method.clone(), &path, body, Some(&tv)).await;
            assert_eq!(
                viewer.status,
                403,
                "viewer {} {}: {}",
                r.method,
                r.path,
                viewer.text()
            );
        }
        checked += 1;
    }
    assert!(checked >= 12, "{checked}");
    let after: (String, Option<NaiveDate>, bool, bool, bool) = sqlx::query_as(
        "SELECT title, next_due_date, in_progress, is_cancelled, is_archived FROM tasks WHERE id = $1",
    )
    .bind(task)
    .fetch_one(p)
    .await
    .unwrap();
    assert_eq!(before, after, "nothing changed");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM task_completions")
        .fetch_one(p)
        .await
        .unwrap();
    assert_eq!(n, 1);
    // Creating in someone else's residence, or with another household's
    // contractor or a non-member assignee, is refused too.
    let r = c
        .post(
            "/api/tasks/",
            json!({"residence_id": home, "title": "x"}),
            Some(&tx),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = c
        .post(
            "/api/tasks/",
            json!({"residence_id": home, "title": "x"}),
            Some(&tv),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let xena_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = 'xena@example.com'")
        .fetch_one(p)
        .await
        .unwrap();
    let theirs = residence(p, xena_id, "Elsewhere").await;
    let contractor: i64 = sqlx::query_scalar("INSERT INTO contractors (owner_id, residence_id, name) VALUES ($1, $2, 'Theirs') RETURNING id")
        .bind(xena_id)
        .bind(theirs)
        .fetch_one(p)
        .await
        .unwrap();
    let r = c
        .post(
            "/api/tasks/",
            json!({"residence_id": home, "title": "x", "contractor_id": contractor}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let r = c
        .post(
            "/api/tasks/",
            json!({"residence_id": home, "title": "x", "assigned_to": xena_id}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
}

#[tokio::test]
async fn calendar_feed_lists_my_due_tasks_until_revoked() {
    let (db, c) = spawn().await;
    let p = &db.pool;
    let (ann, ta) = user(p, "ann@example.com").await;
    let (bob, tb) = user(p, "bob@example.com").await;
    let home = residence(p, ann, "Maple House").await;
    add_member(p, home, bob, "member").await;
    let today = chrono::Utc::now().date_naive();
    let fmt = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    let soon = fmt(today + chrono::Days::new(3));
    honeydue_testkit::fixtures::task(p, home, "Clean gutters, front", &soon, None, None).await;
    honeydue_testkit::fixtures::task(p, home, "Bob's job", &soon, None, Some(bob)).await;
    honeydue_testkit::fixtures::task(
        p,
        home,
        "Far away",
        &fmt(today + chrono::Days::new(400)),
        None,
        None,
    )
    .await;

    assert_eq!(
        c.get("/api/calendar/feed/", Some(&ta)).await.json()["active"],
        false
    );
    assert_eq!(
        c.post("/api/calendar/feed/", json!({}), None).await.status,
        401
    );
    let r = c.post("/api/calendar/feed/", json!({}), Some(&ta)).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let url = r.json()["url"].as_str().unwrap().to_string();
    let path = url
        .split_once("://")
        .unwrap()
        .1
        .split_once('/')
        .map(|(_, p)| format!("/{p}"))
        .unwrap();
    assert!(
        path.starts_with("/api/calendar/") && path.ends_with(".ics"),
        "{path}"
    );
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM calendar_feeds")
        .fetch_one(p)
        .await
        .unwrap();
    assert!(!path.contains(&hex_of(&stored)), "only the hash is stored");

    let r = c.get(&path, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let cal = r.text();
    assert!(cal.starts_with("BEGIN:VCALENDAR\r\n"), "{cal}");
    assert!(cal.contains("SUMMARY:Clean gutters\\, front\r\n"), "{cal}");
    assert!(cal.contains(&format!("DTSTART;VALUE=DATE:{}", soon.replace('-', ""))));
    assert!(cal.contains("LOCATION:Maple House"));
    assert!(!cal.contains("Bob's job"), "assigned to someone else");
    assert!(!cal.contains("Far away"), "more than a year ahead");
    // Bob's own feed has his task; Ann's URL shows nothing of Bob's feed.
    let bobs = c
        .post("/api/calendar/feed/", json!({}), Some(&tb))
        .await
        .json()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let bobs_path = bobs
        .split_once("://")
        .unwrap()
        .1
        .split_once('/')
        .map(|(_, p)| format!("/{p}"))
        .unwrap();
    assert!(c.get(&bobs_path, None).await.text().contains("Bob's job"));
    // Rotating invalidates the old URL; revoking the new one; guesses are 404.
    let rotated = c
        .post("/api/calendar/feed/", json!({}), Some(&ta))
        .await
        .json()["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(rotated, url);
    assert_eq!(c.get(&path, None).await.status, 404);
    let new_path = rotated
        .split_once("://")
        .unwrap()
        .1
        .split_once('/')
        .map(|(_, p)| format!("/{p}"))
        .unwrap();
    assert_eq!(c.get(&new_path, None).await.status, 200);
    assert_eq!(
        c.delete("/api/calendar/feed/", None, Some(&ta))
            .await
            .status,
        204
    );
    assert_eq!(c.get(&new_path, None).await.status, 404);
    assert_eq!(
        c.delete("/api/calendar/feed/", None, Some(&ta))
            .await
            .status,
        404
    );
    assert_eq!(
        c.get("/api/calendar/not-a-token.ics", None).await.status,
        404
    );
    assert_eq!(c.get(&new_path.replace(".ics", ""), None).await.status, 404);
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn completion_costs_that_do_not_fit_numeric_12_2_are_422_not_500() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    let w = task(&c, &ta, json!({"residence_id": home, "title": "w", "frequency_id": WEEKLY, "due_date": "2026-01-01"})).await["id"].as_i64().unwrap();
    // actual_cost is NUMERIC(12,2): 10 digits before the point, 2 after.
    for bad in [
        json!("10000000000"),    // an 11th digit: numeric field overflow
        json!("9999999999.999"), // rounds up into the same overflow
        json!("12.345"),         // would be rounded silently
        json!(12345678901234.5), // a JSON number just as much
        json!(1e300),            // past what a decimal holds
        json!("NaN"),
        json!("-0.01"),
    ] {
        let r = c
            .post(
                "/api/task-completions/",
                json!({"task_id": w, "actual_cost": bad}),
                Some(&ta),
            )
            .await;
        assert_eq!(r.status, 422, "{bad}: {}", r.text());
        assert!(
            r.json()["error"]["fields"]["actual_cost"].is_array(),
            "{bad}: {}",
            r.text()
        );
    }
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM task_completions")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0, "nothing was recorded");
    // The largest cost that fits, and trailing zeros, are fine.
    for good in ["9999999999.99", "12.500"] {
        let r = c
            .post(
                "/api/task-completions/",
                json!({"task_id": w, "actual_cost": good}),
                Some(&ta),
            )
            .await;
        assert_eq!(r.status, 201, "{good}: {}", r.text());
    }
    let r = c
        .get(&format!("/api/task-completions/?task={w}"), Some(&ta))
        .await;
    let costs: Vec<Value> = r.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["actual_cost"].clone())
        .collect();
    assert_eq!(
        costs,
        vec![json!("12.50"), json!("9999999999.99")],
        "newest first"
    );
}

#[tokio::test]
async fn a_create_retried_with_its_idempotency_key_is_the_same_task() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let (b, tb) = user(&db.pool, "b@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    add_member(&db.pool, home, b, "member").await;
    let create = |token: String, key: &'static str| {
        let c = c.clone();
        async move {
            let body = json!({"residence_id": home, "title": format!("gutters {key}")});
            c.send_raw(
                Method::POST,
                "/api/tasks/",
                Some(body.to_string().into_bytes()),
                Some(&token),
                &[("idempotency-key", key)],
            )
            .await
        }
    };
    let r1 = create(ta.clone(), "k-1").await;
    assert_eq!(r1.status, 201, "{}", r1.text());
    let r2 = create(ta.clone(), "k-1").await;
    assert_eq!(
        r2.status,
        200,
        "a retry is answered with the task: {}",
        r2.text()
    );
    assert_eq!(r1.json()["id"], r2.json()["id"]);
    assert_eq!(r1.json()["title"], r2.json()["title"]);

    // Retries racing each other: one task.
    let racing: Vec<_> = (0..6)
        .map(|_| tokio::spawn(create(ta.clone(), "k-2")))
        .collect();
    let mut statuses = Vec::new();
    let mut ids = std::collections::BTreeSet::new();
    for r in racing {
        let r = r.await.unwrap();
        statuses.push(r.status);
        ids.insert(r.json()["id"].as_i64().unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, vec![200, 200, 200, 200, 200, 201]);
    assert_eq!(ids.len(), 1);

    // A key is the caller's own: another member's same key is another task.
    let rb = create(tb.clone(), "k-1").await;
    assert_eq!(rb.status, 201, "{}", rb.text());
    assert_ne!(rb.json()["id"], r1.json()["id"]);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(n, 3);

    // Without a key every create is new; a bad key is refused.
    task(&c, &ta, json!({"residence_id": home, "title": "no key"})).await;
    task(&c, &ta, json!({"residence_id": home, "title": "no key"})).await;
    let long = "k".repeat(201);
    let r = c
        .send_raw(
            Method::POST,
            "/api/tasks/",
            Some(
                json!({"residence_id": home, "title": "x"})
                    .to_string()
                    .into_bytes(),
            ),
            Some(&ta),
            &[("idempotency-key", long.as_str())],
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
}

#[tokio::test]
async fn completions_and_assignments_push_to_the_members_devices() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let (b, _) = user(&db.pool, "b@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    add_member(&db.pool, home, b, "member").await;
    for (u, t) in [(a, "a-phone"), (b, "b-phone"), (b, "b-tablet")] {
        sqlx::query("INSERT INTO devices (user_id, platform, token) VALUES ($1, 'ios', $2)")
            .bind(u)
            .bind(t)
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let t = task(
        &c,
        &ta,
        json!({"residence_id": home, "title": "filters", "assigned_to": b}),
    )
    .await;
    complete(&c, &ta, t["id"].as_i64().unwrap(), "2026-01-01T09:00:00Z").await;
    let pushed: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT o.user_id, o.kind, d.token FROM push_outbox o JOIN devices d ON d.id = o.device_id ORDER BY o.id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let want = vec![
        (b, "assigned".to_string(), "b-phone".to_string()),
        (b, "assigned".to_string(), "b-tablet".to_string()),
        (b, "completed".to_string(), "b-phone".to_string()),
        (b, "completed".to_string(), "b-tablet".to_string()),
    ];
    assert_eq!(
        pushed, want,
        "to every device of the member told, none to the one who acted"
    );
}

#[tokio::test]
async fn events_go_in_app_by_email_and_by_push_as_each_member_prefers() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let (b, _) = user(&db.pool, "b@example.com").await;
    let (m, _) = user(&db.pool, "m@example.com").await;
    let (q, _) = user(&db.pool, "q@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    for u in [b, m, q] {
        add_member(&db.pool, home, u, "member").await;
    }
    // b: defaults. m: no email for completions. q: completions off
    // entirely (no in-app, no email, no push).
    sqlx::query(
        "INSERT INTO notification_preferences (user_id, kinds) VALUES
           ($1, '{\"completed\": {\"email\": false}}'), ($2, '{\"completed\": {\"enabled\": false}}')",
    )
    .bind(m)
    .bind(q)
    .execute(&db.pool)
    .await
    .unwrap();
    let t = task(
        &c,
        &ta,
        json!({"residence_id": home, "title": "gutters", "assigned_to": b}),
    )
    .await;
    let id = t["id"].as_i64().unwrap();
    let body = json!({"task_id": id, "completed_at": "2026-01-01T09:00:00Z"}).to_string();
    for _ in 0..2 {
        // A retry (same key) notifies and mails nobody twice.
        let r = c
            .send_raw(
                Method::POST,
                "/api/task-completions/",
                Some(body.clone().into_bytes()),
                Some(&ta),
                &[("idempotency-key", "done-1")],
            )
            .await;
        assert!(r.status == 201 || r.status == 200, "{}", r.text());
    }
    let inapp: Vec<(i64, String)> =
        sqlx::query_as("SELECT user_id, kind FROM notifications ORDER BY user_id, id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let mut want = vec![
        (b, "assigned".to_string()),
        (b, "completed".to_string()),
        (m, "completed".to_string()),
    ];
    want.sort();
    assert_eq!(inapp, want);
    let mails: Vec<(Option<i64>, String, String, serde_json::Value)> = sqlx::query_as(
        "SELECT user_id, kind, to_address, headers FROM email_outbox ORDER BY user_id, id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let who: Vec<(Option<i64>, &str)> = mails.iter().map(|(u, k, _, _)| (*u, k.as_str())).collect();
    assert_eq!(who, vec![(Some(b), "assigned"), (Some(b), "completed")]);
    assert_eq!(mails[1].2, "b@example.com");
    let unsubscribe = mails[1].3.to_string();
    assert!(
        unsubscribe.contains("List-Unsubscribe")
            && unsubscribe.contains(&format!("/api/unsubscribe/{b}.completed.")),
        "{unsubscribe}"
    );
    // Unverified addresses get no email.
    let (u, _) = user(&db.pool, "unverified@example.com").await;
    sqlx::query("UPDATE users SET email_verified_at = NULL WHERE id = $1")
        .bind(u)
        .execute(&db.pool)
        .await
        .unwrap();
    add_member(&db.pool, home, u, "member").await;
    complete(
        &c,
        &ta,
        task(&c, &ta, json!({"residence_id": home, "title": "filters"})).await["id"]
            .as_i64()
            .unwrap(),
        "2026-01-02T09:00:00Z",
    )
    .await;
    let to_u: i64 = sqlx::query_scalar("SELECT count(*) FROM email_outbox WHERE user_id = $1")
        .bind(u)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(to_u, 0);
}

/// A task's completion count and last completion are kept on the task (a
/// trigger on task_completions, so the board reads no completions): they
/// follow the API's completions and undos, and plain SQL too (a bulk
/// insert, a completion moved to another task, one re-dated).
#[tokio::test]
async fn completion_figures_follow_every_change_to_completions() {
    let (db, c) = spawn().await;
    let (ann, token) = user(&db.pool, "ann@example.com").await;
    let home = residence(&db.pool, ann, "Home").await;
    let new = |title: &str| json!({"residence_id": home, "title": title, "frequency_id": WEEKLY, "due_date": "2026-01-05"});
    let filter = task(&c, &token, new("filter")).await["id"]
        .as_i64()
        .unwrap();
    let gutters = task(&c, &token, new("gutters")).await["id"]
        .as_i64()
        .unwrap();
    let figures = |id: i64| {
        let (c, token) = (c.clone(), token.clone());
        async move {
            let t = c
                .get(&format!("/api/tasks/{id}/"), Some(&token))
                .await
                .json();
            let last = t["last_completed_at"].as_str().map(|s| {
                s.parse::<chrono::DateTime<chrono::Utc>>()
                    .unwrap()
                    .to_rfc3339()
            });
            (t["completion_count"].as_i64().unwrap(), last)
        }
    };
    let at = |s: &str| {
        Some(
            s.parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
                .to_rfc3339(),
        )
    };
    assert_eq!(figures(filter).await, (0, None));

    complete(&c, &token, filter, "2026-01-05T10:00:00Z").await;
    let second = complete(&c, &token, filter, "2026-01-12T09:00:00Z").await["completion"]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(figures(filter).await, (2, at("2026-01-12T09:00:00Z")));

    let r = c
        .delete(
            &format!("/api/task-completions/{second}/"),
            None,
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["task"]["completion_count"], 1, "the undo's answer");
    assert_eq!(
        figures(filter).await,
        (1, at("2026-01-05T10:00:00Z")),
        "undo: the earlier one is last again"
    );

    sqlx::query(
        "INSERT INTO task_completions (task_id, completed_at)
         SELECT $1, t FROM unnest($2::timestamptz[]) t",
    )
    .bind(filter)
    .bind(vec![
        "2025-12-01T08:00:00Z"
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        "2026-02-01T08:00:00Z".parse().unwrap(),
        "2026-03-01T08:00:00Z".parse().unwrap(),
    ])
    .execute(&db.pool)
    .await
    .unwrap();
    assert_eq!(figures(filter).await, (4, at("2026-03-01T08:00:00Z")));

    sqlx::query("UPDATE task_completions SET task_id = $2 WHERE task_id = $1 AND completed_at = '2026-03-01T08:00:00Z'")
        .bind(filter)
        .bind(gutters)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        figures(filter).await,
        (3, at("2026-02-01T08:00:00Z")),
        "moved away"
    );
    assert_eq!(
        figures(gutters).await,
        (1, at("2026-03-01T08:00:00Z")),
        "moved in"
    );

    sqlx::query("UPDATE task_completions SET completed_at = '2026-04-01T08:00:00Z' WHERE task_id = $1 AND completed_at = '2025-12-01T08:00:00Z'")
        .bind(filter)
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        figures(filter).await,
        (3, at("2026-04-01T08:00:00Z")),
        "re-dated"
    );

    let stale: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM tasks t
          WHERE t.completion_count <> (SELECT count(*) FROM task_completions c WHERE c.task_id = t.id)
             OR t.last_completed_at IS DISTINCT FROM (SELECT max(c.completed_at) FROM task_completions c WHERE c.task_id = t.id)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(stale, 0, "the kept figures equal a count from scratch");
}
