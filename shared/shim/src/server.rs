//! The HTTP front: routes requests to function pools as API Gateway would,
//! answers the shim's own endpoints, and drains on shutdown.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::{Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::body::{full, linger, read_limited, Body, ChannelBody, ReadError};
use crate::event::{build_event, decode_answer, PayloadFormat, RequestInfo};
use crate::metrics::{self, Kind};
use crate::pool::{InvokeError, InvokeMeta, Outcome, Pool, Timing, PAYLOAD_LIMIT};
use crate::routes::{Match, Router};
use crate::{error, info, warn};

/// A network range whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse().map_err(|_| format!("{s:?}: bad prefix"))?
        };
        if prefix > max {
            return Err(format!("{s:?}: prefix over {max}"));
        }
        Ok(Self { addr, prefix })
    }
}

impl Cidr {
    /// Whether `ip` is inside.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - self.prefix)
                };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - self.prefix)
                };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The default trusted proxies: loopback and private ranges (Traefik inside
/// the cluster).
pub fn default_trusted() -> Vec<Cidr> {
    [
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::1/128",
        "fc00::/7",
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect()
}

/// The client's address: the peer, or — when the peer is a trusted proxy —
/// the right-most address in `X-Forwarded-For` that is not itself trusted.
pub fn source_ip(peer: IpAddr, xff: Option<&str>, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let Some(xff) = xff else { return peer };
    let hops: Vec<IpAddr> = xff
        .split(',')
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    for ip in hops.iter().rev() {
        if !is_trusted(*ip) {
            return *ip;
        }
    }
    hops.first().copied().unwrap_or(peer)
}

/// Everything the front needs.
pub struct Front {
    /// The function pools.
    pub pools: Vec<Arc<Pool>>,
    /// Routes to pool indexes.
    pub router: Router<usize>,
    /// Event shape.
    pub payload: PayloadFormat,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted: Vec<Cidr>,
    /// Where the shim's own endpoints are served.
    pub ops: Ops,
    draining: AtomicBool,
}

/// Where the shim's own endpoints (`/_shim/live`, `/_shim/ready`,
/// `/_shim/metrics`, and the emulator's invoke path when enabled) are
/// served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ops {
    /// On the public port too (local gateway); otherwise only on the admin
    /// listener, which no Service routes to the proxy.
    pub on_public_port: bool,
    /// `POST /2015-03-31/functions/NAME/invocations` (the Runtime Interface
    /// Emulator's path): it takes any hand-made event, so it is off unless
    /// asked for.
    pub invoke_api: bool,
    /// Serve error pages instead of functions (`shim errors`): see
    /// [`error_page`].
    pub error_pages: bool,
}

/// An error page for a proxy (`shim errors`): `GET /_edge/<status>` answers
/// that status with the JSON error shape every other error has, so errors
/// the proxy makes itself (its rate limit, body limit, no endpoint, a dead
/// upstream) read like the functions' and the shim's. Any other path is a
/// 404 (`no route`): the proxy's catch-all route for unknown hosts and paths
/// lands here too.
pub fn error_page(method: &http::Method, path: &str) -> Response<Body> {
    let status = path
        .strip_prefix("/_edge/")
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (400..=599).contains(s))
        .and_then(|s| StatusCode::from_u16(s).ok());
    let (status, code, message, retry_after) = match status {
        None => (
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no route for {method} {path}"),
            None,
        ),
        Some(s) => match s.as_u16() {
            404 => (s, "not_found", "no route for this request".into(), None),
            413 => (
                s,
                "payload_too_large",
                "the request body is over the limit (6 MB)".into(),
                None,
            ),
            429 => (
                s,
                "rate_limited",
                "too many requests; retry after the time in Retry-After".into(),
                Some("1"),
            ),
            502 => (
                s,
                "bad_gateway",
                "the service did not answer properly; retry".into(),
                None,
            ),
            503 => (
                s,
                "unavailable",
                "the service is unavailable right now; retry after the time in Retry-After".into(),
                Some("1"),
            ),
            504 => (
                s,
                "timeout",
                "the service did not answer in time".into(),
                None,
            ),
            _ => (
                s,
                "error",
                s.canonical_reason().unwrap_or("error").to_ascii_lowercase(),
                None,
            ),
        },
    };
    let body = serde_json::json!({"error": {"code": code, "message": message, "source": "edge"}});
    let mut r = plain(status, "application/json", body.to_string());
    if let Some(v) = retry_after {
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static(v));
    }
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// The function's routes (what the Service exposes).
    Public,
    /// Probes, metrics, the emulator path.
    Admin,
}

