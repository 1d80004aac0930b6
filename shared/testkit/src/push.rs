//! Local stand-ins for Apple's and Google's push endpoints, speaking their
//! request and answer shapes: APNs over HTTP/2 (h2c with prior knowledge:
//! the sender's `APNS_URL` is `http://`), FCM HTTP v1 and Google's OAuth2
//! token endpoint over HTTP/1.1. They check what the real ones check (the
//! provider token's ES256 signature and claims, the topic; the service
//! account assertion's RS256 signature, issuer, audience and scope; the
//! bearer token) and answer by the device token's prefix: `gone` (APNs 410
//! Unregistered, FCM 404 UNREGISTERED), `bad` (APNs 400 BadDeviceToken),
//! `busy` (429 with Retry-After: 7), `fail` (500/503); anything else is
//! delivered.
//!
//! With them, the keys the senders sign with: a fresh P-256 key for APNs
//! and a committed, test-only RSA key (`keys/test-rsa-key.pem`, known to no
//! account anywhere) for the FCM service account, and the `APNS_*` /
//! `FCM_*` settings that point a sender at a stand-in.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A push the stand-in accepted.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The device token.
    pub token: String,
    /// APNs' `apns-id`.
    pub id: Option<String>,
    /// The JSON body.
    pub payload: Value,
}

/// What a stand-in saw.
#[derive(Default)]
pub struct Seen {
    /// Pushes accepted.
    pub delivered: Vec<Delivered>,
    /// Pushes refused: token and status.
    pub refused: Vec<(String, u16)>,
    /// Credentials refused, and why.
    pub auth_failures: Vec<String>,
    /// Access tokens handed out.
    pub token_requests: u32,
}

type Handler = dyn Fn(Request<Bytes>, &Mutex<Seen>) -> Response<Full<Bytes>> + Send + Sync;

/// A stand-in server on loopback; what it saw.
pub struct StandIn {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw.
    pub seen: Arc<Mutex<Seen>>,
    http2: bool,
    handle: Arc<Handler>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl StandIn {
    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening and drops its open connections: the provider is
    /// down (connections refused).
    pub fn stop(&self) {
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
    }

    /// Listens again on the same address: the provider is back.
    pub async fn start_again(&self) {
        self.stop();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let listener = TcpListener::bind(self.addr).await.expect("the same port");
        let task = tokio::spawn(accept(
            listener,
            self.http2,
            self.handle.clone(),
            self.seen.clone(),
        ));
        *self.task.lock().unwrap() = Some(task);
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The Apple key id, team and topic the APNs stand-in expects.
pub const KEY_ID: &str = "ABC123DEFG";
/// See [`KEY_ID`].
pub const TEAM_ID: &str = "TEAM456XYZ";
/// See [`KEY_ID`].
pub const TOPIC: &str = "app.honeydue.ios";
/// The service account the FCM stand-in expects.
pub const CLIENT_EMAIL: &str = "push@honeydue-test.iam.gserviceaccount.com";
/// The Firebase project of [`CLIENT_EMAIL`].
pub const PROJECT: &str = "honeydue-test";
/// The scope FCM's sender asks for.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// A test-only RSA key (PKCS#8 PEM).
pub const RSA_PEM: &str = include_str!("../keys/test-rsa-key.pem");

/// A fresh P-256 key: its PKCS#8 PEM (what a `.p8` holds) and its public
/// point.
pub fn ec_key() -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().expect("P-256 key");
    (key.serialize_pem(), key.public_key_raw().to_vec())
}

/// [`RSA_PEM`]'s public key (PKCS#1 DER, as ring verifies with it).
pub fn rsa_public() -> Vec<u8> {
    use ring::signature::KeyPair;
    let body: String = RSA_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM");
    ring::signature::RsaKeyPair::from_pkcs8(&der)
        .expect("RSA key")
        .public_key()
        .as_ref()
        .to_vec()
}

/// A service account key file for [`CLIENT_EMAIL`] whose `token_uri` is
/// `token_url`.
pub fn service_account(token_url: &str) -> String {
    json!({"type": "service_account", "project_id": PROJECT, "client_email": CLIENT_EMAIL,
           "private_key": RSA_PEM, "token_uri": token_url})
    .to_string()
}

/// APNs (with a fresh key) and FCM stand-ins, and the settings that point
/// the senders at them.
pub struct Providers {
    /// Apple.
    pub apple: StandIn,
    /// Google.
    pub google: StandIn,
    /// `APNS_*` and `FCM_*`.
    pub env: Vec<(&'static str, String)>,
}

impl Providers {
    /// Starts both.
    pub async fn start() -> Self {
        let (pem, public) = ec_key();
        let apple = apns(public, KEY_ID, TEAM_ID, TOPIC).await;
        let google = fcm(rsa_public(), CLIENT_EMAIL, PROJECT).await;
        let env = vec![
            ("APNS_KEY_ID", KEY_ID.to_string()),
            ("APNS_TEAM_ID", TEAM_ID.to_string()),
            ("APNS_PRIVATE_KEY", pem),
            ("APNS_TOPIC", TOPIC.to_string()),
            ("APNS_URL", apple.url()),
            (
                "FCM_SERVICE_ACCOUNT",
                service_account(&format!("{}/token", google.url())),
            ),
            ("FCM_URL", google.url()),
        ];
        Self { apple, google, env }
    }
}

fn answer(status: u16, body: Value, headers: &[(&str, &str)]) -> Response<Full<Bytes>> {
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

/// Verifies a compact JWT with `verify` and returns its header and claims.
fn jwt(token: &str, alg: &str, key: &UnparsedPublicKey<Vec<u8>>) -> Result<(Value, Value), String> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 {
        return Err("not a JWT".into());
    }
    let decode = |p: &str| URL_SAFE_NO_PAD.decode(p).map_err(|e| e.to_string());
    let header: Value = serde_json::from_slice(&decode(parts[0])?).map_err(|e| e.to_string())?;
    let claims: Value = serde_json::from_slice(&decode(parts[1])?).map_err(|e| e.to_string())?;
    if header["alg"] != alg {
        return Err(format!("alg {}", header["alg"]));
    }
    key.verify(
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
        &decode(parts[2])?,
    )
    .map_err(|_| "bad signature".to_string())?;
    Ok((header, claims))
}

async fn serve<F>(http2: bool, handle: F) -> StandIn
where
    F: Fn(Request<Bytes>, &Mutex<Seen>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handle: Arc<Handler> = Arc::new(handle);
    let seen = Arc::<Mutex<Seen>>::default();
    let task = tokio::spawn(accept(listener, http2, handle.clone(), seen.clone()));
    StandIn {
        addr,
        seen,
        http2,
        handle,
        task: Mutex::new(Some(task)),
    }
}

/// Serves connections until aborted (which drops them all).
async fn accept(listener: TcpListener, http2: bool, handle: Arc<Handler>, seen: Arc<Mutex<Seen>>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let handle = handle.clone();
        let seen = seen.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let handle = handle.clone();
            let seen = seen.clone();
            async move {
                let (parts, body) = req.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                Ok::<_, Infallible>(handle(Request::from_parts(parts, bytes), &seen))
            }
        });
        let io = TokioIo::new(stream);
        conns.spawn(async move {
            if http2 {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(io, service)
                    .await;
            } else {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            }
        });
    }
}

