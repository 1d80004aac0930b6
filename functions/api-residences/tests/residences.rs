use api_residences::{app, Config, State};
use axum::http::Method;
use honeydue_testkit::fixtures::{add_member, residence, upload, user};
use honeydue_testkit::{TestClient, TestDb};
use serde_json::json;

async fn spawn() -> (TestDb, TestClient) {
    let db = TestDb::new().await;
    let state = State::new(Config::for_tests(&db.url, None), db.pool.clone());
    (db, TestClient::new(app(state)))
}

#[tokio::test]
async fn create_read_update_delete() {
    let (db, c) = spawn().await;
    let (_, t) = user(&db.pool, "ann@example.com").await;
    let r = c
        .post(
            "/api/residences/",
            json!({"name": " Lake House ", "residence_type_id": 1, "city": "Duluth", "year_built": 1978,
                   "bathrooms": 2.5, "bedrooms": 3, "purchase_date": "2020-06-01"}),
            Some(&t),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_i64().unwrap();
    assert_eq!(r.json()["name"], "Lake House");
    assert_eq!(r.json()["is_owner"], true);
    assert_eq!(r.json()["role"], "owner");
    assert_eq!(r.json()["member_count"], 1);
    assert_eq!(r.json()["bathrooms"], "2.5");

    let r = c
        .patch(
            &format!("/api/residences/{id}/"),
            json!({"city": "Two Harbors", "year_built": null}),
            Some(&t),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["city"], "Two Harbors");
    assert_eq!(r.json()["year_built"], serde_json::Value::Null);
    assert_eq!(r.json()["bedrooms"], 3, "absent fields are kept");

    let r = c.get("/api/residences/", Some(&t)).await;
    assert_eq!(r.json()["count"], 1);
    assert_eq!(r.json()["results"][0]["id"], id);

    assert_eq!(
        c.delete(&format!("/api/residences/{id}/"), None, Some(&t))
            .await
            .status,
        204
    );
    assert_eq!(
        c.get(&format!("/api/residences/{id}/"), Some(&t))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn validation_errors_name_the_fields() {
    let (db, c) = spawn().await;
    let (_, t) = user(&db.pool, "ann@example.com").await;
    let r = c
        .post(
            "/api/residences/",
            json!({"year_built": 1200, "bathrooms": 2.25, "sqft": -5}),
            Some(&t),
        )
        .await;
    assert_eq!(r.status, 422);
    let f = &r.json()["error"]["fields"];
    for k in ["name", "year_built", "bathrooms", "sqft"] {
        assert!(f[k].is_array(), "{k}: {f}");
    }
    let r = c
        .post(
            "/api/residences/",
            json!({"name": "X", "residence_type_id": 999}),
            Some(&t),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.json()["error"]["fields"]["residence_type_id"].is_array());
    let r = c
        .post(
            "/api/residences/",
            json!({"name": "X", "colour": "red"}),
            Some(&t),
        )
        .await;
    assert_eq!(r.status, 422, "unknown fields are refused");
    assert_eq!(c.get("/api/residences/abc/", Some(&t)).await.status, 404);
    assert_eq!(c.get("/api/residences/", None).await.status, 401);
}

#[tokio::test]
async fn outsiders_see_nothing_and_roles_are_enforced() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let (b, tb) = user(&db.pool, "b@example.com").await;
    let (v, tv) = user(&db.pool, "v@example.com").await;
    let (_, tx) = user(&db.pool, "x@example.com").await;
    let id = residence(&db.pool, a, "A's home").await;
    add_member(&db.pool, id, b, "member").await;
    add_member(&db.pool, id, v, "viewer").await;
    let path = format!("/api/residences/{id}/");

    // An outsider: 404 everywhere, and an empty list.
    assert_eq!(c.get(&path, Some(&tx)).await.status, 404);
    assert_eq!(
        c.patch(&path, json!({"name": "mine"}), Some(&tx))
            .await
            .status,
        404
    );
    assert_eq!(c.delete(&path, None, Some(&tx)).await.status, 404);
    assert_eq!(c.get(&format!("{path}users/"), Some(&tx)).await.status, 404);
    assert_eq!(
        c.get(&format!("{path}summary/"), Some(&tx)).await.status,
        404
    );
    assert_eq!(
        c.post(&format!("{path}share/"), json!({}), Some(&tx))
            .await
            .status,
        404
    );
    assert_eq!(
        c.get("/api/residences/", Some(&tx)).await.json()["count"],
        0
    );

    // A viewer reads but cannot write; a member writes but cannot delete.
    assert_eq!(c.get(&path, Some(&tv)).await.json()["role"], "viewer");
    assert_eq!(
        c.patch(&path, json!({"name": "v"}), Some(&tv)).await.status,
        403
    );
    assert_eq!(
        c.patch(&path, json!({"name": "Shared home"}), Some(&tb))
            .await
            .status,
        200
    );
    assert_eq!(c.delete(&path, None, Some(&tb)).await.status, 403);
    assert_eq!(
        c.post(&format!("{path}share/"), json!({}), Some(&tb))
            .await
            .status,
        403
    );
    let r = c.get(&path, Some(&ta)).await;
    assert_eq!(r.json()["name"], "Shared home");
    assert_eq!(r.json()["member_count"], 3);
}

#[tokio::test]
async fn share_join_members_leave() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let (b, tb) = user(&db.pool, "b@example.com").await;
    let (_, tv) = user(&db.pool, "v@example.com").await;
    let id = residence(&db.pool, a, "Home").await;
    let base = format!("/api/residences/{id}/");
    sqlx::query("INSERT INTO devices (user_id, platform, token) VALUES ($1, 'ios', 'a-phone')")
        .bind(a)
        .execute(&db.pool)
        .await
        .unwrap();

    assert_eq!(
        c.get(&format!("{base}share/"), Some(&ta)).await.status,
        404,
        "no code yet"
    );
    let r = c
        .post(
            &format!("{base}share/"),
            json!({"role": "member"}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let code = r.json()["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 8);
    // A second code replaces the first: one active per residence.
    let r = c
        .post(&format!("{base}share/"), json!({"max_uses": 2}), Some(&ta))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let code2 = r.json()["code"].as_str().unwrap().to_string();
    assert_eq!(
        c.get(&format!("{base}share/"), Some(&ta)).await.json()["code"],
        code2
    );
    if code2 != code {
        assert_eq!(
            c.post("/api/residences/join/", json!({"code": code}), Some(&tb))
                .await
                .status,
            404
        );
    }

    let r = c
        .post(
            "/api/residences/join/",
            json!({"code": code2.to_lowercase()}),
            Some(&tb),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["role"], "member");
    let r = c
        .post("/api/residences/join/", json!({"code": code2}), Some(&tb))
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), "already_member");
    // The owner was told once (in-app, and a push to their phone); the one
    // who joined was not.
    let told: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT user_id, kind, title FROM notifications ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        told,
        vec![(a, "shared".to_string(), "b joined Home".to_string())]
    );
    let pushed: Vec<(i64, String)> = sqlx::query_as("SELECT user_id, kind FROM push_outbox")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(pushed, vec![(a, "shared".to_string())]);
    assert_eq!(
        c.post(
            "/api/residences/join/",
            json!({"code": "ZZZZZZZZ"}),
            Some(&tv)
        )
        .await
        .status,
        404
    );
    assert_eq!(
        c.post("/api/residences/join/", json!({"code": "no"}), Some(&tv))
            .await
            .status,
        422
    );

    // A viewer code joins read-only; an expired code joins nobody.
    let r = c
        .post(
            &format!("{base}share/"),
            json!({"role": "viewer", "expires_in_hours": 1}),
            Some(&ta),
        )
        .await;
    let vcode = r.json()["code"].as_str().unwrap().to_string();
    let r = c
        .post("/api/residences/join/", json!({"code": vcode}), Some(&tv))
        .await;
    assert_eq!(r.json()["role"], "viewer");
    sqlx::query("UPDATE residence_share_codes SET expires_at = now() - interval '1 minute'")
        .execute(&db.pool)
        .await
        .unwrap();
    let (_, tz) = user(&db.pool, "z@example.com").await;
    assert_eq!(
        c.post("/api/residences/join/", json!({"code": vcode}), Some(&tz))
            .await
            .status,
        404
    );
    assert_eq!(
        c.post(
            &format!("{base}share/"),
            json!({"expires_in_hours": 9999}),
            Some(&ta)
        )
        .await
        .status,
        422
    );
    assert_eq!(
        c.delete(&format!("{base}share/"), None, Some(&ta))
            .await
            .status,
        204
    );

    // Members, removal, leaving.
    let r = c.get(&format!("{base}users/"), Some(&tb)).await;
    let roles: Vec<&str> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_string().leak() as &str)
        .collect();
    assert_eq!(roles, vec!["owner", "member", "viewer"]);
    assert_eq!(
        c.post(&format!("{base}leave/"), json!({}), Some(&ta))
            .await
            .status,
        409,
        "the owner cannot leave"
    );
    assert_eq!(
        c.delete(&format!("{base}users/{a}/"), None, Some(&ta))
            .await
            .status,
        409
    );
    assert_eq!(
        c.delete(&format!("{base}users/{a}/"), None, Some(&tb))
            .await
            .status,
        403,
        "members cannot remove"
    );
    assert_eq!(
        c.post(&format!("{base}leave/"), json!({}), Some(&tb))
            .await
            .status,
        204
    );
    assert_eq!(
        c.get(&base, Some(&tb)).await.status,
        404,
        "gone after leaving"
    );
    let viewer_id = r.json()[2]["id"].as_i64().unwrap();
    assert_eq!(
        c.delete(&format!("{base}users/{viewer_id}/"), None, Some(&ta))
            .await
            .status,
        204
    );
    assert_eq!(
        c.delete(&format!("{base}users/{viewer_id}/"), None, Some(&ta))
            .await
            .status,
        404
    );
    assert_eq!(c.get(&base, Some(&ta)).await.json()["member_count"], 1);
    let _ = b;
}

