//! One function's workers: the processes, the Runtime API each of them
//! polls, the bounded queue of invocations waiting for them, deadlines,
//! crashes and restarts.
//!
//! Every worker process gets its own Runtime API port (served by
//! [`crate::runtime_api`]), so the shim always knows which process holds
//! which invocation: a crash fails exactly the invocations of the process
//! that died, and a timeout can kill exactly the wedged process.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::extensions::Reason;
use crate::metrics::Metrics;
use crate::{error, warn};
use sam_template::FunctionSpec;

/// Lambda's limit on a request or response payload (6 MB).
pub const PAYLOAD_LIMIT: usize = 6 * 1024 * 1024;

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
    /// External extensions started with every worker process (see
    /// [`crate::extensions`]).
    pub extensions: Vec<std::path::PathBuf>,
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
#[derive(Debug, Clone, Default)]
pub struct Timing {
    /// Waiting for a worker.
    pub queue: Duration,
    /// From delivery to answer.
    pub run: Duration,
    /// The worker that ran it.
    pub worker: usize,
    /// What Lambda's REPORT says of it, if a worker ran it.
    pub ran: Option<Ran>,
}

/// What Lambda's REPORT line says of an invocation a worker ran, from the
/// runtime's side (an answer the caller's gateway cannot use is still a
/// success here, as on Lambda).
#[derive(Debug, Clone)]
pub struct Ran {
    /// The worker's init, when this was its first invocation.
    pub init: Option<Duration>,
    /// The worker's peak resident memory in MB (see [`crate::report`]).
    pub max_memory_mb: u64,
    /// How it ended.
    pub status: crate::report::Status,
    /// Why it did not succeed (`Runtime.ExitError`, the function's own
    /// error type...).
    pub error_type: Option<String>,
}

impl Timing {
    /// The REPORT line of `request_id`, if a worker ran it.
    pub fn report<'a>(
        &'a self,
        request_id: &'a str,
        memory_mb: u64,
    ) -> Option<crate::report::Report<'a>> {
        let ran = self.ran.as_ref()?;
        Some(crate::report::Report {
            request_id,
            duration: self.run,
            init: ran.init,
            memory_mb,
            max_memory_mb: ran.max_memory_mb,
            status: ran.status,
            error_type: ran.error_type.as_deref(),
        })
    }
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

pub(crate) struct Invocation {
    pub(crate) id: String,
    pub(crate) event: Bytes,
    pub(crate) meta: InvokeMeta,
    pub(crate) started: Option<oneshot::Sender<Started>>,
    pub(crate) done: oneshot::Sender<Outcome>,
}

pub(crate) struct Started {
    pub(crate) worker: Arc<Worker>,
    pub(crate) deadline: Instant,
    pub(crate) delivered: Instant,
    /// The worker's init, if this is its first invocation.
    pub(crate) init: Option<Duration>,
}

pub(crate) struct Inflight {
    pub(crate) done: oneshot::Sender<Outcome>,
}

#[derive(Default)]
pub(crate) struct WorkerState {
    pub(crate) pid: Option<u32>,
    pub(crate) pollers: usize,
    /// Polled since the last spawn (else its exit is an init failure).
    pub(crate) polled: bool,
    /// Polled at least once, ever.
    pub(crate) ever_polled: bool,
    pub(crate) spawned_at: Option<Instant>,
    pub(crate) inflight: HashMap<String, Inflight>,
    /// Invocations that timed out while this process held them.
    pub(crate) stuck: HashSet<String>,
    /// Being replaced for its memory: it gets no more work.
    pub(crate) retiring: bool,
    /// Its init time, until its first invocation reports it.
    pub(crate) init_took: Option<Duration>,
    /// Its peak and current resident memory (bytes), and when they were
    /// read (see [`WorkerState::memory`]).
    pub(crate) peak_rss: u64,
    pub(crate) rss: u64,
    pub(crate) mem_read: Option<Instant>,
}

impl WorkerState {
    /// The process's peak and current resident memory in bytes, read from
    /// /proc at most once a second: one sample serves both the REPORT
    /// line's Max Memory Used and the memory bound (either may lag by that
    /// second).
    pub(crate) fn memory(&mut self) -> (u64, u64) {
        let fresh = self
            .mem_read
            .is_some_and(|t| t.elapsed() < Duration::from_secs(1));
        if let (false, Some(pid)) = (fresh, self.pid) {
            if let Some((peak, rss)) = crate::metrics::rss(Some(pid)) {
                self.peak_rss = self.peak_rss.max(peak);
                self.rss = rss;
            }
            self.mem_read = Some(Instant::now());
        }
        (self.peak_rss, self.rss)
    }
}

/// One worker slot: a process (restarted as needed) and its Runtime API.
pub struct Worker {
    pub(crate) index: usize,
    pub(crate) addr: SocketAddr,
    pub(crate) concurrency: usize,
    pub(crate) st: Mutex<WorkerState>,
    pub(crate) kill: Notify,
    pub(crate) retire: Notify,
    /// The extensions of its current environment.
    pub(crate) extensions: crate::extensions::Extensions,
}

