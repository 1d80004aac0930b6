//! Google Play purchases against local stand-ins for Google's token
//! endpoint, the Play Developer API and Google's keys
//! (honeydue_testkit::push::Play), and a real Postgres: verify (checked,
//! acknowledged, one account per purchase), restore, the states that end
//! pro, and real-time developer notifications (Google-signed pushes only,
//! idempotent, never an older state over a newer one, revocations that
//! stick).

use api_subscriptions::{app_with, Stores};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::{Duration, Utc};
use honeydue_core::Env;
use honeydue_http::{Config, State};
use honeydue_testkit::fixtures::user;
use honeydue_testkit::push::{google_oidc_token, Play, GOOGLE_KID};
use honeydue_testkit::{TestClient, TestDb};
use serde_json::{json, Value};

const PACKAGE: &str = "com.honeydue.app";
const AUDIENCE: &str = "https://api.honeydue.test/api/subscription/webhook/google/";
const PUSHER: &str = "rtdn@honeydue-test.iam.gserviceaccount.com";

struct App {
    db: TestDb,
    c: TestClient,
    play: Play,
}

async fn spawn() -> App {
    let db = TestDb::new().await;
    let play = Play::start(PACKAGE).await;
    let pairs = play.env(PACKAGE, "pro_monthly,pro_yearly", AUDIENCE, PUSHER);
    let stores =
        Stores::from_env(Env::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())))).unwrap();
    assert!(stores.google.is_some());
    let state = State::new(Config::for_tests(&db.url, None), db.pool.clone());
    App {
        c: TestClient::new(app_with(state, stores)),
        db,
        play,
    }
}

fn purchase(state: &str, product: &str, expires_in_days: i64, order: &str) -> Value {
    json!({
        "kind": "androidpublisher#subscriptionPurchaseV2",
        "startTime": (Utc::now() - Duration::days(3)).to_rfc3339(),
        "subscriptionState": state,
        "latestOrderId": order,
        "acknowledgementState": "ACKNOWLEDGEMENT_STATE_PENDING",
        "lineItems": [{"productId": product, "expiryTime": (Utc::now() + Duration::days(expires_in_days)).to_rfc3339()}],
    })
}

/// `verify/` of `purchase_token` as the holder of `token`.
async fn verify(a: &App, token: &str, purchase_token: &str) -> honeydue_testkit::TestResponse {
    a.c.post(
        "/api/subscription/verify/",
        json!({"platform": "android", "purchase_token": purchase_token}),
        Some(token),
    )
    .await
}

async fn plan(a: &App, token: &str) -> Value {
    a.c.get("/api/subscription/status/", Some(token))
        .await
        .json()
}

fn claims() -> Value {
    let now = Utc::now().timestamp();
    json!({"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": PUSHER, "email_verified": true,
           "iat": now, "exp": now + 3600, "sub": "1234"})
}

fn push_body(message_id: &str, notification: Value) -> Value {
    json!({"message": {"data": STANDARD.encode(notification.to_string()), "messageId": message_id,
                       "publishTime": Utc::now().to_rfc3339()},
           "subscription": "projects/honeydue-test/subscriptions/play-rtdn"})
}

fn sub_notification(token: &str, kind: i64) -> Value {
    json!({"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": Utc::now().timestamp_millis().to_string(),
           "subscriptionNotification": {"version": "1.0", "notificationType": kind, "purchaseToken": token,
                                        "subscriptionId": "pro_monthly"}})
}

async fn push(a: &App, bearer: Option<String>, body: Value) -> honeydue_testkit::TestResponse {
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|v| ("authorization", v.as_str())).collect();
    a.c.send_raw(
        axum::http::Method::POST,
        "/api/subscription/webhook/google/",
        Some(body.to_string().into_bytes()),
        None,
        &headers,
    )
    .await
}