fn shim_error(status: StatusCode, kind: &str, message: &str, request_id: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {
        "code": format!("shim_{kind}"),
        "message": message,
        "source": "shim",
        "request_id": request_id,
    }});
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(kind) {
        h.insert("x-shim-error", v);
    }
    r
}

fn plain(status: StatusCode, ct: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The shim's 413. The connection closes after it: the rest of the body is
/// read and thrown away ([`linger`]), never parsed as a next request.
fn too_large(request_id: &str) -> Response<Body> {
    let mut r = shim_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        "the request body is over 6 MB",
        request_id,
    );
    r.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Lets a request that is answered without its body send the body anyway
/// (see [`linger`]), unless it has none.
fn linger_unless_empty(req: Request<Incoming>) {
    use hyper::body::Body as _;
    let body = req.into_body();
    if !body.is_end_stream() {
        linger(body);
    }
}

/// Reads a request body within the payload limit, or the shim's own 413 /
/// 400 answer.
async fn read_body(body: Incoming, request_id: &str) -> Result<Bytes, Box<Response<Body>>> {
    read_limited(body, PAYLOAD_LIMIT).await.map_err(|e| {
        Box::new(match e {
            ReadError::TooLarge(rest) => {
                linger(rest);
                too_large(request_id)
            }
            ReadError::Broken => shim_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the request body broke off",
                request_id,
            ),
        })
    })
}

/// Lambda's REPORT line for an invocation a worker ran (see
/// [`crate::report`]), with the shim's own fields beside it in JSON; a
/// short line for one that never reached a worker.
fn report(pool: &Pool, request_id: &str, status: u16, kind: Kind, t: &Timing) {
    let queue_ms = ((t.queue.as_secs_f64() * 1e6).round() / 1e3).into();
    match t.report(request_id, pool.cfg.spec.memory_mb) {
        Some(r) => r.write(&[
            ("function", pool.name().into()),
            ("httpStatus", status.into()),
            ("queueMs", queue_ms),
            ("worker", t.worker.into()),
        ]),
        None => crate::log::emit(
            "info",
            "not run",
            &[
                ("function", pool.name().into()),
                ("requestId", request_id.into()),
                ("status", status.into()),
                ("outcome", kind.as_str().into()),
                ("queueMs", queue_ms),
            ],
        ),
    }
}

impl Front {
    /// A front over `pools`, routing with each pool's template routes (a
    /// pool without routes gets a catch-all).
    pub fn new(
        pools: Vec<Arc<Pool>>,
        payload: PayloadFormat,
        trusted: Vec<Cidr>,
        ops: Ops,
    ) -> Self {
        let mut router = Router::default();
        for (i, p) in pools.iter().enumerate() {
            if p.cfg.spec.routes.is_empty() {
                router.add("ANY", "$default", i);
            }
            for r in &p.cfg.spec.routes {
                router.add(&r.method, &r.path, i);
            }
        }
        Self {
            pools,
            router,
            payload,
            trusted,
            ops,
            draining: AtomicBool::new(false),
        }
    }

