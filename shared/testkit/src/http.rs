//! Calls a router in process, the way `lambda_http` hands it requests.

use axum::body::Body;
use axum::Router;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// An in-process client for one router.
#[derive(Clone)]
pub struct TestClient {
    router: Router,
    /// Source IP put in the request context (as API Gateway would); empty:
    /// none (a direct invocation).
    pub source_ip: String,
}

/// A response with its body read.
#[derive(Debug)]
pub struct TestResponse {
    /// Status code.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Raw body.
    pub body: Vec<u8>,
}

impl TestResponse {
    /// The body as JSON (`Null` if empty or not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// `error.code` of an error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

impl TestClient {
    /// Wraps a router.
    pub fn new(router: Router) -> Self {
        if std::env::var_os("TEST_SHOW_LOGS").is_some() {
            honeydue_core::telemetry::init();
        }
        Self {
            router,
            source_ip: "203.0.113.10".into(),
        }
    }

    /// Sends a request with an optional JSON body and token.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> TestResponse {
        let bytes = body.map(|b| b.to_string().into_bytes());
        self.send_raw(method, path, bytes, token, &[]).await
    }

    /// Sends raw bytes with extra headers.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        let mut b = Request::builder().method(method).uri(path);
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        if let Some(t) = token {
            b = b.header("authorization", format!("Token {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let mut req = b
            .body(Body::from(body.unwrap_or_default()))
            .expect("request");
        let mut ctx =
            lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext::default();
        ctx.http.source_ip = Some(self.source_ip.clone()).filter(|ip| !ip.is_empty());
        req.extensions_mut()
            .insert(lambda_http::request::RequestContext::ApiGatewayV2(ctx));
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("infallible router");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes().to_vec())
            .unwrap_or_default();
        TestResponse {
            status,
            headers,
            body,
        }
    }

    /// GET.
    pub async fn get(&self, path: &str, token: Option<&str>) -> TestResponse {
        self.send(Method::GET, path, None, token).await
    }
    /// POST JSON.
    pub async fn post(&self, path: &str, body: Value, token: Option<&str>) -> TestResponse {
        self.send(Method::POST, path, Some(body), token).await
    }
    /// PATCH JSON.
    pub async fn patch(&self, path: &str, body: Value, token: Option<&str>) -> TestResponse {
        self.send(Method::PATCH, path, Some(body), token).await
    }
    /// DELETE with an optional JSON body.
    pub async fn delete(
        &self,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> TestResponse {
        self.send(Method::DELETE, path, body, token).await
    }
}
