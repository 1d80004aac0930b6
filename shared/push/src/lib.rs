//! Push notifications to the app on iOS (APNs) and Android (FCM HTTP v1),
//! each enabled only when its settings are present, and the push outbox
//! they are delivered from.
//!
//! A push is written to `push_outbox` in the transaction of the event that
//! causes it, one row per active device (`honeydue_core::notify`), so nothing is
//! lost when Apple or Google is unreachable: `cron-push-dispatch` claims due
//! rows with `SKIP LOCKED` and a lease, sends them, and records each outcome
//! ([`outbox::dispatch`]). What a provider's answer means is decided here,
//! once, as an [`Outcome`].

pub mod apns;
pub mod fcm;
pub mod google;
pub mod jwt;
pub mod outbox;

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use honeydue_core::Env;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// One push to one device.
#[derive(Debug, Clone)]
pub struct Message {
    /// The outbox row (it names the push to the provider: APNs' `apns-id`).
    pub id: i64,
    /// The device's token.
    pub token: String,
    /// The notification kind (`due_soon`, `completed`, ...).
    pub kind: String,
    /// Title shown.
    pub title: String,
    /// Body shown.
    pub body: String,
    /// What the app opens (ids), a flat JSON object.
    pub data: Value,
}

/// What a provider's answer means for the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted for delivery.
    Sent,
    /// The token is no longer valid (APNs 410 Unregistered or 400
    /// BadDeviceToken, FCM UNREGISTERED): the device is deactivated.
    Unregistered(String),
    /// A refusal that a retry cannot change (a malformed payload, a topic
    /// the key may not use): dead, for an admin to see.
    Rejected(String),
    /// Try again later (429, 5xx, an expired provider token), after the
    /// provider's `Retry-After` when it gave one.
    Retry {
        /// Why.
        reason: String,
        /// The provider's `Retry-After`.
        after: Option<Duration>,
    },
    /// The provider could not be reached at all: the run stops and hands its
    /// rows back, their attempt not counted.
    Unreachable(String),
}

/// The senders configured: either, both or neither.
#[derive(Clone, Default)]
pub struct Push {
    /// iOS.
    pub apns: Option<apns::Apns>,
    /// Android.
    pub fcm: Option<fcm::Fcm>,
}

impl std::fmt::Debug for Push {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Push")
            .field("apns", &self.apns.is_some())
            .field("fcm", &self.fcm.is_some())
            .finish()
    }
}

impl Push {
    /// Reads `APNS_*` and `FCM_*`; a sender whose settings are all absent
    /// is off, one whose settings are partial or unusable is a problem
    /// named at cold start.
    pub fn read(env: &mut Env) -> Option<Self> {
        let apns = apns::ApnsConfig::read(env);
        let fcm = fcm::FcmConfig::read(env);
        let apns = match apns? {
            Some(c) => match apns::Apns::new(c) {
                Ok(a) => Some(a),
                Err(e) => {
                    env.problem(format!("APNS_* settings unusable: {e:#}"));
                    return None;
                }
            },
            None => None,
        };
        let fcm = match fcm? {
            Some(c) => match fcm::Fcm::new(c) {
                Ok(f) => Some(f),
                Err(e) => {
                    env.problem(format!("FCM_SERVICE_ACCOUNT unusable: {e:#}"));
                    return None;
                }
            },
            None => None,
        };
        Some(Self { apns, fcm })
    }

    /// The platforms that can be sent to (`ios`, `android`).
    pub fn platforms(&self) -> Vec<&'static str> {
        let mut p = Vec::new();
        if self.apns.is_some() {
            p.push("ios");
        }
        if self.fcm.is_some() {
            p.push("android");
        }
        p
    }

    /// Sends `m` to a device of `platform`.
    pub async fn send(&self, platform: &str, m: &Message) -> Outcome {
        match (platform, &self.apns, &self.fcm) {
            ("ios", Some(a), _) => a.send(m).await,
            ("android", _, Some(f)) => f.send(m).await,
            _ => Outcome::Retry {
                reason: format!("no sender configured for {platform}"),
                after: None,
            },
        }
    }
}

/// A bearer credential (a provider token, an access token) kept until it is
/// due for renewal; renewed by one caller while the others wait for it.
#[derive(Clone, Default)]
pub(crate) struct Kept(std::sync::Arc<tokio::sync::Mutex<Option<(String, std::time::Instant)>>>);

impl Kept {
    /// The kept value, or a new one from `renew` (the value and how long it
    /// may be used).
    pub(crate) async fn get_or<E, Fut>(&self, renew: impl FnOnce() -> Fut) -> Result<String, E>
    where
        Fut: std::future::Future<Output = Result<(String, Duration), E>>,
    {
        let mut kept = self.0.lock().await;
        if let Some((value, until)) = kept.as_ref() {
            if std::time::Instant::now() < *until {
                return Ok(value.clone());
            }
        }
        let (value, lifetime) = renew().await?;
        *kept = Some((value.clone(), std::time::Instant::now() + lifetime));
        Ok(value)
    }

    /// Drops the kept value (the provider refused it).
    pub(crate) async fn forget(&self) {
        *self.0.lock().await = None;
    }
}

/// How long one request to a provider may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTPS client the senders (and the Play Developer API's caller) use.
pub type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// An HTTPS client (http:// for local stand-ins); `http2_only` for APNs,
/// which speaks nothing else (over http:// that is h2 with prior
/// knowledge).
pub fn http_client(http2_only: bool) -> anyhow::Result<HttpClient> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
        .context("TLS set-up")?
        .https_or_http()
        .enable_all_versions()
        .build();
    let mut b = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new());
    b.http2_only(http2_only)
        .pool_idle_timeout(Duration::from_secs(300));
    Ok(b.build(https))
}

/// An answer: status, `Retry-After`, the JSON body (a string when not
/// JSON).
pub struct Answer {
    /// The status.
    pub status: u16,
    /// `Retry-After` in seconds, when given.
    pub retry_after: Option<Duration>,
    /// The body.
    pub body: Value,
}

/// Sends `req`; `Err` when the server could not be reached or did not
/// answer within 10 s.
pub async fn exchange(
    client: &HttpClient,
    req: hyper::Request<Full<Bytes>>,
) -> Result<Answer, String> {
    let resp = match tokio::time::timeout(REQUEST_TIMEOUT, client.request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(format!("{e:#}")),
        Err(_) => return Err("no answer within 10 s".into()),
    };
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let bytes = match tokio::time::timeout(REQUEST_TIMEOUT, resp.into_body().collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) => return Err(format!("reading the answer: {e:#}")),
        Err(_) => return Err("the answer's body did not arrive within 10 s".into()),
    };
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&bytes)));
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}
