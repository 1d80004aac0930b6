//! One compatibility suite, run against every runtime interface client that
//! is not ours: Python's awslambdaric and Node's aws-lambda-ric (a native
//! addon built from the npm package by scripts/nodetools.sh). The same
//! function (tests/clients/app.py, app.js) under `shim pod` and
//! `shim invoke`: echo, query and body, binary bodies, parallel slow
//! invocations, a function error, a crash and the recovery after it, a
//! timeout, an init error, a SIGTERM drain, the invoke exit codes, and
//! Lambda's REPORT line for every invocation, in text and in JSON.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use support::*;
use testwire::proc::{free_addr, workspace_root, Proc};
use testwire::wire;

#[derive(Clone, Copy, Debug)]
enum Client {
    Python,
    Node,
}

impl Client {
    /// The function's folder (its code copied in) and the program that
    /// runs it.
    fn setup(self, dir: &Dir) -> Vec<String> {
        let src = workspace_root().join("shared/shim/tests/clients");
        match self {
            Client::Python => {
                std::fs::copy(src.join("app.py"), dir.0.join("app.py")).unwrap();
                vec![
                    python().display().to_string(),
                    "-m".into(),
                    "awslambdaric".into(),
                    "app.handler".into(),
                ]
            }
            Client::Node => {
                std::fs::copy(src.join("app.js"), dir.0.join("app.js")).unwrap();
                vec![
                    "node".into(),
                    node_ric().display().to_string(),
                    "app.handler".into(),
                ]
            }
        }
    }
}

/// Node's runtime interface client, as scripts/nodetools.sh installs it.
fn node_ric() -> PathBuf {
    let root = std::env::var_os("HONEYDUE_NODE_RIC")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".local/node-ric"));
    let entry = root.join("node_modules/aws-lambda-ric/bin/index.mjs");
    let addon = root.join("node_modules/aws-lambda-ric/dist/rapid-client.node");
    assert!(
        entry.is_file() && addon.is_file(),
        "Node's aws-lambda-ric is needed at {}: run `make test` (scripts/nodetools.sh builds it)",
        root.display()
    );
    entry
}

/// The text REPORT lines of a log.
fn reports(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.starts_with("REPORT RequestId: "))
        .map(str::to_string)
        .collect()
}

