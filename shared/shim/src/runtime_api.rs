//! The Lambda Runtime API 2018-06-01 that one worker process polls, on its
//! own loopback port: `next` (long poll, with the invocation's headers and
//! deadline), `response` (whole or streamed), `error`, `init/error`. It hands
//! invocations from the pool's queue to the worker and their outcomes back.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::body::{full, linger, read_limited, Body, ReadError};
use crate::pool::*;
use crate::{error, info, warn};

/// The Runtime API version prefix.
const API: &str = "/2018-06-01/runtime";

pub(crate) fn json_response(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

pub(crate) fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response<Body> {
    json_response(
        status,
        serde_json::json!({"errorMessage": message, "errorType": error_type}),
    )
}

/// Serves one worker's Runtime API.
pub(crate) async fn serve_runtime_api(pool: Arc<Pool>, w: Arc<Worker>, listener: TcpListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!("runtime api accept failed", "error" => e.to_string());
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (pool, w) = (pool.clone(), w.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let (pool, w) = (pool.clone(), w.clone());
                async move { Ok::<_, std::convert::Infallible>(runtime_api(pool, w, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Decrements the poller count when a `/next` poll ends, however it ends.
struct PollGuard<'a>(&'a Worker);

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.pollers = st.pollers.saturating_sub(1);
    }
}

async fn runtime_api(pool: Arc<Pool>, w: Arc<Worker>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    if let Some(rest) = path.strip_prefix(crate::extensions::API) {
        return crate::extensions::serve(&pool, &w, rest, req).await;
    }
    let Some(rest) = path.strip_prefix(API) else {
        return runtime_error(
            StatusCode::NOT_FOUND,
            "InvalidPath",
            "not a Runtime API path",
        );
    };
    match (req.method().as_str(), rest) {
        ("GET", "/invocation/next") => next(&pool, &w).await,
        ("POST", "/init/error") => {
            let body = read_limited(req.into_body(), PAYLOAD_LIMIT)
                .await
                .unwrap_or_default();
            let msg = String::from_utf8_lossy(&body).into_owned();
            error!("function init error", "function" => pool.name(), "worker" => w.index, "error" => msg);
            pool.set_init_error(msg);
            // Lambda discards an environment whose init failed.
            w.kill.notify_one();
            json_response(StatusCode::ACCEPTED, serde_json::json!({"status": "OK"}))
        }
        ("POST", r) if r.starts_with("/invocation/") => {
            let tail = &r["/invocation/".len()..];
            match tail.rsplit_once('/') {
                Some((id, "response")) => response(&pool, &w, id.to_string(), req).await,
                Some((id, "error")) => function_error(&w, id.to_string(), req).await,
                _ => runtime_error(
                    StatusCode::NOT_FOUND,
                    "InvalidPath",
                    "unknown invocation path",
                ),
            }
        }
        _ => runtime_error(
            StatusCode::NOT_FOUND,
            "InvalidPath",
            "unknown Runtime API path",
        ),
    }
}

async fn next(pool: &Arc<Pool>, w: &Arc<Worker>) -> Response<Body> {
    {
        let mut st = w.lock();
        st.pollers += 1;
        if !st.polled {
            st.polled = true;
            st.ever_polled = true;
            if let Some(t) = st.spawned_at {
                st.init_took = Some(t.elapsed());
                let us = t.elapsed().as_micros() as u64;
                pool.metrics.init_us.store(us, Ordering::Relaxed);
                info!("worker ready", "function" => pool.name(), "worker" => w.index, "pid" => st.pid, "init_ms" => us as f64 / 1000.0);
            }
        }
    }
    if retire_if_bloated(pool, w) {
        // Never answer `/next` with an error: the process is being
        // stopped and replaced; this poll just waits for that.
        std::future::pending::<()>().await;
    }
    let guard = PollGuard(w);
    let extensions = !pool.cfg.extensions.is_empty();
    loop {
        if extensions && w.concurrency <= 1 {
            // The invoke phase ends once every extension asked for its
            // next event too (and init, once each finished its own).
            w.extensions.until_idle().await;
        }
        let inv = {
            let mut rx = pool.queue_rx.lock().await;
            rx.recv().await
        };
        let Some(mut inv) = inv else {
            // The pool is gone: never answer /next with an error (runtimes
            // exit or panic on one); wait to be stopped instead.
            std::future::pending::<()>().await;
            unreachable!()
        };
        pool.metrics.queued.fetch_sub(1, Ordering::Relaxed);
        if inv.done.is_closed() {
            continue; // its caller gave up while it waited
        }
        if retire_if_bloated(pool, w) {
            // This process is (now) being replaced: the invocation goes
            // back to the queue for another (run here only if it is full).
            match pool.queue_tx.try_send(inv) {
                Ok(()) => {
                    pool.metrics.queued.fetch_add(1, Ordering::Relaxed);
                    std::future::pending::<()>().await;
                    unreachable!()
                }
                Err(e) => inv = e.into_inner(),
            }
        }
        let delivered = Instant::now();
        let deadline = delivered + pool.cfg.timeout;
        let deadline_ms = now_ms() + pool.cfg.timeout.as_millis();
        let started = inv.started.take();
        let init = {
            let mut st = w.lock();
            st.inflight
                .insert(inv.id.clone(), Inflight { done: inv.done });
            st.init_took.take()
        };
        let handed = started
            .map(|s| {
                s.send(Started {
                    worker: w.clone(),
                    deadline,
                    delivered,
                    init,
                })
                .is_ok()
            })
            .unwrap_or(false);
        if !handed {
            let mut st = w.lock();
            st.inflight.remove(&inv.id);
            // Still this process's first invocation to report.
            if st.init_took.is_none() {
                st.init_took = init;
            }
            continue;
        }
        drop(guard);
        let spec = &pool.cfg.spec;
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        let mut r = Response::new(full(inv.event));
        let h = r.headers_mut();
        let put = |h: &mut http::HeaderMap, k: &'static str, v: &str| {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(k, v);
            }
        };
        put(h, "content-type", "application/json");
        put(h, "lambda-runtime-aws-request-id", &inv.id);
        put(h, "lambda-runtime-deadline-ms", &deadline_ms.to_string());
        let arn = format!(
            "arn:aws:lambda:{region}:{}:function:{}",
            crate::event::ACCOUNT_ID,
            spec.name
        );
        put(h, "lambda-runtime-invoked-function-arn", &arn);
        if extensions {
            w.extensions
                .invoke(&inv.id, deadline_ms, &arn, inv.meta.trace_id.as_deref());
        }
        // Only the caller's trace id, never an invented one: runtimes copy
        // it into `_X_AMZN_TRACE_ID` with setenv(3), and glibc keeps every
        // distinct value it was ever given, so a fresh id per invocation
        // grew each worker by ~160 bytes per request (measured: +15 MB over
        // 94k invocations of a no-op function) until the pod's memory limit.
        if let Some(trace) = &inv.meta.trace_id {
            put(h, "lambda-runtime-trace-id", trace);
        }
        if let Some(c) = &inv.meta.client_context {
            put(h, "lambda-runtime-client-context", c);
        }
        if let Some(c) = &inv.meta.cognito_identity {
            put(h, "lambda-runtime-cognito-identity", c);
        }
        return r;
    }
}

/// Whether `w` is over the pool's memory bound with nothing in flight, in
/// which case it is retired (stopped and replaced, as Lambda replaces an
/// environment that outgrew its MemorySize) instead of getting more work: a
/// function that leaks loses one process between invocations instead of a
/// pod to the OOM killer mid-request. Looked at once a second at most.
fn retire_if_bloated(pool: &Pool, w: &Worker) -> bool {
    if pool.cfg.recycle_rss == 0 {
        return false;
    }
    let mut st = w.lock();
    if st.retiring {
        return true;
    }
    if !st.inflight.is_empty() {
        return false;
    }
    let (_, rss) = st.memory();
    if rss <= pool.cfg.recycle_rss {
        return false;
    }
    st.retiring = true;
    warn!("replacing a worker over its memory bound", "function" => pool.name(), "worker" => w.index,
          "pid" => st.pid, "rss_mb" => rss / 1048576, "bound_mb" => pool.cfg.recycle_rss / 1048576);
    pool.metrics.recycles.fetch_add(1, Ordering::Relaxed);
    w.retire.notify_one();
    true
}

/// Takes the in-flight record of `id`, or answers why there is none (a late
/// answer to a timed-out invocation, or an unknown id).
fn take_inflight(w: &Worker, id: &str) -> Result<Inflight, Box<Response<Body>>> {
    let mut st = w.lock();
    match st.inflight.remove(id) {
        Some(f) => Ok(f),
        None => {
            let late = st.stuck.remove(id);
            let msg = if late {
                "invocation already timed out; its answer is refused"
            } else {
                "unknown invocation id"
            };
            Err(Box::new(runtime_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestID",
                msg,
            )))
        }
    }
}

