//! Firebase Cloud Messaging, HTTP v1: `POST
//! /v1/projects/<project>/messages:send` with an OAuth2 access token got
//! from the service account's key (an RS256 JWT assertion exchanged at its
//! `token_uri`, RFC 7523), kept until a minute before it expires.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use honeydue_core::{Env, Secret};
use http_body_util::Full;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::jwt::Signer;
use crate::{Kept, Message, Outcome};

/// Google's endpoint.
pub const DEFAULT_URL: &str = "https://fcm.googleapis.com";
/// The scope FCM's sender needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// How long Google keeps a message for a device that is offline.
const TTL: &str = "86400s";

/// The fields of a service account key file that matter here.
#[derive(Deserialize)]
struct ServiceAccount {
    project_id: String,
    client_email: String,
    private_key: String,
    #[serde(default)]
    token_uri: Option<String>,
}

/// `FCM_*`.
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// From `FCM_SERVICE_ACCOUNT` (the key file's JSON).
    pub project_id: String,
    /// The service account's address (the assertion's issuer).
    pub client_email: String,
    /// Its key (PEM).
    pub private_key: Secret<String>,
    /// `FCM_TOKEN_URL`, else the key file's `token_uri`.
    pub token_url: String,
    /// `FCM_URL` (default Google's).
    pub url: String,
}

impl FcmConfig {
    /// `Some(None)` when `FCM_SERVICE_ACCOUNT` is not set (FCM off); `None`
    /// when a problem was recorded.
    pub fn read(env: &mut Env) -> Option<Option<Self>> {
        let account: Option<String> = env.optional("FCM_SERVICE_ACCOUNT");
        let url = env.or("FCM_URL", DEFAULT_URL.to_string());
        let token_url: Option<String> = env.optional("FCM_TOKEN_URL");
        let Some(account) = account else {
            return Some(None);
        };
        let sa: ServiceAccount = match serde_json::from_str(&account) {
            Ok(sa) => sa,
            Err(e) => {
                env.problem(format!(
                    "FCM_SERVICE_ACCOUNT is not a service account key file ({e}); paste the JSON file's content"
                ));
                return None;
            }
        };
        let token_url = token_url
            .or(sa.token_uri)
            .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
        for (name, u) in [("FCM_URL", &url), ("FCM_TOKEN_URL", &token_url)] {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                env.problem(format!(
                    "{name} must start with https:// (http:// for a local stand-in)"
                ));
                return None;
            }
        }
        Some(Some(Self {
            project_id: sa.project_id,
            client_email: sa.client_email,
            private_key: Secret::new(sa.private_key),
            token_url,
            url: url.trim_end_matches('/').to_string(),
        }))
    }
}

/// The FCM sender.
#[derive(Clone)]
pub struct Fcm {
    cfg: Arc<FcmConfig>,
    signer: Arc<Signer>,
    client: crate::Client,
    token: Kept,
}

impl Fcm {
    /// Checks the key; no request is made.
    pub fn new(cfg: FcmConfig) -> anyhow::Result<Self> {
        Ok(Self {
            signer: Arc::new(Signer::rs256(cfg.private_key.expose())?),
            cfg: Arc::new(cfg),
            client: crate::client(false)?,
            token: Kept::default(),
        })
    }

    /// The kept access token, or a new one from the token endpoint, used
    /// until a minute before it expires.
    async fn access_token(&self) -> Result<String, Outcome> {
        self.token.get_or(|| self.new_access_token()).await
    }

    async fn new_access_token(&self) -> Result<(String, Duration), Outcome> {
        let now = chrono::Utc::now().timestamp();
        let assertion = self
            .signer
            .sign(
                json!({"typ": "JWT"}),
                &json!({"iss": self.cfg.client_email, "scope": SCOPE, "aud": self.cfg.token_url,
                        "iat": now, "exp": now + 3600}),
            )
            .map_err(|e| Outcome::Rejected(format!("service account assertion: {e:#}")))?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let req = hyper::Request::post(&self.cfg.token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| Outcome::Rejected(format!("token request: {e}")))?;
        let a = crate::exchange(&self.client, req)
            .await
            .map_err(|e| Outcome::Unreachable(format!("Google's token endpoint: {e}")))?;
        let (Some(token), 200) = (a.body["access_token"].as_str(), a.status) else {
            return Err(Outcome::Retry {
                reason: format!("Google's token endpoint answered {}: {}", a.status, a.body),
                after: a.retry_after,
            });
        };
        let lifetime = a.body["expires_in"].as_u64().unwrap_or(3600);
        Ok((
            token.to_string(),
            Duration::from_secs(lifetime.saturating_sub(60)),
        ))
    }

    /// Sends one push.
    pub async fn send(&self, m: &Message) -> Outcome {
        let token = match self.access_token().await {
            Ok(t) => t,
            Err(o) => return o,
        };
        let body = Bytes::from(message(m).to_string());
        let req = hyper::Request::post(format!(
            "{}/v1/projects/{}/messages:send",
            self.cfg.url, self.cfg.project_id
        ))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(body));
        let req = match req {
            Ok(r) => r,
            Err(e) => return Outcome::Rejected(format!("request: {e}")),
        };
        let a = match crate::exchange(&self.client, req).await {
            Ok(a) => a,
            Err(e) => return Outcome::Unreachable(format!("FCM: {e}")),
        };
        if a.status == 401 {
            self.token.forget().await;
        }
        judge(a.status, &a.body, a.retry_after)
    }
}

/// FCM's error code: `details[].errorCode` of the FcmError, else the
/// error's `status`.
fn error_code(body: &Value) -> String {
    let e = &body["error"];
    e["details"]
        .as_array()
        .and_then(|d| d.iter().find_map(|x| x["errorCode"].as_str()))
        .or_else(|| e["status"].as_str())
        .unwrap_or("")
        .to_string()
}

/// What an FCM answer means (Firebase's "FCM error codes" for HTTP v1).
pub fn judge(status: u16, body: &Value, retry_after: Option<Duration>) -> Outcome {
    let code = error_code(body);
    let message = body["error"]["message"].as_str().unwrap_or("");
    let what = format!("FCM {status} {code} {message}")
        .trim_end()
        .to_string();
    match (status, code.as_str()) {
        (200, _) => Outcome::Sent,
        (_, "UNREGISTERED") | (_, "SENDER_ID_MISMATCH") => Outcome::Unregistered(what),
        // The token itself malformed (the message is ours and well formed).
        (400, "INVALID_ARGUMENT")
            if message.to_ascii_lowercase().contains("registration token") =>
        {
            Outcome::Unregistered(what)
        }
        (401, _) | (429, _) | (500..=599, _) => Outcome::Retry {
            reason: what,
            after: retry_after,
        },
        _ => Outcome::Rejected(what),
    }
}

/// The v1 message: the notification, the kind and the app's data (FCM
/// data values are strings).
pub fn message(m: &Message) -> Value {
    let mut data = Map::new();
    data.insert("kind".into(), Value::from(m.kind.clone()));
    data.insert("data".into(), Value::from(m.data.to_string()));
    json!({
        "message": {
            "token": m.token,
            "notification": {"title": m.title, "body": m.body},
            "data": data,
            "android": {"priority": "high", "ttl": TTL, "notification": {"tag": m.kind}},
        }
    })
}
