//! Plans and limits, seen through the subscription function and enforced by
//! the functions that create things (several functions at once: an
//! end-to-end test, so that no function's tests link the others).

use honeydue_http::{Config, State};
use honeydue_testkit::fixtures::{add_member, residence, user};
use honeydue_testkit::{TestClient, TestDb};
use serde_json::json;

struct Apps {
    db: TestDb,
    subs: TestClient,
    residences: TestClient,
    tasks: TestClient,
    contractors: TestClient,
    documents: TestClient,
}

async fn spawn() -> Apps {
    let db = TestDb::new().await;
    let state = State::new(Config::for_tests(&db.url, None), db.pool.clone());
    Apps {
        subs: TestClient::new(api_subscriptions::app(state.clone())),
        residences: TestClient::new(api_residences::app(state.clone())),
        tasks: TestClient::new(api_tasks::app(state.clone())),
        contractors: TestClient::new(api_contractors::app(state.clone())),
        documents: TestClient::new(api_documents::app(state)),
        db,
    }
}

#[tokio::test]
async fn free_limits_are_enforced_with_usage_in_the_error() {
    let a = spawn().await;
    let (_, t) = user(&a.db.pool, "a@example.com").await;
    let r = a.subs.get("/api/subscription/status/", Some(&t)).await;
    assert_eq!(r.json()["tier"], "free");
    assert_eq!(r.json()["limits"]["residences"], 1);
    assert_eq!(r.json()["usage"]["residences"], 0);

    let r = a
        .residences
        .post("/api/residences/", json!({"name": "One"}), Some(&t))
        .await;
    assert_eq!(r.status, 201);
    let home = r.json()["id"].as_i64().unwrap();
    let r = a
        .residences
        .post("/api/residences/", json!({"name": "Two"}), Some(&t))
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "limit_exceeded");
    assert_eq!(r.json()["error"]["resource"], "residences");
    assert_eq!(r.json()["error"]["limit"], 1);
    assert_eq!(r.json()["error"]["usage"], 1);

    // Tasks: 30 on free; archived ones do not count, unarchiving does.
    for i in 0..30 {
        let r = a
            .tasks
            .post(
                "/api/tasks/",
                json!({"residence_id": home, "title": format!("t{i}")}),
                Some(&t),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let r = a
        .tasks
        .post(
            "/api/tasks/",
            json!({"residence_id": home, "title": "t30"}),
            Some(&t),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.json()["error"]["resource"].as_str()),
        (403, Some("tasks"))
    );
    let first: i64 = sqlx::query_scalar("SELECT min(id) FROM tasks")
        .fetch_one(&a.db.pool)
        .await
        .unwrap();
    assert_eq!(
        a.tasks
            .post(&format!("/api/tasks/{first}/archive/"), json!({}), Some(&t))
            .await
            .status,
        200
    );
    assert_eq!(
        a.tasks
            .post(
                "/api/tasks/",
                json!({"residence_id": home, "title": "t30"}),
                Some(&t)
            )
            .await
            .status,
        201
    );
    let r = a
        .tasks
        .post(
            &format!("/api/tasks/{first}/unarchive/"),
            json!({}),
            Some(&t),
        )
        .await;
    assert_eq!(r.status, 403);

    let r = a.subs.get("/api/subscription/status/", Some(&t)).await;
    assert_eq!(r.json()["usage"]["tasks"], 30);
}

#[tokio::test]
async fn household_resources_count_against_the_owner() {
    let a = spawn().await;
    let (owner, to) = user(&a.db.pool, "o@example.com").await;
    let (member, tm) = user(&a.db.pool, "m@example.com").await;
    let home = residence(&a.db.pool, owner, "Home").await;
    add_member(&a.db.pool, home, member, "member").await;
    for i in 0..10 {
        let r = a
            .documents
            .post(
                "/api/documents/",
                json!({"residence_id": home, "title": format!("d{i}"), "doc_type": "manual"}),
                Some(&to),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let r = a
        .documents
        .post(
            "/api/documents/",
            json!({"residence_id": home, "title": "more", "doc_type": "manual"}),
            Some(&tm),
        )
        .await;
    assert_eq!(r.status, 403, "the member adds to the owner's plan");
    // The member's own plan is untouched.
    assert_eq!(
        a.subs
            .get("/api/subscription/status/", Some(&tm))
            .await
            .json()["usage"]["documents"],
        0
    );
}

#[tokio::test]
async fn pro_free_flag_and_global_switch_lift_limits() {
    let a = spawn().await;
    let (id, t) = user(&a.db.pool, "a@example.com").await;
    for i in 0..10 {
        assert_eq!(
            a.contractors
                .post(
                    "/api/contractors/",
                    json!({"name": format!("c{i}")}),
                    Some(&t)
                )
                .await
                .status,
            201
        );
    }
    assert_eq!(
        a.contractors
            .post("/api/contractors/", json!({"name": "x"}), Some(&t))
            .await
            .status,
        403
    );

    sqlx::query("UPDATE app_settings SET limits_enabled = FALSE")
        .execute(&a.db.pool)
        .await
        .unwrap();
    assert_eq!(
        a.contractors
            .post("/api/contractors/", json!({"name": "x"}), Some(&t))
            .await
            .status,
        201
    );
    assert_eq!(
        a.subs
            .get("/api/subscription/status/", Some(&t))
            .await
            .json()["limits"]["contractors"],
        serde_json::Value::Null
    );
    sqlx::query("UPDATE app_settings SET limits_enabled = TRUE")
        .execute(&a.db.pool)
        .await
        .unwrap();
    assert_eq!(
        a.contractors
            .post("/api/contractors/", json!({"name": "y"}), Some(&t))
            .await
            .status,
        403
    );

    sqlx::query(
        "INSERT INTO user_subscriptions (user_id, is_free, source) VALUES ($1, TRUE, 'admin')",
    )
    .bind(id)
    .execute(&a.db.pool)
    .await
    .unwrap();
    assert_eq!(
        a.contractors
            .post("/api/contractors/", json!({"name": "y"}), Some(&t))
            .await
            .status,
        201
    );

    sqlx::query("UPDATE user_subscriptions SET is_free = FALSE, tier = 'pro', expires_at = now() + interval '1 day'")
        .execute(&a.db.pool)
        .await
        .unwrap();
    let s = a
        .subs
        .get("/api/subscription/status/", Some(&t))
        .await
        .json();
    assert_eq!(s["tier"], "pro");
    assert_eq!(
        a.contractors
            .post("/api/contractors/", json!({"name": "z"}), Some(&t))
            .await
            .status,
        201
    );
    // An expired pro is free again.
    sqlx::query("UPDATE user_subscriptions SET expires_at = now() - interval '1 second'")
        .execute(&a.db.pool)
        .await
        .unwrap();
    assert_eq!(
        a.subs
            .get("/api/subscription/status/", Some(&t))
            .await
            .json()["tier"],
        "free"
    );
    assert_eq!(
        a.contractors
            .post("/api/contractors/", json!({"name": "w"}), Some(&t))
            .await
            .status,
        403
    );

    let tiers = a
        .subs
        .get("/api/subscription/tiers/", Some(&t))
        .await
        .json();
    assert_eq!(tiers[0]["tier"], "free");
    assert_eq!(tiers[1]["limits"]["residences"], serde_json::Value::Null);
    assert_eq!(
        a.subs.get("/api/subscription/status/", None).await.status,
        401
    );
}