async fn response(
    pool: &Arc<Pool>,
    w: &Arc<Worker>,
    id: String,
    req: Request<Incoming>,
) -> Response<Body> {
    let streaming = req
        .headers()
        .get("lambda-runtime-function-response-mode")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.eq_ignore_ascii_case("streaming"))
        .unwrap_or(false);
    if streaming {
        return stream_response(w, id, req).await;
    }
    let body = read_limited(req.into_body(), PAYLOAD_LIMIT).await;
    let inflight = match take_inflight(w, &id) {
        Ok(f) => f,
        Err(resp) => return *resp,
    };
    match body {
        Ok(b) => {
            let _ = inflight.done.send(Outcome::Response(b));
            json_response(StatusCode::ACCEPTED, serde_json::json!({"status": "OK"}))
        }
        Err(ReadError::TooLarge(rest)) => {
            // The runtime client writes its whole answer before it reads.
            linger(rest);
            let _ = inflight.done.send(Outcome::TooLarge);
            warn!("response over the payload limit", "function" => pool.name(), "requestId" => id);
            runtime_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!("response payload over {PAYLOAD_LIMIT} bytes"),
            )
        }
        Err(ReadError::Broken) => {
            let _ = inflight
                .done
                .send(Outcome::Crash("the response body broke off".into()));
            runtime_error(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "could not read the response body",
            )
        }
    }
}

