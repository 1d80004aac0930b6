//! The command line: `shim pod`, `shim gateway`, `shim invoke`. Every flag
//! has a `SHIM_*` environment variable for Kubernetes manifests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::event::PayloadFormat;
use crate::pool::{InvokeError, InvokeMeta, Outcome, Pool, PoolConfig};
use crate::server::{default_trusted, Cidr, Front, Ops};
use crate::{error, info};
use sam_template::{FunctionSpec, Template};

/// Exit codes of `shim invoke` (and of the shim on a usage error).
pub mod exit {
    /// The function answered.
    pub const OK: i32 = 0;
    /// The function reported an error.
    pub const FUNCTION_ERROR: i32 = 1;
    /// The function failed to initialise, or its process died.
    pub const INIT_OR_CRASH: i32 = 2;
    /// The invocation timed out.
    pub const TIMEOUT: i32 = 3;
    /// The shim was started wrongly (bad flags, unknown function, no binary).
    pub const USAGE: i32 = 64;
}

/// The shim.
#[derive(Debug, Parser)]
#[command(
    name = "shim",
    version,
    about = "Lambda functions as HTTP pods, a local API gateway, and one-shot invocations"
)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub mode: Mode,
}

/// The modes.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Serve one function over HTTP (a pod's entrypoint).
    Pod(PodArgs),
    /// Serve every HTTP function in the template on one port.
    Gateway(GatewayArgs),
    /// Deliver one event to a function, print its answer, exit with its status.
    Invoke(InvokeArgs),
    /// Serve error pages for a proxy: `GET /_edge/<status>` answers that
    /// status with the JSON error shape (the proxy's errors middleware).
    Errors(ErrorsArgs),
}

/// Options every mode shares.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// The SAM template: functions, routes, schedules, timeouts.
    #[arg(long, env = "SHIM_TEMPLATE", default_value = "template.yaml")]
    pub template: PathBuf,
    /// Where function binaries are found (default: next to the shim, then
    /// target/release and target/debug).
    #[arg(long, env = "SHIM_BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// Per-invocation timeout in seconds (default: the function's Timeout).
    #[arg(long, env = "SHIM_TIMEOUT")]
    pub timeout: Option<f64>,
    /// Seconds between SIGTERM and SIGKILL when stopping a worker.
    #[arg(long, env = "SHIM_KILL_GRACE", default_value_t = 2.0)]
    pub kill_grace: f64,
    /// Worker runtime threads of the shim itself (1 = single-threaded).
    #[arg(long, env = "SHIM_THREADS", default_value_t = 1)]
    pub threads: usize,
    /// Folder of external Lambda extensions, started with every worker
    /// (default: /opt/extensions when it exists, as on Lambda).
    #[arg(long, env = "SHIM_EXTENSIONS_DIR")]
    pub extensions_dir: Option<PathBuf>,
}

/// Options of the serving modes.
#[derive(Debug, Args, Clone)]
pub struct Serve {
    /// Worker processes per function.
    #[arg(long, env = "SHIM_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// Concurrent invocations per worker process, given to it as
    /// AWS_LAMBDA_MAX_CONCURRENCY (default: the template's value, else 1).
    #[arg(long, env = "SHIM_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Invocations that may wait for a worker; beyond it requests get 503.
    #[arg(long = "queue", env = "SHIM_QUEUE_SIZE", default_value_t = 128)]
    pub queue_size: usize,
    /// Longest wait for a worker, in seconds (default: the timeout).
    #[arg(long, env = "SHIM_QUEUE_TIMEOUT")]
    pub queue_timeout: Option<f64>,
    /// Event shape sent to the function.
    #[arg(long, env = "SHIM_PAYLOAD", value_enum, default_value = "v2")]
    pub payload: PayloadFormat,
    /// Proxies whose X-Forwarded-For is believed (comma-separated CIDRs,
    /// `none` for no proxy; default: loopback and private ranges).
    #[arg(long, env = "SHIM_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// Seconds to keep serving after SIGTERM while readiness already fails.
    #[arg(long, env = "SHIM_DRAIN_DELAY", default_value_t = 2.0)]
    pub drain_delay: f64,
    /// Replace a worker, between invocations, once its resident memory is
    /// over this many MiB (default: the function's MemorySize; 0 = never).
    #[arg(long, env = "SHIM_RECYCLE_RSS_MB")]
    pub recycle_rss_mb: Option<u64>,
}

