//! Prometheus metrics, kept in atomics and rendered as text on demand.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the duration histogram's buckets.
pub const BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How an invocation ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Answered by the function.
    Ok,
    /// The function reported an error.
    FunctionError,
    /// It ran past its deadline.
    Timeout,
    /// Its worker died holding it.
    Crash,
    /// The queue was full, or it waited too long in it.
    Overload,
    /// The function's answer could not be used (malformed, too large).
    BadResponse,
}

impl Kind {
    /// All kinds, for rendering.
    pub const ALL: [Kind; 6] = [
        Kind::Ok,
        Kind::FunctionError,
        Kind::Timeout,
        Kind::Crash,
        Kind::Overload,
        Kind::BadResponse,
    ];
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ok => "ok",
            Kind::FunctionError => "function_error",
            Kind::Timeout => "timeout",
            Kind::Crash => "crash",
            Kind::Overload => "overload",
            Kind::BadResponse => "bad_response",
        }
    }
}

/// One function's metrics.
#[derive(Default)]
pub struct Metrics {
    outcomes: [AtomicU64; 6],
    buckets: [AtomicU64; 15],
    duration_sum_us: AtomicU64,
    duration_count: AtomicU64,
    /// Invocations waiting in the queue.
    pub queued: AtomicI64,
    /// Invocations delivered to a worker and not yet answered.
    pub in_flight: AtomicI64,
    /// Worker processes restarted.
    pub restarts: AtomicU64,
    /// Worker processes replaced for outgrowing their memory bound.
    pub recycles: AtomicU64,
    /// Last init duration (from spawn to the first poll), microseconds.
    pub init_us: AtomicU64,
    /// Init failures (a worker that exited or reported an init error before polling).
    pub init_failures: AtomicU64,
}

impl Metrics {
    /// Counts one finished invocation.
    pub fn record(&self, kind: Kind, duration: Duration) {
        let i = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        self.outcomes[i].fetch_add(1, Ordering::Relaxed);
        let secs = duration.as_secs_f64();
        for (b, bound) in self.buckets.iter().zip(BUCKETS) {
            if secs <= bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_sum_us
            .fetch_add(duration.as_micros() as u64, Ordering::Relaxed);
        self.duration_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders this function's series.
    pub fn render(&self, function: &str, out: &mut String) {
        let l = format!("function=\"{function}\"");
        for (k, c) in Kind::ALL.iter().zip(&self.outcomes) {
            let _ = writeln!(
                out,
                "shim_invocations_total{{{l},outcome=\"{}\"}} {}",
                k.as_str(),
                c.load(Ordering::Relaxed)
            );
        }
        for (b, bound) in self.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                out,
                "shim_invocation_duration_seconds_bucket{{{l},le=\"{bound}\"}} {}",
                b.load(Ordering::Relaxed)
            );
        }
        let count = self.duration_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "shim_invocation_duration_seconds_bucket{{{l},le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "shim_invocation_duration_seconds_sum{{{l}}} {}",
            self.duration_sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "shim_invocation_duration_seconds_count{{{l}}} {count}");
        let _ = writeln!(
            out,
            "shim_queue_depth{{{l}}} {}",
            self.queued.load(Ordering::Relaxed).max(0)
        );
        let _ = writeln!(
            out,
            "shim_in_flight{{{l}}} {}",
            self.in_flight.load(Ordering::Relaxed).max(0)
        );
        let _ = writeln!(
            out,
            "shim_worker_restarts_total{{{l}}} {}",
            self.restarts.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "shim_worker_recycles_total{{{l}}} {}",
            self.recycles.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "shim_init_failures_total{{{l}}} {}",
            self.init_failures.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "shim_init_duration_seconds{{{l}}} {}",
            self.init_us.load(Ordering::Relaxed) as f64 / 1e6
        );
    }
}

/// The metric families' headers.
pub fn header(out: &mut String) {
    out.push_str(
        "# HELP shim_invocations_total Invocations by outcome.\n# TYPE shim_invocations_total counter\n\
         # HELP shim_invocation_duration_seconds Time from request to answer, queue included.\n# TYPE shim_invocation_duration_seconds histogram\n\
         # HELP shim_queue_depth Invocations waiting for a worker.\n# TYPE shim_queue_depth gauge\n\
         # HELP shim_in_flight Invocations a worker is running.\n# TYPE shim_in_flight gauge\n\
         # HELP shim_worker_restarts_total Worker processes restarted.\n# TYPE shim_worker_restarts_total counter\n\
         # HELP shim_worker_recycles_total Workers replaced, between invocations, for being over their memory bound.\n# TYPE shim_worker_recycles_total counter\n\
         # HELP shim_init_failures_total Workers that failed before their first poll.\n# TYPE shim_init_failures_total counter\n\
         # HELP shim_init_duration_seconds Last worker init time, from spawn to first poll.\n# TYPE shim_init_duration_seconds gauge\n",
    );
}

/// Peak and current resident memory of a process, from /proc, in bytes.
pub fn rss(pid: Option<u32>) -> Option<(u64, u64)> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}
