//! Apple Push Notification service: HTTP/2 `POST /3/device/<token>` with a
//! token-based provider JWT (ES256 over the team's `.p8` key, `kid` = key
//! id, `iss` = team id), refreshed every 40 minutes (Apple refuses tokens
//! older than an hour and ones renewed more than every 20 minutes).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use honeydue_core::{Env, Secret};
use http_body_util::Full;
use serde_json::{json, Value};

use crate::jwt::Signer;
use crate::{Kept, Message, Outcome};

/// Production and sandbox endpoints.
pub const PRODUCTION_URL: &str = "https://api.push.apple.com";
/// See [`PRODUCTION_URL`].
pub const SANDBOX_URL: &str = "https://api.sandbox.push.apple.com";
/// How long a provider token is used.
const TOKEN_LIFETIME: Duration = Duration::from_secs(40 * 60);
/// How long Apple keeps trying to deliver to a device that is offline.
const EXPIRATION: Duration = Duration::from_secs(24 * 3600);

/// `APNS_*`.
#[derive(Debug, Clone)]
pub struct ApnsConfig {
    /// `APNS_KEY_ID`: the key's id (10 characters).
    pub key_id: String,
    /// `APNS_TEAM_ID`: the developer team (10 characters).
    pub team_id: String,
    /// `APNS_PRIVATE_KEY`: the `.p8` file's content (PEM).
    pub private_key: Secret<String>,
    /// `APNS_TOPIC`: the app's bundle id.
    pub topic: String,
    /// `APNS_URL`, else `APNS_ENVIRONMENT` (`production`, default, or
    /// `sandbox`) picks Apple's endpoint.
    pub url: String,
}

impl ApnsConfig {
    /// `Some(None)` when no `APNS_*` is set (APNs off); `None` when a
    /// problem was recorded.
    pub fn read(env: &mut Env) -> Option<Option<Self>> {
        let key_id: Option<String> = env.optional("APNS_KEY_ID");
        let team_id: Option<String> = env.optional("APNS_TEAM_ID");
        let private_key: Option<String> = env.optional("APNS_PRIVATE_KEY");
        let topic: Option<String> = env.optional("APNS_TOPIC");
        let environment = env.or("APNS_ENVIRONMENT", "production".to_string());
        let url: Option<String> = env.optional("APNS_URL");
        let (Some(key_id), Some(team_id), Some(private_key), Some(topic)) = (
            key_id.clone(),
            team_id.clone(),
            private_key.clone(),
            topic.clone(),
        ) else {
            if key_id.is_some() || team_id.is_some() || private_key.is_some() || topic.is_some() {
                env.problem(
                    "APNS_KEY_ID, APNS_TEAM_ID, APNS_PRIVATE_KEY and APNS_TOPIC go together",
                );
                return None;
            }
            return Some(None);
        };
        let url = match (url, environment.as_str()) {
            (Some(u), _) => u,
            (None, "production") => PRODUCTION_URL.to_string(),
            (None, "sandbox") => SANDBOX_URL.to_string(),
            (None, other) => {
                env.problem(format!(
                    "APNS_ENVIRONMENT must be production or sandbox, not {other:?}"
                ));
                return None;
            }
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            env.problem("APNS_URL must start with https:// (http:// for a local stand-in)");
            return None;
        }
        Some(Some(Self {
            key_id,
            team_id,
            private_key: Secret::new(private_key),
            topic,
            url: url.trim_end_matches('/').to_string(),
        }))
    }
}

/// The APNs sender.
#[derive(Clone)]
pub struct Apns {
    cfg: Arc<ApnsConfig>,
    signer: Arc<Signer>,
    client: crate::HttpClient,
    token: Kept,
}

impl Apns {
    /// Checks the key; no request is made.
    pub fn new(cfg: ApnsConfig) -> anyhow::Result<Self> {
        Ok(Self {
            signer: Arc::new(Signer::es256(cfg.private_key.expose())?),
            cfg: Arc::new(cfg),
            client: crate::http_client(true)?,
            token: Kept::default(),
        })
    }

    /// The provider token, made anew when it is 40 minutes old.
    async fn provider_token(&self) -> anyhow::Result<String> {
        self.token
            .get_or(|| async {
                let now = chrono::Utc::now().timestamp();
                let token = self.signer.sign(
                    json!({"kid": self.cfg.key_id}),
                    &json!({"iss": self.cfg.team_id, "iat": now}),
                )?;
                Ok((token, TOKEN_LIFETIME))
            })
            .await
    }

    /// Sends one push.
    pub async fn send(&self, m: &Message) -> Outcome {
        let token = match self.provider_token().await {
            Ok(t) => t,
            Err(e) => return Outcome::Rejected(format!("provider token: {e:#}")),
        };
        let body = Bytes::from(payload(m).to_string());
        let expiration = chrono::Utc::now().timestamp() + EXPIRATION.as_secs() as i64;
        let req = hyper::Request::post(format!("{}/3/device/{}", self.cfg.url, m.token))
            .header("authorization", format!("bearer {token}"))
            .header("apns-topic", &self.cfg.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-expiration", expiration.to_string())
            .header("apns-id", apns_id(m.id))
            .header("content-type", "application/json")
            .body(Full::new(body));
        let req = match req {
            Ok(r) => r,
            Err(e) => return Outcome::Rejected(format!("request: {e}")),
        };
        let a = match crate::exchange(&self.client, req).await {
            Ok(a) => a,
            Err(e) => return Outcome::Unreachable(format!("APNs: {e}")),
        };
        let reason = a.body["reason"].as_str().unwrap_or("").to_string();
        let outcome = judge(a.status, &reason, a.retry_after);
        if reason == "ExpiredProviderToken" {
            self.token.forget().await;
        }
        outcome
    }
}

/// What an APNs answer means (Apple's "Handling notification responses
/// from APNs").
pub fn judge(status: u16, reason: &str, retry_after: Option<Duration>) -> Outcome {
    let what = format!("APNs {status} {reason}");
    match (status, reason) {
        (200, _) => Outcome::Sent,
        (410, _) | (400, "BadDeviceToken") | (400, "DeviceTokenNotForTopic") => {
            Outcome::Unregistered(what)
        }
        (403, "ExpiredProviderToken") | (429, _) | (500..=599, _) => Outcome::Retry {
            reason: what,
            after: retry_after,
        },
        _ => Outcome::Rejected(what),
    }
}

/// A UUID-shaped `apns-id` derived from the outbox row: the same push has
/// the same id on a retry.
pub fn apns_id(row: i64) -> String {
    format!("00000000-0000-4000-8000-{:012x}", row & 0xffff_ffff_ffff)
}

/// The JSON payload: the alert, the kind as the thread, and the app's data.
pub fn payload(m: &Message) -> Value {
    json!({
        "aps": {
            "alert": {"title": m.title, "body": m.body},
            "sound": "default",
            "thread-id": m.kind,
        },
        "kind": m.kind,
        "data": m.data,
    })
}
