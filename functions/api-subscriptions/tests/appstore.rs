//! App Store purchases with a certificate chain the tests generate (a P-384
//! root and intermediate, a P-256 leaf, Apple's marker extensions), signed
//! with ES256 as Apple signs: the verifier's refusals (wrong root, tampered
//! payload, expired certificate, broken chain, missing markers), the
//! settings (pro products required), and the routes against a real
//! Postgres (verify, restore, ownership, the v2 webhook's idempotency,
//! statements applied in signedDate order, refunds that stick, Google Play
//! not configured).

use api_subscriptions::appstore::{JwsError, Verifier};
use api_subscriptions::{app_with, Apple, Stores};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use honeydue_core::Env;
use honeydue_http::{Config, State};
use honeydue_testkit::fixtures::user;
use honeydue_testkit::{TestClient, TestDb};
use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, CustomExtension, DnType, IsCa,
    KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
};
use serde_json::{json, Value};

const BUNDLE: &str = "com.honeydue.app";
const LEAF_OID: &[u64] = &[1, 2, 840, 113635, 100, 6, 11, 1];
const INTERMEDIATE_OID: &[u64] = &[1, 2, 840, 113635, 100, 6, 2, 1];

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

/// A signing chain: `x5c` (leaf, intermediate, root) and the leaf's key.
struct Chain {
    root: Vec<u8>,
    x5c: Vec<String>,
    leaf_pkcs8: Vec<u8>,
}

fn params(cn: &str, ca: bool, marker: Option<&[u64]>, until: i32) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = if ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::NoCa
    };
    p.not_before = date_time_ymd(2020, 1, 1);
    p.not_after = date_time_ymd(until, 1, 1);
    if let Some(oid) = marker {
        p.custom_extensions
            .push(CustomExtension::from_oid_content(oid, vec![0x05, 0x00]));
    }
    p
}

fn root(cn: &str) -> Ca {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let cert = params(cn, true, None, 2045).self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A chain under `root`; `leaf_until` sets the leaf's expiry year;
/// `markers` puts Apple's extensions on the intermediate and the leaf.
fn chain_under(root: &Ca, leaf_until: i32, markers: bool) -> Chain {
    let int_key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
    let int = params(
        "Test WWDR CA",
        true,
        markers.then_some(INTERMEDIATE_OID),
        2040,
    )
    .signed_by(&int_key, &root.cert, &root.key)
    .unwrap();
    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let leaf = params(
        "Test App Store signing",
        false,
        markers.then_some(LEAF_OID),
        leaf_until,
    )
    .signed_by(&leaf_key, &int, &int_key)
    .unwrap();
    Chain {
        root: root.cert.der().to_vec(),
        x5c: [leaf.der(), int.der(), root.cert.der()]
            .iter()
            .map(|d| STANDARD.encode(d))
            .collect(),
        leaf_pkcs8: leaf_key.serialize_der(),
    }
}

fn sign(chain: &Chain, payload: &Value) -> String {
    let h = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "x5c": chain.x5c}).to_string());
    let p = URL_SAFE_NO_PAD.encode(payload.to_string());
    let rng = ring::rand::SystemRandom::new();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &chain.leaf_pkcs8,
        &rng,
    )
    .unwrap();
    let sig = key.sign(&rng, format!("{h}.{p}").as_bytes()).unwrap();
    format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

fn transaction(tx: &str, original: &str, product: &str, expires_in_days: i64) -> Value {
    let now = Utc::now();
    json!({
        "transactionId": tx,
        "originalTransactionId": original,
        "bundleId": BUNDLE,
        "productId": product,
        "purchaseDate": now.timestamp_millis(),
        "expiresDate": (now + Duration::days(expires_in_days)).timestamp_millis(),
        "type": "Auto-Renewable Subscription",
        "environment": "Production",
        "signedDate": now.timestamp_millis(),
    })
}

