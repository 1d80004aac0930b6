//! Migrations as part of `sam deploy`: the stack's `Custom::Migrations`
//! resource sends its lifecycle events here, and the answer goes back to
//! CloudFormation through the event's pre-signed `ResponseURL` (an HTTP
//! `PUT` of a JSON document, as cfn-response does).
//!
//! * `Create` and `Update` apply the migrations (idempotent: a second run
//!   applies nothing) and answer `SUCCESS` with the schema version, or
//!   `FAILED` with the reason, which makes CloudFormation roll the deploy
//!   back. A binary older than the schema (the Update of a rollback) leaves
//!   the newer migrations alone instead of failing.
//! * `Delete` answers `SUCCESS` and touches nothing: removing the stack (or
//!   replacing the resource) never drops the data.
//!
//! The physical id is the same for every event, so CloudFormation never
//! sees a replacement (which would send a `Delete` for the old one).

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{Config, Outcome};

/// The physical id of the one schema a stack has.
pub const PHYSICAL_ID: &str = "honeydue-schema";
/// How long CloudFormation's endpoint has to take the answer.
const PUT_TIMEOUT: Duration = Duration::from_secs(30);

/// A CloudFormation custom-resource request (the fields used).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Request {
    /// `Create`, `Update` or `Delete`.
    pub request_type: String,
    /// Where the answer goes (a pre-signed S3 URL on AWS).
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    /// Echoed back.
    pub stack_id: String,
    /// Echoed back.
    pub request_id: String,
    /// Echoed back.
    pub logical_resource_id: String,
    /// The id CloudFormation knows the resource by (absent on Create).
    #[serde(default)]
    pub physical_resource_id: Option<String>,
}

impl Request {
    /// The event as a custom-resource request, if it is one.
    pub fn from_event(event: &Value) -> Option<Result<Self, String>> {
        event.get("ResponseURL")?;
        Some(serde_json::from_value(event.clone()).map_err(|e| {
            format!("a CloudFormation custom-resource event without a needed field: {e}")
        }))
    }
}

/// Handles one request: runs what it asks and returns the answer to PUT.
pub async fn answer(cfg: &Config, req: &Request) -> Value {
    let result = match req.request_type.as_str() {
        "Create" | "Update" => crate::run(cfg)
            .await
            .map(Some)
            .map_err(|e| format!("{e:#}")),
        "Delete" => Ok(None),
        other => Err(format!(
            "unknown RequestType {other:?} (Create, Update, Delete)"
        )),
    };
    let mut doc = json!({
        "StackId": req.stack_id,
        "RequestId": req.request_id,
        "LogicalResourceId": req.logical_resource_id,
        "PhysicalResourceId": req.physical_resource_id.as_deref().unwrap_or(PHYSICAL_ID),
        "NoEcho": false,
    });
    match result {
        Ok(outcome) => {
            doc["Status"] = json!("SUCCESS");
            doc["Reason"] = json!(match &outcome {
                Some(o) => format!(
                    "schema at version {}, {} migration(s) applied",
                    o.schema_version, o.applied
                ),
                None => "the schema and its data are kept".into(),
            });
            if let Some(Outcome {
                schema_version,
                applied,
                ..
            }) = outcome
            {
                doc["Data"] = json!({"SchemaVersion": schema_version.to_string(), "Applied": applied.to_string()});
            }
        }
        Err(reason) => {
            tracing::error!(reason, "migrations failed; telling CloudFormation");
            doc["Status"] = json!("FAILED");
            // CloudFormation keeps at most 4 KiB of the reason.
            doc["Reason"] = json!(truncate(&reason, 3800));
        }
    }
    doc
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// PUTs the answer to the request's `ResponseURL` (https on AWS; http is
/// accepted for local tests). The content type is empty, as the pre-signed
/// URL was signed without one.
pub async fn send(url: &str, doc: &Value) -> anyhow::Result<()> {
    let uri: hyper::Uri = url.parse().context("ResponseURL is not a URL")?;
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_platform_verifier(rustls::crypto::ring::default_provider())
        .context("TLS set-up")?
        .https_or_http()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<Bytes>>(https);
    let body = Bytes::from(doc.to_string());
    let req = hyper::Request::put(uri)
        .header("content-type", "")
        .header("content-length", body.len())
        .body(Full::new(body))
        .context("building the answer")?;
    let resp = tokio::time::timeout(PUT_TIMEOUT, client.request(req))
        .await
        .context("CloudFormation's ResponseURL did not answer in time")?
        .context("sending the answer to CloudFormation")?;
    let status = resp.status();
    let text = resp
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    anyhow::ensure!(
        status.is_success(),
        "CloudFormation's ResponseURL answered {status}: {}",
        truncate(&text, 500)
    );
    Ok(())
}