/// Google's OAuth2 token endpoint: an RS256 assertion of `client_email`
/// for `scope`, addressed to this endpoint, buys `<prefix><n>`.
fn token_endpoint(
    req: &Request<Bytes>,
    seen: &mut Seen,
    key: &UnparsedPublicKey<Vec<u8>>,
    client_email: &str,
    scope: &str,
    prefix: &str,
) -> Response<Full<Bytes>> {
    seen.token_requests += 1;
    let form: std::collections::HashMap<String, String> =
        form_urlencoded::parse(req.body()).into_owned().collect();
    let aud = format!("http://{}/token", req.headers()["host"].to_str().unwrap());
    let checked = (form.get("grant_type").map(String::as_str)
        == Some("urn:ietf:params:oauth:grant-type:jwt-bearer"))
    .then_some(())
    .ok_or("grant_type".to_string())
    .and_then(|()| {
        jwt(
            form.get("assertion").map(String::as_str).unwrap_or(""),
            "RS256",
            key,
        )
    })
    .and_then(|(_, c)| {
        if c["iss"] != client_email || c["aud"] != aud.as_str() || c["scope"] != scope {
            Err(format!("claims {c}"))
        } else {
            Ok(())
        }
    });
    if let Err(e) = checked {
        seen.auth_failures.push(e);
        return answer(400, json!({"error": "invalid_grant"}), &[]);
    }
    let n = seen.token_requests;
    answer(
        200,
        json!({"access_token": format!("{prefix}{n}"), "expires_in": 3599, "token_type": "Bearer"}),
        &[],
    )
}

fn behaviour(token: &str) -> &str {
    ["gone", "bad", "busy", "fail"]
        .into_iter()
        .find(|p| token.starts_with(p))
        .unwrap_or("ok")
}

