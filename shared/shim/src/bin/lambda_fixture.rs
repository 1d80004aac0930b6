//! Test fixture (not shipped): a Lambda function on the official Rust
//! runtime whose behaviour each request picks by path.
//!
//! `/echo` returns what the function saw; `/sleep/{ms}`; `/crash` exits the
//! process; `/hang` never answers; `/fail` returns an error; `/big/{bytes}`;
//! `/binary`; `/cookies`. `FIXTURE_FAIL_INIT=1` exits before polling.

use lambda_http::{service_fn, Body, Error, Request, RequestExt, Response};

async fn handle(req: Request) -> Result<Response<Body>, Error> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["echo", ..] => {
            let ctx = req.lambda_context_ref().cloned().unwrap_or_default();
            let source_ip = match req.request_context_ref() {
                Some(lambda_http::request::RequestContext::ApiGatewayV2(c)) => {
                    c.http.source_ip.clone()
                }
                _ => None,
            };
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                .collect();
            let body = match req.body() {
                Body::Empty => serde_json::Value::Null,
                Body::Text(t) => t.clone().into(),
                Body::Binary(b) => format!("binary:{}", b.len()).into(),
                _ => serde_json::Value::Null,
            };
            let env = |k: &str| std::env::var(k).unwrap_or_default();
            let out = serde_json::json!({
                "method": req.method().as_str(),
                "path": path,
                "query": req.uri().query().unwrap_or(""),
                "query_params": req.query_string_parameters_ref().map(|q| q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>()),
                "path_params": req.path_parameters_ref().map(|q| q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>()),
                "headers": headers,
                "body": body,
                "source_ip": source_ip,
                "request_id": ctx.request_id,
                "deadline": ctx.deadline,
                "function_arn": ctx.invoked_function_arn,
                "env": {
                    "AWS_LAMBDA_FUNCTION_NAME": env("AWS_LAMBDA_FUNCTION_NAME"),
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
                    "AWS_LAMBDA_FUNCTION_VERSION": env("AWS_LAMBDA_FUNCTION_VERSION"),
                    "AWS_LAMBDA_MAX_CONCURRENCY": env("AWS_LAMBDA_MAX_CONCURRENCY"),
                    "AWS_REGION": env("AWS_REGION"),
                    "_HANDLER": env("_HANDLER"),
                    "LAMBDA_TASK_ROOT": env("LAMBDA_TASK_ROOT"),
                    "FIXTURE_FROM_TEMPLATE": env("FIXTURE_FROM_TEMPLATE"),
                    "_X_AMZN_TRACE_ID": env("_X_AMZN_TRACE_ID"),
                    "pid": std::process::id(),
                },
            });
            Ok(Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(Body::Text(out.to_string()))?)
        }
        ["sleep", ms] => {
            let ms: u64 = ms.parse().unwrap_or(0);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            Ok(Response::builder()
                .header("content-type", "application/json")
                .body(Body::Text(format!(
                    "{{\"slept\":{ms},\"pid\":{}}}",
                    std::process::id()
                )))?)
        }
        ["barrier", name, n] => {
            // Returns once `n` requests are inside at the same time (across
            // processes: each one drops a file), or after 10 s.
            let n: usize = n.parse().unwrap_or(1);
            let dir = std::env::temp_dir().join(format!("fixture-barrier-{name}"));
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(uuid_like()), b"")?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let reached = loop {
                let count = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
                if count >= n {
                    break true;
                }
                if std::time::Instant::now() > deadline {
                    break false;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            };
            Ok(Response::builder()
                .header("content-type", "application/json")
                .body(Body::Text(format!(
                    "{{\"reached\":{reached},\"pid\":{}}}",
                    std::process::id()
                )))?)
        }
        ["leak", mb] => {
            // Keeps `mb` MiB resident for good: a function that leaks.
            let mb: usize = mb.parse().unwrap_or(0);
            let kept: &'static mut [u8] = Vec::leak(vec![1u8; mb << 20]);
            Ok(Response::builder()
                .header("content-type", "application/json")
                .body(Body::Text(format!(
                    "{{\"kept\":{},\"pid\":{}}}",
                    kept.len(),
                    std::process::id()
                )))?)
        }
        ["crash"] => {
            eprintln!("fixture: crashing on purpose");
            std::process::exit(70);
        }
        ["hang"] => {
            std::future::pending::<()>().await;
            unreachable!()
        }
        ["fail"] => Err("the fixture failed on purpose".into()),
        // A bug in one request: with panic = "unwind" (the workspace's
        // release profile too) the runtime turns it into this invocation's
        // error and the process goes on serving the others.
        ["panic"] => panic!("the fixture panicked on purpose"),
        ["big", n] => {
            let n: usize = n.parse().unwrap_or(0);
            Ok(Response::builder()
                .header("content-type", "text/plain")
                .body(Body::Text("x".repeat(n)))?)
        }
        ["binary"] => Ok(Response::builder()
            .header("content-type", "image/png")
            .body(Body::Binary(vec![0x89, b'P', b'N', b'G', 0, 255]))?),
        ["cookies"] => Ok(Response::builder()
            .header("set-cookie", "a=1; Path=/")
            .header("set-cookie", "b=2; Path=/")
            .header("content-type", "text/plain")
            .body(Body::Text("cookies".into()))?),
        _ => Ok(Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .body(Body::Text("{\"error\":\"fixture: no such path\"}".into()))?),
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Raw mode (`FIXTURE_MODE=raw`): any JSON event in, the event back out;
/// `{"fail": true}` fails, `{"sleep_ms": n}` sleeps first.
async fn raw(
    event: lambda_http::lambda_runtime::LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, Error> {
    let (payload, ctx) = event.into_parts();
    if let Some(ms) = payload.get("sleep_ms").and_then(|v| v.as_u64()) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    if payload.get("fail").and_then(|v| v.as_bool()) == Some(true) {
        return Err("raw fixture failed on purpose".into());
    }
    Ok(serde_json::json!({"event": payload, "request_id": ctx.request_id}))
}

/// Streaming mode (`FIXTURE_MODE=stream`): a 201 whose body arrives in
/// three chunks, 50 ms apart.
async fn stream(
    _req: Request,
) -> Result<
    Response<
        http_body_util::StreamBody<
            tokio_stream::wrappers::ReceiverStream<Result<hyper::body::Frame<bytes::Bytes>, Error>>,
        >,
    >,
    Error,
> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for i in 0..3 {
            let chunk = bytes::Bytes::from(format!("chunk-{i}\n"));
            if tx.send(Ok(hyper::body::Frame::data(chunk))).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    });
    Ok(Response::builder()
        .status(201)
        .header("content-type", "text/plain")
        .header("x-streamed", "yes")
        .body(http_body_util::StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    if std::env::var("FIXTURE_FAIL_INIT").as_deref() == Ok("1") {
        eprintln!("fixture: failing init on purpose");
        std::process::exit(3);
    }
    if std::env::var("FIXTURE_MODE").as_deref() == Ok("stream") {
        return lambda_http::run_with_streaming_response(service_fn(stream)).await;
    }
    if std::env::var("FIXTURE_MODE").as_deref() == Ok("raw") {
        return lambda_http::lambda_runtime::run(lambda_http::lambda_runtime::service_fn(raw))
            .await;
    }
    lambda_http::run_concurrent(service_fn(handle)).await
}