/// `shim pod`.
#[derive(Debug, Args)]
pub struct PodArgs {
    /// The function (its binary name or logical id in the template).
    #[arg(long, env = "SHIM_FUNCTION")]
    pub function: String,
    /// Address to serve the function's routes on (and nothing else).
    #[arg(long, env = "SHIM_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Address of the admin listener: probes, metrics and (with
    /// --invoke-api) the emulator's invoke path. Keep it out of every
    /// Service the proxy routes to.
    #[arg(long, env = "SHIM_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Serve the Runtime Interface Emulator's invoke path
    /// (`POST /2015-03-31/functions/NAME/invocations`) on the admin listener.
    #[arg(long, env = "SHIM_INVOKE_API")]
    pub invoke_api: bool,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub serve: Serve,
    /// The program to run as the function instead of its binary.
    #[arg(last = true)]
    pub command: Vec<String>,
}

/// `shim gateway`.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Address to serve HTTP on.
    #[arg(long, env = "SHIM_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// A separate admin listener for probes, metrics and the emulator's
    /// invoke path (default: they share the HTTP port, for local use).
    #[arg(long, env = "SHIM_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub serve: Serve,
}

/// `shim errors`.
#[derive(Debug, Args)]
pub struct ErrorsArgs {
    /// Address to serve the error pages on.
    #[arg(long, env = "SHIM_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Address of the admin listener (probes, metrics).
    #[arg(long, env = "SHIM_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,
    /// Seconds to keep serving after SIGTERM while readiness already fails.
    #[arg(long, env = "SHIM_DRAIN_DELAY", default_value_t = 2.0)]
    pub drain_delay: f64,
}

fn errors(a: ErrorsArgs) -> i32 {
    let listen = Listen {
        public: a.listen,
        admin: Some(a.admin_listen),
        ops: Ops {
            on_public_port: false,
            invoke_api: false,
            error_pages: true,
        },
    };
    let run = Run {
        threads: 1,
        payload: PayloadFormat::V2,
        drain_delay: a.drain_delay,
    };
    serve(Vec::new(), listen, run, Vec::new())
}

/// `shim invoke`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["scheduled", "event"])))]
pub struct InvokeArgs {
    /// The function (its binary name or logical id in the template).
    #[arg(long, env = "SHIM_FUNCTION")]
    pub function: String,
    /// Send an EventBridge "Scheduled Event".
    #[arg(long)]
    pub scheduled: bool,
    /// The scheduled time (RFC 3339; default: now, truncated to the minute —
    /// when a CronJob starts the pod).
    #[arg(long, requires = "scheduled")]
    pub time: Option<String>,
    /// Send this JSON file (`-` for standard input).
    #[arg(long)]
    pub event: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
    /// The program to run as the function instead of its binary.
    #[arg(last = true)]
    pub command: Vec<String>,
}

fn usage(msg: &str) -> i32 {
    error!("cannot start", "error" => msg);
    eprintln!("shim: {msg}");
    exit::USAGE
}

/// Finds a function's binary: `<dir>/<name>`, `<dir>/<name>/bootstrap`.
pub fn find_binary(name: &str, bin_dir: Option<&Path>) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = bin_dir {
        dirs.push(d.to_path_buf());
    } else {
        if let Some(d) = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        {
            dirs.push(d);
        }
        dirs.push(PathBuf::from("target/release"));
        dirs.push(PathBuf::from("target/debug"));
    }
    dirs.iter()
        .flat_map(|d| [d.join(name), d.join(name).join("bootstrap")])
        .find(|p| p.is_file())
}

