//! Google service-account access tokens (OAuth2 with a JWT assertion, RFC
//! 7523): FCM's sender and the Play Developer API (api-subscriptions) both
//! sign an RS256 assertion with the account's key, exchange it at its
//! `token_uri` for an access token of their scope, and keep that token
//! until a minute before it expires.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use serde::Deserialize;
use serde_json::json;

use crate::jwt::Signer;
use crate::{exchange, HttpClient, Kept};

/// The fields of a service account key file that matter here.
#[derive(Deserialize)]
struct KeyFile {
    project_id: String,
    client_email: String,
    private_key: String,
    #[serde(default)]
    token_uri: Option<String>,
}

/// Why no access token was had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The token endpoint could not be reached.
    Unreachable(String),
    /// It answered, but not with a token.
    Refused {
        /// What it said.
        reason: String,
        /// Its `Retry-After`.
        after: Option<Duration>,
    },
    /// The assertion could not be signed.
    Signing(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Unreachable(e) | TokenError::Signing(e) => f.write_str(e),
            TokenError::Refused { reason, .. } => f.write_str(reason),
        }
    }
}

/// A service account, for one scope.
#[derive(Clone)]
pub struct ServiceAccount {
    /// The key file's project.
    pub project_id: String,
    /// The account's address (the assertion's issuer).
    pub client_email: String,
    /// Where assertions are exchanged (the key file's `token_uri`, or the
    /// override).
    pub token_url: String,
    scope: &'static str,
    signer: Arc<Signer>,
    kept: Kept,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// From the key file's JSON; `token_url` overrides its `token_uri`
    /// (tests). Checks the key; no request is made.
    pub fn new(
        key_file: &str,
        scope: &'static str,
        token_url: Option<String>,
    ) -> anyhow::Result<Self> {
        let k: KeyFile = serde_json::from_str(key_file).map_err(|e| {
            anyhow::anyhow!("not a service account key file ({e}); use the JSON file's content")
        })?;
        let token_url = token_url
            .or(k.token_uri)
            .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into());
        if !(token_url.starts_with("https://") || token_url.starts_with("http://")) {
            anyhow::bail!("the token URL must start with https:// (http:// for a local stand-in)");
        }
        Ok(Self {
            signer: Arc::new(Signer::rs256(&k.private_key)?),
            project_id: k.project_id,
            client_email: k.client_email,
            token_url,
            scope,
            kept: Kept::default(),
        })
    }

    /// The kept access token, or a new one.
    pub async fn token(&self, client: &HttpClient) -> Result<String, TokenError> {
        self.kept.get_or(|| self.exchange(client)).await
    }

    /// Drops the kept token (the API refused it).
    pub async fn forget(&self) {
        self.kept.forget().await;
    }

    async fn exchange(&self, client: &HttpClient) -> Result<(String, Duration), TokenError> {
        let now = chrono::Utc::now().timestamp();
        let assertion = self
            .signer
            .sign(
                json!({"typ": "JWT"}),
                &json!({"iss": self.client_email, "scope": self.scope, "aud": self.token_url,
                        "iat": now, "exp": now + 3600}),
            )
            .map_err(|e| TokenError::Signing(format!("service account assertion: {e:#}")))?;
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let req = hyper::Request::post(&self.token_url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| TokenError::Signing(format!("token request: {e}")))?;
        let a = exchange(client, req)
            .await
            .map_err(|e| TokenError::Unreachable(format!("Google's token endpoint: {e}")))?;
        let (Some(token), 200) = (a.body["access_token"].as_str(), a.status) else {
            return Err(TokenError::Refused {
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
}
