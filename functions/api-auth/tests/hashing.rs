//! The per-process bound on password hashing, in a test binary of its own:
//! it holds every hashing slot of the process, which would slow the other
//! tests' sign-ups down if they shared it.

use api_auth::{app, Config, State};
use honeydue_core::auth::{hash_slots, HASH_CONCURRENCY};
use honeydue_testkit::{TestClient, TestDb};
use serde_json::json;

#[tokio::test]
async fn a_flood_of_hashes_waits_briefly_then_gets_503_and_cheap_checks_come_first() {
    let db = TestDb::new().await;
    let c = TestClient::new(app(State::new(
        Config::for_tests(&db.url, None),
        db.pool.clone(),
    )));
    // Every slot busy, as under a flood of sign-ups, logins and resets.
    let held = hash_slots()
        .acquire_many(HASH_CONCURRENCY as u32)
        .await
        .unwrap();
    let r = c
        .post(
            "/api/auth/register/",
            json!({"email": "ann@example.com", "password": "correct horse battery"}),
            None,
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "busy");
    assert_eq!(
        r.headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(users, 0, "nothing half-done");
    // What needs no hash is answered at once: a made-up reset token, a
    // malformed sign-up.
    let r = c
        .post(
            "/api/auth/reset-password/",
            json!({"reset_token": "made-up", "new_password": "another password"}),
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "invalid_token");
    let r = c
        .post(
            "/api/auth/register/",
            json!({"email": "not an email", "password": "x"}),
            None,
        )
        .await;
    assert_eq!(r.status, 422);
    // Once the flood passes, the same sign-up goes through.
    drop(held);
    let r = c
        .post(
            "/api/auth/register/",
            json!({"email": "ann@example.com", "password": "correct horse battery"}),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}