#[test]
fn verifier_accepts_apples_shape_and_refuses_everything_else() {
    let r = root("Test Root CA - G3");
    let good = chain_under(&r, 2040, true);
    let v = Verifier::new(vec![good.root.clone()]);
    let payload = transaction("1", "1", "pro.monthly", 30);
    let jws = sign(&good, &payload);
    assert_eq!(v.verify(&jws, Utc::now()).unwrap(), payload);

    // A chain under another root, even if well formed.
    let other = chain_under(&root("Impostor Root"), 2040, true);
    assert_eq!(
        v.verify(&sign(&other, &payload), Utc::now()).unwrap_err(),
        JwsError::Chain("the chain does not end at a trusted root".into())
    );
    // The impostor's leaf and intermediate presented with our root on top.
    let mut spliced = sign(&other, &payload);
    let mut header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(spliced.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    header["x5c"][2] = json!(good.x5c[2]);
    let parts: Vec<&str> = spliced.split('.').collect();
    spliced = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        parts[1],
        parts[2]
    );
    assert!(
        matches!(v.verify(&spliced, Utc::now()), Err(JwsError::Chain(m)) if m.contains("not signed by its issuer"))
    );
    // A tampered payload (a longer expiry) under the original signature.
    let parts: Vec<&str> = jws.split('.').collect();
    let mut forged = payload.clone();
    forged["expiresDate"] = json!(4_102_444_800_000i64);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged.to_string()),
        parts[2]
    );
    assert_eq!(
        v.verify(&tampered, Utc::now()).unwrap_err(),
        JwsError::Signature
    );
    // An expired leaf.
    let expired = chain_under(&r, 2021, true);
    assert!(matches!(
        v.verify(&sign(&expired, &payload), Utc::now()),
        Err(JwsError::Chain(m)) if m.contains("certificate 0") && m.contains("not valid now")
    ));
    // The same chain is fine at a time it was valid.
    assert!(v
        .verify(
            &sign(&expired, &payload),
            "2020-06-01T00:00:00Z".parse().unwrap()
        )
        .is_ok());
    // Right root, but not Apple's certificate profile.
    let plain = chain_under(&r, 2040, false);
    assert!(
        matches!(v.verify(&sign(&plain, &payload), Utc::now()), Err(JwsError::Chain(m)) if m.contains("App Store signing"))
    );
    // Not a JWS, or not ES256.
    assert!(matches!(
        v.verify("abc", Utc::now()),
        Err(JwsError::Malformed(_))
    ));
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none", "x5c": good.x5c}).to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string())
    );
    assert!(
        matches!(v.verify(&none, Utc::now()), Err(JwsError::Malformed(m)) if m.contains("ES256"))
    );
    // Roots from PEM text, as APPLE_ROOT_CERTS may hold them.
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        STANDARD.encode(&good.root)
    );
    assert!(Verifier::from_text(&pem)
        .unwrap()
        .verify(&jws, Utc::now())
        .is_ok());
    assert!(Verifier::from_text("not base64!").is_err());
}

struct App {
    db: TestDb,
    c: TestClient,
    chain: Chain,
}

async fn spawn() -> App {
    spawn_selling(&["pro.monthly", "pro.yearly"]).await
}

/// The app with these products granting pro.
async fn spawn_selling(pro_products: &[&str]) -> App {
    let db = TestDb::new().await;
    let r = root("Test Root CA - G3");
    let chain = chain_under(&r, 2040, true);
    let state = State::new(Config::for_tests(&db.url, None), db.pool.clone());
    let stores = Stores {
        apple: Some(Apple {
            verifier: Verifier::new(vec![chain.root.clone()]),
            bundle_id: BUNDLE.into(),
            pro_products: pro_products.iter().map(|p| p.to_string()).collect(),
            environments: vec!["Production".into()],
        }),
        google: None,
    };
    App {
        c: TestClient::new(app_with(state, stores)),
        db,
        chain,
    }
}

