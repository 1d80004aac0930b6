//! The Lambda Extensions API 2020-01-01, beside each worker's Runtime API
//! (the same `AWS_LAMBDA_RUNTIME_API` address), for external extensions: the
//! executables of `/opt/extensions` (or `--extensions-dir`), started with
//! every worker process as Lambda starts them with every execution
//! environment.
//!
//! The lifecycle follows Lambda's:
//! * **Init.** The extensions start first and must register
//!   (`POST /extension/register`, within the init limit of 10 s) before the
//!   runtime starts; the first invocation waits until each has called
//!   `GET /extension/event/next` (its own init done). `init/error` fails the
//!   environment's init.
//! * **Invoke.** Each invocation is announced to the extensions registered
//!   for `INVOKE` as it is handed to the runtime; a one-at-a-time worker gets
//!   its next invocation only once every extension has asked for its next
//!   event again (so an agent can flush between invocations, as on Lambda).
//! * **Shutdown.** When the environment ends (drain, a crash, a timeout) the
//!   extensions registered for `SHUTDOWN` get it with its reason and a
//!   deadline 2 s away, and are killed at the deadline if still running. An
//!   extension that exits on its own, or posts `exit/error`, resets the
//!   environment: the runtime is stopped and both start again.
//!
//! Registration closes at the first invocation (403 afterwards). The
//! Telemetry and Logs APIs are not served (404).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::Notify;

use crate::body::{full, read_limited, Body};
use crate::pool::{now_ms, Pool, Worker};
use crate::runtime_api::json_response;
use crate::{error, info, warn};

/// The Extensions API's path prefix.
pub const API: &str = "/2020-01-01/extension";
/// How long extensions have to register (Lambda's init limit).
pub const REGISTER_WITHIN: Duration = Duration::from_secs(10);
/// How long extensions have between SHUTDOWN and SIGKILL (Lambda's limit
/// with external extensions).
pub const SHUTDOWN_WITHIN: Duration = Duration::from_millis(2000);

const ID_HEADER: &str = "lambda-extension-identifier";
const REGISTER_LIMIT: usize = 64 * 1024;

/// The executables in `dir`, in name order (as Lambda starts them).
pub fn discover(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let meta = std::fs::metadata(&path)?;
        if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// Why an environment's extensions are shut down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The pool is stopping (or the worker is being recycled).
    Spindown,
    /// An invocation timed out and the runtime was killed.
    Timeout,
    /// The runtime or an extension failed.
    Failure,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Spindown => "spindown",
            Reason::Timeout => "timeout",
            Reason::Failure => "failure",
        }
    }
}

struct Ext {
    id: String,
    name: String,
    invoke: bool,
    shutdown: bool,
    /// Events not yet taken by `event/next`.
    queue: VecDeque<Bytes>,
    /// Has asked for its next event since the last one it was given.
    idle: bool,
    wake: Arc<Notify>,
}

#[derive(Default)]
struct State {
    /// Extension processes started for the current environment.
    expected: usize,
    /// Registration is open (until the first invocation).
    open: bool,
    exts: Vec<Ext>,
}

/// One worker's extensions.
#[derive(Default)]
pub struct Extensions {
    st: Mutex<State>,
    /// Something changed: a registration, an extension going idle.
    changed: Notify,
}

impl Extensions {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new environment with `expected` extension processes: registration
    /// opens, earlier registrations are forgotten.
    pub(crate) fn reset(&self, expected: usize) {
        let mut st = self.lock();
        for e in st.exts.drain(..) {
            e.wake.notify_one();
        }
        st.expected = expected;
        st.open = true;
    }

    /// Whether every extension started has registered.
    pub(crate) fn all_registered(&self) -> bool {
        let st = self.lock();
        st.exts.len() >= st.expected
    }

    /// Waits until every registered extension has asked for its next event.
    pub(crate) async fn until_idle(&self) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().exts.iter().all(|e| e.idle) {
                return;
            }
            notified.await;
        }
    }

    /// Announces an invocation to the extensions registered for `INVOKE`,
    /// and closes registration.
    pub(crate) fn invoke(
        &self,
        request_id: &str,
        deadline_ms: u128,
        arn: &str,
        trace: Option<&str>,
    ) {
        let mut event = serde_json::json!({
            "eventType": "INVOKE",
            "deadlineMs": deadline_ms as u64,
            "requestId": request_id,
            "invokedFunctionArn": arn,
        });
        if let Some(t) = trace {
            event["tracing"] = serde_json::json!({"type": "X-Amzn-Trace-Id", "value": t});
        }
        let mut st = self.lock();
        st.open = false;
        send(&mut st, event, |e| e.invoke);
    }

    /// Sends SHUTDOWN to the extensions registered for it.
    fn shutdown(&self, reason: Reason, within: Duration) {
        let event = serde_json::json!({
            "eventType": "SHUTDOWN",
            "shutdownReason": reason.as_str(),
            "deadlineMs": (now_ms() + within.as_millis()) as u64,
        });
        let mut st = self.lock();
        st.open = false;
        send(&mut st, event, |e| e.shutdown);
    }

    /// The id and name of the extension `req` identifies, or the refusal.
    fn identified(&self, req: &Request<Incoming>) -> Result<(String, String), Box<Response<Body>>> {
        let id = header(req, ID_HEADER).ok_or_else(|| {
            Box::new(refuse(
                StatusCode::FORBIDDEN,
                "Extension.MissingExtensionIdentifier",
                "Lambda-Extension-Identifier is required",
            ))
        })?;
        self.lock()
            .exts
            .iter()
            .find(|e| e.id == id)
            .map(|e| (e.id.clone(), e.name.clone()))
            .ok_or_else(|| Box::new(unknown_id()))
    }
}

