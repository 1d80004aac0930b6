use api_notifications::{app, Config, State};
use honeydue_testkit::fixtures::user;
use honeydue_testkit::{TestClient, TestDb};
use serde_json::json;

async fn spawn() -> (TestDb, TestClient) {
    let db = TestDb::new().await;
    let state = State::new(Config::for_tests(&db.url, None), db.pool.clone());
    (db, TestClient::new(app(state)))
}

async fn notify(db: &TestDb, user_id: i64, title: &str) -> i64 {
    sqlx::query_scalar("INSERT INTO notifications (user_id, kind, title) VALUES ($1, 'completed', $2) RETURNING id")
        .bind(user_id)
        .bind(title)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn inbox_read_and_counts_are_per_user() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let (b, tb) = user(&db.pool, "b@example.com").await;
    let first = notify(&db, a, "one").await;
    notify(&db, a, "two").await;
    let theirs = notify(&db, b, "b's").await;

    let r = c.get("/api/notifications/", Some(&ta)).await;
    assert_eq!(r.json()["count"], 2);
    assert_eq!(r.json()["results"][0]["title"], "two", "newest first");
    assert_eq!(
        c.get("/api/notifications/unread-count/", Some(&ta))
            .await
            .json()["unread_count"],
        2
    );
    assert_eq!(
        c.post(
            &format!("/api/notifications/{first}/read/"),
            json!({}),
            Some(&ta)
        )
        .await
        .status,
        204
    );
    assert_eq!(
        c.get("/api/notifications/unread-count/", Some(&ta))
            .await
            .json()["unread_count"],
        1
    );
    // Someone else's notification does not exist for me.
    assert_eq!(
        c.post(
            &format!("/api/notifications/{theirs}/read/"),
            json!({}),
            Some(&ta)
        )
        .await
        .status,
        404
    );
    assert_eq!(
        c.post("/api/notifications/nope/read/", json!({}), Some(&ta))
            .await
            .status,
        404
    );
    let r = c
        .post("/api/notifications/read-all/", json!({}), Some(&ta))
        .await;
    assert_eq!(r.json()["marked_read"], 1);
    assert_eq!(
        c.get("/api/notifications/unread-count/", Some(&tb))
            .await
            .json()["unread_count"],
        1,
        "B's untouched"
    );
    assert_eq!(c.get("/api/notifications/", None).await.status, 401);
}

