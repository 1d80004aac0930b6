//! Structured logs: one JSON object per line on stderr, written whole.

use std::io::Write;

use serde_json::{Map, Value};

/// Writes one JSON log line with `level`, `msg` and fields.
pub fn emit(level: &str, msg: &str, fields: &[(&str, Value)]) {
    let mut m = Map::with_capacity(fields.len() + 4);
    m.insert(
        "time".into(),
        Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
    );
    m.insert("level".into(), Value::String(level.into()));
    m.insert("source".into(), Value::String("shim".into()));
    m.insert("msg".into(), Value::String(msg.into()));
    for (k, v) in fields {
        m.insert((*k).to_string(), v.clone());
    }
    let mut line = serde_json::to_vec(&Value::Object(m)).unwrap_or_default();
    line.push(b'\n');
    // One write per line so lines from concurrent tasks never interleave.
    let _ = std::io::stderr().lock().write_all(&line);
}

/// `info` line.
#[macro_export]
macro_rules! info {
    ($msg:expr $(, $k:literal => $v:expr)* $(,)?) => {
        $crate::log::emit("info", $msg, &[$(($k, serde_json::json!($v))),*])
    };
}

/// `warn` line.
#[macro_export]
macro_rules! warn {
    ($msg:expr $(, $k:literal => $v:expr)* $(,)?) => {
        $crate::log::emit("warn", $msg, &[$(($k, serde_json::json!($v))),*])
    };
}

/// `error` line.
#[macro_export]
macro_rules! error {
    ($msg:expr $(, $k:literal => $v:expr)* $(,)?) => {
        $crate::log::emit("error", $msg, &[$(($k, serde_json::json!($v))),*])
    };
}