async fn events(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM subscription_events")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn verify_restore_and_ownership() {
    let a = spawn().await;
    let (_, ann) = user(&a.db.pool, "ann@example.com").await;
    let (_, bob) = user(&a.db.pool, "bob@example.com").await;
    let jws = sign(&a.chain, &transaction("1000", "1000", "pro.monthly", 30));

    let r =
        a.c.post(
            "/api/subscription/verify/",
            json!({"platform": "ios", "signed_transaction": jws}),
            None,
        )
        .await;
    assert_eq!(r.status, 401);
    let r =
        a.c.post(
            "/api/subscription/verify/",
            json!({"platform": "ios", "signed_transaction": jws}),
            Some(&ann),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["tier"], "pro");
    assert_eq!(r.json()["source"], "apple");
    assert!(r.json()["limits"]["residences"].is_null(), "pro: unlimited");
    // Again: the same answer, one event.
    let r =
        a.c.post(
            "/api/subscription/verify/",
            json!({"platform": "ios", "signed_transaction": jws}),
            Some(&ann),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(events(&a.db).await, 1);
    // Another account cannot take over Ann's subscription.
    let r =
        a.c.post(
            "/api/subscription/verify/",
            json!({"platform": "ios", "signed_transaction": jws}),
            Some(&bob),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), "subscription_in_use");
    assert_eq!(
        a.c.get("/api/subscription/status/", Some(&bob))
            .await
            .json()["tier"],
        "free"
    );

    // Refusals name the field.
    let mut other_app = transaction("2000", "2000", "pro.monthly", 30);
    other_app["bundleId"] = json!("com.example.other");
    let mut sandbox = transaction("2001", "2001", "pro.monthly", 30);
    sandbox["environment"] = json!("Sandbox");
    let parts: Vec<String> = jws.split('.').map(String::from).collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(transaction("1000", "1000", "pro.yearly", 3650).to_string()),
        parts[2]
    );
    for (bad, what) in [
        (sign(&a.chain, &other_app), "another app"),
        (sign(&a.chain, &sandbox), "Sandbox"),
        (tampered, "signature"),
        ("x.y.z".to_string(), "malformed"),
    ] {
        let r =
            a.c.post(
                "/api/subscription/verify/",
                json!({"platform": "ios", "signed_transaction": bad}),
                Some(&bob),
            )
            .await;
        assert_eq!(r.status, 422, "{what}: {}", r.text());
        assert!(
            r.json()["error"]["fields"]["signed_transaction"][0]
                .as_str()
                .is_some(),
            "{what}: {}",
            r.text()
        );
    }
    let r =
        a.c.post(
            "/api/subscription/verify/",
            json!({"platform": "ios"}),
            Some(&bob),
        )
        .await;
    assert_eq!(r.status, 422);
    let r =
        a.c.post(
            "/api/subscription/verify/",
            json!({"platform": "windows", "signed_transaction": "x"}),
            Some(&bob),
        )
        .await;
    assert_eq!(r.status, 422);
    let r =
        a.c.post(
            "/api/subscription/verify/",
            json!({"platform": "android", "purchase_token": "t"}),
            Some(&bob),
        )
        .await;
    assert_eq!(r.status, 501);
    assert_eq!(r.error_code(), "not_configured");

    // Restoring Ann's subscription into Bob's account is refused too.
    let r =
        a.c.post(
            "/api/subscription/restore/",
            json!({"signed_transactions": [jws]}),
            Some(&bob),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text());

    // Restore: an expired monthly and a current yearly; the plan follows
    // the one that ends last.
    let old = sign(&a.chain, &transaction("3000", "3000", "pro.monthly", -10));
    let current = sign(&a.chain, &transaction("3001", "3000", "pro.yearly", 300));
    let r =
        a.c.post(
            "/api/subscription/restore/",
            json!({"signed_transactions": [current, old]}),
            Some(&bob),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["tier"], "pro");
    let ends: chrono::DateTime<Utc> =
        serde_json::from_value(r.json()["expires_at"].clone()).unwrap();
    assert!(ends > Utc::now() + Duration::days(290));
    let r =
        a.c.post(
            "/api/subscription/restore/",
            json!({"signed_transactions": []}),
            Some(&bob),
        )
        .await;
    assert_eq!(r.status, 422);
}

fn notification(uuid: &str, kind: &str, signed_tx: &str) -> Value {
    json!({
        "notificationType": kind,
        "notificationUUID": uuid,
        "data": {"bundleId": BUNDLE, "environment": "Production", "signedTransactionInfo": signed_tx},
        "version": "2.0",
        "signedDate": Utc::now().timestamp_millis(),
    })
}