/// Checks one text REPORT line field by field, in Lambda's order.
fn check_report(line: &str, request_id: &str, memory_mb: u32) {
    let fields: Vec<&str> = line.trim_end_matches('\t').split('\t').collect();
    assert_eq!(
        fields[0],
        format!("REPORT RequestId: {request_id}"),
        "{line}"
    );
    let ms = |f: &str, label: &str| -> f64 {
        let v = f
            .strip_prefix(label)
            .and_then(|v| v.strip_suffix(" ms"))
            .unwrap_or_else(|| panic!("{label} in {line:?}"));
        assert!(
            !label.starts_with("Billed") || !v.contains('.'),
            "billed in whole ms: {line}"
        );
        if label.starts_with("Duration") || label.starts_with("Init") {
            assert_eq!(
                v.split('.').nth(1).map(str::len),
                Some(2),
                "two decimals: {line}"
            );
        }
        v.parse().unwrap()
    };
    let duration = ms(fields[1], "Duration: ");
    let billed = ms(fields[2], "Billed Duration: ");
    assert_eq!(fields[3], format!("Memory Size: {memory_mb} MB"), "{line}");
    let used: u64 = fields[4]
        .strip_prefix("Max Memory Used: ")
        .and_then(|v| v.strip_suffix(" MB"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Max Memory Used in {line:?}"));
    assert!(used > 0, "a process's peak memory is not 0 MB: {line}");
    let init = fields
        .iter()
        .find(|f| f.starts_with("Init Duration: "))
        .map(|f| ms(f, "Init Duration: "));
    assert!(
        billed >= (duration + init.unwrap_or(0.0)).floor()
            && billed <= duration + init.unwrap_or(0.0) + 1.0,
        "billed = duration + init, rounded up: {line}"
    );
}

fn pod(client: Client, dir: &Dir, log: &std::path::Path) -> Proc {
    let program = client.setup(dir);
    let addr = free_addr();
    let mut cmd = shim();
    cmd.current_dir(&dir.0)
        .args(["pod", "--function", "client-echo", "--listen"])
        .arg(addr.to_string())
        .args([
            "--drain-delay",
            "0",
            "--workers",
            "2",
            "--timeout",
            "2",
            "--",
        ])
        .args(&program);
    Proc::spawn_pod_logged(cmd, addr, log).ready()
}

fn suite(client: Client) {
    let dir = Dir::new(&format!("{client:?}").to_lowercase());
    let log = dir.0.join("shim.log");
    let mut p = pod(client, &dir, &log);
    let mut ids = Vec::new();

    // Echo, query, cookies, the context.
    let r = wire::get(p.addr, "/echo?q=1&word=two");
    assert_eq!(r.status, 200, "{client:?}: {}", r.text());
    let j = r.json();
    assert_eq!(j["path"], "/echo");
    assert_eq!(j["query"]["q"], "1");
    assert_eq!(j["query"]["word"], "two");
    assert_eq!(j["request_id"], r.header("x-request-id").unwrap());
    assert_eq!(j["function"], "client-echo");
    assert_eq!(j["memory"], "128");
    assert!(j["remaining_ms"].as_u64().unwrap() > 0);
    assert!(j["arn"]
        .as_str()
        .unwrap()
        .ends_with(":function:client-echo"));
    assert_eq!(r.headers_named("set-cookie"), vec!["client=1"]);
    ids.push(j["request_id"].as_str().unwrap().to_string());

    // A text body, and a binary one (base64 in the event, both ways).
    let r = wire::request(
        p.addr,
        "POST",
        "/echo",
        &[("content-type", "text/plain")],
        b"hello body",
    )
    .unwrap();
    assert_eq!(r.json()["body"], "hello body", "{client:?}");
    let bytes: Vec<u8> = (0..=255u8).collect();
    let r = wire::request(
        p.addr,
        "POST",
        "/echo",
        &[("content-type", "application/octet-stream")],
        &bytes,
    )
    .unwrap();
    use base64::Engine;
    assert_eq!(
        r.json()["body_b64"],
        base64::engine::general_purpose::STANDARD.encode(&bytes),
        "{client:?}"
    );
    let r = wire::get(p.addr, "/binary");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, vec![0, 1, 2, 255, 254], "{client:?}");

    // Slow invocations in parallel, on both workers, all answered.
    let addr = p.addr;
    let slow = in_parallel(4, move |_| wire::get(addr, "/sleep/300"));
    let mut slow_ids: Vec<String> = slow
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{client:?}: {}", r.text());
            r.json()["request_id"].as_str().unwrap().to_string()
        })
        .collect();
    slow_ids.sort();
    slow_ids.dedup();
    assert_eq!(slow_ids.len(), 4);

    // A function error, a crash and a timeout: each fails only itself.
    let r = wire::get(p.addr, "/fail");
    assert_eq!(r.status, 502, "{client:?}");
    assert_eq!(r.json()["error"]["code"], "shim_function_error");
    let failed_id = r.header("x-request-id").unwrap().to_string();
    let r = wire::get(p.addr, "/crash");
    assert_eq!(r.status, 502, "{client:?}: {}", r.text());
    assert_eq!(
        wire::get(p.addr, "/echo").status,
        200,
        "recovered after a crash"
    );
    let r = wire::get(p.addr, "/hang");
    assert_eq!(r.status, 504, "{client:?}: {}", r.text());
    let hung_id = r.header("x-request-id").unwrap().to_string();
    wait_until("a replaced worker", || {
        wire::get(p.addr, "/echo").status == 200
    });

    // SIGTERM while an invocation runs: it is answered, then the pod exits 0.
    let addr = p.addr;
    let inflight = std::thread::spawn(move || wire::get(addr, "/sleep/600"));
    wait_until("the slow invocation in flight", || {
        p.metric("shim_in_flight{") >= 1.0
    });
    p.signal("TERM");
    let r = inflight.join().unwrap();
    assert_eq!(r.status, 200, "{client:?}: drained, not dropped");
    assert!(p.wait_exit(Duration::from_secs(15)).success());

    // One REPORT line per invocation that reached a worker, in Lambda's
    // text format; the first of each worker process carries its init.
    let text = std::fs::read_to_string(&log).unwrap();
    let lines = reports(&text);
    for id in ids.iter().chain(&slow_ids).chain([&failed_id, &hung_id]) {
        let line = lines
            .iter()
            .find(|l| l.contains(id.as_str()))
            .unwrap_or_else(|| panic!("{client:?}: no REPORT for {id} in\n{text}"));
        check_report(line, id, 128);
    }
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("\tInit Duration: "))
            .count()
            >= 2,
        "{client:?}: each new worker process reports its init once:\n{}",
        lines.join("\n")
    );
    let failed = lines.iter().find(|l| l.contains(&failed_id)).unwrap();
    assert!(failed.contains("\tStatus: failure\t"), "{failed}");
    let hung = lines.iter().find(|l| l.contains(&hung_id)).unwrap();
    assert!(
        hung.contains("\tStatus: timeout\tError Type: Sandbox.Timedout\t"),
        "{hung}"
    );
}