    /// Ready: not draining and every pool has a worker polling.
    pub fn ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed) && self.pools.iter().all(|p| p.ready())
    }

    /// Handles one request that came in on `port`.
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        port: Port,
    ) -> Response<Body> {
        if port == Port::Public && self.ops.error_pages {
            let page = error_page(req.method(), req.uri().path());
            linger_unless_empty(req);
            return page;
        }
        if port == Port::Admin || self.ops.on_public_port {
            let path = req.uri().path();
            if let Some(op) = path.strip_prefix("/_shim/") {
                return self.operations(op);
            }
            if let Some(name) = path
                .strip_prefix("/2015-03-31/functions/")
                .and_then(|rest| rest.strip_suffix("/invocations"))
                .filter(|_| self.ops.invoke_api)
            {
                let name = name.to_string();
                return self.direct_invoke(&name, req).await;
            }
            if port == Port::Admin {
                return shim_error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such shim endpoint",
                    "",
                );
            }
        }
        self.http_invoke(req, peer).await
    }

    fn operations(&self, op: &str) -> Response<Body> {
        match op {
            "live" => plain(StatusCode::OK, "application/json", r#"{"status":"live"}"#),
            "ready" => {
                if self.ready() {
                    plain(StatusCode::OK, "application/json", r#"{"status":"ready"}"#)
                } else {
                    let why = if self.draining.load(Ordering::Relaxed) {
                        "draining"
                    } else {
                        "no worker is polling"
                    };
                    plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "application/json",
                        serde_json::json!({"status": "not ready", "reason": why}).to_string(),
                    )
                }
            }
            "metrics" => {
                let mut out = String::with_capacity(4096);
                metrics::header(&mut out);
                for p in &self.pools {
                    p.metrics.render(p.name(), &mut out);
                }
                out.push_str(
                    "# HELP shim_ready Whether the shim reports ready.\n# TYPE shim_ready gauge\n",
                );
                out.push_str(&format!("shim_ready {}\n", u8::from(self.ready())));
                out.push_str("# HELP shim_resident_memory_bytes Resident memory of the shim and its workers.\n# TYPE shim_resident_memory_bytes gauge\n");
                out.push_str("# HELP shim_peak_resident_memory_bytes Peak resident memory of the shim and its workers.\n# TYPE shim_peak_resident_memory_bytes gauge\n");
                if let Some((peak, now)) = metrics::rss(None) {
                    out.push_str(&format!(
                        "shim_resident_memory_bytes{{process=\"shim\"}} {now}\n"
                    ));
                    out.push_str(&format!(
                        "shim_peak_resident_memory_bytes{{process=\"shim\"}} {peak}\n"
                    ));
                }
                for p in &self.pools {
                    for pid in p.pids() {
                        if let Some((peak, now)) = metrics::rss(Some(pid)) {
                            out.push_str(&format!("shim_resident_memory_bytes{{process=\"{}\",pid=\"{pid}\"}} {now}\n", p.name()));
                            out.push_str(&format!("shim_peak_resident_memory_bytes{{process=\"{}\",pid=\"{pid}\"}} {peak}\n", p.name()));
                        }
                    }
                }
                plain(StatusCode::OK, "text/plain; version=0.0.4", out)
            }
            _ => shim_error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such shim endpoint",
                "",
            ),
        }
    }

    fn pool_named(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools
            .iter()
            .find(|p| p.name() == name || p.cfg.spec.logical_id == name)
            .or_else(|| (name == "function" && self.pools.len() == 1).then(|| &self.pools[0]))
    }

    /// The Runtime Interface Emulator's invoke path: raw event in, raw
    /// answer out (`X-Amz-Function-Error` on a function error).
    async fn direct_invoke(self: &Arc<Self>, name: &str, req: Request<Incoming>) -> Response<Body> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let Some(pool) = self.pool_named(name).cloned() else {
            return shim_error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no function named {name:?}"),
                &request_id,
            );
        };
        if req.method() != http::Method::POST {
            return shim_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "invoke with POST",
                &request_id,
            );
        }
        let client_context = req
            .headers()
            .get("x-amz-client-context")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .and_then(|b| String::from_utf8(b).ok());
        let event = match read_body(req.into_body(), &request_id).await {
            Ok(b) if b.is_empty() => Bytes::from_static(b"{}"),
            Ok(b) => b,
            Err(resp) => return *resp,
        };
        let started = Instant::now();
        let meta = InvokeMeta {
            client_context,
            ..Default::default()
        };
        let (result, timing) = pool.invoke(request_id.clone(), event, meta).await;
        let (resp, kind) = match result {
            Ok(Outcome::Response(b)) => (plain(StatusCode::OK, "application/json", b), Kind::Ok),
            Ok(Outcome::Stream(rx)) => (
                plain(
                    StatusCode::OK,
                    "application/octet-stream",
                    collect_stream(rx).await,
                ),
                Kind::Ok,
            ),
            Ok(Outcome::FunctionError { body, .. }) => {
                let mut r = plain(StatusCode::OK, "application/json", body);
                r.headers_mut().insert(
                    "x-amz-function-error",
                    HeaderValue::from_static("Unhandled"),
                );
                (r, Kind::FunctionError)
            }
            Ok(other) => failed(other, &pool, &request_id, Detail::Shown),
            Err(e) => invoke_error(e, &pool, &request_id),
        };
        settle(&pool, &request_id, resp, kind, started, &timing)
    }

    /// The route of a request, or the shim's 404/405 (its body lingered
    /// on): the pool, the route key and the path parameters.
    fn route(
        &self,
        req: Request<Incoming>,
        request_id: &str,
    ) -> Result<Routed, Box<Response<Body>>> {
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let found = match self.router.find(&method, &path) {
            Match::Found {
                target,
                route_key,
                params,
            } => Ok((self.pools[*target].clone(), route_key.to_string(), params)),
            Match::MethodNotAllowed(allowed) => {
                let mut r = shim_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    &format!("{method} is not allowed on {path}"),
                    request_id,
                );
                if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                    r.headers_mut().insert("allow", v);
                }
                Err(r)
            }
            Match::NotFound => Err(shim_error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no route for {method} {path}"),
                request_id,
            )),
        };
        match found {
            Ok((pool, route_key, params)) => Ok(Routed {
                pool,
                route_key,
                params,
                req,
            }),
            Err(r) => {
                linger_unless_empty(req);
                Err(Box::new(r))
            }
        }
    }

    /// The API Gateway event for a routed request (its body read within
    /// the payload limit), or the shim's 413/400.
    async fn event(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        route_key: &str,
        params: &Params,
        request_id: &str,
    ) -> Result<(Bytes, InvokeMeta), Box<Response<Body>>> {
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > PAYLOAD_LIMIT as u64) {
            // A client waiting for `100 Continue` sends nothing more; any
            // other is sending the body now and must be let finish.
            let waits = req
                .headers()
                .get(http::header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            if !waits {
                linger(req.into_body());
            }
            return Err(Box::new(too_large(request_id)));
        }
        let (parts, body) = req.into_parts();
        let body = read_body(body, request_id).await?;
        let xff = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        let ip = source_ip(peer.ip(), xff, &self.trusted).to_string();
        let protocol = format!("{:?}", parts.version);
        let info = RequestInfo {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body: &body,
            source_ip: &ip,
            route_key,
            path_params: params,
            request_id,
            time_epoch_ms: epoch_ms(),
            protocol: &protocol,
        };
        let event = Bytes::from(build_event(&info, self.payload));
        if event.len() > PAYLOAD_LIMIT {
            return Err(Box::new(shim_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request is over 6 MB as an event",
                request_id,
            )));
        }
        let meta = InvokeMeta {
            trace_id: parts
                .headers
                .get("x-amzn-trace-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            ..Default::default()
        };
        Ok((event, meta))
    }

    async fn http_invoke(
        self: &Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let started = Instant::now();
        let request_id = uuid::Uuid::new_v4().to_string();
        let Routed {
            pool,
            route_key,
            params,
            req,
        } = match self.route(req, &request_id) {
            Ok(r) => r,
            Err(resp) => return *resp,
        };
        let (event, meta) = match self
            .event(req, peer, &route_key, &params, &request_id)
            .await
        {
            Ok(e) => e,
            Err(resp) => return *resp,
        };
        let (result, timing) = pool.invoke(request_id.clone(), event, meta).await;
        let (mut resp, kind) = match result {
            Ok(outcome) => http_answer(outcome, &pool, &request_id).await,
            Err(e) => invoke_error(e, &pool, &request_id),
        };
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        settle(&pool, &request_id, resp, kind, started, &timing)
    }

    /// Serves until `shutdown` resolves, then drains: readiness fails at
    /// once, requests keep being served for `drain_delay` (while the load
    /// balancer notices), then no new connections are taken, open ones are
    /// closed as soon as they are idle, in-flight work finishes within its
    /// deadline, and the workers are stopped. The admin listener (probes,
    /// metrics) answers until the end.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        admin: Option<TcpListener>,
        shutdown: impl std::future::Future<Output = ()>,
        drain_delay: Duration,
    ) {
        let anchor = tokio::spawn(timer_anchor());
        let (closing_tx, closing) = tokio::sync::watch::channel(false);
        let public = tokio::spawn(accept_loop(
            self.clone(),
            listener,
            Port::Public,
            closing.clone(),
        ));
        let admin =
            admin.map(|l| tokio::spawn(accept_loop(self.clone(), l, Port::Admin, closing.clone())));
        shutdown.await;
        let began = Instant::now();
        self.draining.store(true, Ordering::Relaxed);
        info!("draining", "drain_delay_ms" => drain_delay.as_millis() as u64);
        tokio::time::sleep(drain_delay).await;
        public.abort();
        let _ = closing_tx.send(true);
        for p in &self.pools {
            p.drain();
        }
        let longest = self
            .pools
            .iter()
            .map(|p| p.cfg.timeout + p.cfg.queue_timeout)
            .max()
            .unwrap_or_default();
        let until = Instant::now() + longest + Duration::from_millis(200);
        while self.pools.iter().any(|p| p.busy() > 0) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for p in &self.pools {
            p.stop().await;
        }
        if let Some(a) = admin {
            a.abort();
        }
        anchor.abort();
        info!("stopped", "drain_ms" => began.elapsed().as_millis() as u64);
    }
}

