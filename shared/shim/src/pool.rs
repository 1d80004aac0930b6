//! One function's workers: the processes, the Runtime API each of them
//! polls, the bounded queue of invocations waiting for them, deadlines,
//! crashes and restarts.
//!
//! Every worker process gets its own Runtime API port, so the shim always
//! knows which process holds which invocation: a crash fails exactly the
//! invocations of the process that died, and a timeout can kill exactly the
//! wedged process.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::body::{full, linger, read_limited, Body, ReadError};
use crate::metrics::Metrics;
use crate::template::FunctionSpec;
use crate::{error, info, warn};

/// Lambda's limit on a request or response payload (6 MB).
pub const PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;
/// The Runtime API version prefix.
const API: &str = "/2018-06-01/runtime";

/// How to run one function.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The function as the template describes it.
    pub spec: FunctionSpec,
    /// Program and arguments of a worker.
    pub command: Vec<String>,
    /// Worker processes.
    pub workers: usize,
    /// Concurrent invocations per worker (`AWS_LAMBDA_MAX_CONCURRENCY`);
    /// 1 for runtimes that handle one at a time.
    pub concurrency: usize,
    /// Invocations that may wait for a worker before new ones are refused.
    pub queue_size: usize,
    /// Per-invocation timeout.
    pub timeout: Duration,
    /// Longest wait in the queue before a 503.
    pub queue_timeout: Duration,
    /// Grace between SIGTERM and SIGKILL for a worker at shutdown.
    pub kill_grace: Duration,
    /// Resident bytes over which an idle worker is replaced (0 = never).
    pub recycle_rss: u64,
    /// `LAMBDA_TASK_ROOT` for the workers (where the function's code is).
    pub task_root: String,
}

/// What a worker answered.
#[derive(Debug)]
pub enum Outcome {
    /// A buffered response payload.
    Response(Bytes),
    /// A streamed response payload (`Lambda-Runtime-Function-Response-Mode:
    /// streaming`); an `Err` item means the function failed mid-stream.
    Stream(mpsc::Receiver<Result<Bytes, String>>),
    /// The function reported an error (`/error`).
    FunctionError {
        /// `Lambda-Runtime-Function-Error-Type`, or the body's `errorType`.
        error_type: String,
        /// The error document.
        body: Bytes,
    },
    /// The worker exited while holding the invocation.
    Crash(String),
    /// The response was over the payload limit.
    TooLarge,
}

/// Why an invocation got no outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvokeError {
    /// The queue is full.
    QueueFull,
    /// It waited longer than the queue timeout.
    QueueTimeout,
    /// It ran past its deadline.
    Timeout,
    /// The pool is shutting down.
    Draining,
}

/// Where the time of one invocation went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// Waiting for a worker.
    pub queue: Duration,
    /// From delivery to answer.
    pub run: Duration,
    /// The worker that ran it.
    pub worker: usize,
}

/// Extra context delivered with an invocation.
#[derive(Debug, Clone, Default)]
pub struct InvokeMeta {
    /// `X-Amzn-Trace-Id` to pass on.
    pub trace_id: Option<String>,
    /// Client context (JSON) for `Lambda-Runtime-Client-Context`.
    pub client_context: Option<String>,
    /// Cognito identity (JSON) for `Lambda-Runtime-Cognito-Identity`.
    pub cognito_identity: Option<String>,
}

struct Invocation {
    id: String,
    event: Bytes,
    meta: InvokeMeta,
    started: Option<oneshot::Sender<Started>>,
    done: oneshot::Sender<Outcome>,
}

struct Started {
    worker: Arc<Worker>,
    deadline: Instant,
    delivered: Instant,
}

