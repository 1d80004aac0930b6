//! Google Play Billing, server side.
//!
//! * A purchase token (from `verify/` or `restore/`, or named by a
//!   real-time developer notification) is looked up with the Play
//!   Developer API (`purchases.subscriptionsv2.get`, a service-account
//!   access token), checked (package, product), and turned into the same
//!   statement an App Store transaction is ([`Transaction`], source
//!   `google`): its order id, the purchase token as the subscription, the
//!   start time, the expiry (the last line item's), and pro while the state
//!   is active, in grace or cancelled-but-unexpired. The statement's time is
//!   when Google was asked, so of two lookups the later one wins whatever
//!   order they arrive in (`stores::apply`), and a revocation or voided
//!   purchase sticks to its order.
//! * A purchase still `ACKNOWLEDGEMENT_STATE_PENDING` is acknowledged (Google
//!   refunds purchases left unacknowledged for three days).
//! * Real-time developer notifications arrive as Pub/Sub push requests
//!   whose `Authorization: Bearer` is a Google-signed OIDC token: accepted
//!   only when its RS256 signature verifies with one of Google's keys (the
//!   JWKS, kept an hour, fetched again for an unknown key id), its issuer
//!   is Google's, its audience is ours, it has not expired, and its email
//!   is the push subscription's (verified). The message id makes a
//!   redelivery change nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{DateTime, Utc};
use honeydue_core::{AppError, AppResult, Env};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::stores::{list, Transaction};

/// Google's OIDC issuers.
const ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
/// Clock skew allowed on a push token's expiry.
const LEEWAY_SECS: i64 = 60;
/// How long Google's keys are kept.
const JWKS_TTL: Duration = Duration::from_secs(3600);
/// The least time between two fetches of Google's keys for an unknown key
/// id.
const JWKS_REFETCH: Duration = Duration::from_secs(60);
/// The scope of the Play Developer API.
pub const SCOPE: &str = "https://www.googleapis.com/auth/androidpublisher";

/// `GOOGLE_PLAY_*`.
#[derive(Clone)]
pub struct GooglePlay {
    /// `GOOGLE_PLAY_PACKAGE_NAME`: purchases of other apps are refused.
    pub package: String,
    /// `GOOGLE_PLAY_PRO_PRODUCT_IDS`: the subscriptions that grant pro.
    pub pro_products: Vec<String>,
    api_url: String,
    account: honeydue_push::google::ServiceAccount,
    client: honeydue_push::HttpClient,
    rtdn: Option<Arc<Rtdn>>,
}

/// What a push must carry to be Google's, for us.
struct Rtdn {
    audience: String,
    email: String,
    jwks_url: String,
    keys: Mutex<Option<(Value, Instant)>>,
}

impl GooglePlay {
    /// Reads `GOOGLE_PLAY_*`; `None` when `GOOGLE_PLAY_PACKAGE_NAME` is not
    /// set (Google Play answers `not_configured`) or a problem was
    /// recorded. With the package, the service account and the pro
    /// products are required; the notification settings go together.
    pub fn read(env: &mut Env) -> Option<Self> {
        let package: Option<String> = env.optional("GOOGLE_PLAY_PACKAGE_NAME");
        let account: Option<String> = env.optional("GOOGLE_PLAY_SERVICE_ACCOUNT");
        let token_url: Option<String> = env.optional("GOOGLE_PLAY_TOKEN_URL");
        let api_url = env.or(
            "GOOGLE_PLAY_API_URL",
            "https://androidpublisher.googleapis.com".to_string(),
        );
        let pro_products = list(env.optional("GOOGLE_PLAY_PRO_PRODUCT_IDS"));
        let audience: Option<String> = env.optional("GOOGLE_PLAY_RTDN_AUDIENCE");
        let email: Option<String> = env.optional("GOOGLE_PLAY_RTDN_SERVICE_ACCOUNT");
        let jwks_url = env.or(
            "GOOGLE_JWKS_URL",
            "https://www.googleapis.com/oauth2/v3/certs".to_string(),
        );
        let package = package?;
        let Some(account) = account else {
            env.problem("GOOGLE_PLAY_SERVICE_ACCOUNT is required with GOOGLE_PLAY_PACKAGE_NAME");
            return None;
        };
        if pro_products.is_empty() {
            env.problem(
                "GOOGLE_PLAY_PRO_PRODUCT_IDS is required with GOOGLE_PLAY_PACKAGE_NAME \
                 (comma-separated subscription ids that grant pro)",
            );
            return None;
        }
        let account = match honeydue_push::google::ServiceAccount::new(&account, SCOPE, token_url) {
            Ok(a) => a,
            Err(e) => {
                env.problem(format!("GOOGLE_PLAY_SERVICE_ACCOUNT unusable: {e:#}"));
                return None;
            }
        };
        let rtdn = match (audience, email) {
            (Some(audience), Some(email)) => Some(Arc::new(Rtdn {
                audience,
                email,
                jwks_url,
                keys: Mutex::new(None),
            })),
            (None, None) => None,
            _ => {
                env.problem(
                    "GOOGLE_PLAY_RTDN_AUDIENCE and GOOGLE_PLAY_RTDN_SERVICE_ACCOUNT go together",
                );
                return None;
            }
        };
        let client = match honeydue_push::http_client(false) {
            Ok(c) => c,
            Err(e) => {
                env.problem(format!("HTTPS client: {e:#}"));
                return None;
            }
        };
        Some(Self {
            package,
            pro_products,
            api_url: api_url.trim_end_matches('/').to_string(),
            account,
            client,
            rtdn,
        })
    }