/// A route's path parameters.
type Params = std::collections::BTreeMap<String, String>;

/// A request matched to its function's route.
struct Routed {
    pool: Arc<Pool>,
    route_key: String,
    params: Params,
    req: Request<Incoming>,
}

/// Whether a worker failure's own message is shown (the emulator path,
/// for operators) or logged and replaced (a client's request).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Detail {
    Shown,
    Logged,
}

/// The answer to an outcome the function did not produce as an answer: its
/// process died, or its answer was over the limit.
fn failed(
    outcome: Outcome,
    pool: &Pool,
    request_id: &str,
    detail: Detail,
) -> (Response<Body>, Kind) {
    match outcome {
        Outcome::Crash(m) => {
            let message = if detail == Detail::Shown {
                m
            } else {
                error!("worker crashed during an invocation", "function" => pool.name(), "requestId" => request_id, "error" => m);
                "the function's process exited during this request".to_string()
            };
            (
                shim_error(StatusCode::BAD_GATEWAY, "crash", &message, request_id),
                Kind::Crash,
            )
        }
        Outcome::TooLarge => (
            shim_error(
                StatusCode::BAD_GATEWAY,
                "response_too_large",
                "the function's answer is over 6 MB",
                request_id,
            ),
            Kind::BadResponse,
        ),
        // Answers are mapped by the caller; nothing else reaches here.
        Outcome::Response(_) | Outcome::Stream(_) | Outcome::FunctionError { .. } => (
            shim_error(
                StatusCode::BAD_GATEWAY,
                "bad_response",
                "unexpected outcome",
                request_id,
            ),
            Kind::BadResponse,
        ),
    }
}

