//! The REPORT line Lambda writes after every invocation, in Lambda's own
//! format: the tab-separated text line by default, the `platform.report`
//! record when the log format is JSON (`AWS_LAMBDA_LOG_FORMAT=JSON`, as the
//! pods' ConfigMap and the template's `LoggingConfig` set it).
//!
//! ```text
//! REPORT RequestId: 8f5…\tDuration: 2.31 ms\tBilled Duration: 126 ms\tMemory Size: 128 MB\tMax Memory Used: 18 MB\tInit Duration: 123.04 ms\t
//! {"time":"…","type":"platform.report","record":{"requestId":"8f5…","metrics":{"durationMs":2.31,"billedDurationMs":126,"memorySizeMB":128,"maxMemoryUsedMB":18,"initDurationMs":123.04},"status":"success"}}
//! ```
//!
//! Duration runs from the event's delivery (`/next` answered) to the
//! runtime's answer; Init Duration (from the process's start to its first
//! `/next`) appears on the first invocation of each worker process only;
//! Billed Duration is both, rounded up to the millisecond, as Lambda bills
//! runtimes on `provided.al2023`. Max Memory Used is the worker process's
//! peak resident set (`VmHWM`), sampled at most once a second per worker, so
//! it may lag the truth by that second (never a syscall per invocation).

use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Map, Value};

/// How an invocation that reached a worker ended, as Lambda's report says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The runtime answered.
    Success,
    /// The function reported an error (`/error`).
    Failure,
    /// The runtime failed (it exited, or its answer was unusable).
    Error,
    /// It ran past its deadline.
    Timeout,
}

impl Status {
    /// The `status` of a `platform.report` record.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failure => "failure",
            Status::Error => "error",
            Status::Timeout => "timeout",
        }
    }
}

/// One invocation's report.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// The invocation's request id.
    pub request_id: &'a str,
    /// From delivery to answer.
    pub duration: Duration,
    /// The worker's init, on its first invocation only.
    pub init: Option<Duration>,
    /// The function's `MemorySize`.
    pub memory_mb: u64,
    /// The worker's peak resident memory, in MB (0 if never sampled).
    pub max_memory_mb: u64,
    /// How it ended.
    pub status: Status,
    /// The error type when it did not succeed (`Runtime.ExitError`, the
    /// function's own error type...).
    pub error_type: Option<&'a str>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

impl Report<'_> {
    /// Milliseconds billed: duration plus init, rounded up.
    pub fn billed_ms(&self) -> u64 {
        let total = self.duration + self.init.unwrap_or_default();
        total.as_micros().div_ceil(1000) as u64
    }

    /// The text line (without its newline), tab-separated, ending in a tab.
    pub fn text(&self) -> String {
        let mut s = format!(
            "REPORT RequestId: {}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {} MB\t",
            self.request_id,
            ms(self.duration),
            self.billed_ms(),
            self.memory_mb,
            self.max_memory_mb,
        );
        if let Some(init) = self.init {
            s.push_str(&format!("Init Duration: {:.2} ms\t", ms(init)));
        }
        if self.status != Status::Success {
            s.push_str(&format!("Status: {}\t", self.status.as_str()));
            if let Some(t) = self.error_type {
                s.push_str(&format!("Error Type: {t}\t"));
            }
        }
        s
    }

    /// The `platform.report` event; `extra` fields (the shim's own: the
    /// function, the HTTP status, time queued) go beside `record`.
    pub fn json(&self, extra: &[(&str, Value)]) -> Value {
        let mut metrics = json!({
            "durationMs": ms(self.duration),
            "billedDurationMs": self.billed_ms(),
            "memorySizeMB": self.memory_mb,
            "maxMemoryUsedMB": self.max_memory_mb,
        });
        if let Some(init) = self.init {
            metrics["initDurationMs"] = json!(ms(init));
        }
        let mut record = json!({
            "requestId": self.request_id,
            "metrics": metrics,
            "status": self.status.as_str(),
        });
        if self.status != Status::Success {
            if let Some(t) = self.error_type {
                record["errorType"] = json!(t);
            }
        }
        let mut m = Map::with_capacity(3 + extra.len());
        m.insert(
            "time".into(),
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        m.insert("type".into(), json!("platform.report"));
        m.insert("record".into(), record);
        for (k, v) in extra {
            m.insert((*k).to_string(), v.clone());
        }
        Value::Object(m)
    }

    /// Writes the report on stderr, in the configured format, as one write.
    pub fn write(&self, extra: &[(&str, Value)]) {
        let mut line = if json_logs() {
            serde_json::to_vec(&self.json(extra)).unwrap_or_default()
        } else {
            self.text().into_bytes()
        };
        line.push(b'\n');
        let _ = std::io::stderr().lock().write_all(&line);
    }
}

/// Whether Lambda's JSON log format is configured (read once).
pub fn json_logs() -> bool {
    static JSON: OnceLock<bool> = OnceLock::new();
    *JSON.get_or_init(|| {
        std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(status: Status, init: Option<Duration>) -> Report<'static> {
        Report {
            request_id: "8f5e1c7a-0000-4000-8000-000000000001",
            duration: Duration::from_micros(2_314),
            init,
            memory_mb: 128,
            max_memory_mb: 18,
            status,
            error_type: (status != Status::Success).then_some("Runtime.ExitError"),
        }
    }

    #[test]
    fn the_text_line_is_lambdas() {
        let r = report(Status::Success, Some(Duration::from_micros(123_041)));
        assert_eq!(
            r.text(),
            "REPORT RequestId: 8f5e1c7a-0000-4000-8000-000000000001\tDuration: 2.31 ms\t\
             Billed Duration: 126 ms\tMemory Size: 128 MB\tMax Memory Used: 18 MB\t\
             Init Duration: 123.04 ms\t"
        );
        let r = report(Status::Timeout, None);
        assert_eq!(r.billed_ms(), 3);
        assert!(r
            .text()
            .ends_with("Max Memory Used: 18 MB\tStatus: timeout\tError Type: Runtime.ExitError\t"));
    }

    #[test]
    fn the_json_record_is_platform_report() {
        let r = report(Status::Success, None);
        let v = r.json(&[("function", json!("f"))]);
        assert_eq!(v["type"], "platform.report");
        assert_eq!(v["function"], "f");
        let rec = &v["record"];
        assert_eq!(rec["requestId"], r.request_id);
        assert_eq!(rec["status"], "success");
        assert_eq!(rec["metrics"]["durationMs"], 2.31);
        assert_eq!(rec["metrics"]["billedDurationMs"], 3);
        assert_eq!(rec["metrics"]["memorySizeMB"], 128);
        assert_eq!(rec["metrics"]["maxMemoryUsedMB"], 18);
        assert!(rec["metrics"].get("initDurationMs").is_none());
        assert!(rec.get("errorType").is_none());
        let f = report(Status::Failure, Some(Duration::from_millis(5))).json(&[]);
        assert_eq!(f["record"]["status"], "failure");
        assert_eq!(f["record"]["errorType"], "Runtime.ExitError");
        assert_eq!(f["record"]["metrics"]["initDurationMs"], 5.0);
        assert_eq!(f["record"]["metrics"]["billedDurationMs"], 8);
    }
}
