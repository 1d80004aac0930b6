use api_admin::{app, Config, State};
use honeydue_testkit::fixtures::{admin, residence, user};
use honeydue_testkit::{TestClient, TestDb};
use serde_json::json;

async fn spawn() -> (TestDb, TestClient, String) {
    let db = TestDb::new().await;
    admin(&db.pool, "root@example.com", "admin-password").await;
    let c = TestClient::new(app(State::new(
        Config::for_tests(&db.url, None),
        db.pool.clone(),
    )));
    let r = c
        .post(
            "/api/admin/login/",
            json!({"email": "ROOT@example.com", "password": "admin-password"}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["token"].as_str().unwrap().to_string();
    (db, c, token)
}

#[tokio::test]
async fn separate_realm() {
    let (db, c, admin) = spawn().await;
    let (_, app_token) = user(&db.pool, "a@example.com").await;
    assert_eq!(
        c.get("/api/admin/me/", Some(&admin)).await.json()["email"],
        "root@example.com"
    );
    // An app user's token is not an admin token.
    assert_eq!(
        c.get("/api/admin/users/", Some(&app_token)).await.status,
        401
    );
    assert_eq!(c.get("/api/admin/users/", None).await.status, 401);
    let r = c
        .post(
            "/api/admin/login/",
            json!({"email": "root@example.com", "password": "wrong"}),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    let r = c
        .post(
            "/api/admin/login/",
            json!({"email": "a@example.com", "password": "not-a-hash"}),
            None,
        )
        .await;
    assert_eq!(r.status, 401, "app accounts cannot sign in as admins");
    // An admin token is not an app token (the auth extractor reads auth_tokens only).
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM auth_tokens t JOIN admin_tokens a ON a.token_hash = t.token_hash",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(n, 0);
    assert_eq!(
        c.post("/api/admin/logout/", json!({}), Some(&admin))
            .await
            .status,
        204
    );
    assert_eq!(c.get("/api/admin/me/", Some(&admin)).await.status, 401);
}

#[tokio::test]
async fn users_search_detail_deactivate_and_grant() {
    let (db, c, admin) = spawn().await;
    let (ann, ann_token) = user(&db.pool, "ann@example.com").await;
    user(&db.pool, "bob@example.com").await;
    residence(&db.pool, ann, "Ann's").await;
    let r = c.get("/api/admin/users/?search=ANN", Some(&admin)).await;
    assert_eq!(r.json()["count"], 1);
    assert_eq!(r.json()["results"][0]["email"], "ann@example.com");
    let r = c
        .get(&format!("/api/admin/users/{ann}/"), Some(&admin))
        .await;
    assert_eq!(r.json()["residences_owned"], 1);
    assert_eq!(r.json()["active_sessions"], 1);
    assert_eq!(
        c.get("/api/admin/users/999999/", Some(&admin)).await.status,
        404
    );

    let r = c
        .post(
            &format!("/api/admin/users/{ann}/subscription/"),
            json!({"tier": "pro", "expires_at": "2099-01-01T00:00:00Z"}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["tier"], "pro");
    let r = c
        .post(
            &format!("/api/admin/users/{ann}/subscription/"),
            json!({"is_free": true}),
            Some(&admin),
        )
        .await;
    assert_eq!(
        (r.json()["tier"].as_str(), r.json()["is_free"].as_bool()),
        (Some("pro"), Some(true))
    );
    assert_eq!(
        c.post(
            &format!("/api/admin/users/{ann}/subscription/"),
            json!({"tier": "gold"}),
            Some(&admin)
        )
        .await
        .status,
        422
    );

    let r = c
        .post(
            &format!("/api/admin/users/{ann}/deactivate/"),
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.json()["sessions_revoked"], 1);
    let valid: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM auth_tokens WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(ann)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(valid, 0);
    let _ = ann_token;
    assert_eq!(
        c.post(
            &format!("/api/admin/users/{ann}/activate/"),
            json!({}),
            Some(&admin)
        )
        .await
        .json()["is_active"],
        true
    );

    let s = c.get("/api/admin/stats/", Some(&admin)).await.json();
    assert_eq!(s["users"], 2);
    assert_eq!(s["residences"], 1);
    assert_eq!(s["pro_users"], 1);
    let r = c
        .get("/api/admin/residences/?search=ann", Some(&admin))
        .await;
    assert_eq!(r.json()["results"][0]["owner_email"], "ann@example.com");
}

#[tokio::test]
async fn lookups_crud_bumps_the_version() {
    let (db, c, admin) = spawn().await;
    let v0: i64 = sqlx::query_scalar("SELECT version FROM lookup_version")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let r = c
        .post(
            "/api/admin/lookups/task_categories/",
            json!({"name": "Solar", "color": "#ffcc00", "sort_order": 50}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    assert_eq!(r.json()["color"], "#ffcc00");
    let r = c
        .patch(
            &format!("/api/admin/lookups/task_categories/{id}/"),
            json!({"icon": "sun"}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.json()["icon"], "sun");
    assert_eq!(r.json()["name"], "Solar");
    let r = c
        .post(
            "/api/admin/lookups/task_categories/",
            json!({"name": "Solar"}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 409);
    let r = c
        .post(
            "/api/admin/lookups/task_categories/",
            json!({"name": "X", "owner_id": 1}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 422, "only the table's own columns");
    let r = c
        .post(
            "/api/admin/lookups/task_frequencies/",
            json!({"name": "Weird", "interval_days": 3, "interval_months": 1}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 422, "the table's checks hold");
    assert_eq!(
        c.get("/api/admin/lookups/users/", Some(&admin))
            .await
            .status,
        404
    );
    assert_eq!(
        c.delete(
            &format!("/api/admin/lookups/task_categories/{id}/"),
            None,
            Some(&admin)
        )
        .await
        .status,
        204
    );
    let v1: i64 = sqlx::query_scalar("SELECT version FROM lookup_version")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(v1 >= v0 + 3);
    let list = c
        .get("/api/admin/lookups/residence_types/", Some(&admin))
        .await
        .json();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "House"));
}

#[tokio::test]
async fn outbox_view_resend_and_settings() {
    let (db, c, admin) = spawn().await;
    sqlx::query("INSERT INTO email_outbox (kind, to_address, subject, body_text, status, attempts, last_error)
                 VALUES ('welcome', 'a@example.com', 'Welcome', 'Hello', 'dead', 5, '550 no such user'),
                        ('verify_email', 'a@example.com', 'Your code: 123456', 'secret 123456', 'pending', 0, NULL)")
        .execute(&db.pool)
        .await
        .unwrap();
    let r = c
        .get("/api/admin/email-outbox/?status=dead", Some(&admin))
        .await;
    let row = &r.json()["results"][0];
    assert_eq!(row["last_error"], "550 no such user");
    assert!(row.get("body_text").is_none(), "bodies are not listed");
    let id = row["id"].as_i64().unwrap();
    let r = c
        .post(
            &format!("/api/admin/email-outbox/{id}/resend/"),
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.json()["status"], "pending");
    // An email that carries a one-time code: its subject is hidden even
    // while pending, and it is never resent (the user asks for a new code).
    let r = c
        .get("/api/admin/email-outbox/?status=pending", Some(&admin))
        .await;
    assert!(!r.text().contains("123456"), "{}", r.text());
    let code_row = r.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "verify_email")
        .cloned()
        .unwrap();
    assert_eq!(code_row["subject"], "[carries a one-time code]");
    let r = c
        .post(
            &format!("/api/admin/email-outbox/{}/resend/", code_row["id"]),
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), "one_time_code");
    assert_eq!(
        c.get("/api/admin/email-outbox/?status=odd", Some(&admin))
            .await
            .status,
        422
    );

    assert_eq!(
        c.get("/api/admin/settings/", Some(&admin)).await.json()["limits_enabled"],
        true
    );
    let r = c
        .patch(
            "/api/admin/settings/",
            json!({"limits_enabled": false}),
            Some(&admin),
        )
        .await;
    assert_eq!(r.json()["limits_enabled"], false);
    let on: bool = sqlx::query_scalar("SELECT limits_enabled FROM app_settings")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(!on);
}

#[tokio::test]
async fn every_admin_route_refuses_app_tokens_and_no_token() {
    let (db, c, _admin) = spawn().await;
    let (_, app_token) = user(&db.pool, "a@example.com").await;
    let mut checked = 0;
    for r in api_admin::ROUTES {
        if !matches!(r.auth, honeydue_http::routes::Auth::Admin) {
            continue;
        }
        let path = r.path.replace("{id}", "1").replace("{uid}", "1");
        let method: axum::http::Method = r.method.parse().unwrap();
        let body = (method != axum::http::Method::GET && method != axum::http::Method::DELETE)
            .then(|| json!({}));
        for token in [Some(app_token.as_str()), None] {
            let resp = c.send(method.clone(), &path, body.clone(), token).await;
            assert_eq!(
                resp.status,
                401,
                "{} {} with {:?}: {}",
                r.method,
                r.path,
                token.map(|_| "app token"),
                resp.text()
            );
        }
        checked += 1;
    }
    assert!(checked >= 18, "only {checked} admin routes");
}

#[tokio::test]
async fn onboarding_emails_and_job_runs_are_visible() {
    let (db, c, admin) = spawn().await;
    let (uid, _) = user(&db.pool, "new@example.com").await;
    let outbox: i64 = sqlx::query_scalar(
        "INSERT INTO email_outbox (user_id, kind, to_address, subject, body_text)
         VALUES ($1, 'onboarding', 'new@example.com', 'Welcome', 'Hi') RETURNING id",
    )
    .bind(uid)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO onboarding_emails (user_id, step, sent_for, outbox_id) VALUES ($1, 'welcome', '2026-06-10', $2)")
        .bind(uid)
        .bind(outbox)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO job_runs (job, scheduled_for, status, stats) VALUES ('daily-digest', '2026-06-10T03:00Z', 'done', '{\"digests\": 3}')")
        .execute(&db.pool)
        .await
        .unwrap();
    let r = c
        .get("/api/admin/onboarding-emails/?step=welcome", Some(&admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let row = &r.json()["results"][0];
    assert_eq!(row["email"], "new@example.com");
    assert_eq!(row["email_status"], "pending");
    assert_eq!(row["outbox_id"], outbox);
    assert_eq!(
        c.get("/api/admin/onboarding-emails/?step=spam", Some(&admin))
            .await
            .status,
        422
    );
    let r = c
        .get("/api/admin/job-runs/?job=daily-digest", Some(&admin))
        .await;
    assert_eq!(
        r.json()["results"][0]["stats"]["digests"],
        3,
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn the_push_outbox_shows_each_push_and_its_device_without_the_token() {
    let (db, c, admin) = spawn().await;
    let (ann, _) = user(&db.pool, "ann@example.com").await;
    let (bob, _) = user(&db.pool, "bob@example.com").await;
    sqlx::query(
        "INSERT INTO devices (user_id, platform, token, active) VALUES
           ($1, 'ios', 'secret-apns-token', FALSE), ($2, 'android', 'secret-fcm-token', TRUE)",
    )
    .bind(ann)
    .bind(bob)
    .execute(&db.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO push_outbox (user_id, device_id, kind, title, status, attempts, last_error)
         SELECT d.user_id, d.id, 'completed', 'A task was completed',
                CASE WHEN d.active THEN 'pending' ELSE 'dead' END,
                CASE WHEN d.active THEN 0 ELSE 1 END,
                CASE WHEN d.active THEN NULL ELSE 'APNs 410 Unregistered' END
           FROM devices d",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let r = c
        .get("/api/admin/push-outbox/?status=dead", Some(&admin))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["results"].as_array().unwrap().len(), 1);
    let row = &r.json()["results"][0];
    assert_eq!(row["user_id"], ann);
    assert_eq!(row["platform"], "ios");
    assert_eq!(row["device_active"], false);
    assert_eq!(row["last_error"], "APNs 410 Unregistered");
    let all = c.get("/api/admin/push-outbox/", Some(&admin)).await;
    assert_eq!(all.json()["results"].as_array().unwrap().len(), 2);
    assert!(
        !all.text().contains("secret-"),
        "tokens are not listed: {}",
        all.text()
    );
    let bobs = c
        .get(&format!("/api/admin/push-outbox/?user={bob}"), Some(&admin))
        .await;
    assert_eq!(bobs.json()["results"][0]["status"], "pending");
    assert_eq!(bobs.json()["results"].as_array().unwrap().len(), 1);
    assert_eq!(
        c.get("/api/admin/push-outbox/?status=odd", Some(&admin))
            .await
            .status,
        422
    );
    // An app token is not an admin's.
    let (_, app_token) = user(&db.pool, "eve@example.com").await;
    assert_eq!(
        c.get("/api/admin/push-outbox/", Some(&app_token))
            .await
            .status,
        401
    );
}