/// A function's outcome as the HTTP answer to a client.
async fn http_answer(outcome: Outcome, pool: &Pool, request_id: &str) -> (Response<Body>, Kind) {
    match outcome {
        Outcome::Response(payload) => match decode_answer(&payload) {
            Ok(a) => {
                let mut r = Response::new(full(a.body));
                *r.status_mut() = a.status;
                *r.headers_mut() = a.headers;
                (r, Kind::Ok)
            }
            Err(e) => {
                error!("unusable function answer", "function" => pool.name(), "requestId" => request_id, "error" => e.0);
                (
                    shim_error(
                        StatusCode::BAD_GATEWAY,
                        "bad_response",
                        "the function's answer is not a valid HTTP response",
                        request_id,
                    ),
                    Kind::BadResponse,
                )
            }
        },
        Outcome::Stream(rx) => match stream_answer(rx).await {
            Ok(r) => (r, Kind::Ok),
            Err(e) => (
                shim_error(StatusCode::BAD_GATEWAY, "bad_response", &e, request_id),
                Kind::BadResponse,
            ),
        },
        Outcome::FunctionError { error_type, body } => {
            error!("function error", "function" => pool.name(), "requestId" => request_id, "errorType" => error_type,
                   "error" => String::from_utf8_lossy(&body[..body.len().min(4096)]));
            (
                shim_error(
                    StatusCode::BAD_GATEWAY,
                    "function_error",
                    &format!("the function failed ({error_type})"),
                    request_id,
                ),
                Kind::FunctionError,
            )
        }
        other => failed(other, pool, request_id, Detail::Logged),
    }
}