fn spec_for(name: &str, common: &Common, has_command: bool) -> Result<FunctionSpec, String> {
    match Template::load(&common.template) {
        Ok(t) => match t.function(name) {
            Some(f) => Ok(f.clone()),
            None if has_command => Ok(FunctionSpec::ad_hoc(name)),
            None => Err(format!(
                "no function {name:?} in {}",
                common.template.display()
            )),
        },
        Err(_) if has_command => Ok(FunctionSpec::ad_hoc(name)),
        Err(e) => Err(e),
    }
}

fn pool_config(
    spec: FunctionSpec,
    command: Vec<String>,
    common: &Common,
    serve: Option<&Serve>,
) -> Result<PoolConfig, String> {
    let cwd = std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_else(|_| ".".into());
    let (command, task_root) = if command.is_empty() {
        let bin = find_binary(&spec.name, common.bin_dir.as_deref()).ok_or_else(|| {
            format!(
                "no binary for function {:?} (build it, or set --bin-dir)",
                spec.name
            )
        })?;
        let root = bin
            .canonicalize()
            .ok()
            .and_then(|b| b.parent().map(|p| p.display().to_string()))
            .unwrap_or(cwd);
        (vec![bin.display().to_string()], root)
    } else {
        // A program given on the command line runs from here, as Lambda runs
        // code from /var/task.
        (command, cwd)
    };
    let timeout = Duration::from_secs_f64(
        common
            .timeout
            .unwrap_or(spec.timeout_secs as f64)
            .max(0.001),
    );
    let template_concurrency = spec
        .env_var("AWS_LAMBDA_MAX_CONCURRENCY")
        .and_then(|v| v.parse::<usize>().ok());
    let recycle_rss = serve
        .map(|s| s.recycle_rss_mb.unwrap_or(spec.memory_mb))
        .unwrap_or(0)
        * 1024
        * 1024;
    let (workers, concurrency, queue_size, queue_timeout) = match serve {
        Some(s) => (
            s.workers.max(1),
            s.concurrency.or(template_concurrency).unwrap_or(1).max(1),
            s.queue_size,
            s.queue_timeout
                .map(Duration::from_secs_f64)
                .unwrap_or(timeout),
        ),
        None => (1, 1, 1, timeout + Duration::from_secs(60)),
    };
    let extensions = match &common.extensions_dir {
        Some(dir) => crate::extensions::discover(dir)
            .map_err(|e| format!("cannot read the extensions folder {}: {e}", dir.display()))?,
        None => crate::extensions::discover(Path::new("/opt/extensions")).unwrap_or_default(),
    };
    Ok(PoolConfig {
        spec,
        command,
        extensions,
        workers,
        concurrency,
        queue_size,
        timeout,
        queue_timeout,
        kill_grace: Duration::from_secs_f64(common.kill_grace.max(0.0)),
        recycle_rss,
        task_root,
    })
}

fn trusted(serve: &Serve) -> Result<Vec<Cidr>, String> {
    match serve.trusted_proxies.as_deref().map(str::trim) {
        None | Some("") => Ok(default_trusted()),
        Some("none") => Ok(Vec::new()),
        Some(list) => list.split(',').map(|s| s.trim().parse()).collect(),
    }
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    let mut b = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    b.enable_all().build().expect("tokio runtime")
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received"),
        _ = int.recv() => info!("SIGINT received"),
    }
}