#[tokio::test]
async fn verify_checks_acknowledges_and_binds_a_purchase_to_one_account() {
    let a = spawn().await;
    let (_, ann) = user(&a.db.pool, "ann@example.com").await;
    let (_, bob) = user(&a.db.pool, "bob@example.com").await;
    a.play.set(
        "tok-ann",
        purchase("SUBSCRIPTION_STATE_ACTIVE", "pro_monthly", 30, "GPA.1"),
    );
    let r = verify(&a, &ann, "tok-ann").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["tier"], "pro");
    assert_eq!(r.json()["source"], "google");
    assert_eq!(
        *a.play.acknowledged.lock().unwrap(),
        ["tok-ann"],
        "acknowledged once"
    );
    assert!(a.play.server.seen.lock().unwrap().auth_failures.is_empty());
    // Verifying again changes nothing and acknowledges nothing twice.
    let r = verify(&a, &ann, "tok-ann").await;
    assert_eq!(r.json()["tier"], "pro");
    assert_eq!(a.play.acknowledged.lock().unwrap().len(), 1);
    // Another account cannot claim it.
    let r = verify(&a, &bob, "tok-ann").await;
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.error_code(), "subscription_in_use");
    assert_eq!(plan(&a, &bob).await["tier"], "free");
    // Unknown to Google, malformed, or missing: refused with the field named.
    for (body, field) in [
        (
            json!({"platform": "android", "purchase_token": "tok-unknown"}),
            "purchase_token",
        ),
        (
            json!({"platform": "android", "purchase_token": "bad token\n"}),
            "purchase_token",
        ),
        (json!({"platform": "android"}), "purchase_token"),
    ] {
        let r =
            a.c.post("/api/subscription/verify/", body.clone(), Some(&bob))
                .await;
        assert_eq!(r.status, 422, "{body}: {}", r.text());
        assert!(
            r.json()["error"]["fields"][field].is_array(),
            "{}",
            r.text()
        );
    }
    // A product that is not pro grants nothing.
    a.play.set(
        "tok-bob",
        purchase("SUBSCRIPTION_STATE_ACTIVE", "stickers", 30, "GPA.2"),
    );
    let r = verify(&a, &bob, "tok-bob").await;
    assert_eq!(r.json()["tier"], "free");
}

#[tokio::test]
async fn grace_keeps_pro_and_on_hold_expired_or_restored_states_follow_google() {
    let a = spawn().await;
    let (_, ann) = user(&a.db.pool, "ann@example.com").await;
    a.play.set(
        "tok-1",
        purchase(
            "SUBSCRIPTION_STATE_IN_GRACE_PERIOD",
            "pro_monthly",
            3,
            "GPA.10",
        ),
    );
    assert_eq!(
        verify(&a, &ann, "tok-1").await.json()["tier"],
        "pro",
        "in grace: still pro"
    );
    a.play.set(
        "tok-1",
        purchase("SUBSCRIPTION_STATE_ON_HOLD", "pro_monthly", -1, "GPA.10"),
    );
    assert_eq!(
        verify(&a, &ann, "tok-1").await.json()["tier"],
        "free",
        "on hold: pro ends"
    );
    a.play.set(
        "tok-1",
        purchase("SUBSCRIPTION_STATE_ACTIVE", "pro_monthly", 30, "GPA.10..1"),
    );
    assert_eq!(
        verify(&a, &ann, "tok-1").await.json()["tier"],
        "pro",
        "recovered"
    );
    // Restore with several tokens: the one that lasts longest decides.
    a.play.set(
        "tok-old",
        purchase("SUBSCRIPTION_STATE_EXPIRED", "pro_monthly", -40, "GPA.3"),
    );
    let r =
        a.c.post(
            "/api/subscription/restore/",
            json!({"platform": "android", "purchase_tokens": ["tok-1", "tok-old"]}),
            Some(&ann),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["tier"], "pro");
    let r =
        a.c.post(
            "/api/subscription/restore/",
            json!({"platform": "android", "purchase_tokens": []}),
            Some(&ann),
        )
        .await;
    assert_eq!(r.status, 422);
}

#[tokio::test]
async fn notifications_must_be_google_signed_for_us() {
    let a = spawn().await;
    let (_, ann) = user(&a.db.pool, "ann@example.com").await;
    a.play.set(
        "tok-1",
        purchase("SUBSCRIPTION_STATE_ACTIVE", "pro_monthly", 30, "GPA.1"),
    );
    verify(&a, &ann, "tok-1").await;
    a.play.set(
        "tok-1",
        purchase("SUBSCRIPTION_STATE_EXPIRED", "pro_monthly", -1, "GPA.1"),
    );
    let body = push_body("m-1", sub_notification("tok-1", 13));
    let signed = |c: Value| Some(google_oidc_token(&c, GOOGLE_KID));
    let mut forged = vec![
        ("no token", None),
        ("not a JWT", Some("abc".to_string())),
        (
            "unknown key",
            Some(google_oidc_token(&claims(), "someone-else")),
        ),
        (
            "wrong audience",
            signed({
                let mut c = claims();
                c["aud"] = json!("https://evil.example/");
                c
            }),
        ),
        (
            "wrong issuer",
            signed({
                let mut c = claims();
                c["iss"] = json!("https://evil.example");
                c
            }),
        ),
        (
            "another service account",
            signed({
                let mut c = claims();
                c["email"] = json!("attacker@evil.iam.gserviceaccount.com");
                c
            }),
        ),
        (
            "unverified email",
            signed({
                let mut c = claims();
                c["email_verified"] = json!(false);
                c
            }),
        ),
        (
            "expired",
            signed({
                let mut c = claims();
                c["exp"] = json!(Utc::now().timestamp() - 600);
                c
            }),
        ),
    ];
    // A genuine token whose claims were changed after signing.
    let genuine = google_oidc_token(&claims(), GOOGLE_KID);
    let parts: Vec<&str> = genuine.split('.').collect();
    let mut c = claims();
    c["aud"] = json!("https://evil.example/");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(c.to_string()),
        parts[2]
    );
    forged.push(("tampered", Some(tampered)));
    for (what, token) in forged {
        let r = push(&a, token, body.clone()).await;
        assert_eq!(r.status, 401, "{what}: {}", r.text());
    }
    assert_eq!(
        plan(&a, &ann).await["tier"],
        "pro",
        "no forged push changed anything"
    );
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM subscription_events WHERE kind LIKE 'subscription/%'",
    )
    .fetch_one(&a.db.pool)
    .await
    .unwrap();
    assert_eq!(events, 0);
    // The genuine one is applied; the same message again changes nothing.
    let r = push(&a, Some(genuine.clone()), body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["applied"], true);
    assert_eq!(plan(&a, &ann).await["tier"], "free", "expired per Google");
    let r = push(&a, Some(genuine.clone()), body.clone()).await;
    assert_eq!(r.json()["duplicate"], true);
    // Another app's notification is refused.
    let mut other = sub_notification("tok-1", 4);
    other["packageName"] = json!("com.other.app");
    let r = push(&a, Some(genuine), push_body("m-2", other)).await;
    assert_eq!(r.status, 422, "{}", r.text());
    // Google's keys were fetched once (then kept), and once more for the
    // unknown key id.
    assert!(*a.play.jwks_fetches.lock().unwrap() <= 2);
}