/// APNs: `POST /3/device/<token>` over HTTP/2.
pub async fn apns(
    public_key: Vec<u8>,
    key_id: &'static str,
    team_id: &'static str,
    topic: &'static str,
) -> StandIn {
    let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, public_key);
    serve(true, move |req, seen| {
        let mut seen = seen.lock().unwrap();
        let Some(token) = req
            .uri()
            .path()
            .strip_prefix("/3/device/")
            .map(str::to_string)
        else {
            return answer(404, json!({"reason": "BadPath"}), &[]);
        };
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let checked = auth
            .strip_prefix("bearer ")
            .ok_or("no bearer".to_string())
            .and_then(|t| jwt(t, "ES256", &key))
            .and_then(|(h, c)| {
                if h["kid"] != key_id || c["iss"] != team_id || !c["iat"].is_i64() {
                    Err(format!("claims {h} {c}"))
                } else {
                    Ok(())
                }
            });
        if let Err(e) = checked {
            seen.auth_failures.push(e);
            return answer(403, json!({"reason": "InvalidProviderToken"}), &[]);
        }
        if req
            .headers()
            .get("apns-topic")
            .and_then(|v| v.to_str().ok())
            != Some(topic)
        {
            return answer(400, json!({"reason": "BadTopic"}), &[]);
        }
        if req.headers().get("apns-push-type").is_none() {
            return answer(400, json!({"reason": "InvalidPushType"}), &[]);
        }
        let id = req
            .headers()
            .get("apns-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (status, reason) = match behaviour(&token) {
            "gone" => (410, "Unregistered"),
            "bad" => (400, "BadDeviceToken"),
            "busy" => (429, "TooManyRequests"),
            "fail" => (500, "InternalServerError"),
            _ => (200, ""),
        };
        if status != 200 {
            seen.refused.push((token, status));
            let body = if status == 410 {
                json!({"reason": reason, "timestamp": 1_700_000_000_000i64})
            } else {
                json!({"reason": reason})
            };
            return answer(
                status,
                body,
                if status == 429 {
                    &[("retry-after", "7")]
                } else {
                    &[]
                },
            );
        }
        let payload = serde_json::from_slice(req.body()).unwrap_or(Value::Null);
        seen.delivered.push(Delivered {
            token,
            id: id.clone(),
            payload,
        });
        let mut r = answer(200, json!({}), &[]);
        if let Some(id) = id {
            r.headers_mut().insert("apns-id", id.parse().unwrap());
        }
        r
    })
    .await
}

/// FCM HTTP v1 and the OAuth2 token endpoint (`/token`) on one server.
pub async fn fcm(
    public_key: Vec<u8>,
    client_email: &'static str,
    project: &'static str,
) -> StandIn {
    let key = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key);
    serve(false, move |req, seen| {
        let mut seen = seen.lock().unwrap();
        let path = req.uri().path().to_string();
        if path == "/token" {
            return token_endpoint(&req, &mut seen, &key, client_email, FCM_SCOPE, "ya29.test-");
        }
        if path != format!("/v1/projects/{project}/messages:send") {
            return answer(404, json!({"error": {"code": 404, "status": "NOT_FOUND"}}), &[]);
        }
        let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !auth.starts_with("Bearer ya29.test-") {
            seen.auth_failures.push(auth.to_string());
            return answer(401, json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}}), &[]);
        }
        let body: Value = serde_json::from_slice(req.body()).unwrap_or(Value::Null);
        let token = body["message"]["token"].as_str().unwrap_or("").to_string();
        let fcm_error = |status: u16, code: &str| {
            answer(
                status,
                json!({"error": {"code": status, "message": code, "status": code,
                       "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]}}),
                if status == 429 { &[("retry-after", "7")] } else { &[] },
            )
        };
        let refused = match behaviour(&token) {
            "gone" => Some((404, "UNREGISTERED")),
            "busy" => Some((429, "QUOTA_EXCEEDED")),
            "fail" => Some((503, "UNAVAILABLE")),
            _ => None,
        };
        if let Some((status, code)) = refused {
            seen.refused.push((token, status));
            return fcm_error(status, code);
        }
        seen.delivered.push(Delivered { token, id: None, payload: body });
        answer(200, json!({"name": format!("projects/{project}/messages/1")}), &[])
    })
    .await
}

// ---- Google Play ------------------------------------------------------------------

/// The scope the Play Developer API's caller asks for.
pub const PLAY_SCOPE: &str = "https://www.googleapis.com/auth/androidpublisher";
/// The key id under which [`RSA_PEM`] is published as "Google's" key.
pub const GOOGLE_KID: &str = "test-google-key-1";

/// Google's side of Google Play on one server: the OAuth2 token endpoint
/// (`/token`, RS256 assertions of [`CLIENT_EMAIL`] for [`PLAY_SCOPE`]), the
/// Play Developer API (`subscriptionsv2.get` answering from
/// [`Play::purchases`], 404 for an unknown token; `acknowledge`), and the
/// JWKS (`/certs`) that publishes [`RSA_PEM`]'s public key as
/// [`GOOGLE_KID`], so tokens made with [`google_oidc_token`] are
/// "Google-signed".
pub struct Play {
    /// The server.
    pub server: StandIn,
    /// Purchase token -> the SubscriptionPurchaseV2 JSON Google answers.
    pub purchases: Arc<Mutex<std::collections::HashMap<String, Value>>>,
    /// Tokens acknowledged, in order.
    pub acknowledged: Arc<Mutex<Vec<String>>>,
    /// Fetches of the JWKS.
    pub jwks_fetches: Arc<Mutex<u32>>,
}