/// `shim invoke` with the client: its exit codes, and the REPORT line as
/// Lambda's JSON `platform.report` record.
fn invoke_suite(client: Client) {
    let dir = Dir::new(&format!("{client:?}-invoke").to_lowercase());
    let program = client.setup(&dir);
    let run = |event: &str, extra: &[&str], env: &[(&str, &str)]| {
        let ev = dir.write("event.json", event);
        let mut cmd = shim();
        cmd.current_dir(&dir.0)
            .args(["invoke", "--function", "client-echo", "--event"])
            .arg(&ev)
            .args(extra)
            .arg("--")
            .args(&program)
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON");
        outcome(cmd, env)
    };
    let (code, out, err) = run(r#"{"hello": "cron"}"#, &[], &[]);
    assert_eq!(code, 0, "{client:?}: {err}");
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).unwrap()["event"]["hello"],
        "cron"
    );
    let report: Value = err
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "platform.report")
        .unwrap_or_else(|| panic!("{client:?}: no platform.report in {err}"));
    let rec = &report["record"];
    assert_eq!(rec["status"], "success");
    assert!(rec["requestId"].as_str().unwrap().len() == 36);
    let m = &rec["metrics"];
    assert_eq!(m["memorySizeMB"], 128);
    assert!(m["durationMs"].as_f64().unwrap() >= 0.0);
    assert!(m["initDurationMs"].as_f64().unwrap() > 0.0, "{report}");
    assert!(m["maxMemoryUsedMB"].as_u64().unwrap() > 0, "{report}");
    let billed = m["billedDurationMs"].as_u64().unwrap() as f64;
    let sum = m["durationMs"].as_f64().unwrap() + m["initDurationMs"].as_f64().unwrap();
    assert!(billed >= sum.floor() && billed <= sum + 1.0, "{report}");

    let (code, out, _) = run(r#"{"fail": true}"#, &[], &[]);
    assert_eq!(code, 1, "{client:?}: a function error");
    assert!(out.contains("failed on purpose"), "{out}");

    let (code, _, err) = run(r#"{"sleep_ms": 5000}"#, &["--timeout", "0.5"], &[]);
    assert_eq!(code, 3, "{client:?}: a timeout: {err}");
    assert!(err.contains(r#""status":"timeout""#), "{err}");

    let (code, _, err) = run("{}", &[], &[("CLIENT_FAIL_INIT", "1")]);
    assert_eq!(code, 2, "{client:?}: an init error: {err}");
    assert!(
        err.contains("CLIENT_FAIL_INIT is set"),
        "the init error is reported: {err}"
    );
}

#[test]
fn python_awslambdaric_passes_the_suite_under_shim_pod() {
    suite(Client::Python);
}

#[test]
fn python_awslambdaric_passes_the_suite_under_shim_invoke() {
    invoke_suite(Client::Python);
}

#[test]
fn node_aws_lambda_ric_passes_the_suite_under_shim_pod() {
    suite(Client::Node);
}

#[test]
fn node_aws_lambda_ric_passes_the_suite_under_shim_invoke() {
    invoke_suite(Client::Node);
}