impl Worker {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, WorkerState> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `id` timed out; kills the process if it can no longer serve.
    /// `false` if the invocation had already been answered.
    pub(crate) fn time_out(&self, id: &str) -> bool {
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
pub(crate) struct Running {
    pub(crate) pool: Arc<Pool>,
    pub(crate) worker: Arc<Worker>,
    pub(crate) id: String,
    pub(crate) deadline: Instant,
    pub(crate) done: Option<oneshot::Receiver<Outcome>>,
}

impl Running {
    pub(crate) fn new(
        pool: Arc<Pool>,
        s: &Started,
        id: String,
        done: oneshot::Receiver<Outcome>,
    ) -> Self {
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
    pub(crate) async fn outcome(&mut self) -> Result<Outcome, InvokeError> {
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
    pub(crate) queue_tx: mpsc::Sender<Invocation>,
    pub(crate) queue_rx: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    pub(crate) workers: Vec<Arc<Worker>>,
    pub(crate) draining: AtomicBool,
    pub(crate) stop_tx: watch::Sender<bool>,
    /// The last init error a worker reported (or the reason it died before
    /// polling).
    pub(crate) last_init_error: Mutex<Option<String>>,
    pub(crate) exited: Notify,
}

pub(crate) fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
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
                extensions: Default::default(),
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
            tokio::spawn(crate::runtime_api::serve_runtime_api(
                pool.clone(),
                w.clone(),
                l,
            ));
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

    pub(crate) fn set_init_error(&self, e: String) {
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
        use crate::report::Status;
        let (status, error_type) = match &result {
            Ok(Outcome::Response(_) | Outcome::Stream(_)) => (Status::Success, None),
            Ok(Outcome::FunctionError { error_type, .. }) => {
                (Status::Failure, Some(error_type.clone()))
            }
            Ok(Outcome::Crash(_)) => (Status::Error, Some("Runtime.ExitError".into())),
            Ok(Outcome::TooLarge) => (Status::Error, Some("Function.ResponseSizeTooLarge".into())),
            Err(InvokeError::Timeout) => (Status::Timeout, Some("Sandbox.Timedout".into())),
            Err(_) => (Status::Error, None),
        };
        timing.ran = Some(Ran {
            init: started.init,
            max_memory_mb: started.worker.lock().memory().0 / 1_048_576,
            status,
            error_type,
        });
        (result, timing)
    }

    pub(crate) fn environment(&self, w: &Worker) -> Vec<(String, String)> {
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

/// Where a worker's (or an extension's) stdout goes: the shim's stderr, with
/// its logs, as Lambda sends both streams to the function's log; the shim's
/// own stdout carries only what `shim invoke` prints (the answer).
pub(crate) fn log_output() -> std::process::Stdio {
    use std::os::fd::AsFd;
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => std::process::Stdio::from(fd),
        Err(_) => std::process::Stdio::inherit(),
    }
}

/// Records a failed init (no process to wait for).
fn init_failed(pool: &Pool, w: &Worker, msg: String) {
    error!("worker init failed", "function" => pool.name(), "worker" => w.index, "error" => msg);
    pool.set_init_error(msg);
    pool.metrics.init_failures.fetch_add(1, Ordering::Relaxed);
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
        // Lambda's init order: the extensions start and register, then the
        // runtime starts.
        // One environment for the extensions and the runtime (one log
        // stream, as in a Lambda execution environment).
        let env = pool.environment(&w);
        let mut exts = match crate::extensions::Running::start(&pool.cfg.extensions, &env, &w) {
            Ok(e) => e,
            Err(msg) => {
                init_failed(&pool, &w, msg);
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let registered = tokio::select! {
            r = exts.registered(&w) => r,
            _ = stop.changed() => Err("stopping".into()),
        };
        if let Err(msg) = registered {
            if *stop.borrow() {
                break;
            }
            init_failed(&pool, &w, msg);
            exts.shut_down(&pool, &w, Reason::Failure).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
            continue;
        }
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_remove("AWS_LAMBDA_MAX_CONCURRENCY")
            .envs(env)
            .stdin(std::process::Stdio::null())
            .stdout(log_output())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                init_failed(&pool, &w, format!("cannot start {program}: {e}"));
                exts.shut_down(&pool, &w, Reason::Failure).await;
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
            st.init_took = None;
            st.peak_rss = 0;
            st.mem_read = None;
        }
        let mut retired = false;
        let mut reason = Reason::Failure;
        let status = tokio::select! {
            s = child.wait() => s,
            _ = w.kill.notified() => {
                if !w.lock().stuck.is_empty() {
                    reason = Reason::Timeout;
                }
                let _ = child.start_kill();
                child.wait().await
            }
            (name, status) = exts.exited() => {
                warn!("extension exited; resetting the environment", "function" => pool.name(),
                      "worker" => w.index, "extension" => name, "status" => status);
                let _ = child.start_kill();
                child.wait().await
            }
            _ = w.retire.notified() => {
                retired = true;
                reason = Reason::Spindown;
                // SIGTERM to the runtime and SHUTDOWN to the extensions at once.
                tokio::join!(
                    terminate(&mut child, pid, pool.cfg.kill_grace),
                    exts.shut_down(&pool, &w, reason)
                ).0
            }
            _ = stop.changed() => {
                reason = Reason::Spindown;
                tokio::join!(
                    terminate(&mut child, pid, pool.cfg.kill_grace),
                    exts.shut_down(&pool, &w, reason)
                ).0
            }
        };
        // After a crash, a kill or an extension's exit (a no-op when the
        // extensions were already told above).
        exts.shut_down(&pool, &w, reason).await;
        let status = status
            .map(|s| s.to_string())
            .unwrap_or_else(|e| e.to_string());
        let (orphans, polled) = {
            let mut st = w.lock();
            st.pid = None;
            st.stuck.clear();
            st.retiring = false;
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