/// The JWKS publishing [`RSA_PEM`]'s public key as [`GOOGLE_KID`].
pub fn google_jwks() -> Value {
    let body: String = RSA_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM");
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("RSA key");
    let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(key.public());
    json!({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": GOOGLE_KID,
                      "n": URL_SAFE_NO_PAD.encode(c.n), "e": URL_SAFE_NO_PAD.encode(c.e)}]})
}

/// A compact RS256 JWT with `claims`, signed with [`RSA_PEM`] under `kid`.
pub fn google_oidc_token(claims: &Value, kid: &str) -> String {
    let body: String = RSA_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM");
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("RSA key");
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": kid, "typ": "JWT"}).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .expect("signing");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

impl Play {
    /// Starts it for `package`.
    pub async fn start(package: &'static str) -> Self {
        let key = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, rsa_public());
        let purchases = Arc::<Mutex<std::collections::HashMap<String, Value>>>::default();
        let acknowledged = Arc::<Mutex<Vec<String>>>::default();
        let jwks_fetches = Arc::<Mutex<u32>>::default();
        let (p, a, j) = (
            purchases.clone(),
            acknowledged.clone(),
            jwks_fetches.clone(),
        );
        let server = serve(false, move |req, seen| {
            let mut seen = seen.lock().unwrap();
            let path = req.uri().path().to_string();
            if path == "/certs" {
                *j.lock().unwrap() += 1;
                return answer(200, google_jwks(), &[]);
            }
            if path == "/token" {
                return token_endpoint(&req, &mut seen, &key, CLIENT_EMAIL, PLAY_SCOPE, "ya29.play-");
            }
            let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
            if !auth.starts_with("Bearer ya29.play-") {
                seen.auth_failures.push(auth.to_string());
                return answer(401, json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}}), &[]);
            }
            let prefix = format!("/androidpublisher/v3/applications/{package}/purchases/");
            let Some(rest) = path.strip_prefix(&prefix) else {
                return answer(404, json!({"error": {"code": 404, "message": "No application was found."}}), &[]);
            };
            if let Some(token) = rest.strip_prefix("subscriptionsv2/tokens/") {
                return match p.lock().unwrap().get(token) {
                    Some(v) => answer(200, v.clone(), &[]),
                    None => answer(404, json!({"error": {"code": 404, "message": "The purchase token was not found."}}), &[]),
                };
            }
            if let Some(token) = rest
                .strip_prefix("subscriptions/")
                .and_then(|r| r.split_once("/tokens/"))
                .and_then(|(_, t)| t.strip_suffix(":acknowledge"))
            {
                if let Some(v) = p.lock().unwrap().get_mut(token) {
                    v["acknowledgementState"] = json!("ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED");
                    a.lock().unwrap().push(token.to_string());
                    return answer(200, json!({}), &[]);
                }
                return answer(404, json!({"error": {"code": 404}}), &[]);
            }
            answer(404, json!({"error": {"code": 404}}), &[])
        })
        .await;
        Self {
            server,
            purchases,
            acknowledged,
            jwks_fetches,
        }
    }

    /// Sets what Google says about `token`.
    pub fn set(&self, token: &str, purchase: Value) {
        self.purchases
            .lock()
            .unwrap()
            .insert(token.to_string(), purchase);
    }

    /// The `GOOGLE_PLAY_*` settings pointing at it, for `package`, with
    /// notifications for `audience` pushed as `push_account`.
    pub fn env(
        &self,
        package: &str,
        pro: &str,
        audience: &str,
        push_account: &str,
    ) -> Vec<(&'static str, String)> {
        vec![
            ("GOOGLE_PLAY_PACKAGE_NAME", package.to_string()),
            (
                "GOOGLE_PLAY_SERVICE_ACCOUNT",
                service_account(&format!("{}/token", self.server.url())),
            ),
            ("GOOGLE_PLAY_PRO_PRODUCT_IDS", pro.to_string()),
            ("GOOGLE_PLAY_API_URL", self.server.url()),
            ("GOOGLE_PLAY_RTDN_AUDIENCE", audience.to_string()),
            ("GOOGLE_PLAY_RTDN_SERVICE_ACCOUNT", push_account.to_string()),
            ("GOOGLE_JWKS_URL", format!("{}/certs", self.server.url())),
        ]
    }
}