#[tokio::test]
async fn summary_counts_columns_and_spend() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let id = residence(&db.pool, a, "Home").await;
    for (title, due) in [
        ("late", "-3 days"),
        ("soon", "2 days"),
        ("later", "90 days"),
    ] {
        sqlx::query(&format!(
            "INSERT INTO tasks (residence_id, title, frequency_id, next_due_date, due_date)
             VALUES ($1, $2, 5, current_date + interval '{due}', current_date + interval '{due}')"
        ))
        .bind(id)
        .bind(title)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO tasks (residence_id, title, is_cancelled) VALUES ($1, 'gone', true)")
        .bind(id)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO task_completions (task_id, completed_at, actual_cost) SELECT id, now(), 120.50 FROM tasks WHERE title = 'later'")
        .execute(&db.pool)
        .await
        .unwrap();
    let r = c
        .get(&format!("/api/residences/{id}/summary/"), Some(&ta))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let counts = &r.json()["task_counts"];
    assert_eq!(
        (
            counts["overdue"].as_i64(),
            counts["due_soon"].as_i64(),
            counts["upcoming"].as_i64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(r.json()["total_tasks"], 3);
    assert_eq!(r.json()["spend_this_year"], "120.50");
}

#[tokio::test]
async fn residence_images_must_be_the_callers_uploads() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let (b, _) = user(&db.pool, "b@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    let cabin = residence(&db.pool, a, "Cabin").await;
    let mine = upload(&db.pool, a, Some(home), "residence_image", "confirmed").await;
    let cabins = upload(&db.pool, a, Some(cabin), "residence_image", "confirmed").await;
    let theirs = upload(&db.pool, b, None, "residence_image", "confirmed").await;
    let path = format!("/api/residences/{home}/");
    // Her own image, but uploaded for another residence.
    let r = c
        .patch(&path, json!({"image_upload_id": cabins}), Some(&ta))
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let r = c
        .patch(&path, json!({"image_upload_id": theirs}), Some(&ta))
        .await;
    assert_eq!(r.status, 422);
    assert!(r.json()["error"]["fields"]["image_upload_id"].is_array());
    let r = c
        .patch(&path, json!({"image_upload_id": mine}), Some(&ta))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["image_upload_id"], mine.to_string());
}

/// A share code that admits a few joins (the default admits one).
async fn share_code(c: &TestClient, id: i64, token: &str, role: &str) -> String {
    let r = c
        .post(
            &format!("/api/residences/{id}/share/"),
            json!({"role": role, "max_uses": 5}),
            Some(token),
        )
        .await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text());
    r.json()["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_removed_member_cannot_rejoin_and_loses_assignments() {
    let (db, c) = spawn().await;
    let (ann, ta) = user(&db.pool, "ann@example.com").await;
    let (bob, tb) = user(&db.pool, "bob@example.com").await;
    let (_, tv) = user(&db.pool, "vic@example.com").await;
    let (_, tx) = user(&db.pool, "xena@example.com").await;
    let home = residence(&db.pool, ann, "Home").await;
    let code = share_code(&c, home, &ta, "member").await;
    let r = c
        .post("/api/residences/join/", json!({"code": code}), Some(&tb))
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let task =
        honeydue_testkit::fixtures::task(&db.pool, home, "Bob's", "2026-06-10", None, Some(bob))
            .await;
    // Outsiders and members cannot remove anyone; a viewer neither.
    let viewer_code = share_code(&c, home, &ta, "viewer").await;
    assert_eq!(
        c.post(
            "/api/residences/join/",
            json!({"code": viewer_code}),
            Some(&tv)
        )
        .await
        .status,
        201
    );
    for t in [&tx, &tv] {
        let r = c
            .delete(
                &format!("/api/residences/{home}/users/{bob}/"),
                None,
                Some(t),
            )
            .await;
        assert!(r.status == 404 || r.status == 403, "{}", r.text());
    }
    let r = c
        .delete(
            &format!("/api/residences/{home}/users/{bob}/"),
            None,
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    // The code he knows no longer works; his task is everyone's again.
    let r = c
        .post(
            "/api/residences/join/",
            json!({"code": viewer_code}),
            Some(&tb),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text());
    let assigned: Option<i64> = sqlx::query_scalar("SELECT assigned_to FROM tasks WHERE id = $1")
        .bind(task)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(assigned, None);
    // A user id from elsewhere is not a member here.
    assert_eq!(
        c.delete(
            &format!("/api/residences/{home}/users/999999/"),
            None,
            Some(&ta)
        )
        .await
        .status,
        404
    );
    // Outsiders cannot see or revoke the share code, or leave.
    assert_eq!(
        c.get(&format!("/api/residences/{home}/share/"), Some(&tx))
            .await
            .status,
        404
    );
    assert_eq!(
        c.delete(&format!("/api/residences/{home}/share/"), None, Some(&tx))
            .await
            .status,
        404
    );
    assert_eq!(
        c.post(
            &format!("/api/residences/{home}/leave/"),
            json!({}),
            Some(&tx)
        )
        .await
        .status,
        404
    );
    // A viewer cannot delete the residence.
    assert_eq!(
        c.delete(&format!("/api/residences/{home}/"), None, Some(&tv))
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn guessing_share_codes_is_throttled_by_redis_too() {
    let db = TestDb::new().await;
    let redis = honeydue_testkit::redis::TestRedis::start();
    let state = State::new(
        Config::for_tests(&db.url, Some(redis.url())),
        db.pool.clone(),
    );
    let c = TestClient::new(app(state));
    let (_, t) = user(&db.pool, "mallory@example.com").await;
    let mut statuses = Vec::new();
    for i in 0..6usize {
        let r = c
            .post(
                "/api/residences/join/",
                json!({"code": format!("ZZZZZZZ{}", b"ABCDEFGHJKL"[i] as char)}),
                Some(&t),
            )
            .await;
        statuses.push(r.status.as_u16());
    }
    assert_eq!(statuses, [404, 404, 404, 404, 404, 429], "{statuses:?}");
}

async fn join_with(
    c: &TestClient,
    token: &str,
    code: &str,
) -> honeydue_testkit::http::TestResponse {
    c.post("/api/residences/join/", json!({"code": code}), Some(token))
        .await
}

#[tokio::test]
async fn share_codes_are_eight_characters_and_single_use_by_default() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "a@example.com").await;
    let (_, tb) = user(&db.pool, "b@example.com").await;
    let (_, tc) = user(&db.pool, "c@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    let r = c
        .send(
            Method::POST,
            &format!("/api/residences/{home}/share/"),
            None,
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let code = r.json()["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 8);
    assert!(code
        .bytes()
        .all(|b| b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789".contains(&b)));
    assert_eq!(
        (r.json()["max_uses"].as_i64(), r.json()["uses"].as_i64()),
        (Some(1), Some(0))
    );
    assert_eq!(join_with(&c, &tb, &code).await.status, 201);
    // Used up: the next person cannot join with it, and the owner sees none.
    assert_eq!(join_with(&c, &tc, &code).await.status, 404);
    assert_eq!(
        c.get(&format!("/api/residences/{home}/share/"), Some(&ta))
            .await
            .status,
        404
    );
    // An owner may allow a few joins, never many.
    let r = c
        .post(
            &format!("/api/residences/{home}/share/"),
            json!({"max_uses": 2}),
            Some(&ta),
        )
        .await;
    let code = r.json()["code"].as_str().unwrap().to_string();
    assert_eq!(join_with(&c, &tc, &code).await.status, 201);
    let (_, td) = user(&db.pool, "d@example.com").await;
    let (_, te) = user(&db.pool, "e@example.com").await;
    assert_eq!(join_with(&c, &td, &code).await.status, 201);
    assert_eq!(join_with(&c, &te, &code).await.status, 404);
    let r = c
        .post(
            &format!("/api/residences/{home}/share/"),
            json!({"max_uses": 11}),
            Some(&ta),
        )
        .await;
    assert_eq!(r.status, 422);
    // Six characters are refused outright.
    assert_eq!(join_with(&c, &te, "ABCDEF").await.status, 422);
}

#[tokio::test]
async fn guessing_backs_off_per_account_and_address_without_redis() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "owner@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    let real = share_code(&c, home, &ta, "member").await;
    let (_, t1) = user(&db.pool, "mallory1@example.com").await;
    for i in 0..5usize {
        let guess = format!("ZZZZZZZ{}", b"ABCDEFGHJKL"[i] as char);
        assert_eq!(join_with(&c, &t1, &guess).await.status, 404);
    }
    // Back-off: even the right code waits now.
    let r = join_with(&c, &t1, &real).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // A fresh account from the same address is in the same back-off.
    let (_, t2) = user(&db.pool, "mallory2@example.com").await;
    assert_eq!(join_with(&c, &t2, "ZZZZZZZZ").await.status, 429);
    // Someone else, elsewhere, joins.
    let mut elsewhere = c.clone();
    elsewhere.source_ip = "198.51.100.77".into();
    let (_, tb) = user(&db.pool, "bob@example.com").await;
    assert_eq!(join_with(&elsewhere, &tb, &real).await.status, 201);
    // Once the back-off has passed (failures a minute old), guesses go on.
    sqlx::query("UPDATE share_code_failures SET failed_at = failed_at - interval '61 seconds'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(join_with(&c, &t2, "ZZZZZZZY").await.status, 404);
    // ... and the next wait is twice as long.
    let r = join_with(&c, &t2, "ZZZZZZZX").await;
    assert_eq!(r.status, 429);
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((61..=120).contains(&wait), "{wait}");
}

#[tokio::test]
async fn a_spent_global_budget_pauses_every_join() {
    let (db, c) = spawn().await;
    let (a, ta) = user(&db.pool, "owner@example.com").await;
    let home = residence(&db.pool, a, "Home").await;
    let real = share_code(&c, home, &ta, "member").await;
    // 300 failures in the last hour, from many accounts and addresses.
    sqlx::query(
        "INSERT INTO share_code_failures (addr_hash, failed_at)
         SELECT sha256(g::text::bytea), now() - interval '30 minutes' FROM generate_series(1, 300) g",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let (_, tb) = user(&db.pool, "bob@example.com").await;
    let r = join_with(&c, &tb, &real).await;
    assert_eq!(r.status, 429, "{}", r.text());
    let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(
        (1700..=1800).contains(&wait),
        "until the oldest leaves the hour: {wait}"
    );
    sqlx::query("UPDATE share_code_failures SET failed_at = now() - interval '2 hours'")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(join_with(&c, &tb, &real).await.status, 201);
}

#[tokio::test]
async fn bathrooms_past_the_column_are_a_422() {
    let (db, c) = spawn().await;
    let (_, t) = user(&db.pool, "ann@example.com").await;
    for b in [1000.0, 12345.5, -1.0] {
        let r = c
            .post(
                "/api/residences/",
                json!({"name": "Home", "bathrooms": b}),
                Some(&t),
            )
            .await;
        assert_eq!(r.status, 422, "{b}: {}", r.text());
        assert!(r.json()["error"]["fields"]["bathrooms"].is_array());
    }
    let r = c
        .post(
            "/api/residences/",
            json!({"name": "Home", "bathrooms": 999.5}),
            Some(&t),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}
