//! Firebase Cloud Messaging, HTTP v1: `POST
//! /v1/projects/<project>/messages:send` with the service account's access
//! token ([`ServiceAccount`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use honeydue_core::Env;
use http_body_util::Full;
use serde_json::{json, Map, Value};

use crate::google::{ServiceAccount, TokenError};
use crate::{exchange, http_client, HttpClient, Message, Outcome};

/// Google's endpoint.
pub const DEFAULT_URL: &str = "https://fcm.googleapis.com";
/// The scope FCM's sender needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// How long Google keeps a message for a device that is offline.
const TTL: &str = "86400s";

/// `FCM_*`.
#[derive(Debug, Clone)]
pub struct FcmConfig {
    /// `FCM_SERVICE_ACCOUNT` (the key file's JSON), with `FCM_TOKEN_URL`
    /// overriding its `token_uri`.
    pub account: ServiceAccount,
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
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            env.problem("FCM_URL must start with https:// (http:// for a local stand-in)");
            return None;
        }
        match ServiceAccount::new(&account, SCOPE, token_url) {
            Ok(account) => Some(Some(Self {
                account,
                url: url.trim_end_matches('/').to_string(),
            })),
            Err(e) => {
                env.problem(format!("FCM_SERVICE_ACCOUNT unusable: {e:#}"));
                None
            }
        }
    }
}

/// The FCM sender.
#[derive(Clone)]
pub struct Fcm {
    cfg: Arc<FcmConfig>,
    client: HttpClient,
}

impl Fcm {
    /// Builds the client; no request is made.
    pub fn new(cfg: FcmConfig) -> anyhow::Result<Self> {
        Ok(Self {
            cfg: Arc::new(cfg),
            client: http_client(false)?,
        })
    }

    /// Sends one push.
    pub async fn send(&self, m: &Message) -> Outcome {
        let token = match self.cfg.account.token(&self.client).await {
            Ok(t) => t,
            Err(TokenError::Unreachable(e)) => return Outcome::Unreachable(e),
            Err(TokenError::Refused { reason, after }) => return Outcome::Retry { reason, after },
            Err(TokenError::Signing(e)) => return Outcome::Rejected(e),
        };
        let body = Bytes::from(message(m).to_string());
        let req = hyper::Request::post(format!(
            "{}/v1/projects/{}/messages:send",
            self.cfg.url, self.cfg.account.project_id
        ))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(body));
        let req = match req {
            Ok(r) => r,
            Err(e) => return Outcome::Rejected(format!("request: {e}")),
        };
        let a = match exchange(&self.client, req).await {
            Ok(a) => a,
            Err(e) => return Outcome::Unreachable(format!("FCM: {e}")),
        };
        if a.status == 401 {
            self.cfg.account.forget().await;
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