/// Queues `event` for the extensions `to` selects, marking them busy.
fn send(st: &mut State, event: serde_json::Value, to: impl Fn(&Ext) -> bool) {
    let event = Bytes::from(event.to_string());
    for e in st.exts.iter_mut().filter(|e| to(e)) {
        e.idle = false;
        e.queue.push_back(event.clone());
        e.wake.notify_one();
    }
}

fn refuse(status: StatusCode, error_type: &str, message: &str) -> Response<Body> {
    crate::runtime_api::runtime_error(status, error_type, message)
}

fn unknown_id() -> Response<Body> {
    refuse(
        StatusCode::FORBIDDEN,
        "Extension.UnknownExtensionIdentifier",
        "unknown Lambda-Extension-Identifier",
    )
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Serves `/2020-01-01/extension/...` for worker `w`.
pub(crate) async fn serve(
    pool: &Arc<Pool>,
    w: &Arc<Worker>,
    rest: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let exts = &w.extensions;
    match (req.method().as_str(), rest) {
        ("POST", "/register") => register(pool, exts, req).await,
        ("GET", "/event/next") => match exts.identified(&req) {
            Ok((id, _)) => next_event(exts, &id).await,
            Err(refusal) => *refusal,
        },
        ("POST", "/init/error") | ("POST", "/exit/error") => {
            let name = match exts.identified(&req) {
                Ok((_, name)) => name,
                Err(refusal) => return *refusal,
            };
            let error_type = header(&req, "lambda-extension-function-error-type")
                .unwrap_or("Extension.Unknown")
                .to_string();
            let body = read_limited(req.into_body(), REGISTER_LIMIT)
                .await
                .unwrap_or_default();
            let detail = String::from_utf8_lossy(&body).into_owned();
            // After init, an init error is an exit error (the library of
            // aws-lambda-rust-runtime posts init/error for a failed INVOKE).
            if rest == "/init/error" && exts.lock().open {
                error!("extension init error", "function" => pool.name(), "worker" => w.index,
                       "extension" => name, "errorType" => error_type, "error" => detail);
                pool.set_init_error(format!(
                    "extension {name} failed to initialise: {error_type} {detail}"
                ));
            } else {
                error!("extension exit error", "function" => pool.name(), "worker" => w.index,
                       "extension" => name, "errorType" => error_type, "error" => detail);
            }
            // Either way the environment is reset, as Lambda does.
            w.kill.notify_one();
            json_response(StatusCode::ACCEPTED, serde_json::json!({"status": "OK"}))
        }
        _ => refuse(
            StatusCode::NOT_FOUND,
            "InvalidPath",
            "not an Extensions API path (the Telemetry and Logs APIs are not served)",
        ),
    }
}

async fn register(pool: &Arc<Pool>, exts: &Extensions, req: Request<Incoming>) -> Response<Body> {
    let Some(name) = header(&req, "lambda-extension-name").map(str::to_string) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Lambda-Extension-Name is required",
        );
    };
    let account = header(&req, "lambda-extension-accept-feature")
        .is_some_and(|f| f.split(',').any(|f| f.trim() == "accountId"));
    let body = match read_limited(req.into_body(), REGISTER_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "unreadable registration",
            )
        }
    };
    let events: Vec<String> = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(v) => match v.get("events").and_then(|e| e.as_array()) {
            Some(list) => list
                .iter()
                .map(|e| e.as_str().unwrap_or("").to_string())
                .collect(),
            None => Vec::new(),
        },
        Err(_) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "the registration is not JSON",
            )
        }
    };
    if let Some(bad) = events.iter().find(|e| *e != "INVOKE" && *e != "SHUTDOWN") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Extension.InvalidEventType",
            &format!("unknown event type {bad:?} (INVOKE, SHUTDOWN)"),
        );
    }
    let id = uuid::Uuid::new_v4().to_string();
    {
        let mut st = exts.lock();
        if !st.open {
            return refuse(
                StatusCode::FORBIDDEN,
                "Extension.RegistrationClosed",
                "extensions register during init, before the first invocation",
            );
        }
        if st.exts.iter().any(|e| e.name == name) {
            return refuse(
                StatusCode::CONFLICT,
                "Extension.AlreadyRegistered",
                &format!("an extension named {name:?} is already registered"),
            );
        }
        st.exts.push(Ext {
            id: id.clone(),
            name: name.clone(),
            invoke: events.iter().any(|e| e == "INVOKE"),
            shutdown: events.iter().any(|e| e == "SHUTDOWN"),
            queue: VecDeque::new(),
            idle: false,
            wake: Arc::new(Notify::new()),
        });
    }
    exts.changed.notify_waiters();
    info!("extension registered", "function" => pool.name(), "extension" => name, "events" => events);
    let spec = &pool.cfg.spec;
    let mut info = serde_json::json!({
        "functionName": spec.name,
        "functionVersion": "$LATEST",
        "handler": spec.handler,
    });
    if account {
        info["accountId"] = serde_json::json!(crate::event::ACCOUNT_ID);
    }
    let mut r = json_response(StatusCode::OK, info);
    if let Ok(v) = HeaderValue::from_str(&id) {
        r.headers_mut().insert(ID_HEADER, v);
    }
    r
}

