//! The auth function's routes, through the real router, against a real
//! Postgres database per test (and a real Redis where rate limits matter).

use api_auth::{app, Config, State};
use honeydue_testkit::redis::TestRedis;
use honeydue_testkit::{TestClient, TestDb};
use serde_json::{json, Value};

struct TestApp {
    db: TestDb,
    client: TestClient,
}

async fn spawn_with_redis(redis_url: Option<String>) -> TestApp {
    let db = TestDb::new().await;
    let state = State::new(Config::for_tests(&db.url, redis_url), db.pool.clone());
    TestApp {
        client: TestClient::new(app(state)),
        db,
    }
}

async fn spawn() -> TestApp {
    spawn_with_redis(None).await
}

impl TestApp {
    async fn register(&self, email: &str, password: &str) -> (String, i64) {
        let r = self
            .client
            .post(
                "/api/auth/register/",
                json!({"email": email, "password": password, "first_name": "Ann", "last_name": "Lee", "timezone": "America/Chicago"}),
                None,
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        let j = r.json();
        (
            j["token"].as_str().unwrap().to_string(),
            j["user"]["id"].as_i64().unwrap(),
        )
    }

    /// Signs in; the token.
    async fn login(&self, email: &str, password: &str) -> String {
        let r = self
            .client
            .post(
                "/api/auth/login/",
                json!({"email": email, "password": password}),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["token"].as_str().unwrap().to_string()
    }

    /// The code in the newest outbox email of `kind` to `email`.
    async fn code_from_outbox(&self, email: &str, kind: &str) -> String {
        let body: String = sqlx::query_scalar(
            "SELECT body_text FROM email_outbox WHERE to_address = $1 AND kind = $2 ORDER BY id DESC LIMIT 1",
        )
        .bind(email)
        .bind(kind)
        .fetch_one(&self.db.pool)
        .await
        .expect("an outbox email");
        body.split(|c: char| !c.is_ascii_digit())
            .find(|w| w.len() == 6)
            .expect("a 6-digit code in the email")
            .to_string()
    }

    async fn count(&self, sql: &str, id: i64) -> i64 {
        sqlx::query_scalar(sql)
            .bind(id)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn full_journey() {
    let t = spawn().await;
    let c = &t.client;
    let email = "ann@example.com";

    // Register: token, user, an outbox row carrying a code.
    let (token, user_id) = t.register("Ann@Example.com", "first-password").await;
    let me = c.get("/api/auth/me/", Some(&token)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["email"], email);
    assert_eq!(me.json()["email_verified"], false);
    assert_eq!(me.json()["timezone"], "America/Chicago");
    let code = t.code_from_outbox(email, "verify_email").await;

    // Verify.
    let r = c
        .post(
            "/api/auth/verify-email/",
            json!({"code": code}),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["user"]["email_verified"], true);
    let r = c
        .post(
            "/api/auth/verify-email/",
            json!({"code": code}),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), "already_verified");

    // Login, me, patch me.
    let r = c
        .post(
            "/api/auth/login/",
            json!({"email": email, "password": "first-password"}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let login_token = r.json()["token"].as_str().unwrap().to_string();
    assert_ne!(login_token, token);
    let r = c
        .patch(
            "/api/auth/me/",
            json!({"first_name": "Annie", "timezone": "Europe/Paris", "preferences": {"units": "metric"}}),
            Some(&login_token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["first_name"], "Annie");
    assert_eq!(r.json()["last_name"], "Lee");
    assert_eq!(r.json()["timezone"], "Europe/Paris");
    assert_eq!(r.json()["preferences"]["units"], "metric");

    // Change password: every old token is revoked, a new one is returned.
    let r = c
        .post(
            "/api/auth/change-password/",
            json!({"current_password": "first-password", "new_password": "second-password"}),
            Some(&login_token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let changed_token = r.json()["token"].as_str().unwrap().to_string();
    for old in [&token, &login_token] {
        assert_eq!(c.get("/api/auth/me/", Some(old)).await.status, 401);
    }
    assert_eq!(
        c.get("/api/auth/me/", Some(&changed_token)).await.status,
        200
    );
    let r = c
        .post(
            "/api/auth/login/",
            json!({"email": email, "password": "first-password"}),
            None,
        )
        .await;
    assert_eq!(r.status, 401);

    // Reset password by code.
    let r = c
        .post("/api/auth/forgot-password/", json!({"email": email}), None)
        .await;
    assert_eq!(r.status, 200);
    let code = t.code_from_outbox(email, "password_reset").await;
    let r = c
        .post(
            "/api/auth/verify-reset-code/",
            json!({"email": email, "code": code}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let reset_token = r.json()["reset_token"].as_str().unwrap().to_string();
    let r = c
        .post(
            "/api/auth/reset-password/",
            json!({"reset_token": reset_token, "new_password": "third-password"}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        c.get("/api/auth/me/", Some(&changed_token)).await.status,
        401,
        "reset revokes all tokens"
    );
    let r = c
        .post(
            "/api/auth/reset-password/",
            json!({"reset_token": reset_token, "new_password": "fourth-password"}),
            None,
        )
        .await;
    assert_eq!(r.status, 400, "a reset token works once");
    assert_eq!(r.error_code(), "invalid_token");
    let r = c
        .post(
            "/api/auth/login/",
            json!({"email": email, "password": "third-password"}),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let final_token = r.json()["token"].as_str().unwrap().to_string();

    // Logout revokes the token used.
    let r = c
        .post("/api/auth/logout/", json!({}), Some(&final_token))
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(c.get("/api/auth/me/", Some(&final_token)).await.status, 401);

    // Delete the account: the user's rows are gone.
    let r = c
        .post(
            "/api/auth/login/",
            json!({"email": email, "password": "third-password"}),
            None,
        )
        .await;
    let token = r.json()["token"].as_str().unwrap().to_string();
    let r = c
        .delete(
            "/api/auth/account/",
            Some(json!({"password": "wrong-password"})),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.json()["error"]["fields"]["password"].is_array());
    let r = c
        .delete(
            "/api/auth/account/",
            Some(json!({"password": "third-password"})),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE id = $1", user_id)
            .await,
        0
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM auth_tokens WHERE user_id = $1",
            user_id
        )
        .await,
        0
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM user_codes WHERE user_id = $1",
            user_id
        )
        .await,
        0
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM email_outbox WHERE user_id = $1",
            user_id
        )
        .await,
        0
    );
    assert_eq!(c.get("/api/auth/me/", Some(&token)).await.status, 401);
    let r = c
        .post(
            "/api/auth/login/",
            json!({"email": email, "password": "third-password"}),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    let t = spawn().await;
    t.register("bob@example.com", "bob-password").await;
    let wrong = t
        .client
        .post(
            "/api/auth/login/",
            json!({"email": "bob@example.com", "password": "nope-nope"}),
            None,
        )
        .await;
    let unknown = t
        .client
        .post(
            "/api/auth/login/",
            json!({"email": "nobody@example.com", "password": "nope-nope"}),
            None,
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(unknown.status, 401);
    assert_eq!(wrong.json(), unknown.json());
    assert_eq!(wrong.error_code(), "unauthorized");
    // Forgot-password does not tell either.
    let a = t
        .client
        .post(
            "/api/auth/forgot-password/",
            json!({"email": "bob@example.com"}),
            None,
        )
        .await;
    let b = t
        .client
        .post(
            "/api/auth/forgot-password/",
            json!({"email": "nobody@example.com"}),
            None,
        )
        .await;
    assert_eq!((a.status, a.json()), (b.status, b.json()));
}

#[tokio::test]
async fn expired_reused_and_guessed_codes_are_refused() {
    let t = spawn().await;
    let c = &t.client;
    let (token, user_id) = t.register("cy@example.com", "cy-password").await;

    // Expired.
    let code = t.code_from_outbox("cy@example.com", "verify_email").await;
    sqlx::query(
        "UPDATE user_codes SET expires_at = now() - interval '1 second' WHERE user_id = $1",
    )
    .bind(user_id)
    .execute(&t.db.pool)
    .await
    .unwrap();
    let r = c
        .post(
            "/api/auth/verify-email/",
            json!({"code": code}),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_code");

    // A resent code replaces the old one; five wrong guesses burn it.
    let r = c
        .post("/api/auth/resend-verification/", json!({}), Some(&token))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let code = t.code_from_outbox("cy@example.com", "verify_email").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let r = c
            .post(
                "/api/auth/verify-email/",
                json!({"code": wrong}),
                Some(&token),
            )
            .await;
        assert_eq!(r.status, 400);
    }
    let r = c
        .post(
            "/api/auth/verify-email/",
            json!({"code": code}),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 400, "attempt-limited code must be dead");

    // Reset codes: a used code cannot be used again.
    c.post(
        "/api/auth/forgot-password/",
        json!({"email": "cy@example.com"}),
        None,
    )
    .await;
    let code = t.code_from_outbox("cy@example.com", "password_reset").await;
    let body = json!({"email": "cy@example.com", "code": code});
    assert_eq!(
        c.post("/api/auth/verify-reset-code/", body.clone(), None)
            .await
            .status,
        200
    );
    let r = c.post("/api/auth/verify-reset-code/", body, None).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_code");

    // Codes are stored hashed.
    let stored: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT code_hash FROM user_codes WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&t.db.pool)
            .await
            .unwrap();
    assert!(stored.iter().all(|h| h.len() == 32 && h != code.as_bytes()));
}

#[tokio::test]
async fn tokens_are_stored_hashed() {
    let t = spawn().await;
    let (token, user_id) = t.register("dee@example.com", "dee-password").await;
    let hashes: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT token_hash FROM auth_tokens WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&t.db.pool)
            .await
            .unwrap();
    assert_eq!(hashes, vec![honeydue_core::auth::hash_token(&token)]);
    let phc: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&t.db.pool)
        .await
        .unwrap();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
}

#[tokio::test]
async fn brute_force_hits_the_rate_limit() {
    let redis = TestRedis::start();
    let t = spawn_with_redis(Some(redis.url())).await;
    t.register("eve@example.com", "eve-password").await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = t
            .client
            .post(
                "/api/auth/login/",
                json!({"email": "eve@example.com", "password": "guess-guess"}),
                None,
            )
            .await;
        statuses.push(r.status.as_u16());
        if r.status == 429 {
            assert_eq!(r.error_code(), "rate_limited");
            let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(retry > 0);
        }
    }
    assert_eq!(&statuses[..10], &[401; 10]);
    assert_eq!(&statuses[10..], &[429, 429]);
    // Even the right password is refused while limited: the limit is per
    // account, not per guess outcome.
    let r = t
        .client
        .post(
            "/api/auth/login/",
            json!({"email": "eve@example.com", "password": "eve-password"}),
            None,
        )
        .await;
    assert_eq!(r.status, 429);

    // Code entry is limited too.
    let (token, _) = t.register("fay@example.com", "fay-password").await;
    let mut last = 0;
    for _ in 0..11 {
        last = t
            .client
            .post(
                "/api/auth/verify-email/",
                json!({"code": "999999"}),
                Some(&token),
            )
            .await
            .status
            .as_u16();
    }
    assert_eq!(last, 429);
}

#[tokio::test]
async fn redis_down_login_still_works() {
    // Unreachable from the start.
    let t = spawn_with_redis(Some("redis://127.0.0.1:1/".into())).await;
    t.register("gil@example.com", "gil-password").await;
    let r = t
        .client
        .post(
            "/api/auth/login/",
            json!({"email": "gil@example.com", "password": "gil-password"}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Stopped while running.
    let mut redis = TestRedis::start();
    let t = spawn_with_redis(Some(redis.url())).await;
    t.register("hal@example.com", "hal-password").await;
    let body = json!({"email": "hal@example.com", "password": "hal-password"});
    assert_eq!(
        t.client
            .post("/api/auth/login/", body.clone(), None)
            .await
            .status,
        200
    );
    redis.stop();
    for _ in 0..3 {
        let r = t.client.post("/api/auth/login/", body.clone(), None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        // Token lookups fall back to Postgres.
        let token = r.json()["token"].as_str().unwrap().to_string();
        assert_eq!(
            t.client.get("/api/auth/me/", Some(&token)).await.status,
            200
        );
        assert_eq!(
            t.client
                .post("/api/auth/logout/", json!({}), Some(&token))
                .await
                .status,
            204
        );
        assert_eq!(
            t.client.get("/api/auth/me/", Some(&token)).await.status,
            401
        );
    }
}

#[tokio::test]
async fn malformed_and_invalid_input() {
    let t = spawn().await;
    let c = &t.client;
    let r = c
        .send_raw(
            axum::http::Method::POST,
            "/api/auth/register/",
            Some(b"{\"email\":".to_vec()),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "bad_request");

    let r = c
        .post(
            "/api/auth/register/",
            json!({"email": "x@example.com"}),
            None,
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["error"]["fields"]["password"][0],
        "This field is required."
    );

    let r = c
        .post(
            "/api/auth/register/",
            json!({"email": "not-an-email", "password": "short", "timezone": "Mars/Base"}),
            None,
        )
        .await;
    assert_eq!(r.status, 422);
    let fields = &r.json()["error"]["fields"];
    for f in ["email", "password", "timezone"] {
        assert!(fields[f].is_array(), "{f} in {fields}");
    }

    let r = c
        .post(
            "/api/auth/login/",
            json!({"email": 5, "password": "x"}),
            None,
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.json()["error"]["fields"]["email"].is_array());

    let r = c
        .send_raw(
            axum::http::Method::POST,
            "/api/auth/login/",
            Some(b"email=a".to_vec()),
            None,
            &[("content-type", "application/x-www-form-urlencoded")],
        )
        .await;
    assert_eq!(r.status, 400);

    // Duplicate email.
    t.register("ivy@example.com", "ivy-password").await;
    let r = c
        .post(
            "/api/auth/register/",
            json!({"email": "IVY@example.com", "password": "other-password"}),
            None,
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), "email_taken");

    // Unknown fields on PATCH me are refused, not silently dropped.
    let (token, _) = t.register("jo@example.com", "jo-password").await;
    let r = c
        .patch(
            "/api/auth/me/",
            json!({"email": "new@example.com"}),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = c
        .patch(
            "/api/auth/me/",
            json!({"preferences": [1, 2]}),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 422);
}

#[tokio::test]
async fn oversized_bodies_are_rejected() {
    let t = spawn().await;
    let big = json!({"email": "k@example.com", "password": "x".repeat(64 * 1024)});
    let r = t.client.post("/api/auth/register/", big, None).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.error_code(), "payload_too_large");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&t.db.pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn tokens_only_reach_their_own_account() {
    let t = spawn().await;
    let c = &t.client;
    let (a_token, a_id) = t.register("amy@example.com", "amy-password").await;
    let (b_token, b_id) = t.register("ben@example.com", "ben-password").await;
    assert_eq!(
        c.get("/api/auth/me/", Some(&b_token)).await.json()["id"],
        b_id
    );

    // B cannot delete or re-password A's account, even knowing A's password.
    let r = c
        .delete(
            "/api/auth/account/",
            Some(json!({"password": "amy-password"})),
            Some(&b_token),
        )
        .await;
    assert_eq!(r.status, 422);
    let r = c
        .post(
            "/api/auth/change-password/",
            json!({"current_password": "amy-password", "new_password": "stolen-password"}),
            Some(&b_token),
        )
        .await;
    assert_eq!(r.status, 422);
    // A's code does not verify B.
    let a_code = t.code_from_outbox("amy@example.com", "verify_email").await;
    let r = c
        .post(
            "/api/auth/verify-email/",
            json!({"code": a_code}),
            Some(&b_token),
        )
        .await;
    assert_eq!(r.status, 400);
    // B logging out does not log A out.
    assert_eq!(
        c.post("/api/auth/logout/", json!({}), Some(&b_token))
            .await
            .status,
        204
    );
    let me = c.get("/api/auth/me/", Some(&a_token)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.json()["id"], a_id);
    assert_eq!(me.json()["email_verified"], false);

    // No token, a malformed header, a made-up token.
    assert_eq!(c.get("/api/auth/me/", None).await.status, 401);
    let r = c
        .send_raw(
            axum::http::Method::GET,
            "/api/auth/me/",
            None,
            None,
            &[("authorization", "Basic abc")],
        )
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(c.get("/api/auth/me/", Some("made-up")).await.status, 401);
    // Bearer works like Token.
    let r = c
        .send_raw(
            axum::http::Method::GET,
            "/api/auth/me/",
            None,
            None,
            &[("authorization", &format!("Bearer {a_token}"))],
        )
        .await;
    assert_eq!(r.status, 200);
    let _: Value = r.json();
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let t = spawn().await;
    let (token, user_id) = t.register("kim@example.com", "kim-password").await;
    sqlx::query(
        "UPDATE auth_tokens SET expires_at = now() - interval '1 second' WHERE user_id = $1",
    )
    .bind(user_id)
    .execute(&t.db.pool)
    .await
    .unwrap();
    assert_eq!(
        t.client.get("/api/auth/me/", Some(&token)).await.status,
        401
    );
}

#[test]
fn missing_configuration_is_named_at_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_api-auth"))
        .env_clear()
        .env("TOKEN_TTL_DAYS", "forever")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DATABASE_URL is not set"), "{err}");
    assert!(err.contains("TOKEN_TTL_DAYS is malformed"), "{err}");
}

#[tokio::test]
async fn token_lookups_are_cached_and_evicted_on_logout_and_password_change() {
    let redis = TestRedis::start();
    let t = spawn_with_redis(Some(redis.url())).await;
    let (token, user_id) = t.register("lee@example.com", "lee-password").await;
    assert_eq!(
        t.client.get("/api/auth/me/", Some(&token)).await.status,
        200
    );
    // Served from Redis now: a lookup no longer needs the token row's
    // revocation state (proved by revoking behind the function's back).
    sqlx::query("UPDATE auth_tokens SET revoked_at = now() WHERE user_id = $1")
        .bind(user_id)
        .execute(&t.db.pool)
        .await
        .unwrap();
    assert_eq!(
        t.client.get("/api/auth/me/", Some(&token)).await.status,
        200,
        "cached"
    );
    sqlx::query("UPDATE auth_tokens SET revoked_at = NULL WHERE user_id = $1")
        .bind(user_id)
        .execute(&t.db.pool)
        .await
        .unwrap();

    // Logout through the API evicts at once.
    assert_eq!(
        t.client
            .post("/api/auth/logout/", json!({}), Some(&token))
            .await
            .status,
        204
    );
    assert_eq!(
        t.client.get("/api/auth/me/", Some(&token)).await.status,
        401
    );

    // A password change evicts every session of the user.
    let second = t.login("lee@example.com", "lee-password").await;
    let third = t.login("lee@example.com", "lee-password").await;
    assert_eq!(
        t.client.get("/api/auth/me/", Some(&second)).await.status,
        200
    );
    let r = t
        .client
        .post(
            "/api/auth/change-password/",
            json!({"current_password": "lee-password", "new_password": "lee-password-2"}),
            Some(&third),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        t.client.get("/api/auth/me/", Some(&second)).await.status,
        401
    );
    assert_eq!(
        t.client.get("/api/auth/me/", Some(&third)).await.status,
        401
    );
}

mod urgent_mail {
    use std::time::{Duration, Instant};

    use api_auth::{app_with, Config, State, Urgent};
    use honeydue_mail::deliver::{Mailer, Security, SmtpConfig};
    use honeydue_testkit::smtp::TestSmtp;
    use honeydue_testkit::{TestClient, TestDb};
    use serde_json::json;

    fn mailer(port: u16) -> Mailer {
        let cfg = SmtpConfig {
            host: "127.0.0.1".into(),
            port,
            security: Security::None,
            credentials: None,
            timeout: Duration::from_secs(5),
        };
        Mailer::new(&cfg, "honeyDue <noreply@honeydue.test>").unwrap()
    }

    /// Status, attempts and whether a failure was recorded, per row.
    async fn status_of(db: &TestDb, kind: &str) -> Vec<(String, i32, bool)> {
        sqlx::query_as(
            "SELECT status, attempts, last_error IS NOT NULL FROM email_outbox WHERE kind = $1 ORDER BY id",
        )
        .bind(kind)
        .fetch_all(&db.pool)
        .await
        .unwrap()
    }

    /// Waits (up to 15 s) until the outbox rows of `kind` leave `pending`
    /// or record a failure (a row is claimed, its attempt counted, before
    /// it is sent).
    async fn settled(db: &TestDb, kind: &str, n: usize) -> Vec<(String, i32)> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let rows = status_of(db, kind).await;
            if rows.len() == n && rows.iter().all(|(s, _, failed)| s != "pending" || *failed) {
                return rows.into_iter().map(|(s, a, _)| (s, a)).collect();
            }
            assert!(Instant::now() < deadline, "outbox never settled: {rows:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn codes_go_out_at_once_without_waiting_for_the_dispatcher() {
        let db = TestDb::new().await;
        let smtp = tokio::task::spawn_blocking(TestSmtp::start).await.unwrap();
        let state = State::new(Config::for_tests(&db.url, None), db.pool.clone());
        let c = TestClient::new(app_with(state, Urgent::new(mailer(smtp.port))));
        let r = c
            .post(
                "/api/auth/register/",
                json!({"email": "ann@example.com", "password": "correct horse battery"}),
                None,
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!(
            settled(&db, "verify_email", 1).await,
            [("sent".to_string(), 1)]
        );
        let msgs = smtp.messages();
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].contains("X-Envelope-To: ann@example.com"));
        assert!(msgs[0].contains("verification code"));
        // Once sent, the outbox keeps no trace of the code.
        let (subject, text, html): (String, String, Option<String>) = sqlx::query_as(
            "SELECT subject, body_text, body_html FROM email_outbox WHERE kind = 'verify_email'",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(subject, honeydue_mail::REDACTED);
        assert_eq!(text, honeydue_mail::REDACTED);
        assert_eq!(html, None);
        assert!(!subject.chars().any(|c| c.is_ascii_digit()));
        // Reset for an unknown address: same answer, nothing sent.
        let r = c
            .post(
                "/api/auth/forgot-password/",
                json!({"email": "nobody@example.com"}),
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        let r = c
            .post(
                "/api/auth/forgot-password/",
                json!({"email": "ann@example.com"}),
                None,
            )
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            settled(&db, "password_reset", 1).await,
            [("sent".to_string(), 1)]
        );
        assert_eq!(smtp.messages().len(), 2);
    }

    #[tokio::test]
    async fn smtp_down_leaves_the_code_for_the_dispatcher() {
        let db = TestDb::new().await;
        let closed = honeydue_testkit::proc::free_addr().port();
        let state = State::new(Config::for_tests(&db.url, None), db.pool.clone());
        let c = TestClient::new(app_with(state, Urgent::new(mailer(closed))));
        let r = c
            .post(
                "/api/auth/register/",
                json!({"email": "ann@example.com", "password": "correct horse battery"}),
                None,
            )
            .await;
        assert_eq!(r.status, 201, "the request does not depend on SMTP");
        // Tried and given back: still pending, its attempt not counted (the
        // server was unreachable, not the message refused), due at once, so
        // the dispatcher's next run delivers it.
        let deadline = Instant::now() + Duration::from_secs(15);
        let row = loop {
            let row: Option<(String, i32, bool)> = sqlx::query_as(
                "SELECT status, attempts, next_attempt_at <= now() FROM email_outbox
                  WHERE kind = 'verify_email' AND last_error IS NOT NULL",
            )
            .fetch_optional(&db.pool)
            .await
            .unwrap();
            if let Some(row) = row {
                break row;
            }
            assert!(Instant::now() < deadline, "the send was never tried");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(row, ("pending".to_string(), 0, true));
    }
}

// ---- abuse resistance and credentials that end ---------------------------------

#[tokio::test]
async fn sign_ups_are_limited_per_address_without_redis() {
    let t = spawn().await;
    let mut c = t.client.clone();
    c.source_ip = "198.51.100.20".into();
    for i in 0..10 {
        let r = c
            .post(
                "/api/auth/register/",
                json!({"email": format!("bot{i}@example.com"), "password": "correct horse battery"}),
                None,
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let r = c
        .post(
            "/api/auth/register/",
            json!({"email": "bot10@example.com", "password": "correct horse battery"}),
            None,
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), "rate_limited");
    assert!(r.headers.get("retry-after").is_some());
    // Nothing was created for the refused one; another address may still.
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE id > $1", 0).await,
        10
    );
    c.source_ip = "198.51.100.21".into();
    let r = c
        .post(
            "/api/auth/register/",
            json!({"email": "someone@example.com", "password": "correct horse battery"}),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test]
async fn sign_ups_are_limited_for_everyone() {
    let t = spawn().await;
    // 1,000 sign-ups in the last hour, from anywhere.
    sqlx::query(
        "INSERT INTO users (email, password_hash, created_at)
         SELECT 'u' || g || '@example.com', 'x', now() - interval '10 minutes' FROM generate_series(1, 1000) g",
    )
    .execute(&t.db.pool)
    .await
    .unwrap();
    let r = t
        .client
        .post(
            "/api/auth/register/",
            json!({"email": "late@example.com", "password": "correct horse battery"}),
            None,
        )
        .await;
    assert_eq!(r.status, 429, "{}", r.text());
}

#[tokio::test]
async fn a_taken_email_is_refused_before_any_hashing() {
    let t = spawn().await;
    t.register("ann@example.com", "first-password").await;
    let r = t
        .client
        .post(
            "/api/auth/register/",
            json!({"email": "ANN@example.com", "password": "another password"}),
            None,
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), "email_taken");
}

#[tokio::test]
async fn requests_without_an_address_are_not_one_client() {
    // Today's bug: every request without a source address shared one
    // "unknown" bucket, so one caller could lock out all the others.
    let redis = TestRedis::start();
    let t = spawn_with_redis(Some(redis.url())).await;
    let mut c = t.client.clone();
    c.source_ip = String::new();
    for i in 0..60 {
        let r = c
            .post(
                "/api/auth/login/",
                json!({"email": format!("nobody{i}@example.com"), "password": "wrong password"}),
                None,
            )
            .await;
        assert_eq!(r.status, 401, "attempt {i}: {}", r.text());
    }
}

/// A password reset (as someone who took the mailbox would do it).
async fn reset(t: &TestApp, email: &str, new_password: &str) {
    let c = &t.client;
    let r = c
        .post("/api/auth/forgot-password/", json!({"email": email}), None)
        .await;
    assert_eq!(r.status, 200);
    let code = t.code_from_outbox(email, "password_reset").await;
    let r = c
        .post(
            "/api/auth/verify-reset-code/",
            json!({"email": email, "code": code}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let reset_token = r.json()["reset_token"].as_str().unwrap().to_string();
    let r = c
        .post(
            "/api/auth/reset-password/",
            json!({"reset_token": reset_token, "new_password": new_password}),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
}

async fn give_credentials(t: &TestApp, user_id: i64) {
    sqlx::query("INSERT INTO calendar_feeds (user_id, token_hash) VALUES ($1, sha256(random()::text::bytea))")
        .bind(user_id)
        .execute(&t.db.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO devices (user_id, platform, token) VALUES ($1, 'ios', 'apns-' || $1)")
        .bind(user_id)
        .execute(&t.db.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_reset_or_change_ends_every_credential_and_tells_the_user() {
    let t = spawn().await;
    let (token, id) = t.register("ann@example.com", "first-password").await;
    // An open verification code, a feed URL and a push device.
    give_credentials(&t, id).await;
    reset(&t, "ann@example.com", "second-password").await;
    assert_eq!(
        t.client.get("/api/auth/me/", Some(&token)).await.status,
        401
    );
    for sql in [
        "SELECT count(*) FROM calendar_feeds WHERE user_id = $1",
        "SELECT count(*) FROM devices WHERE user_id = $1",
        "SELECT count(*) FROM user_codes WHERE user_id = $1 AND consumed_at IS NULL",
        "SELECT count(*) FROM auth_tokens WHERE user_id = $1 AND revoked_at IS NULL",
    ] {
        assert_eq!(t.count(sql, id).await, 0, "{sql}");
    }
    let told: String = sqlx::query_scalar(
        "SELECT body_text FROM email_outbox WHERE user_id = $1 AND kind = 'password_changed' ORDER BY id DESC LIMIT 1",
    )
    .bind(id)
    .fetch_one(&t.db.pool)
    .await
    .unwrap();
    assert!(told.contains("calendar feed"), "{told}");

    // The same for a change of password while signed in.
    let token = t.login("ann@example.com", "second-password").await;
    give_credentials(&t, id).await;
    let r = t
        .client
        .post(
            "/api/auth/change-password/",
            json!({"current_password": "second-password", "new_password": "third-password"}),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        t.count("SELECT count(*) FROM calendar_feeds WHERE user_id = $1", id)
            .await,
        0
    );
    assert_eq!(
        t.count("SELECT count(*) FROM devices WHERE user_id = $1", id)
            .await,
        0
    );
}

#[tokio::test]
async fn tokens_end_after_thirty_days_unused_and_slide_with_use() {
    let t = spawn().await;
    let (idle, id) = t.register("ann@example.com", "first-password").await;
    let used = t.login("ann@example.com", "first-password").await;
    // Both issued 40 days ago (within their 365-day lifetime); `used` was
    // last used 29 days ago, `idle` 31 days ago.
    sqlx::query(
        "UPDATE auth_tokens SET created_at = now() - interval '40 days',
                last_used_at = now() - CASE WHEN id = (SELECT min(id) FROM auth_tokens WHERE user_id = $1)
                                            THEN interval '31 days' ELSE interval '29 days' END
          WHERE user_id = $1",
    )
    .bind(id)
    .execute(&t.db.pool)
    .await
    .unwrap();
    assert_eq!(t.client.get("/api/auth/me/", Some(&idle)).await.status, 401);
    assert_eq!(t.client.get("/api/auth/me/", Some(&used)).await.status, 200);
    // The use moved its window.
    let fresh: bool = sqlx::query_scalar(
        "SELECT last_used_at > now() - interval '1 minute' FROM auth_tokens WHERE id = (SELECT max(id) FROM auth_tokens WHERE user_id = $1)",
    )
    .bind(id)
    .fetch_one(&t.db.pool)
    .await
    .unwrap();
    assert!(fresh);
}

#[tokio::test]
async fn a_reset_with_a_made_up_token_changes_nothing() {
    let t = spawn().await;
    t.register("ann@example.com", "first-password").await;
    let r = t
        .client
        .post(
            "/api/auth/reset-password/",
            json!({"reset_token": "made-up", "new_password": "another password"}),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_token");
}

#[tokio::test]
async fn deleting_an_owner_hands_shared_homes_to_the_longest_standing_member() {
    let t = spawn().await;
    let (_, owner) = t.register("owner@example.com", "owner-password").await;
    let (_, viewer) = t.register("viewer@example.com", "viewer-password").await;
    let (_, member) = t.register("member@example.com", "member-password").await;
    let (_, late) = t.register("late@example.com", "late-password").await;
    let pool = &t.db.pool;
    let shared: i64 = sqlx::query_scalar(
        "INSERT INTO residences (owner_id, name) VALUES ($1, 'Lake house') RETURNING id",
    )
    .bind(owner)
    .fetch_one(pool)
    .await
    .unwrap();
    let alone: i64 = sqlx::query_scalar(
        "INSERT INTO residences (owner_id, name) VALUES ($1, 'Studio') RETURNING id",
    )
    .bind(owner)
    .fetch_one(pool)
    .await
    .unwrap();
    for (rid, uid, role, days) in [
        (shared, owner, "owner", 30),
        (shared, viewer, "viewer", 20),
        (shared, member, "member", 10),
        (shared, late, "member", 1),
        (alone, owner, "owner", 30),
    ] {
        sqlx::query(
            "INSERT INTO residence_members (residence_id, user_id, role, joined_at)
             VALUES ($1, $2, $3, now() - make_interval(days => $4))",
        )
        .bind(rid)
        .bind(uid)
        .bind(role)
        .bind(days)
        .execute(pool)
        .await
        .unwrap();
    }
    let task: i64 = sqlx::query_scalar(
        "INSERT INTO tasks (residence_id, title, created_by) VALUES ($1, 'Clean gutters', $2) RETURNING id",
    )
    .bind(shared)
    .bind(owner)
    .fetch_one(pool)
    .await
    .unwrap();
    let token = t.login("owner@example.com", "owner-password").await;
    let r = t
        .client
        .send(
            axum::http::Method::DELETE,
            "/api/auth/account/",
            Some(json!({"password": "owner-password"})),
            Some(&token),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    // The shared home lives on, owned by the longest-standing member who
    // may edit (not the viewer, though she joined earlier), with its task.
    let (new_owner,): (i64,) = sqlx::query_as("SELECT owner_id FROM residences WHERE id = $1")
        .bind(shared)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(new_owner, member);
    let role: String = sqlx::query_scalar(
        "SELECT role FROM residence_members WHERE residence_id = $1 AND user_id = $2",
    )
    .bind(shared)
    .bind(member)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(role, "owner");
    assert_eq!(
        t.count("SELECT count(*) FROM tasks WHERE id = $1", task)
            .await,
        1
    );
    assert_eq!(
        t.count(
            "SELECT count(*) FROM residence_members WHERE residence_id = $1",
            shared
        )
        .await,
        3
    );
    // The new owner is told, by email and in the app.
    assert_eq!(
        t.count(
            "SELECT count(*) FROM email_outbox WHERE user_id = $1 AND kind = 'home_transferred'",
            member
        )
        .await,
        1
    );
    assert_eq!(
        t.count("SELECT count(*) FROM notifications WHERE user_id = $1 AND data->>'event' = 'ownership_transferred'", member)
            .await,
        1
    );
    // The home nobody else shared went with its owner.
    assert_eq!(
        t.count("SELECT count(*) FROM residences WHERE id = $1", alone)
            .await,
        0
    );
    assert_eq!(
        t.count("SELECT count(*) FROM users WHERE id = $1", owner)
            .await,
        0
    );
}