#[tokio::test]
async fn webhook_applies_each_notification_once() {
    let a = spawn().await;
    let (ann_id, ann) = user(&a.db.pool, "ann@example.com").await;
    let first = sign(&a.chain, &transaction("10", "10", "pro.monthly", 5));
    let r =
        a.c.post(
            "/api/subscription/verify/",
            json!({"platform": "ios", "signed_transaction": first}),
            Some(&ann),
        )
        .await;
    assert_eq!(r.status, 200);
    let hook = |n: &Value| json!({"signedPayload": sign(&a.chain, n)});

    // A renewal extends the plan.
    let renewed = sign(&a.chain, &transaction("11", "10", "pro.monthly", 35));
    let renew = notification("uuid-renew", "DID_RENEW", &renewed);
    let r =
        a.c.post("/api/subscription/webhook/apple/", hook(&renew), None)
            .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["duplicate"], false);
    let status =
        a.c.get("/api/subscription/status/", Some(&ann))
            .await
            .json();
    let ends: chrono::DateTime<Utc> = serde_json::from_value(status["expires_at"].clone()).unwrap();
    assert!(ends > Utc::now() + Duration::days(30));

    // A refund ends it at the revocation date.
    let mut refunded = transaction("11", "10", "pro.monthly", 35);
    refunded["revocationDate"] = json!((Utc::now() - Duration::minutes(1)).timestamp_millis());
    let refund = notification("uuid-refund", "REFUND", &sign(&a.chain, &refunded));
    assert_eq!(
        a.c.post("/api/subscription/webhook/apple/", hook(&refund), None)
            .await
            .status,
        200
    );
    assert_eq!(
        a.c.get("/api/subscription/status/", Some(&ann))
            .await
            .json()["tier"],
        "free"
    );

    // Apple retries the renewal (same notificationUUID): nothing changes.
    let r =
        a.c.post("/api/subscription/webhook/apple/", hook(&renew), None)
            .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["duplicate"], true);
    assert_eq!(
        a.c.get("/api/subscription/status/", Some(&ann))
            .await
            .json()["tier"],
        "free"
    );

    // A subscription no account owns yet: recorded, 200.
    let stranger = notification(
        "uuid-stranger",
        "SUBSCRIBED",
        &sign(&a.chain, &transaction("90", "90", "pro.monthly", 30)),
    );
    assert_eq!(
        a.c.post("/api/subscription/webhook/apple/", hook(&stranger), None)
            .await
            .status,
        200
    );
    let owner: Option<i64> = sqlx::query_scalar(
        "SELECT user_id FROM subscription_events WHERE event_key = 'uuid-stranger'",
    )
    .fetch_one(&a.db.pool)
    .await
    .unwrap();
    assert_eq!(owner, None);
    let owners: Vec<Option<i64>> = sqlx::query_scalar(
        "SELECT user_id FROM subscription_events WHERE event_key LIKE 'uuid-re%' ORDER BY id",
    )
    .fetch_all(&a.db.pool)
    .await
    .unwrap();
    assert_eq!(owners, [Some(ann_id), Some(ann_id)]);

    // Forged or foreign notifications are refused.
    let parts: Vec<String> = sign(&a.chain, &renew)
        .split('.')
        .map(String::from)
        .collect();
    let mut forged = renew.clone();
    forged["notificationUUID"] = json!("uuid-forged");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(forged.to_string()),
        parts[2]
    );
    let r =
        a.c.post(
            "/api/subscription/webhook/apple/",
            json!({"signedPayload": forged}),
            None,
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text());
    let mut foreign = notification("uuid-foreign", "DID_RENEW", &renewed);
    foreign["data"]["bundleId"] = json!("com.example.other");
    assert_eq!(
        a.c.post("/api/subscription/webhook/apple/", hook(&foreign), None)
            .await
            .status,
        422
    );
    let r =
        a.c.post("/api/subscription/webhook/apple/", json!({"nope": 1}), None)
            .await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(
        a.c.post("/api/subscription/webhook/google/", json!({}), None)
            .await
            .status,
        501
    );
}