/// Runs the shim; returns the process exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.mode {
        Mode::Pod(a) => {
            let spec = match spec_for(&a.function, &a.common, !a.command.is_empty()) {
                Ok(s) => s,
                Err(e) => return usage(&e),
            };
            let cfg = match pool_config(spec, a.command, &a.common, Some(&a.serve)) {
                Ok(c) => c,
                Err(e) => return usage(&e),
            };
            let trusted = match trusted(&a.serve) {
                Ok(t) => t,
                Err(e) => return usage(&e),
            };
            let ops = Ops {
                on_public_port: false,
                invoke_api: a.invoke_api,
                error_pages: false,
            };
            let listen = Listen {
                public: a.listen,
                admin: Some(a.admin_listen),
                ops,
            };
            serve(vec![cfg], listen, Run::of(&a.common, &a.serve), trusted)
        }
        Mode::Gateway(a) => {
            let template = match Template::load(&a.common.template) {
                Ok(t) => t,
                Err(e) => return usage(&e),
            };
            let mut cfgs = Vec::new();
            for spec in template
                .functions
                .into_iter()
                .filter(|f| !f.routes.is_empty())
            {
                match pool_config(spec, Vec::new(), &a.common, Some(&a.serve)) {
                    Ok(c) => cfgs.push(c),
                    Err(e) => return usage(&e),
                }
            }
            if cfgs.is_empty() {
                return usage("the template has no HTTP functions");
            }
            let trusted = match trusted(&a.serve) {
                Ok(t) => t,
                Err(e) => return usage(&e),
            };
            let listen = Listen {
                public: a.listen,
                admin: a.admin_listen,
                ops: Ops {
                    on_public_port: a.admin_listen.is_none(),
                    invoke_api: true,
                    error_pages: false,
                },
            };
            serve(cfgs, listen, Run::of(&a.common, &a.serve), trusted)
        }
        Mode::Invoke(a) => invoke(a),
        Mode::Errors(a) => errors(a),
    }
}

/// The listeners of a serving mode.
struct Listen {
    public: SocketAddr,
    admin: Option<SocketAddr>,
    ops: Ops,
}

/// How a serving mode runs: the shim's threads, the event shape, the drain.
struct Run {
    threads: usize,
    payload: PayloadFormat,
    drain_delay: f64,
}

impl Run {
    fn of(common: &Common, s: &Serve) -> Self {
        Self {
            threads: common.threads,
            payload: s.payload,
            drain_delay: s.drain_delay,
        }
    }
}

/// Serves `cfgs` (none: error pages only) on the listeners until SIGTERM.
fn serve(cfgs: Vec<PoolConfig>, listen: Listen, run: Run, trusted: Vec<Cidr>) -> i32 {
    let rt = runtime(run.threads);
    let payload = run.payload;
    let drain_delay = Duration::from_secs_f64(run.drain_delay.max(0.0));
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen.public).await {
            Ok(l) => l,
            Err(e) => return usage(&format!("cannot listen on {}: {e}", listen.public)),
        };
        let admin = match listen.admin {
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => Some(l),
                Err(e) => return usage(&format!("cannot listen on {addr}: {e}")),
            },
            None => None,
        };
        let mut pools = Vec::new();
        for c in cfgs {
            let (name, workers, concurrency) = (c.spec.name.clone(), c.workers, c.concurrency);
            match Pool::start(c).await {
                Ok(p) => {
                    info!("function started", "function" => name, "workers" => workers, "concurrency" => concurrency);
                    pools.push(p);
                }
                Err(e) => return usage(&format!("cannot start {name}: {e}")),
            }
        }
        let front = Arc::new(Front::new(pools, payload, trusted, listen.ops));
        info!("listening", "addr" => listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
              "admin" => admin.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.to_string()).unwrap_or_default(),
              "routes" => front.router.len());
        front.serve(listener, admin, shutdown_signal(), drain_delay).await;
        exit::OK
    })
}

/// The EventBridge "Scheduled Event" for `function` at `time`.
pub fn scheduled_event(
    function: &str,
    rule: &str,
    time: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    let region = std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into());
    serde_json::json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": crate::event::ACCOUNT_ID,
        "time": time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": region,
        "resources": [format!("arn:aws:events:{region}:{}:rule/{function}-{rule}", crate::event::ACCOUNT_ID)],
        "detail": {}
    })
}

