//! The glue that makes an axum [`Router`](axum::Router) a Lambda function:
//! [`start`](fn@start) reads a function's configuration, builds its state
//! once and hands the router to [`run`], `lambda_http`'s concurrent runner;
//! the extractors here turn bad input into the JSON errors of
//! [`honeydue_core::AppError`].

pub mod auth;
pub mod extract;
pub mod pagination;
pub mod ratelimit;
pub mod routes;
mod start;
pub mod state;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use honeydue_core::AppError;

pub use auth::AuthUser;
pub use extract::{client_ip, ClientIp, Json, PathId, Query};
pub use pagination::{Page, Paginated};
pub use ratelimit::Limit;
pub use start::{Api, AppState, Extra, Stateless};
pub use state::{Config, State};

/// The one entry point of every function, `honeydue_core::config::start`:
/// an HTTP function's `main` is `start(&Api::new(name, app)).await` (or
/// `start(&Stateless::new(name, app))`).
pub use honeydue_core::config::start;

/// Default limit on request bodies: generous for JSON, far below Lambda's 6 MB.
pub const DEFAULT_BODY_LIMIT: usize = 256 * 1024;

/// Adds what every function's router needs: JSON 404/405 answers and the
/// body limit.
pub fn finish<S>(router: Router<S>, body_limit: usize) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router
        .fallback(|| async { AppError::NotFound("route") })
        .method_not_allowed_fallback(|| async {
            (
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                axum::Json(serde_json::json!({
                    "error": {"code": "method_not_allowed", "message": "This method is not allowed on this path."}
                })),
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::Extension(BodyLimit(body_limit)))
}

/// The body limit in force, for error messages.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Runs `router` as a Lambda function on the Runtime API. Invocations run
/// concurrently when `AWS_LAMBDA_MAX_CONCURRENCY` > 1 (as the shim and Lambda
/// Managed Instances set it), one at a time otherwise.
pub async fn run(router: Router) -> Result<(), lambda_http::Error> {
    let service = lambda_http::service_fn(move |req: lambda_http::Request| {
        let router = router.clone();
        async move { Ok::<_, std::convert::Infallible>(to_lambda(call(router, req).await).await) }
    });
    lambda_http::run_concurrent(service).await
}

async fn call(router: Router, req: lambda_http::Request) -> axum::response::Response {
    use tower::ServiceExt;
    let req = req.map(axum::body::Body::new);
    match router.oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

/// Buffers an axum response into the `lambda_http` form: text bodies stay
/// text, anything else (or anything content-encoded) goes out as binary
/// (base64 on the wire).
async fn to_lambda(resp: axum::response::Response) -> lambda_http::Response<lambda_http::Body> {
    use http_body_util::BodyExt;
    let (parts, body) = resp.into_parts();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            tracing::error!(error = %e, "reading response body");
            return lambda_http::Response::builder()
                .status(500)
                .header("content-type", "application/json")
                .body(lambda_http::Body::Text(
                    r#"{"error":{"code":"internal_error","message":"An internal error occurred."}}"#.into(),
                ))
                .expect("static response");
        }
    };
    let body = if bytes.is_empty() {
        lambda_http::Body::Empty
    } else if is_text(&parts.headers) {
        match String::from_utf8(bytes.to_vec()) {
            Ok(s) => lambda_http::Body::Text(s),
            Err(e) => lambda_http::Body::Binary(e.into_bytes()),
        }
    } else {
        lambda_http::Body::Binary(bytes.to_vec())
    };
    lambda_http::Response::from_parts(parts, body)
}

fn is_text(headers: &axum::http::HeaderMap) -> bool {
    if headers.contains_key(axum::http::header::CONTENT_ENCODING) {
        return false;
    }
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    ct.starts_with("text/")
        || ct.starts_with("application/json")
        || ct.contains("+json")
        || ct.contains("xml")
        || ct.contains("javascript")
        || ct.starts_with("application/x-www-form-urlencoded")
}
