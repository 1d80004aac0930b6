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
pub use extract::{client_ip, none_match, ClientIp, IdempotencyKey, Json, PathId, Query};
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

/// How long before the invocation's deadline a request that is still
/// running gives up with 503 `unavailable` (Retry-After), rather than be cut
/// off by the runtime (a timeout, which costs the worker).
pub const DEADLINE_MARGIN: std::time::Duration = std::time::Duration::from_millis(1000);

async fn call(router: Router, req: lambda_http::Request) -> axum::response::Response {
    use axum::response::IntoResponse;
    use lambda_http::RequestExt;
    use tower::ServiceExt;
    let budget = req
        .lambda_context_ref()
        .and_then(|c| budget(c.deadline(), std::time::SystemTime::now()));
    let req = req.map(axum::body::Body::new);
    let answer = async {
        match router.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    };
    let Some(budget) = budget else {
        return answer.await;
    };
    match tokio::time::timeout(budget, answer).await {
        Ok(r) => r,
        Err(_) => {
            // Whatever it held is dropped: an open transaction is rolled
            // back with its connection, nothing half-written is committed.
            tracing::warn!(
                budget_ms = budget.as_millis() as u64,
                "request gave up before the deadline"
            );
            AppError::Unavailable(
                "The request could not finish in time (a dependency is slow); try again shortly."
                    .into(),
            )
            .into_response()
        }
    }
}

/// The time a request may run before `deadline`, keeping
/// [`DEADLINE_MARGIN`] (or half of what is left, when less than twice the
/// margin remains). `None` when no deadline is known.
fn budget(
    deadline: std::time::SystemTime,
    now: std::time::SystemTime,
) -> Option<std::time::Duration> {
    let left = deadline.duration_since(now).ok()?;
    if left >= DEADLINE_MARGIN * 2 {
        Some(left - DEADLINE_MARGIN)
    } else {
        Some(left / 2)
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
        // `Vec::from` takes the buffer without copying it when the answer
        // was one owned buffer (a board's ~100 KB).
        match String::from_utf8(Vec::from(bytes)) {
            Ok(s) => lambda_http::Body::Text(s),
            Err(e) => lambda_http::Body::Binary(e.into_bytes()),
        }
    } else {
        lambda_http::Body::Binary(Vec::from(bytes))
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use lambda_http::RequestExt;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn invocation(path: &str, deadline_in: Option<Duration>) -> lambda_http::Request {
        let mut ctx = lambda_http::Context::default();
        if let Some(d) = deadline_in {
            ctx.deadline = (SystemTime::now() + d)
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
        }
        axum::http::Request::builder()
            .uri(path)
            .body(lambda_http::Body::Empty)
            .unwrap()
            .with_lambda_context(ctx)
    }

    fn router() -> Router {
        Router::new()
            .route("/fast", get(|| async { "done" }))
            .route(
                "/stuck",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "too late"
                }),
            )
    }

    #[test]
    fn the_budget_keeps_the_margin_or_half_of_what_is_left() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            budget(now + Duration::from_secs(10), now),
            Some(Duration::from_secs(9))
        );
        assert_eq!(
            budget(now + Duration::from_millis(1500), now),
            Some(Duration::from_millis(750))
        );
        assert_eq!(budget(now - Duration::from_secs(1), now), None);
        assert_eq!(budget(UNIX_EPOCH, now), None, "no deadline known");
    }

    #[tokio::test]
    async fn a_request_still_running_near_the_deadline_answers_503_with_retry_after() {
        let r = call(
            router(),
            invocation("/stuck", Some(Duration::from_millis(400))),
        )
        .await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "2");
        let body = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap()
            .to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "unavailable");
    }

    #[tokio::test]
    async fn a_request_that_finishes_in_time_is_answered_as_written() {
        let r = call(router(), invocation("/fast", Some(Duration::from_secs(5)))).await;
        assert_eq!(r.status(), 200);
        let r = call(router(), invocation("/fast", None)).await;
        assert_eq!(r.status(), 200);
    }
}