#[tokio::test]
async fn unconfigured_app_store_says_so() {
    let db = TestDb::new().await;
    let state = State::new(Config::for_tests(&db.url, None), db.pool.clone());
    let c = TestClient::new(app_with(state, Stores::default()));
    let (_, t) = user(&db.pool, "ann@example.com").await;
    let r = c
        .post(
            "/api/subscription/verify/",
            json!({"platform": "ios", "signed_transaction": "a.b.c"}),
            Some(&t),
        )
        .await;
    assert_eq!(r.status, 501);
    assert_eq!(r.error_code(), "not_configured");
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("App Store"));
    assert_eq!(
        c.post(
            "/api/subscription/webhook/apple/",
            json!({"signedPayload": "a.b.c"}),
            None
        )
        .await
        .status,
        501
    );
}

/// `t` as bought and signed at `when` (Apple signs a new period's statement
/// when it begins).
fn bought_at(mut t: Value, when: DateTime<Utc>) -> Value {
    t["purchaseDate"] = json!(when.timestamp_millis());
    t["signedDate"] = json!(when.timestamp_millis());
    t
}

/// `t` as Apple signs it once refunded at `when`.
fn refunded_at(mut t: Value, when: DateTime<Utc>) -> Value {
    t["signedDate"] = json!(when.timestamp_millis());
    t["revocationDate"] = json!(when.timestamp_millis());
    t
}

/// A notification Apple signed at `when`.
fn notification_at(uuid: &str, kind: &str, signed_tx: &str, when: DateTime<Utc>) -> Value {
    let mut n = notification(uuid, kind, signed_tx);
    n["signedDate"] = json!(when.timestamp_millis());
    n
}

/// When `plan` (as status/ and verify/ answer it) ends.
fn plan_ends(plan: &Value) -> DateTime<Utc> {
    serde_json::from_value(plan["expires_at"].clone()).unwrap()
}