struct Inflight {
    done: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct WorkerState {
    pid: Option<u32>,
    pollers: usize,
    /// Polled since the last spawn (else its exit is an init failure).
    polled: bool,
    /// Polled at least once, ever.
    ever_polled: bool,
    spawned_at: Option<Instant>,
    inflight: HashMap<String, Inflight>,
    /// Invocations that timed out while this process held them.
    stuck: HashSet<String>,
    /// When its memory was last looked at (at most once a second).
    rss_checked: Option<Instant>,
    /// Being replaced for its memory: it gets no more work.
    retiring: bool,
}

/// One worker slot: a process (restarted as needed) and its Runtime API.
pub struct Worker {
    index: usize,
    addr: SocketAddr,
    concurrency: usize,
    st: Mutex<WorkerState>,
    kill: Notify,
    retire: Notify,
}

impl Worker {
    fn lock(&self) -> std::sync::MutexGuard<'_, WorkerState> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `id` timed out; kills the process if it can no longer serve.
    /// `false` if the invocation had already been answered.
    fn time_out(&self, id: &str) -> bool {
        let mut st = self.lock();
        if st.inflight.remove(id).is_none() {
            return false;
        }
        st.stuck.insert(id.to_string());
        // A one-at-a-time worker is wedged now; a concurrent one only when
        // every slot is stuck (killing it earlier would fail the others).
        if self.concurrency <= 1 || st.stuck.len() >= self.concurrency {
            warn!("killing a wedged worker", "worker" => self.index, "pid" => st.pid, "stuck" => st.stuck.len());
            self.kill.notify_one();
        }
        true
    }
}

/// An invocation a worker holds, counted in `in_flight` until it is
/// answered or its deadline passes. If its caller goes away first (a client
/// that disconnects), the deadline still holds: a watchdog takes over the
/// answer channel, so a wedged worker is still killed and the gauge (and
/// the drain that waits on it) still comes back to zero.
struct Running {
    pool: Arc<Pool>,
    worker: Arc<Worker>,
    id: String,
    deadline: Instant,
    done: Option<oneshot::Receiver<Outcome>>,
}

impl Running {
    fn new(pool: Arc<Pool>, s: &Started, id: String, done: oneshot::Receiver<Outcome>) -> Self {
        pool.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        Self {
            pool,
            worker: s.worker.clone(),
            id,
            deadline: s.deadline,
            done: Some(done),
        }
    }