#[tokio::test]
async fn devices_register_move_and_delete() {
    let (db, c) = spawn().await;
    let (_, ta) = user(&db.pool, "a@example.com").await;
    let (_, tb) = user(&db.pool, "b@example.com").await;
    let r = c
        .post(
            "/api/notifications/devices/",
            json!({"platform": "ios", "token": "abc123"}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    assert!(r.json().get("token").is_none(), "tokens are not echoed");
    assert_eq!(
        c.get("/api/notifications/devices/", Some(&ta))
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // B cannot delete A's device; the same token registered by B moves to B.
    assert_eq!(
        c.delete(
            &format!("/api/notifications/devices/{id}/"),
            None,
            Some(&tb)
        )
        .await
        .status,
        404
    );
    let r = c
        .post(
            "/api/notifications/devices/",
            json!({"platform": "ios", "token": "abc123"}),
            Some(&tb),
        )
        .await;
    assert_eq!(r.json()["id"], id);
    assert_eq!(
        c.get("/api/notifications/devices/", Some(&ta))
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        c.delete(
            &format!("/api/notifications/devices/{id}/"),
            None,
            Some(&tb)
        )
        .await
        .status,
        204
    );
    let r = c
        .post(
            "/api/notifications/devices/",
            json!({"platform": "windows", "token": ""}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.json()["error"]["fields"]["platform"].is_array());
    assert!(r.json()["error"]["fields"]["token"].is_array());
}

#[tokio::test]
async fn preferences_default_update_and_validate() {
    let (db, c) = spawn().await;
    let (_, ta) = user(&db.pool, "a@example.com").await;
    let r = c.get("/api/notifications/preferences/", Some(&ta)).await;
    assert_eq!(
        r.json()["kinds"]["due_soon"],
        json!({"enabled": true, "email": true})
    );
    assert_eq!(r.json()["hours"]["due_soon"]["default_utc_hour"], 14);
    assert_eq!(r.json()["hours"]["daily_digest"]["uses_default"], true);
    let r = c
        .patch(
            "/api/notifications/preferences/",
            json!({"kinds": {"daily_digest": {"email": false}}, "due_soon_hour": 8}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["kinds"]["daily_digest"],
        json!({"enabled": true, "email": false})
    );
    assert_eq!(r.json()["hours"]["due_soon"]["hour"], 8);
    let r = c
        .patch(
            "/api/notifications/preferences/",
            json!({"due_soon_hour": null}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.json()["hours"]["due_soon"]["uses_default"], true);
    assert_eq!(r.json()["kinds"]["daily_digest"]["email"], false, "kept");
    let r = c
        .patch(
            "/api/notifications/preferences/",
            json!({"kinds": {"spam": {"email": true}}, "overdue_hour": 24}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.json()["error"]["fields"]["kinds.spam"].is_array());
    assert!(r.json()["error"]["fields"]["overdue_hour"].is_array());
}

#[tokio::test]
async fn signed_unsubscribe_links() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let secret = "test-secret-not-for-production";
    let token = honeydue_mail::unsubscribe::token(secret, a, "daily_digest");
    let r = c.get(&format!("/api/unsubscribe/{token}/"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("daily digest"));
    let prefs = c
        .get("/api/notifications/preferences/", Some(&ta))
        .await
        .json();
    assert_eq!(prefs["kinds"]["daily_digest"]["email"], false);
    assert_eq!(prefs["email_enabled"], true);

    let all = honeydue_mail::unsubscribe::token(secret, a, "all");
    let r = c
        .post(&format!("/api/unsubscribe/{all}/"), json!({}), None)
        .await;
    assert_eq!(r.json()["unsubscribed"], "all");
    assert_eq!(
        c.get("/api/notifications/preferences/", Some(&ta))
            .await
            .json()["email_enabled"],
        false
    );

    // Forged or foreign tokens do nothing.
    let forged = honeydue_mail::unsubscribe::token("another-secret-entirely", a, "all");
    assert_eq!(
        c.get(&format!("/api/unsubscribe/{forged}/"), None)
            .await
            .status,
        404
    );
    let other_user = token.replacen(&format!("{a}."), &format!("{}.", a + 1), 1);
    assert_eq!(
        c.get(&format!("/api/unsubscribe/{other_user}/"), None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn preferences_are_per_user() {
    let (db, c) = spawn().await;
    let (_, ta) = user(&db.pool, "a@example.com").await;
    let (_, tb) = user(&db.pool, "b@example.com").await;
    let r = c
        .patch(
            "/api/notifications/preferences/",
            json!({"email_enabled": false, "digest_hour": 6}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let b = c
        .get("/api/notifications/preferences/", Some(&tb))
        .await
        .json();
    assert_eq!(b["email_enabled"], true, "B is untouched by A's change");
    assert_eq!(b["hours"]["daily_digest"]["uses_default"], true);
    let r = c
        .patch(
            "/api/notifications/preferences/",
            json!({"due_soon_hour": 9}),
            Some(&tb),
        )
        .await;
    assert_eq!(r.status, 200);
    let a = c
        .get("/api/notifications/preferences/", Some(&ta))
        .await
        .json();
    assert_eq!(a["email_enabled"], false);
    assert_eq!(a["hours"]["daily_digest"]["hour"], 6);
    assert_eq!(
        a["hours"]["due_soon"]["uses_default"], true,
        "A is untouched by B's change"
    );
    assert_eq!(
        c.get("/api/notifications/preferences/", None).await.status,
        401
    );
}