async fn stream_response(w: &Arc<Worker>, id: String, req: Request<Incoming>) -> Response<Body> {
    let inflight = match take_inflight(w, &id) {
        Ok(f) => f,
        Err(resp) => return *resp,
    };
    let (tx, rx) = mpsc::channel(16);
    let _ = inflight.done.send(Outcome::Stream(rx));
    let mut body = req.into_body();
    loop {
        match body.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    if tx.send(Ok(data.clone())).await.is_err() {
                        break; // the caller went away; drain quietly
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    if let Some(t) = trailers.get("lambda-runtime-function-error-type") {
                        let _ = tx
                            .send(Err(format!(
                                "function error mid-stream: {}",
                                t.to_str().unwrap_or("?")
                            )))
                            .await;
                    }
                }
            }
            Some(Err(e)) => {
                let _ = tx.send(Err(format!("stream broke: {e}"))).await;
                break;
            }
        }
    }
    json_response(StatusCode::ACCEPTED, serde_json::json!({"status": "OK"}))
}

async fn function_error(w: &Arc<Worker>, id: String, req: Request<Incoming>) -> Response<Body> {
    let header_type = req
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = read_limited(req.into_body(), PAYLOAD_LIMIT)
        .await
        .unwrap_or_default();
    let inflight = match take_inflight(w, &id) {
        Ok(f) => f,
        Err(resp) => return *resp,
    };
    let error_type = header_type
        .or_else(|| {
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["errorType"].as_str().map(str::to_string))
        })
        .unwrap_or_else(|| "Unhandled".into());
    let _ = inflight
        .done
        .send(Outcome::FunctionError { error_type, body });
    json_response(StatusCode::ACCEPTED, serde_json::json!({"status": "OK"}))
}