    /// Waits for the worker's answer within the deadline.
    async fn outcome(&mut self) -> Result<Outcome, InvokeError> {
        let Some(done) = self.done.as_mut() else {
            return Err(InvokeError::Draining);
        };
        let dropped = || Outcome::Crash("the worker dropped the invocation".into());
        let result = match tokio::time::timeout_at(self.deadline.into(), &mut *done).await {
            Ok(o) => Ok(o.unwrap_or_else(|_| dropped())),
            Err(_) if self.worker.time_out(&self.id) => Err(InvokeError::Timeout),
            // Answered just as the deadline passed: take it.
            Err(_) => Ok(done.await.unwrap_or_else(|_| dropped())),
        };
        self.done = None;
        result
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(done) = self.done.take() else {
            self.pool.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
            return;
        };
        let (pool, worker, id, deadline) = (
            self.pool.clone(),
            self.worker.clone(),
            std::mem::take(&mut self.id),
            self.deadline,
        );
        let watch = async move {
            if tokio::time::timeout_at(deadline.into(), done)
                .await
                .is_err()
            {
                worker.time_out(&id);
            }
            pool.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn(watch)),
            Err(_) => {
                self.pool.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// One function's worker pool.
pub struct Pool {
    /// Its configuration.
    pub cfg: PoolConfig,
    /// Its metrics.
    pub metrics: Metrics,
    queue_tx: mpsc::Sender<Invocation>,
    queue_rx: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    workers: Vec<Arc<Worker>>,
    draining: AtomicBool,
    stop_tx: watch::Sender<bool>,
    /// The last init error a worker reported (or the reason it died before
    /// polling).
    last_init_error: Mutex<Option<String>>,
    exited: Notify,
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn json_response(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response<Body> {
    json_response(
        status,
        serde_json::json!({"errorMessage": message, "errorType": error_type}),
    )
}

impl Pool {
    /// Binds one Runtime API port per worker and starts the workers.
    pub async fn start(cfg: PoolConfig) -> std::io::Result<Arc<Self>> {
        let (queue_tx, queue_rx) = mpsc::channel(cfg.queue_size.max(1));
        let (stop_tx, _) = watch::channel(false);
        let mut listeners = Vec::new();
        let mut workers = Vec::new();
        for index in 0..cfg.workers.max(1) {
            let l = TcpListener::bind("127.0.0.1:0").await?;
            workers.push(Arc::new(Worker {
                index,
                addr: l.local_addr()?,
                concurrency: cfg.concurrency.max(1),
                st: Mutex::new(WorkerState::default()),
                kill: Notify::new(),
                retire: Notify::new(),
            }));
            listeners.push(l);
        }
        let pool = Arc::new(Self {
            cfg,
            metrics: Metrics::default(),
            queue_tx,
            queue_rx: tokio::sync::Mutex::new(queue_rx),
            workers,
            draining: AtomicBool::new(false),
            stop_tx,
            last_init_error: Mutex::new(None),
            exited: Notify::new(),
        });
        for (w, l) in pool.workers.iter().zip(listeners) {
            tokio::spawn(serve_runtime_api(pool.clone(), w.clone(), l));
            tokio::spawn(supervise(pool.clone(), w.clone()));
        }
        Ok(pool)
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.cfg.spec.name
    }

    /// Whether some worker is waiting for work (and the pool takes work).
    pub fn ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed) && self.workers.iter().any(|w| w.lock().pollers > 0)
    }

    /// Whether every worker has been initialised at least once.
    pub fn initialised(&self) -> bool {
        self.workers.iter().all(|w| w.lock().ever_polled)
    }

    /// The last init error reported or observed.
    pub fn last_init_error(&self) -> Option<String> {
        self.last_init_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_init_error(&self, e: String) {
        *self
            .last_init_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    /// Invocations queued or running.
    pub fn busy(&self) -> i64 {
        self.metrics.queued.load(Ordering::Relaxed) + self.metrics.in_flight.load(Ordering::Relaxed)
    }

    /// Current worker pids.
    pub fn pids(&self) -> Vec<u32> {
        self.workers.iter().filter_map(|w| w.lock().pid).collect()
    }

    /// Stops taking new invocations.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Stops the workers (SIGTERM, then SIGKILL after the grace) and waits
    /// for them to exit.
    pub async fn stop(&self) {
        self.drain();
        let _ = self.stop_tx.send(true);
        let deadline = Instant::now() + self.cfg.kill_grace + Duration::from_secs(2);
        while self.workers.iter().any(|w| w.lock().pid.is_some()) && Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(50), self.exited.notified()).await;
        }
    }

    /// Runs one invocation: queue, deliver, wait for the answer within the
    /// deadline.
    pub async fn invoke(
        self: &Arc<Self>,
        id: String,
        event: Bytes,
        meta: InvokeMeta,
    ) -> (Result<Outcome, InvokeError>, Timing) {
        let mut timing = Timing::default();
        if self.draining.load(Ordering::Relaxed) {
            return (Err(InvokeError::Draining), timing);
        }
        let enqueued = Instant::now();
        let (started_tx, started_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let inv = Invocation {
            id: id.clone(),
            event,
            meta,
            started: Some(started_tx),
            done: done_tx,
        };
        if self.queue_tx.try_send(inv).is_err() {
            return (Err(InvokeError::QueueFull), timing);
        }
        self.metrics.queued.fetch_add(1, Ordering::Relaxed);
        let started = match tokio::time::timeout(self.cfg.queue_timeout, started_rx).await {
            Ok(Ok(s)) => s,
            // Dropped without a start: the pool shut down under it.
            Ok(Err(_)) => return (Err(InvokeError::Draining), timing),
            Err(_) => {
                timing.queue = enqueued.elapsed();
                return (Err(InvokeError::QueueTimeout), timing);
            }
        };
        timing.queue = started.delivered.duration_since(enqueued);
        timing.worker = started.worker.index;
        let mut running = Running::new(self.clone(), &started, id, done_rx);
        let result = running.outcome().await;
        timing.run = started.delivered.elapsed();
        (result, timing)
    }

    fn environment(&self, w: &Worker) -> Vec<(String, String)> {
        let spec = &self.cfg.spec;
        let mut env: Vec<(String, String)> = Vec::new();
        // The template's literal values are defaults; the shim's own
        // environment (the pod's ConfigMap and Secrets) wins over them.
        for (k, v) in &spec.env {
            if std::env::var_os(k).is_none() {
                env.push((k.clone(), v.clone()));
            }
        }
        let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
        let task_root =
            std::env::var("LAMBDA_TASK_ROOT").unwrap_or_else(|_| self.cfg.task_root.clone());
        let stream = format!(
            "{}/[$LATEST]{}",
            chrono::Utc::now().format("%Y/%m/%d"),
            uuid::Uuid::new_v4().simple()
        );
        let set =
            |env: &mut Vec<(String, String)>, k: &str, v: String| env.push((k.to_string(), v));
        set(&mut env, "AWS_LAMBDA_RUNTIME_API", w.addr.to_string());
        set(&mut env, "AWS_LAMBDA_FUNCTION_NAME", spec.name.clone());
        set(
            &mut env,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            spec.memory_mb.to_string(),
        );
        set(&mut env, "AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into());
        set(
            &mut env,
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", spec.name),
        );
        set(&mut env, "AWS_LAMBDA_LOG_STREAM_NAME", stream);
        set(
            &mut env,
            "AWS_LAMBDA_INITIALIZATION_TYPE",
            "on-demand".into(),
        );
        set(&mut env, "AWS_REGION", region.clone());
        if std::env::var_os("AWS_DEFAULT_REGION").is_none() {
            set(&mut env, "AWS_DEFAULT_REGION", region);
        }
        set(&mut env, "_HANDLER", spec.handler.clone());
        set(&mut env, "LAMBDA_TASK_ROOT", task_root.clone());
        set(&mut env, "LAMBDA_RUNTIME_DIR", task_root);
        if std::env::var_os("AWS_EXECUTION_ENV").is_none() {
            set(
                &mut env,
                "AWS_EXECUTION_ENV",
                "AWS_Lambda_provided.al2023".into(),
            );
        }
        if std::env::var_os("TZ").is_none() {
            set(&mut env, "TZ", ":UTC".into());
        }
        // Set only for concurrent workers, as Lambda Managed Instances do (a
        // classic runtime warns when it sees the variable); `supervise`
        // removes any inherited value otherwise.
        if self.cfg.concurrency > 1 {
            set(
                &mut env,
                "AWS_LAMBDA_MAX_CONCURRENCY",
                self.cfg.concurrency.to_string(),
            );
        }
        env
    }
}

/// SIGTERM, then SIGKILL after `grace`; waits for the exit.
async fn terminate(
    child: &mut tokio::process::Child,
    pid: Option<u32>,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    if let Some(pid) = pid {
        use nix::sys::signal::{kill, Signal};
        let _ = kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(s) => s,
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await
        }
    }
}

/// Keeps one worker process running: spawn, watch, restart with back-off.
async fn supervise(pool: Arc<Pool>, w: Arc<Worker>) {
    let mut stop = pool.stop_tx.subscribe();
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        if *stop.borrow() {
            break;
        }
        if !first {
            pool.metrics.restarts.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => break,
            }
        }
        first = false;
        let (program, args) = match pool.cfg.command.split_first() {
            Some(x) => x,
            None => {
                error!("no command to run", "function" => pool.name());
                return;
            }
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_remove("AWS_LAMBDA_MAX_CONCURRENCY")
            .envs(pool.environment(&w))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("cannot start {program}: {e}");
                error!("worker spawn failed", "function" => pool.name(), "worker" => w.index, "error" => msg);
                pool.set_init_error(msg);
                pool.metrics.init_failures.fetch_add(1, Ordering::Relaxed);
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let pid = child.id();
        let spawned = Instant::now();
        {
            let mut st = w.lock();
            st.pid = pid;
            st.spawned_at = Some(spawned);
            st.polled = false;
        }
        let mut retired = false;
        let status = tokio::select! {
            s = child.wait() => s,
            _ = w.kill.notified() => {
                let _ = child.start_kill();
                child.wait().await
            }
            _ = w.retire.notified() => {
                retired = true;
                terminate(&mut child, pid, pool.cfg.kill_grace).await
            }
            _ = stop.changed() => terminate(&mut child, pid, pool.cfg.kill_grace).await,
        };
        let status = status
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        let (orphans, polled) = {
            let mut st = w.lock();
            st.pid = None;
            st.stuck.clear();
            st.retiring = false;
            st.rss_checked = None;
            (std::mem::take(&mut st.inflight), st.polled)
        };
        pool.exited.notify_waiters();
        let stopping = *stop.borrow();
        for (_, inv) in orphans {
            let _ = inv
                .done
                .send(Outcome::Crash(format!("worker exited ({status})")));
        }
        if stopping {
            break;
        }
        if retired {
            // Planned: a fresh process at once, no back-off, not a crash.
            first = true;
            continue;
        }
        if !polled {
            pool.metrics.init_failures.fetch_add(1, Ordering::Relaxed);
            if pool.last_init_error().is_none() {
                pool.set_init_error(format!("worker exited before its first poll ({status})"));
            }
        }
        warn!("worker exited; restarting", "function" => pool.name(), "worker" => w.index, "status" => status,
              "ran_ms" => spawned.elapsed().as_millis() as u64, "backoff_ms" => backoff.as_millis() as u64);
        backoff = if spawned.elapsed() > Duration::from_secs(10) {
            Duration::from_millis(100)
        } else {
            (backoff * 2).min(Duration::from_secs(10))
        };
    }
}

/// Serves one worker's Runtime API.
async fn serve_runtime_api(pool: Arc<Pool>, w: Arc<Worker>, listener: TcpListener) {
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
    loop {
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
        w.lock()
            .inflight
            .insert(inv.id.clone(), Inflight { done: inv.done });
        let handed = started
            .map(|s| {
                s.send(Started {
                    worker: w.clone(),
                    deadline,
                    delivered,
                })
                .is_ok()
            })
            .unwrap_or(false);
        if !handed {
            w.lock().inflight.remove(&inv.id);
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
        put(
            h,
            "lambda-runtime-invoked-function-arn",
            &format!(
                "arn:aws:lambda:{region}:{}:function:{}",
                crate::event::ACCOUNT_ID,
                spec.name
            ),
        );
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
    if !st.inflight.is_empty()
        || st
            .rss_checked
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
    {
        return false;
    }
    st.rss_checked = Some(Instant::now());
    let Some((_, rss)) = crate::metrics::rss(st.pid) else {
        return false;
    };
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