    async fn call(&self, method: &str, path: &str) -> AppResult<(u16, Value)> {
        let token = self
            .account
            .token(&self.client)
            .await
            .map_err(|e| unavailable(format!("Google's token endpoint: {e}")))?;
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.api_url))
            .header("authorization", format!("Bearer {token}"))
            .header("content-length", "0")
            .body(Default::default())
            .map_err(|e| AppError::Internal(anyhow::anyhow!("request: {e}")))?;
        let a = honeydue_push::exchange(&self.client, req)
            .await
            .map_err(|e| unavailable(format!("Google Play: {e}")))?;
        if a.status == 401 {
            self.account.forget().await;
        }
        Ok((a.status, a.body))
    }

    /// The purchase behind `token` as a statement made now, or why it is
    /// refused (`field` names the token in errors). `revoked`: a
    /// notification said the purchase was revoked or voided.
    pub async fn purchase(
        &self,
        token: &str,
        field: &str,
        revoked: bool,
    ) -> AppResult<Transaction> {
        if token.is_empty() || token.len() > 4096 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AppError::field(field, "Not a purchase token."));
        }
        let asked_at = Utc::now();
        let path = format!(
            "/androidpublisher/v3/applications/{}/purchases/subscriptionsv2/tokens/{}",
            self.package, token
        );
        let (status, p) = self.call("GET", &path).await?;
        match status {
            200 => {}
            404 | 410 | 400 => {
                return Err(AppError::field(
                    field,
                    "Google Play does not know this purchase for this app.",
                ));
            }
            s if s >= 500 || s == 429 => {
                return Err(unavailable(format!("Google Play answered {s}")))
            }
            s => {
                return Err(AppError::Internal(anyhow::anyhow!(
                    "Google Play answered {s}: {p}"
                )));
            }
        }
        let items = p["lineItems"].as_array().cloned().unwrap_or_default();
        let product_id = items
            .iter()
            .filter_map(|i| i["productId"].as_str())
            .next()
            .ok_or_else(|| AppError::field(field, "The purchase has no product."))?
            .to_string();
        let expires_at = items
            .iter()
            .filter_map(|i| i["expiryTime"].as_str().and_then(rfc3339))
            .max();
        let purchased_at = p["startTime"]
            .as_str()
            .and_then(rfc3339)
            .ok_or_else(|| AppError::field(field, "The purchase has no start time."))?;
        let state = p["subscriptionState"].as_str().unwrap_or("");
        let entitled = matches!(
            state,
            "SUBSCRIPTION_STATE_ACTIVE"
                | "SUBSCRIPTION_STATE_IN_GRACE_PERIOD"
                | "SUBSCRIPTION_STATE_CANCELED"
        );
        let revoked_at = revoked.then_some(asked_at);
        let pro = entitled && self.pro_products.contains(&product_id);
        let tx = Transaction {
            source: "google",
            id: p["latestOrderId"].as_str().unwrap_or(token).to_string(),
            original_id: token.to_string(),
            product_id: product_id.clone(),
            purchased_at,
            signed_at: asked_at,
            expires_at,
            revoked_at,
            // An entitlement that has ended (on hold, paused, expired) ends
            // the plan now, whatever its last expiry said.
            ends_at: revoked_at.or(if entitled { expires_at } else { Some(asked_at) }),
            pro,
            payload: p.clone(),
        };
        if entitled && p["acknowledgementState"].as_str() == Some("ACKNOWLEDGEMENT_STATE_PENDING") {
            let ack = format!(
                "/androidpublisher/v3/applications/{}/purchases/subscriptions/{}/tokens/{}:acknowledge",
                self.package, product_id, token
            );
            match self.call("POST", &ack).await {
                Ok((s, _)) if (200..300).contains(&s) => {}
                // Not fatal: the next lookup (a notification, a restore)
                // acknowledges it; Google allows three days.
                Ok((s, body)) => {
                    tracing::warn!(status = s, %body, "acknowledging a Google Play purchase failed")
                }
                Err(e) => tracing::warn!(error = %e, "acknowledging a Google Play purchase failed"),
            }
        }
        Ok(tx)
    }

    /// Checks a Pub/Sub push's `Authorization` header; `Err` is a 401.
    pub async fn check_push(&self, authorization: Option<&str>) -> AppResult<()> {
        let rtdn = self.rtdn.as_ref().ok_or_else(|| {
            AppError::NotConfigured(
                "Google Play notifications are not configured on this server.".into(),
            )
        })?;
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| AppError::Unauthorized("A Google-signed token is required.".into()))?;
        let refuse = |why: &str| {
            tracing::warn!(why, "Google Play notification refused");
            AppError::Unauthorized("The notification's token is not valid.".into())
        };
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 {
            return Err(refuse("not a JWT"));
        }
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s.trim_end_matches('='));
        let header: Value = decode(parts[0])
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| refuse("bad header"))?;
        let claims: Value = decode(parts[1])
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| refuse("bad claims"))?;
        let sig = decode(parts[2]).map_err(|_| refuse("bad signature encoding"))?;
        if header["alg"] != "RS256" {
            return Err(refuse("not RS256"));
        }
        let kid = header["kid"].as_str().ok_or_else(|| refuse("no kid"))?;
        let key = self
            .key(rtdn, kid)
            .await?
            .ok_or_else(|| refuse("unknown kid"))?;
        key.verify(
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &sig,
        )
        .map_err(|_| refuse("signature does not verify"))?;
        let now = Utc::now().timestamp();
        if !ISSUERS.contains(&claims["iss"].as_str().unwrap_or("")) {
            return Err(refuse("issuer"));
        }
        let aud_ok = match &claims["aud"] {
            Value::String(a) => *a == rtdn.audience,
            Value::Array(a) => a.iter().any(|x| x == rtdn.audience.as_str()),
            _ => false,
        };
        if !aud_ok {
            return Err(refuse("audience"));
        }
        if claims["exp"].as_i64().is_none_or(|e| e + LEEWAY_SECS < now) {
            return Err(refuse("expired"));
        }
        if claims["iat"]
            .as_i64()
            .is_some_and(|i| i - LEEWAY_SECS > now)
        {
            return Err(refuse("issued in the future"));
        }
        if claims["email"].as_str() != Some(rtdn.email.as_str())
            || claims["email_verified"] != json!(true)
        {
            return Err(refuse("email"));
        }
        Ok(())
    }

    /// Google's key `kid`. The JWKS is kept an hour; a key id it lacks
    /// fetches it again, at most once a minute (Google rotates keys, and a
    /// stream of made-up key ids must not become a stream of fetches).
    async fn key(
        &self,
        rtdn: &Rtdn,
        kid: &str,
    ) -> AppResult<Option<ring::signature::RsaPublicKeyComponents<Vec<u8>>>> {
        let find = |keys: &Value| {
            let k = keys["keys"]
                .as_array()?
                .iter()
                .find(|k| k["kid"] == kid && k["kty"] == "RSA")?;
            let part = |name: &str| {
                URL_SAFE_NO_PAD
                    .decode(k[name].as_str()?.trim_end_matches('='))
                    .ok()
            };
            Some(ring::signature::RsaPublicKeyComponents {
                n: part("n")?,
                e: part("e")?,
            })
        };
        let mut kept = rtdn.keys.lock().await;
        let fetch = match kept.as_ref() {
            None => true,
            Some((keys, at)) => {
                at.elapsed() >= JWKS_TTL || (find(keys).is_none() && at.elapsed() >= JWKS_REFETCH)
            }
        };
        if fetch {
            let req = hyper::Request::get(&rtdn.jwks_url)
                .body(Default::default())
                .map_err(|e| AppError::Internal(anyhow::anyhow!("request: {e}")))?;
            let a = honeydue_push::exchange(&self.client, req)
                .await
                .map_err(|e| unavailable(format!("Google's keys: {e}")))?;
            if a.status != 200 {
                return Err(unavailable(format!("Google's keys: {}", a.status)));
            }
            *kept = Some((a.body, Instant::now()));
        }
        Ok(kept.as_ref().and_then(|(keys, _)| find(keys)))
    }
}

/// The developer notification inside a Pub/Sub push body.
pub fn notification(body: &Value) -> AppResult<(String, Value)> {
    let message_id = body["message"]["messageId"]
        .as_str()
        .or_else(|| body["message"]["message_id"].as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AppError::field("message.messageId", "Required."))?
        .to_string();
    let data = body["message"]["data"]
        .as_str()
        .and_then(|d| STANDARD.decode(d).ok())
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .ok_or_else(|| {
            AppError::field("message.data", "Not base64 of a developer notification.")
        })?;
    Ok((message_id, data))
}

fn rfc3339(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn unavailable(why: String) -> AppError {
    tracing::warn!(why, "Google Play unavailable");
    AppError::Unavailable("Google Play could not be reached; try again shortly.".into())
}
