use api_notifications::{app, Config, State};
use axum::http::Method;
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
    // B cannot delete A's device; the same token registered by B moves to B
    // as a new row (nothing of A's carried over).
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
    assert_eq!(r.status, 201, "{}", r.text());
    assert_ne!(r.json()["id"], id);
    let moved = r.json()["id"].as_i64().unwrap();
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
            &format!("/api/notifications/devices/{moved}/"),
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
        json!({"enabled": true, "email": true, "push": true})
    );
    assert_eq!(r.json()["push_enabled"], true);
    assert_eq!(r.json()["quiet_hours"], json!(null));
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
        json!({"enabled": true, "email": false, "push": true})
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
    let r = c
        .post(&format!("/api/unsubscribe/{token}/"), json!({}), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["unsubscribed"], "daily_digest");
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
    let other_user = token.replacen(&format!("{a}."), &format!("{}.", a + 1), 1);
    for bad in [forged, other_user] {
        let path = format!("/api/unsubscribe/{bad}/");
        let r = c.get(&path, None).await;
        assert_eq!(r.status, 404);
        assert!(!r.text().contains("<form"), "no button for a bad link");
        assert_eq!(c.post(&path, json!({}), None).await.status, 404);
    }
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

#[tokio::test]
async fn unsubscribe_get_only_asks_and_post_acts() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let secret = "test-secret-not-for-production";
    let digest = honeydue_mail::unsubscribe::token(secret, a, "daily_digest");
    let all = honeydue_mail::unsubscribe::token(secret, a, "all");
    let prefs = || {
        let c = c.clone();
        let ta = ta.clone();
        async move {
            c.get("/api/notifications/preferences/", Some(&ta))
                .await
                .json()
        }
    };

    // A mail scanner (or a link preview) follows both links, twice: a page
    // that asks, and nothing changes.
    for token in [&digest, &all, &digest, &all] {
        let r = c.get(&format!("/api/unsubscribe/{token}/"), None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let page = r.text();
        assert!(page.contains("<form method=\"post\">"), "{page}");
        assert!(!page.contains("action="), "posts back to the same URL");
        assert!(
            page.contains("name=\"List-Unsubscribe\" value=\"One-Click\""),
            "{page}"
        );
        let csp = r.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("form-action 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    }
    assert!(c
        .get(&format!("/api/unsubscribe/{digest}/"), None)
        .await
        .text()
        .contains("daily digest"));
    let p = prefs().await;
    assert_eq!(
        p["kinds"]["daily_digest"]["email"], true,
        "GET changed nothing"
    );
    assert_eq!(p["email_enabled"], true, "GET changed nothing");

    // RFC 8058 one-click: the mail client POSTs `List-Unsubscribe=One-Click`,
    // form-encoded.
    let r = c
        .send_raw(
            Method::POST,
            &format!("/api/unsubscribe/{digest}/"),
            Some(b"List-Unsubscribe=One-Click".to_vec()),
            None,
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let p = prefs().await;
    assert_eq!(p["kinds"]["daily_digest"]["email"], false);
    assert_eq!(p["email_enabled"], true, "only that kind");

    // An empty POST acts too; again is harmless.
    for _ in 0..2 {
        let r = c
            .send_raw(
                Method::POST,
                &format!("/api/unsubscribe/{all}/"),
                None,
                None,
                &[],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["unsubscribed"], "all");
    }
    assert_eq!(prefs().await["email_enabled"], false);

    // The page's button (a browser asks for HTML) gets a page back.
    let r = c
        .send_raw(
            Method::POST,
            &format!("/api/unsubscribe/{digest}/"),
            Some(b"List-Unsubscribe=One-Click".to_vec()),
            None,
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r
        .text()
        .contains("You will not receive any more daily digest emails."));
    assert!(!r.text().contains("<form"));
}

/// Registers the iOS push token `push` for the account of `token`: the device id.
async fn register_ios(c: &TestClient, token: &str, push: &str) -> i64 {
    let r = c
        .post(
            "/api/notifications/devices/",
            json!({"platform": "ios", "token": push}),
            Some(token),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["id"].as_i64().unwrap()
}

/// The ids of the devices the account of `token` sees.
async fn device_ids(c: &TestClient, token: &str) -> Vec<i64> {
    let body = c
        .get("/api/notifications/devices/", Some(token))
        .await
        .json();
    body.as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .collect()
}

/// The inbox of the account of `token`, newest first.
async fn inbox(c: &TestClient, token: &str) -> Vec<serde_json::Value> {
    let body = c.get("/api/notifications/", Some(token)).await.json();
    body["results"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_device_token_registered_by_another_account_moves_and_its_owner_is_told() {
    let (db, c) = spawn().await;
    let (_, ta) = user(&db.pool, "a@example.com").await;
    let (_, tb) = user(&db.pool, "b@example.com").await;
    let phone = "phone-token-1";

    let a_device = register_ios(&c, &ta, phone).await;
    assert_eq!(
        register_ios(&c, &ta, phone).await,
        a_device,
        "re-registering on the same account keeps the row"
    );
    assert!(inbox(&c, &ta).await.is_empty(), "and tells no one");

    // B registers the same token: B has it, A no longer does, A is told.
    let b_device = register_ios(&c, &tb, phone).await;
    assert_ne!(b_device, a_device, "a new row: nothing of A's carried over");
    assert_eq!(device_ids(&c, &tb).await, vec![b_device]);
    assert!(
        device_ids(&c, &ta).await.is_empty(),
        "A's device row is gone"
    );
    let told = inbox(&c, &ta).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["kind"], "device_moved");
    assert_eq!(told[0]["data"]["device_id"], a_device);
    assert_eq!(told[0]["data"]["platform"], "ios");
    assert_eq!(told[0]["is_read"], false);
    let text = told[0].to_string();
    assert!(
        !text.contains("b@example.com") && !text.contains(phone),
        "names neither the new account nor the token: {text}"
    );
    assert!(
        inbox(&c, &tb).await.is_empty(),
        "the new holder is not told"
    );
    assert_eq!(
        c.delete(
            &format!("/api/notifications/devices/{b_device}/"),
            None,
            Some(&ta)
        )
        .await
        .status,
        404,
        "A cannot remove it from B"
    );

    // And back: now B is told, and A is not told again.
    let back = register_ios(&c, &ta, phone).await;
    assert_eq!(device_ids(&c, &ta).await, vec![back]);
    assert!(device_ids(&c, &tb).await.is_empty());
    let told = inbox(&c, &tb).await;
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["kind"], "device_moved");
    assert_eq!(inbox(&c, &ta).await.len(), 1);
}

#[tokio::test]
async fn push_preferences_quiet_hours_and_a_device_turned_back_on() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let r = c
        .patch(
            "/api/notifications/preferences/",
            json!({"kinds": {"completed": {"push": false}}, "quiet_hours": {"start": 22, "end": 7}}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["kinds"]["completed"],
        json!({"enabled": true, "email": true, "push": false})
    );
    assert_eq!(r.json()["quiet_hours"], json!({"start": 22, "end": 7}));
    let r = c
        .patch(
            "/api/notifications/preferences/",
            json!({"push_enabled": false}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.json()["push_enabled"], false);
    assert_eq!(
        r.json()["quiet_hours"],
        json!({"start": 22, "end": 7}),
        "kept"
    );
    let r = c
        .patch(
            "/api/notifications/preferences/",
            json!({"quiet_hours": null}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.json()["quiet_hours"], json!(null));
    for bad in [
        json!({"start": 22, "end": 22}),
        json!({"start": 24, "end": 7}),
        json!({"start": 1}),
    ] {
        let r = c
            .patch(
                "/api/notifications/preferences/",
                json!({"quiet_hours": bad}),
                Some(&ta),
            )
            .await;
        assert!(
            r.status == 422 || r.status == 400,
            "{bad}: {} {}",
            r.status,
            r.text()
        );
    }
    let stored: (bool, Option<i16>) = sqlx::query_as(
        "SELECT push_enabled, quiet_hours_start FROM notification_preferences WHERE user_id = $1",
    )
    .bind(a)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(stored, (false, None), "the refused changes changed nothing");

    // A device whose token a provider said was gone comes back when the app
    // registers the token again.
    let id = register_ios(&c, &ta, "apns-token-1").await;
    sqlx::query("UPDATE devices SET active = FALSE, deactivated_at = now(), deactivated_reason = 'APNs 410' WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    let listed = c.get("/api/notifications/devices/", Some(&ta)).await.json();
    assert_eq!(listed[0]["active"], false);
    assert_eq!(register_ios(&c, &ta, "apns-token-1").await, id);
    let listed = c.get("/api/notifications/devices/", Some(&ta)).await.json();
    assert_eq!(listed[0]["active"], true);
}