#[tokio::test]
async fn an_older_state_never_overwrites_a_newer_one_and_revocations_stick() {
    let a = spawn().await;
    let (_, ann) = user(&a.db.pool, "ann@example.com").await;
    let token = google_oidc_token(&claims(), GOOGLE_KID);
    a.play.set(
        "tok-1",
        purchase("SUBSCRIPTION_STATE_ACTIVE", "pro_monthly", 30, "GPA.1"),
    );
    verify(&a, &ann, "tok-1").await;
    // A revocation (notification 12): pro ends now and stays ended for this
    // order, even if a later lookup of the same order says active.
    let r = push(
        &a,
        Some(token.clone()),
        push_body("m-rev", sub_notification("tok-1", 12)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(plan(&a, &ann).await["tier"], "free");
    let r = verify(&a, &ann, "tok-1").await;
    assert_eq!(
        r.json()["tier"],
        "free",
        "a revoked order grants nothing again"
    );
    // A later order (a renewal after it) does.
    a.play.set(
        "tok-1",
        purchase("SUBSCRIPTION_STATE_ACTIVE", "pro_monthly", 60, "GPA.1..1"),
    );
    let r = push(
        &a,
        Some(token.clone()),
        push_body("m-renew", sub_notification("tok-1", 2)),
    )
    .await;
    assert_eq!(r.json()["applied"], true);
    assert_eq!(plan(&a, &ann).await["tier"], "pro");
    // A statement older than the stored one (asked of Google before it)
    // is not applied: the stored state's time is later than any a replay
    // of an earlier lookup can carry.
    let stored: chrono::DateTime<Utc> = sqlx::query_scalar(
        "SELECT signed_at FROM store_transaction_state WHERE source = 'google' AND original_transaction_id = 'tok-1'",
    )
    .fetch_one(&a.db.pool)
    .await
    .unwrap();
    sqlx::query("UPDATE store_transaction_state SET signed_at = now() + interval '1 hour' WHERE source = 'google'")
        .execute(&a.db.pool)
        .await
        .unwrap();
    a.play.set(
        "tok-1",
        purchase("SUBSCRIPTION_STATE_EXPIRED", "pro_monthly", -1, "GPA.1..1"),
    );
    let r = push(
        &a,
        Some(token),
        push_body("m-late", sub_notification("tok-1", 13)),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["applied"], false, "older than the stored state");
    assert_eq!(plan(&a, &ann).await["tier"], "pro");
    assert!(stored <= Utc::now());
}

#[tokio::test]
async fn google_play_settings_go_together() {
    let e = Stores::from_env(Env::from_pairs([("GOOGLE_PLAY_PACKAGE_NAME", PACKAGE)]))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("GOOGLE_PLAY_SERVICE_ACCOUNT is required"), "{e}");
    let play = Play::start(PACKAGE).await;
    let mut pairs = play.env(PACKAGE, "pro_monthly", AUDIENCE, PUSHER);
    pairs.retain(|(k, _)| *k != "GOOGLE_PLAY_RTDN_SERVICE_ACCOUNT");
    let e = Stores::from_env(Env::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str()))))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("GOOGLE_PLAY_RTDN_AUDIENCE and GOOGLE_PLAY_RTDN_SERVICE_ACCOUNT go together"),
        "{e}"
    );
    assert!(
        Stores::from_env(Env::from_pairs(Vec::<(&str, &str)>::new()))
            .unwrap()
            .google
            .is_none()
    );
}