/// Why an invocation got no outcome, as the shim's error (503 with
/// `Retry-After` for what a retry fixes, 504 for a timeout).
fn invoke_error(e: InvokeError, pool: &Pool, request_id: &str) -> (Response<Body>, Kind) {
    let retry = |message: &str, kind: &str| {
        let mut r = shim_error(StatusCode::SERVICE_UNAVAILABLE, kind, message, request_id);
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        (r, Kind::Overload)
    };
    match e {
        InvokeError::QueueFull => retry(
            "every worker is busy and the queue is full; retry shortly",
            "overloaded",
        ),
        InvokeError::QueueTimeout => {
            retry("no worker became free in time; retry shortly", "overloaded")
        }
        InvokeError::Draining => retry("this instance is shutting down; retry", "draining"),
        InvokeError::Timeout => (
            shim_error(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                &format!(
                    "the function did not answer within {} s",
                    pool.cfg.timeout.as_secs_f64()
                ),
                request_id,
            ),
            Kind::Timeout,
        ),
    }
}

/// Records an answered invocation (metrics, the REPORT line) and hands the
/// response on.
fn settle(
    pool: &Pool,
    request_id: &str,
    resp: Response<Body>,
    kind: Kind,
    started: Instant,
    timing: &Timing,
) -> Response<Body> {
    pool.metrics.record(kind, started.elapsed());
    report(pool, request_id, resp.status().as_u16(), kind, timing);
    resp
}