impl App {
    /// `verify/` of `jws` as `token`'s; the resulting plan.
    async fn verify(&self, token: &str, jws: &str) -> Value {
        let r = self
            .c
            .post(
                "/api/subscription/verify/",
                json!({"platform": "ios", "signed_transaction": jws}),
                Some(token),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// Delivers notification `n`; the answer Apple gets.
    async fn hook(&self, n: &Value) -> Value {
        let r = self
            .c
            .post(
                "/api/subscription/webhook/apple/",
                json!({"signedPayload": sign(&self.chain, n)}),
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// `token`'s plan.
    async fn plan(&self, token: &str) -> Value {
        self.c
            .get("/api/subscription/status/", Some(token))
            .await
            .json()
    }
}

#[tokio::test]
async fn a_refunded_transaction_replayed_to_verify_or_restore_stays_refunded() {
    let a = spawn().await;
    let (_, ann) = user(&a.db.pool, "ann@example.com").await;
    let t0 = Utc::now() - Duration::hours(2);
    let t1 = t0 + Duration::hours(1);
    let bought = bought_at(transaction("500", "500", "pro.monthly", 30), t0);
    let saved = sign(&a.chain, &bought);
    assert_eq!(a.verify(&ann, &saved).await["tier"], "pro");

    // Apple refunds it an hour later and says so.
    let refunded = sign(&a.chain, &refunded_at(bought.clone(), t1));
    let refund = notification_at("uuid-refund-500", "REFUND", &refunded, t1);
    assert_eq!(a.hook(&refund).await["applied"], true);
    assert_eq!(a.plan(&ann).await["tier"], "free");

    // The JWS saved before the refund is still correctly signed; replayed,
    // it changes nothing, through verify/ or restore/.
    assert_eq!(a.verify(&ann, &saved).await["tier"], "free");
    let r =
        a.c.post(
            "/api/subscription/restore/",
            json!({"signed_transactions": [saved]}),
            Some(&ann),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["tier"], "free");
    // A later statement about the same transaction that leaves out the
    // revocation does not lift it either.
    let mut unrevoked = bought.clone();
    unrevoked["signedDate"] = json!(Utc::now().timestamp_millis());
    let unrevoked = sign(&a.chain, &unrevoked);
    assert_eq!(a.verify(&ann, &unrevoked).await["tier"], "free");
    let (tx, revoked): (String, bool) = sqlx::query_as(
        "SELECT transaction_id, revoked_at IS NOT NULL FROM store_transaction_state
          WHERE source = 'apple' AND original_transaction_id = '500'",
    )
    .fetch_one(&a.db.pool)
    .await
    .unwrap();
    assert_eq!((tx.as_str(), revoked), ("500", true));

    // A genuine new period after the refund (a new transaction, signed
    // later, not revoked) is pro again; the saved JWS still changes nothing.
    let renewal = bought_at(transaction("501", "500", "pro.monthly", 30), Utc::now());
    let plan = a.verify(&ann, &sign(&a.chain, &renewal)).await;
    assert_eq!(plan["tier"], "pro");
    let until = plan_ends(&plan);
    assert!(until > Utc::now() + Duration::days(29));
    let plan = a.verify(&ann, &saved).await;
    assert_eq!(plan["tier"], "pro");
    assert_eq!(plan_ends(&plan), until);
}

#[tokio::test]
async fn notifications_apply_in_signed_date_order() {
    let a = spawn().await;
    let (_, ann) = user(&a.db.pool, "ann@example.com").await;
    let t0 = Utc::now() - Duration::hours(3);
    let t1 = t0 + Duration::hours(1);
    let t2 = t1 + Duration::hours(1);
    let t3 = t2 + Duration::minutes(30);
    let first = bought_at(transaction("600", "600", "pro.monthly", 5), t0);
    assert_eq!(a.verify(&ann, &sign(&a.chain, &first)).await["tier"], "pro");
    let renewal = bought_at(transaction("601", "600", "pro.monthly", 35), t1);
    let renewed = sign(&a.chain, &renewal);
    let renew = notification_at("uuid-renew-601", "DID_RENEW", &renewed, t1);
    let refunded = sign(&a.chain, &refunded_at(renewal.clone(), t2));
    let refund = notification_at("uuid-refund-601", "REFUND", &refunded, t2);

    // The refund is delivered first, the renewal it refunds after it: the
    // late renewal is acknowledged and changes nothing.
    assert_eq!(a.hook(&refund).await["applied"], true);
    assert_eq!(a.plan(&ann).await["tier"], "free");
    let r = a.hook(&renew).await;
    assert_eq!(r["duplicate"], false);
    assert_eq!(r["applied"], false);
    assert_eq!(a.plan(&ann).await["tier"], "free");

    // A new period after the refund counts.
    let resubscribed = bought_at(transaction("602", "600", "pro.monthly", 60), t3);
    let resubscribed = sign(&a.chain, &resubscribed);
    let resubscribe = notification_at("uuid-resub-602", "SUBSCRIBED", &resubscribed, t3);
    assert_eq!(a.hook(&resubscribe).await["applied"], true);
    let plan = a.plan(&ann).await;
    assert_eq!(plan["tier"], "pro");
    let until = plan_ends(&plan);
    assert!(until > Utc::now() + Duration::days(59));

    // Neither a late notification nor a newly signed one about an earlier
    // period shortens it.
    let late = notification_at("uuid-late-600", "EXPIRED", &sign(&a.chain, &first), t0);
    assert_eq!(a.hook(&late).await["applied"], false);
    let mut resigned = first.clone();
    resigned["signedDate"] = json!(Utc::now().timestamp_millis());
    let resigned = sign(&a.chain, &resigned);
    let history = notification_at("uuid-history-600", "EXPIRED", &resigned, Utc::now());
    assert_eq!(a.hook(&history).await["applied"], false);
    let plan = a.plan(&ann).await;
    assert_eq!(plan["tier"], "pro");
    assert_eq!(plan_ends(&plan), until);
}

#[tokio::test]
async fn a_refund_seen_before_any_account_claims_the_purchase_still_counts() {
    let a = spawn().await;
    let (_, ann) = user(&a.db.pool, "ann@example.com").await;
    let t0 = Utc::now() - Duration::hours(2);
    let t1 = t0 + Duration::hours(1);
    let bought = bought_at(transaction("700", "700", "pro.yearly", 365), t0);
    let saved = sign(&a.chain, &bought);
    let refunded = sign(&a.chain, &refunded_at(bought.clone(), t1));
    let refund = notification_at("uuid-refund-700", "REFUND", &refunded, t1);
    assert_eq!(a.hook(&refund).await["applied"], true);

    // Nobody owned it when the refund came; the JWS saved before it still
    // grants nothing to whoever presents it.
    assert_eq!(a.verify(&ann, &saved).await["tier"], "free");
    assert_eq!(a.plan(&ann).await["tier"], "free");
}

#[tokio::test]
async fn only_the_listed_products_grant_pro() {
    let a = spawn_selling(&["pro.monthly"]).await;
    let (_, ann) = user(&a.db.pool, "ann@example.com").await;
    let other = sign(&a.chain, &transaction("800", "800", "tips.large", 30));
    assert_eq!(a.verify(&ann, &other).await["tier"], "free");
    let pro = sign(&a.chain, &transaction("801", "801", "pro.monthly", 30));
    assert_eq!(a.verify(&ann, &pro).await["tier"], "pro");

    // An App Store built without products (the settings refuse it) sells
    // no pro at all, rather than pro for every product.
    let none = spawn_selling(&[]).await;
    let (_, cid) = user(&none.db.pool, "cid@example.com").await;
    let any = sign(&none.chain, &transaction("900", "900", "pro.monthly", 30));
    assert_eq!(none.verify(&cid, &any).await["tier"], "free");
}

/// App Store settings read from these variables; the error names every bad
/// one.
fn settings(pairs: &[(&str, &str)]) -> Result<Stores, String> {
    Stores::from_env(Env::from_pairs(pairs.iter().copied())).map_err(|e| e.to_string())
}

#[test]
fn app_store_settings_require_pro_product_ids() {
    let roots = STANDARD.encode(root("Test Root CA - G3").cert.der());
    // No App Store: nothing else is needed (its routes answer 501).
    let none = settings(&[]).unwrap_or_else(|e| panic!("{e}"));
    assert!(none.apple.is_none());

    // The roots without products that grant pro: refused, by name.
    for products in [None, Some(""), Some(" , ")] {
        let mut pairs = vec![
            ("APPLE_ROOT_CERTS", roots.as_str()),
            ("APPLE_BUNDLE_ID", BUNDLE),
        ];
        pairs.extend(products.map(|p| ("APPLE_PRO_PRODUCT_IDS", p)));
        let Err(e) = settings(&pairs) else {
            panic!("accepted without pro products ({products:?})");
        };
        assert!(e.contains("APPLE_PRO_PRODUCT_IDS"), "{e}");
    }
    // Every problem at once.
    let Err(e) = settings(&[("APPLE_ROOT_CERTS", "not base64!")]) else {
        panic!("accepted unreadable roots");
    };
    for name in [
        "APPLE_ROOT_CERTS",
        "APPLE_BUNDLE_ID",
        "APPLE_PRO_PRODUCT_IDS",
    ] {
        assert!(e.contains(name), "{e}");
    }

    let s = settings(&[
        ("APPLE_ROOT_CERTS", roots.as_str()),
        ("APPLE_BUNDLE_ID", BUNDLE),
        ("APPLE_PRO_PRODUCT_IDS", "pro.monthly, pro.yearly"),
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let apple = s.apple.expect("configured");
    assert_eq!(apple.pro_products, ["pro.monthly", "pro.yearly"]);
    assert_eq!(apple.environments, ["Production"]);
}

#[test]
fn the_function_refuses_to_start_without_pro_product_ids() {
    let roots = STANDARD.encode(root("Test Root CA - G3").cert.der());
    let start = |products: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_api-subscriptions"));
        cmd.env_clear()
            .env("AWS_LAMBDA_LOG_FORMAT", "Text")
            .env("APPLE_ROOT_CERTS", &roots)
            .env("APPLE_BUNDLE_ID", BUNDLE);
        if let Some(p) = products {
            cmd.env("APPLE_PRO_PRODUCT_IDS", p);
        }
        let out = cmd.output().expect("run api-subscriptions");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = start(None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("APPLE_PRO_PRODUCT_IDS"), "{stderr}");

    // With them the App Store settings pass, and the next missing setting
    // (there is no database here) is what stops it.
    let (code, stderr) = start(Some("pro.monthly"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("DATABASE_URL") && !stderr.contains("APPLE_"),
        "{stderr}"
    );
}
