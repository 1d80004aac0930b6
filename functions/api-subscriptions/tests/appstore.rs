//! App Store purchases with a certificate chain the tests generate (a P-384
//! root and intermediate, a P-256 leaf, Apple's marker extensions), signed
//! with ES256 as Apple signs: the verifier's refusals (wrong root, tampered
//! payload, expired certificate, broken chain, missing markers), and the
//! routes against a real Postgres (verify, restore, ownership, the v2
//! webhook's idempotency, Google Play not configured).

use api_subscriptions::appstore::{JwsError, Verifier};
use api_subscriptions::{app_with, Apple, Stores};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{Duration, Utc};
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
    let db = TestDb::new().await;
    let r = root("Test Root CA - G3");
    let chain = chain_under(&r, 2040, true);
    let state = State::new(Config::for_tests(&db.url, None), db.pool.clone());
    let stores = Stores {
        apple: Some(Apple {
            verifier: Verifier::new(vec![chain.root.clone()]),
            bundle_id: BUNDLE.into(),
            pro_products: vec!["pro.monthly".into(), "pro.yearly".into()],
            environments: vec!["Production".into()],
        }),
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