fn invoke(a: InvokeArgs) -> i32 {
    let spec = match spec_for(&a.function, &a.common, !a.command.is_empty()) {
        Ok(s) => s,
        Err(e) => return usage(&e),
    };
    let event: Vec<u8> = if a.scheduled {
        let time = match &a.time {
            Some(t) => match chrono::DateTime::parse_from_rfc3339(t) {
                Ok(t) => t.with_timezone(&chrono::Utc),
                Err(e) => return usage(&format!("--time {t:?}: {e}")),
            },
            None => {
                use chrono::{DurationRound, TimeDelta};
                chrono::Utc::now()
                    .duration_trunc(TimeDelta::minutes(1))
                    .unwrap_or_else(|_| chrono::Utc::now())
            }
        };
        let rule = spec
            .schedules
            .first()
            .map(|s| s.name.clone())
            .unwrap_or_else(|| "schedule".into());
        scheduled_event(&spec.name, &rule, time)
            .to_string()
            .into_bytes()
    } else {
        let path = a.event.clone().unwrap_or_default();
        let read = if path.as_os_str() == "-" {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut v).map(|_| v)
        } else {
            std::fs::read(&path)
        };
        match read {
            Ok(v) if serde_json::from_slice::<serde_json::Value>(&v).is_ok() => v,
            Ok(_) => return usage(&format!("{} is not JSON", path.display())),
            Err(e) => return usage(&format!("reading {}: {e}", path.display())),
        }
    };
    let cfg = match pool_config(spec, a.command, &a.common, None) {
        Ok(c) => c,
        Err(e) => return usage(&e),
    };
    let rt = runtime(a.common.threads);
    rt.block_on(async move {
        let name = cfg.spec.name.clone();
        let pool = match Pool::start(cfg).await {
            Ok(p) => p,
            Err(e) => return usage(&format!("cannot start {name}: {e}")),
        };
        let id = uuid::Uuid::new_v4().to_string();
        let call = pool.invoke(id.clone(), event.into(), InvokeMeta::default());
        tokio::pin!(call);
        let code = loop {
            tokio::select! {
                (result, timing) = &mut call => {
                    let code = match result {
                        Ok(Outcome::Response(b)) => {
                            println!("{}", String::from_utf8_lossy(&b));
                            exit::OK
                        }
                        Ok(Outcome::Stream(mut rx)) => {
                            let mut ok = true;
                            while let Some(item) = rx.recv().await {
                                match item {
                                    Ok(b) => print!("{}", String::from_utf8_lossy(&b)),
                                    Err(e) => { eprintln!("shim: {e}"); ok = false; }
                                }
                            }
                            println!();
                            if ok { exit::OK } else { exit::FUNCTION_ERROR }
                        }
                        Ok(Outcome::FunctionError { error_type, body }) => {
                            println!("{}", String::from_utf8_lossy(&body));
                            error!("function error", "function" => name, "errorType" => error_type);
                            exit::FUNCTION_ERROR
                        }
                        Ok(Outcome::Crash(m)) => {
                            error!("worker crashed", "function" => name, "error" => m);
                            exit::INIT_OR_CRASH
                        }
                        Ok(Outcome::TooLarge) => {
                            error!("response over the payload limit", "function" => name);
                            exit::FUNCTION_ERROR
                        }
                        Err(InvokeError::Timeout) => {
                            error!("invocation timed out", "function" => name, "timeout_s" => pool.cfg.timeout.as_secs_f64());
                            exit::TIMEOUT
                        }
                        Err(e) => {
                            error!("invocation failed", "function" => name, "error" => format!("{e:?}"));
                            exit::INIT_OR_CRASH
                        }
                    };
                    if let Some(r) = timing.report(&id, pool.cfg.spec.memory_mb) {
                        r.write(&[("function", name.clone().into()), ("exitCode", code.into())]);
                    }
                    break code;
                }
                _ = tokio::time::sleep(Duration::from_millis(25)) => {
                    if pool.metrics.init_failures.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                        let why = pool.last_init_error().unwrap_or_else(|| "init failed".into());
                        error!("function init failed", "function" => name, "error" => why);
                        eprintln!("shim: {name} failed to initialise: {why}");
                        break exit::INIT_OR_CRASH;
                    }
                }
            }
        };
        pool.stop().await;
        code
    })
}
