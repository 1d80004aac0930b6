//! Object storage on any S3-compatible service (AWS S3, Backblaze B2, a
//! local server in tests). Clients upload and download directly with
//! presigned URLs; the API only signs, checks (HEAD) and deletes.

use std::time::Duration;

use anyhow::Context;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::presigning::PresigningConfig;
use honeydue_core::{AppError, AppResult, Env, Secret};

/// Bounds on one call to the store: a slow or unreachable store fails the
/// call (503 `unavailable`) well before the function's deadline.
const TIMEOUTS: (Duration, Duration, Duration) = (
    Duration::from_secs(2), // connect
    Duration::from_secs(3), // one attempt
    Duration::from_secs(6), // the call, retries included
);

/// Storage settings.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// `S3_BUCKET`.
    pub bucket: String,
    /// `S3_REGION` (default us-east-1; B2: e.g. us-west-004).
    pub region: String,
    /// `S3_ENDPOINT`: a non-AWS endpoint (B2, a local server).
    pub endpoint: Option<String>,
    /// `S3_FORCE_PATH_STYLE` (default false; true for most non-AWS servers).
    pub path_style: bool,
    /// `S3_ACCESS_KEY_ID` + `S3_SECRET_ACCESS_KEY`; absent = the default AWS
    /// credential chain (a Lambda role).
    pub credentials: Option<(String, Secret<String>)>,
}

impl StorageConfig {
    /// Reads the `S3_*` variables.
    pub fn read(env: &mut Env) -> Option<Self> {
        let bucket = env.required::<String>("S3_BUCKET");
        let region = env.or("S3_REGION", "us-east-1".to_string());
        let endpoint: Option<String> = env.optional("S3_ENDPOINT");
        if let Some(e) = &endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                env.problem("S3_ENDPOINT must start with http:// or https://");
            }
        }
        let path_style = env.flag("S3_FORCE_PATH_STYLE", false);
        let key: Option<String> = env.optional("S3_ACCESS_KEY_ID");
        let secret: Option<String> = env.optional("S3_SECRET_ACCESS_KEY");
        let credentials = match (key, secret) {
            (Some(k), Some(s)) => Some((k, Secret::new(s))),
            (None, None) => None,
            _ => {
                env.problem("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY go together");
                None
            }
        };
        Some(Self {
            bucket: bucket?,
            region,
            endpoint,
            path_style,
            credentials,
        })
    }
}

/// What a HEAD found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Size in bytes.
    pub size: i64,
    /// Content type as stored.
    pub content_type: Option<String>,
}

/// A handle on the bucket, built once per process.
#[derive(Clone, Debug)]
pub struct Storage {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl Storage {
    /// Builds the client (no request is made).
    pub async fn new(cfg: &StorageConfig) -> Self {
        let mut b = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .force_path_style(cfg.path_style)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(TIMEOUTS.0)
                    .operation_attempt_timeout(TIMEOUTS.1)
                    .operation_timeout(TIMEOUTS.2)
                    .build(),
            );
        if let Some(e) = &cfg.endpoint {
            b = b.endpoint_url(e);
        }
        b = match &cfg.credentials {
            Some((k, s)) => {
                b.credentials_provider(Credentials::new(k, s.expose(), None, None, "honeydue-env"))
            }
            // On Lambda the execution role's keys are in the environment.
            None => b.credentials_provider(Credentials::new(
                std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default(),
                std::env::var("AWS_SECRET_ACCESS_KEY").unwrap_or_default(),
                std::env::var("AWS_SESSION_TOKEN").ok(),
                None,
                "lambda-environment",
            )),
        };
        Self {
            client: aws_sdk_s3::Client::from_conf(b.build()),
            bucket: cfg.bucket.clone(),
        }
    }

    /// A presigned PUT for `key`, binding content type and length.
    pub async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        size: i64,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .content_length(size)
            .presigned(PresigningConfig::expires_in(ttl)?)
            .await
            .context("presigning PUT")?;
        Ok(req.uri().to_string())
    }

    /// A presigned GET for `key`.
    pub async fn presign_get(&self, key: &str, ttl: Duration) -> anyhow::Result<String> {
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(PresigningConfig::expires_in(ttl)?)
            .await
            .context("presigning GET")?;
        Ok(req.uri().to_string())
    }

    /// Size and type of `key`, or `None` when it does not exist. The store
    /// unreachable, timing out or answering 5xx: 503 `unavailable`.
    pub async fn head(&self, key: &str) -> AppResult<Option<ObjectInfo>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => Ok(Some(ObjectInfo {
                size: o.content_length().unwrap_or(0),
                content_type: o.content_type().map(str::to_string),
            })),
            Err(e) => {
                if e.as_service_error().is_some_and(|s| s.is_not_found()) {
                    Ok(None)
                } else {
                    Err(store_error(e, "HEAD object"))
                }
            }
        }
    }

    /// Deletes `key` (absent is fine). Errors as for [`Storage::head`].
    pub async fn delete(&self, key: &str) -> AppResult<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| store_error(e, "DELETE object"))?;
        Ok(())
    }

    /// Creates the bucket if missing (local development and tests).
    pub async fn ensure_bucket(&self) -> anyhow::Result<()> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        self.client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .context("creating the bucket")?;
        Ok(())
    }
}

/// The store not answering (refused, timed out, 5xx) is 503 `unavailable`,
/// for the client to retry; anything else is a 500.
fn store_error<E>(e: SdkError<E, HttpResponse>, what: &'static str) -> AppError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let unavailable = matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_))
        || e.raw_response()
            .is_some_and(|r| r.status().is_server_error());
    if unavailable {
        tracing::warn!(error = %aws_sdk_s3::error::DisplayErrorContext(&e), what, "object store unavailable");
        return AppError::Unavailable("The file store is unavailable; try again shortly.".into());
    }
    AppError::Internal(anyhow::Error::new(e).context(what))
}
