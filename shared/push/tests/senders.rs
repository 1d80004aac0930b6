//! The APNs and FCM senders against local stand-ins that speak Apple's and
//! Google's shapes: delivery, a gone token, rate limits,
//! provider errors, an outage, and the provider tokens they check
//! (honeydue_testkit::push).

use std::time::Duration;

use honeydue_core::Env;
use honeydue_push::{Message, Outcome, Push};
use honeydue_testkit::push::{self as standins, ec_key, rsa_public, service_account};
use honeydue_testkit::push::{CLIENT_EMAIL, KEY_ID, PROJECT, TEAM_ID, TOPIC};
use serde_json::json;

fn push_from(pairs: Vec<(&'static str, String)>) -> Push {
    let mut env = Env::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
    let push = Push::read(&mut env);
    env.finish_with(push).unwrap()
}

fn message(id: i64, token: &str) -> Message {
    Message {
        id,
        token: token.into(),
        kind: "due_soon".into(),
        title: "Clean the gutters".into(),
        body: "Due today".into(),
        data: json!({"task_id": 7, "residence_id": 3}),
    }
}

#[tokio::test]
async fn apns_delivers_with_a_signed_provider_token_and_judges_every_answer() {
    let (pem, public) = ec_key();
    let apple = standins::apns(public, KEY_ID, TEAM_ID, TOPIC).await;
    let push = push_from(vec![
        ("APNS_KEY_ID", KEY_ID.into()),
        ("APNS_TEAM_ID", TEAM_ID.into()),
        ("APNS_PRIVATE_KEY", pem),
        ("APNS_TOPIC", TOPIC.into()),
        ("APNS_URL", apple.url()),
    ]);
    assert_eq!(push.platforms(), ["ios"]);
    assert_eq!(
        push.send("ios", &message(41, "a1b2c3")).await,
        Outcome::Sent
    );
    {
        let seen = apple.seen.lock().unwrap();
        assert!(seen.auth_failures.is_empty(), "{:?}", seen.auth_failures);
        let d = &seen.delivered[0];
        assert_eq!(d.token, "a1b2c3");
        assert_eq!(
            d.id.as_deref(),
            Some("00000000-0000-4000-8000-000000000029")
        );
        assert_eq!(d.payload["aps"]["alert"]["title"], "Clean the gutters");
        assert_eq!(d.payload["data"]["task_id"], 7);
    }
    assert!(
        matches!(push.send("ios", &message(42, "gone-1")).await, Outcome::Unregistered(r) if r.contains("410"))
    );
    assert!(
        matches!(push.send("ios", &message(43, "bad-1")).await, Outcome::Unregistered(r) if r.contains("BadDeviceToken"))
    );
    assert_eq!(
        push.send("ios", &message(44, "busy-1")).await,
        Outcome::Retry {
            reason: "APNs 429 TooManyRequests".into(),
            after: Some(Duration::from_secs(7))
        }
    );
    assert!(matches!(
        push.send("ios", &message(45, "fail-1")).await,
        Outcome::Retry { .. }
    ));
    // Android has no sender: nothing is sent there.
    assert!(matches!(
        push.send("android", &message(46, "x")).await,
        Outcome::Retry { .. }
    ));
    // Apple down: unreachable, not the message's fault.
    apple.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(
        push.send("ios", &message(47, "a1b2c3")).await,
        Outcome::Unreachable(_)
    ));
}

#[tokio::test]
async fn apns_refuses_a_provider_token_signed_by_another_key() {
    let (_, public) = ec_key();
    let (other_pem, _) = ec_key();
    let apple = standins::apns(public, KEY_ID, TEAM_ID, TOPIC).await;
    let push = push_from(vec![
        ("APNS_KEY_ID", KEY_ID.into()),
        ("APNS_TEAM_ID", TEAM_ID.into()),
        ("APNS_PRIVATE_KEY", other_pem),
        ("APNS_TOPIC", TOPIC.into()),
        ("APNS_URL", apple.url()),
    ]);
    assert!(
        matches!(push.send("ios", &message(1, "a1")).await, Outcome::Rejected(r) if r.contains("InvalidProviderToken"))
    );
    assert_eq!(apple.seen.lock().unwrap().auth_failures, ["bad signature"]);
}

#[tokio::test]
async fn fcm_exchanges_a_service_account_assertion_once_and_judges_every_answer() {
    let google = standins::fcm(rsa_public(), CLIENT_EMAIL, PROJECT).await;
    let push = push_from(vec![
        (
            "FCM_SERVICE_ACCOUNT",
            service_account(&format!("{}/token", google.url())),
        ),
        ("FCM_URL", google.url()),
    ]);
    assert_eq!(push.platforms(), ["android"]);
    assert_eq!(
        push.send("android", &message(1, "tok-1")).await,
        Outcome::Sent
    );
    assert_eq!(
        push.send("android", &message(2, "tok-2")).await,
        Outcome::Sent
    );
    {
        let seen = google.seen.lock().unwrap();
        assert!(seen.auth_failures.is_empty(), "{:?}", seen.auth_failures);
        assert_eq!(
            seen.token_requests, 1,
            "the access token is kept until it expires"
        );
        let m = &seen.delivered[0].payload["message"];
        assert_eq!(m["notification"]["title"], "Clean the gutters");
        assert_eq!(m["data"]["kind"], "due_soon");
        assert_eq!(
            m["data"]["data"], r#"{"residence_id":3,"task_id":7}"#,
            "FCM data values are strings"
        );
    }
    assert!(
        matches!(push.send("android", &message(3, "gone-1")).await, Outcome::Unregistered(r) if r.contains("UNREGISTERED"))
    );
    assert_eq!(
        push.send("android", &message(4, "busy-1")).await,
        Outcome::Retry {
            reason: "FCM 429 QUOTA_EXCEEDED QUOTA_EXCEEDED".into(),
            after: Some(Duration::from_secs(7))
        }
    );
    assert!(matches!(
        push.send("android", &message(5, "fail-1")).await,
        Outcome::Retry { .. }
    ));
    google.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(matches!(
        push.send("android", &message(6, "tok-1")).await,
        Outcome::Unreachable(_)
    ));
}

#[test]
fn settings_are_all_or_nothing_and_named_at_cold_start() {
    let mut env = Env::from_pairs([("APNS_KEY_ID", "ABC")]);
    let push = Push::read(&mut env);
    let e = env.finish_with(push).unwrap_err().to_string();
    assert!(
        e.contains("APNS_KEY_ID, APNS_TEAM_ID, APNS_PRIVATE_KEY and APNS_TOPIC go together"),
        "{e}"
    );
    let mut env = Env::from_pairs([("FCM_SERVICE_ACCOUNT", "{not json")]);
    let push = Push::read(&mut env);
    assert!(env
        .finish_with(push)
        .unwrap_err()
        .to_string()
        .contains("FCM_SERVICE_ACCOUNT"));
    let mut env = Env::from_pairs([
        ("APNS_KEY_ID", "K"),
        ("APNS_TEAM_ID", "T"),
        (
            "APNS_PRIVATE_KEY",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        ),
        ("APNS_TOPIC", "x"),
    ]);
    let push = Push::read(&mut env);
    assert!(env
        .finish_with(push)
        .unwrap_err()
        .to_string()
        .contains("APNS_* settings unusable"));
    let mut env = Env::from_pairs(Vec::<(&str, &str)>::new());
    let push = Push::read(&mut env);
    assert!(
        env.finish_with(push).unwrap().platforms().is_empty(),
        "off by default"
    );
}