/// Accepts connections on one listener until aborted. Each connection is
/// told to finish once `closing` turns true: an idle keep-alive connection
/// closes at once, a busy one after its answer (`Connection: close`), so a
/// proxy never sends a request on a connection the shim is about to drop.
async fn accept_loop(
    front: Arc<Front>,
    listener: TcpListener,
    port: Port,
    closing: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                warn!("accept failed", "error" => e.to_string());
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let front = front.clone();
        let mut closing = closing.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let front = front.clone();
                async move { Ok::<_, std::convert::Infallible>(front.handle(req, peer, port).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .max_header_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let closed = async move {
                let _ = closing.wait_for(|c| *c).await;
            };
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = closed => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// Keeps a timer due within the next second. Every invocation arms two
/// timers (its queue wait and its deadline); Tokio wakes its I/O driver
/// through an eventfd (a write, then an extra epoll round) whenever a new
/// timer is due earlier than the earliest one it parked with. With this
/// tick there always is an earlier one, so per-request timers cost no
/// syscall (measured: two eventfd writes per request before).
async fn timer_anchor() {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// Concatenates a streamed answer (for raw invokes).
async fn collect_stream(mut rx: mpsc::Receiver<Result<Bytes, String>>) -> Bytes {
    let mut out = BytesMut::new();
    while let Some(Ok(b)) = rx.recv().await {
        out.extend_from_slice(&b);
    }
    out.freeze()
}

/// Turns a streamed HTTP-integration answer into a streamed response: a JSON
/// prelude (`statusCode`, `headers`, `cookies`), eight NUL bytes, then the
/// body as it comes.
async fn stream_answer(
    mut rx: mpsc::Receiver<Result<Bytes, String>>,
) -> Result<Response<Body>, String> {
    const DELIM: &[u8] = &[0u8; 8];
    let mut head = BytesMut::new();
    let rest = loop {
        match rx.recv().await {
            Some(Ok(b)) => {
                head.extend_from_slice(&b);
                if let Some(pos) = head.windows(DELIM.len()).position(|w| w == DELIM) {
                    let rest = head.split_off(pos + DELIM.len());
                    head.truncate(pos);
                    break rest.freeze();
                }
                if head.len() > 64 * 1024 {
                    return Err("streamed answer has no prelude".into());
                }
            }
            Some(Err(e)) => return Err(e),
            None => {
                // No prelude: the whole stream is a plain JSON answer.
                let a = decode_answer(&head).map_err(|e| e.0)?;
                let mut r = Response::new(full(a.body));
                *r.status_mut() = a.status;
                *r.headers_mut() = a.headers;
                return Ok(r);
            }
        }
    };
    let mut prelude_doc: serde_json::Value =
        serde_json::from_slice(&head).map_err(|e| format!("bad prelude: {e}"))?;
    if let Some(o) = prelude_doc.as_object_mut() {
        o.remove("body");
        o.insert("body".into(), serde_json::Value::Null);
    }
    let a = decode_answer(prelude_doc.to_string().as_bytes()).map_err(|e| e.0)?;
    let (tx, body_rx) = mpsc::channel(16);
    tokio::spawn(async move {
        if !rest.is_empty() && tx.send(Ok(rest)).await.is_err() {
            return;
        }
        while let Some(item) = rx.recv().await {
            if tx.send(item).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(ChannelBody::boxed(body_rx));
    *r.status_mut() = a.status;
    *r.headers_mut() = a.headers;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_pages_have_the_json_shape() {
        let page = |path: &str| error_page(&http::Method::GET, path);
        for (path, status, code, retry) in [
            ("/_edge/413", 413, "payload_too_large", None),
            ("/_edge/429", 429, "rate_limited", Some("1")),
            ("/_edge/502", 502, "bad_gateway", None),
            ("/_edge/503", 503, "unavailable", Some("1")),
            ("/_edge/504", 504, "timeout", None),
            ("/_edge/404", 404, "not_found", None),
            ("/anything/else", 404, "not_found", None),
            ("/_edge/200", 404, "not_found", None),
        ] {
            let r = page(path);
            assert_eq!(r.status().as_u16(), status, "{path}");
            assert_eq!(r.headers()[CONTENT_TYPE], "application/json", "{path}");
            assert_eq!(
                r.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()),
                retry,
                "{path}"
            );
            let body = futures_body(r);
            let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(doc["error"]["code"], code, "{path}");
            assert_eq!(doc["error"]["source"], "edge", "{path}");
            assert!(doc["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
    }

    fn futures_body(r: Response<Body>) -> Bytes {
        use http_body_util::BodyExt;
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(r.into_body().collect())
            .unwrap()
            .to_bytes()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let t = default_trusted();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            source_ip(ip("10.42.0.5"), Some("198.51.100.7, 10.42.1.1"), &t),
            ip("198.51.100.7")
        );
        assert_eq!(
            source_ip(ip("203.0.113.9"), Some("198.51.100.7"), &t),
            ip("203.0.113.9")
        );
        assert_eq!(source_ip(ip("127.0.0.1"), None, &t), ip("127.0.0.1"));
        assert_eq!(
            source_ip(ip("127.0.0.1"), Some("1.2.3.4, 5.6.7.8"), &t),
            ip("5.6.7.8"),
            "right-most untrusted hop"
        );
        assert_eq!(
            source_ip(ip("127.0.0.1"), Some("garbage"), &t),
            ip("127.0.0.1")
        );
        assert_eq!(
            source_ip(ip("::ffff:10.0.0.1"), Some("9.9.9.9"), &t),
            ip("9.9.9.9")
        );
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
    }
}