async fn next_event(exts: &Extensions, id: &str) -> Response<Body> {
    loop {
        let wake = {
            let mut st = exts.lock();
            let Some(e) = st.exts.iter_mut().find(|e| e.id == id) else {
                return unknown_id();
            };
            if let Some(event) = e.queue.pop_front() {
                let mut r = Response::new(full(event));
                r.headers_mut()
                    .insert("content-type", HeaderValue::from_static("application/json"));
                if let Ok(v) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
                    r.headers_mut()
                        .insert("lambda-extension-event-identifier", v);
                }
                return r;
            }
            if !e.idle {
                e.idle = true;
                exts.changed.notify_waiters();
            }
            e.wake.clone().notified_owned()
        };
        wake.await;
    }
}

/// The extension processes of one environment, each awaited by its own
/// task (no polling); dropping it kills what is still running.
pub(crate) struct Running {
    exits: tokio::task::JoinSet<(String, String)>,
}

impl Running {
    /// Starts the extensions at `paths` with the environment's variables.
    pub(crate) fn start(
        paths: &[PathBuf],
        env: &[(String, String)],
        w: &Worker,
    ) -> Result<Self, String> {
        w.extensions.reset(paths.len());
        let mut exits = tokio::task::JoinSet::new();
        for path in paths {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mut child = tokio::process::Command::new(path)
                .env_remove("AWS_LAMBDA_MAX_CONCURRENCY")
                .envs(env.iter().cloned())
                .stdin(std::process::Stdio::null())
                .stdout(crate::pool::log_output())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start extension {name}: {e}"))?;
            exits.spawn(async move {
                let status = child
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_else(|e| e.to_string());
                (name, status)
            });
        }
        Ok(Self { exits })
    }

    /// Waits until every extension has registered; the error names the
    /// one that exited or the limit that passed.
    pub(crate) async fn registered(&mut self, w: &Worker) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + REGISTER_WITHIN;
        loop {
            let changed = w.extensions.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if w.extensions.all_registered() {
                return Ok(());
            }
            tokio::select! {
                _ = &mut changed => {}
                (name, status) = self.exited() => {
                    return Err(format!("extension {name} exited during init ({status})"));
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(format!(
                        "extensions did not register within {} s",
                        REGISTER_WITHIN.as_secs()
                    ));
                }
            }
        }
    }

    /// Resolves when an extension exits, with its name and status (never,
    /// if there are none).
    pub(crate) async fn exited(&mut self) -> (String, String) {
        match self.exits.join_next().await {
            Some(Ok(exit)) => exit,
            Some(Err(e)) => ("?".into(), e.to_string()),
            None => std::future::pending().await,
        }
    }

    /// SHUTDOWN to those registered for it, then waits for every process
    /// until the deadline and kills what is left. A second call finds no
    /// process and does nothing.
    pub(crate) async fn shut_down(&mut self, pool: &Pool, w: &Worker, reason: Reason) {
        if self.exits.is_empty() {
            return;
        }
        w.extensions.shutdown(reason, SHUTDOWN_WITHIN);
        let all = async { while self.exits.join_next().await.is_some() {} };
        if tokio::time::timeout(SHUTDOWN_WITHIN, all).await.is_err() {
            warn!("extensions killed at their shutdown deadline", "function" => pool.name(),
                  "worker" => w.index, "left" => self.exits.len());
            // Aborting a task drops its child, which kills it.
            self.exits.shutdown().await;
        }
        w.extensions.reset(0);
    }
}
