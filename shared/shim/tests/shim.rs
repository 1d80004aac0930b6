//! The shim binary, run as a process the way a pod, a developer or a CronJob
//! runs it, in front of real Lambda runtime clients: the fixture on the
//! official Rust runtime, the workspace's own functions, and Python's
//! awslambdaric.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use testwire::proc::workspace_root;
use testwire::wire::{self, request};

#[test]
fn translates_requests_and_responses_both_ways() {
    let dir = Dir::new("translate");
    let p = fixture_pod(&dir, &[], &[]).ready();
    let r = request(
        p.addr,
        "POST",
        "/echo/items/42/?a=1&a=2&b=x%20y",
        &[
            ("content-type", "application/json"),
            ("x-forwarded-for", "198.51.100.7"),
            ("x-multi", "one"),
            ("x-multi", "two"),
            ("cookie", "c=1; d=2"),
        ],
        br#"{"hello":"world"}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.json();
    assert_eq!(e["method"], "POST");
    assert_eq!(e["path"], "/echo/items/42/");
    assert_eq!(e["query"], "a=1&a=2&b=x%20y");
    assert_eq!(e["body"], r#"{"hello":"world"}"#);
    assert_eq!(
        e["source_ip"], "198.51.100.7",
        "X-Forwarded-For from a trusted (loopback) peer"
    );
    assert_eq!(e["headers"]["x-multi"], "one,two");
    assert_eq!(e["headers"]["cookie"], "c=1; d=2");
    assert!(r.header("x-request-id").is_some());
    assert_eq!(e["request_id"], r.header("x-request-id").unwrap());
    // The GET-only route does not take POST: the catch-all does.
    assert_eq!(e["path_params"], json!(["proxy=echo/items/42/"]));
    let r = wire::get(p.addr, "/echo/items/42/");
    assert_eq!(r.json()["path_params"], json!(["id=42"]));

    // The environment a runtime expects, and the template's literals.
    let env = &r.json()["env"];
    assert_eq!(env["AWS_LAMBDA_FUNCTION_NAME"], "lambda-fixture");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "256");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_VERSION"], "$LATEST");
    assert_eq!(env["_HANDLER"], "bootstrap");
    assert!(!env["AWS_REGION"].as_str().unwrap().is_empty());
    assert!(!env["LAMBDA_TASK_ROOT"].as_str().unwrap().is_empty());
    assert_eq!(env["FIXTURE_FROM_TEMPLATE"], "from-template");
    assert_eq!(
        env["AWS_LAMBDA_MAX_CONCURRENCY"], "",
        "one-at-a-time workers see no concurrency"
    );
    let deadline = r.json()["deadline"].as_u64().unwrap();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        deadline > now_ms && deadline <= now_ms + 5_000,
        "deadline from the template's Timeout"
    );
    assert!(r.json()["function_arn"]
        .as_str()
        .unwrap()
        .ends_with(":function:lambda-fixture"));

    // Binary in, binary out; cookies out as Set-Cookie.
    let r = request(
        p.addr,
        "POST",
        "/echo/bin",
        &[("content-type", "application/octet-stream")],
        &[0, 1, 2, 255],
    )
    .unwrap();
    assert_eq!(r.json()["body"], "binary:4");
    let r = wire::get(p.addr, "/binary");
    assert_eq!(r.header("content-type"), Some("image/png"));
    assert_eq!(r.body, vec![0x89, b'P', b'N', b'G', 0, 255]);
    let r = wire::get(p.addr, "/cookies");
    assert_eq!(
        r.headers_named("set-cookie"),
        vec!["a=1; Path=/", "b=2; Path=/"]
    );
    // The function's own 404 passes through untouched.
    let r = wire::get(p.addr, "/nowhere");
    assert_eq!(r.status, 404);
    assert!(r.header("x-shim-error").is_none());
}

#[test]
fn untrusted_peers_cannot_spoof_their_address() {
    let dir = Dir::new("spoof");
    let p = fixture_pod(&dir, &["--trusted-proxies", "none"], &[]).ready();
    let r = request(
        p.addr,
        "GET",
        "/echo/",
        &[("x-forwarded-for", "198.51.100.7")],
        b"",
    )
    .unwrap();
    assert_eq!(r.json()["source_ip"], "127.0.0.1");
}

#[test]
fn trace_ids_are_passed_on_and_never_invented() {
    let dir = Dir::new("trace");
    let p = fixture_pod(&dir, &[], &[]).ready();
    let trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1";
    let r = request(p.addr, "GET", "/echo/", &[("x-amzn-trace-id", trace)], b"").unwrap();
    assert_eq!(r.json()["env"]["_X_AMZN_TRACE_ID"], trace);
    // Without one the runtime gets none (and clears the variable), so no
    // per-request value piles up in the worker's environment.
    let r = wire::get(p.addr, "/echo/");
    assert_eq!(r.json()["env"]["_X_AMZN_TRACE_ID"], "");
}

#[test]
fn worker_processes_run_in_parallel() {
    let dir = Dir::new("workers");
    let p = fixture_pod(&dir, &["--workers", "3", "--concurrency", "1"], &[]).ready();
    wait_until("all three workers polling", || {
        p.metric("shim_resident_memory_bytes{process=\"lambda-fixture\"") > 0.0
            && wire::get(p.admin, "/_shim/metrics")
                .text()
                .matches("shim_resident_memory_bytes{process=\"lambda-fixture\"")
                .count()
                == 3
    });
    let addr = p.addr;
    let barrier = format!("w{}", rand_u32());
    let rs = in_parallel(3, move |_| {
        wire::get(addr, &format!("/barrier/{barrier}/3"))
    });
    let pids: std::collections::HashSet<u64> = rs
        .iter()
        .map(|r| r.json()["pid"].as_u64().unwrap())
        .collect();
    for r in &rs {
        assert_eq!(
            r.json()["reached"],
            true,
            "three requests must be inside at once: {}",
            r.text()
        );
    }
    assert_eq!(pids.len(), 3, "one per worker process");
}

#[test]
fn one_concurrent_worker_serves_many_at_once() {
    let dir = Dir::new("concurrent");
    let p = fixture_pod(&dir, &["--workers", "1", "--concurrency", "4"], &[]).ready();
    let addr = p.addr;
    let barrier = format!("c{}", rand_u32());
    let rs = in_parallel(4, move |_| {
        wire::get(addr, &format!("/barrier/{barrier}/4"))
    });
    for r in &rs {
        assert_eq!(r.json()["reached"], true, "{}", r.text());
    }
    let pids: std::collections::HashSet<u64> = rs
        .iter()
        .map(|r| r.json()["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids.len(), 1);
    assert_eq!(
        wire::get(addr, "/echo/").json()["env"]["AWS_LAMBDA_MAX_CONCURRENCY"],
        "4"
    );
}

#[test]
fn a_full_queue_answers_503_and_loses_nothing_queued() {
    let dir = Dir::new("overload");
    let p = fixture_pod(
        &dir,
        &["--workers", "1", "--concurrency", "1", "--queue", "1"],
        &[],
    )
    .ready();
    let addr = p.addr;
    let first = std::thread::spawn(move || wire::get(addr, "/sleep/1500"));
    wait_until("first in flight", || p.metric("shim_in_flight") == 1.0);
    let second = std::thread::spawn(move || wire::get(addr, "/sleep/1"));
    wait_until("second queued", || p.metric("shim_queue_depth") == 1.0);
    let third = wire::get(addr, "/sleep/1");
    assert_eq!(third.status, 503);
    assert_eq!(third.header("x-shim-error"), Some("overloaded"));
    assert_eq!(third.header("retry-after"), Some("1"));
    assert_eq!(third.json()["error"]["source"], "shim");
    assert_eq!(first.join().unwrap().status, 200);
    assert_eq!(second.join().unwrap().status, 200);
    assert_eq!(
        p.metric("shim_invocations_total{function=\"lambda-fixture\",outcome=\"overload\"}"),
        1.0
    );
}

#[test]
fn a_timed_out_worker_is_killed_and_replaced() {
    let dir = Dir::new("timeout");
    let p = fixture_pod(&dir, &["--timeout", "1"], &[]).ready();
    let before = wire::get(p.addr, "/echo/").json()["env"]["pid"]
        .as_u64()
        .unwrap();
    let r = wire::get(p.addr, "/hang");
    assert_eq!(r.status, 504);
    assert_eq!(r.header("x-shim-error"), Some("timeout"));
    assert_eq!(r.json()["error"]["code"], "shim_timeout");
    let r = wire::get(p.addr, "/echo/");
    assert_eq!(r.status, 200, "{}", r.text());
    let after = r.json()["env"]["pid"].as_u64().unwrap();
    assert_ne!(before, after, "the wedged process was replaced");
    assert!(p.metric("shim_worker_restarts_total") >= 1.0);
}

#[test]
fn a_late_answer_is_refused_and_a_concurrent_worker_kept() {
    let dir = Dir::new("late");
    let p = fixture_pod(&dir, &["--timeout", "1", "--concurrency", "2"], &[]).ready();
    let pid = wire::get(p.addr, "/echo/").json()["env"]["pid"]
        .as_u64()
        .unwrap();
    let r = wire::get(p.addr, "/sleep/1500");
    assert_eq!(r.status, 504);
    // The process still serves its other slot meanwhile.
    let r = wire::get(p.addr, "/echo/");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["env"]["pid"].as_u64().unwrap(),
        pid,
        "one stuck slot of two does not kill the process"
    );
    std::thread::sleep(Duration::from_millis(800));
    // The late answer reached nobody: two ok (the echoes), one timeout.
    let r = wire::get(p.addr, "/echo/");
    assert_eq!(r.status, 200);
    assert_eq!(
        p.metric("shim_invocations_total{function=\"lambda-fixture\",outcome=\"ok\"}"),
        3.0
    );
    assert_eq!(
        p.metric("shim_invocations_total{function=\"lambda-fixture\",outcome=\"timeout\"}"),
        1.0
    );
}

#[test]
fn a_panic_fails_only_its_own_invocation_in_a_concurrent_worker() {
    let dir = Dir::new("panic");
    let p = fixture_pod(&dir, &["--workers", "1", "--concurrency", "4"], &[]).ready();
    let pid = wire::get(p.addr, "/echo/").json()["env"]["pid"]
        .as_u64()
        .unwrap();
    let addr = p.addr;
    let slow = std::thread::spawn(move || wire::get(addr, "/sleep/800"));
    wait_until("slow request in flight", || {
        p.metric("shim_in_flight") == 1.0
    });
    let r = wire::get(addr, "/panic");
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("x-shim-error"), Some("function_error"));
    // The other invocation in the same process finished normally, and the
    // process is the same one: nothing was restarted.
    assert_eq!(slow.join().unwrap().status, 200);
    let after = wire::get(addr, "/echo/").json()["env"]["pid"]
        .as_u64()
        .unwrap();
    assert_eq!(after, pid, "the worker process survived the panic");
    assert_eq!(p.metric("shim_worker_restarts_total"), 0.0);
}

#[test]
fn release_builds_unwind_on_panic() {
    // The test above runs a debug build (which always unwinds); this keeps
    // the shipped profile from aborting the whole process on one panic.
    let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
    let release = manifest
        .split("[profile.release]")
        .nth(1)
        .expect("a release profile")
        .split("\n[")
        .next()
        .unwrap();
    assert!(
        !release
            .lines()
            .any(|l| l.trim_start().starts_with("panic") && l.contains("abort")),
        "[profile.release] must not set panic = \"abort\""
    );
}

#[test]
fn a_crash_fails_only_its_own_request() {
    let dir = Dir::new("crash");
    let p = fixture_pod(&dir, &["--workers", "2", "--concurrency", "1"], &[]).ready();
    wait_until("both workers up", || {
        wire::get(p.admin, "/_shim/metrics")
            .text()
            .matches("shim_resident_memory_bytes{process=\"lambda-fixture\"")
            .count()
            == 2
    });
    let (addr, admin) = (p.addr, p.admin);
    let slow = std::thread::spawn(move || wire::get(addr, "/sleep/800"));
    wait_until("slow request in flight", || {
        p.metric("shim_in_flight") == 1.0
    });
    let r = wire::get(addr, "/crash");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-shim-error"), Some("crash"));
    let slow = slow.join().unwrap();
    assert_eq!(slow.status, 200, "the other worker's request is unaffected");
    wait_until("crashed worker back", || {
        wire::get(admin, "/_shim/ready").status == 200
            && wire::get(admin, "/_shim/metrics")
                .text()
                .matches("shim_resident_memory_bytes{process=\"lambda-fixture\"")
                .count()
                == 2
    });
    let rs = in_parallel(4, move |_| wire::get(addr, "/sleep/50"));
    assert!(rs.iter().all(|r| r.status == 200));
    assert!(p.metric("shim_worker_restarts_total") >= 1.0);
}

/// Sends `GET path` without reading the answer; dropping the stream hangs
/// up.
fn send_only(addr: std::net::SocketAddr, path: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nhost: t\r\n\r\n").unwrap();
    s.flush().unwrap();
    s
}

#[test]
fn callers_that_hang_up_neither_leak_nor_wedge_a_worker() {
    let dir = Dir::new("hangup");
    let mut p = fixture_pod(&dir, &["--timeout", "3", "--concurrency", "1"], &[]).ready();
    let pid = wire::get(p.addr, "/echo/").json()["env"]["pid"]
        .as_u64()
        .unwrap();
    // A slow answer whose caller left: in flight until the worker answers,
    // then nothing is counted as running any more.
    let caller = send_only(p.addr, "/sleep/1500");
    wait_until("the slow one in flight", || {
        p.metric("shim_in_flight") == 1.0
    });
    drop(caller);
    wait_until("the slow one answered", || {
        p.metric("shim_in_flight") == 0.0
    });
    // A hung invocation whose caller left: its deadline still holds, so the
    // worker is killed and replaced, not held forever.
    let caller = send_only(p.addr, "/hang");
    wait_until("the hung one in flight", || {
        p.metric("shim_in_flight") == 1.0
    });
    drop(caller);
    wait_until("the wedged worker replaced", || {
        p.metric("shim_worker_restarts_total") >= 1.0
    });
    let r = wire::get(p.addr, "/echo/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_ne!(r.json()["env"]["pid"].as_u64().unwrap(), pid);
    assert_eq!(p.metric("shim_in_flight"), 0.0);
    // Nothing left running: SIGTERM stops the pod at once, not after the
    // longest deadline.
    p.signal("TERM");
    let status = p.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status}");
}

#[test]
fn a_worker_over_its_memory_bound_is_replaced_between_invocations() {
    recycles_a_bloated_worker("1");
}

#[test]
fn a_concurrent_worker_over_its_memory_bound_hands_back_what_it_picked_up() {
    // Its other slots are already polling when it is retired: what they
    // pick up goes back to the queue for the fresh process.
    recycles_a_bloated_worker("4");
}

fn recycles_a_bloated_worker(concurrency: &str) {
    let dir = Dir::new("recycle");
    let p = fixture_pod(
        &dir,
        &["--recycle-rss-mb", "40", "--concurrency", concurrency],
        &[],
    )
    .ready();
    let r = wire::get(p.addr, "/leak/64");
    assert_eq!(r.status, 200, "the invocation that grew it is answered");
    let bloated = r.json()["pid"].as_u64().unwrap();
    // Past the once-a-second look, the next invocation its pollers pick up
    // retires it: that request is served by a fresh process, not lost.
    std::thread::sleep(Duration::from_millis(1100));
    let r = wire::get(p.addr, "/echo/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_ne!(
        r.json()["env"]["pid"].as_u64().unwrap(),
        bloated,
        "a retired process gets no more work"
    );
    wait_until("the bloated process gone", || {
        !std::path::Path::new(&format!("/proc/{bloated}")).exists()
    });
    assert_eq!(p.metric("shim_worker_recycles_total"), 1.0);
    assert_eq!(
        p.metric("shim_worker_restarts_total"),
        0.0,
        "not counted as a crash"
    );
    // Under the bound nothing is replaced.
    let r = wire::get(p.addr, "/leak/1");
    let pid = r.json()["pid"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    for _ in 0..3 {
        assert_eq!(
            wire::get(p.addr, "/echo/").json()["env"]["pid"]
                .as_u64()
                .unwrap(),
            pid
        );
    }
    assert_eq!(p.metric("shim_worker_recycles_total"), 1.0);
}

#[test]
fn sigterm_drains_without_losing_in_flight_requests() {
    let dir = Dir::new("drain");
    let mut p = fixture_pod(&dir, &["--concurrency", "2", "--drain-delay", "1"], &[]).ready();
    let worker_pid = wire::get(p.addr, "/echo/").json()["env"]["pid"]
        .as_u64()
        .unwrap();
    let (addr, admin) = (p.addr, p.admin);
    let a = std::thread::spawn(move || wire::get(addr, "/sleep/1500"));
    let b = std::thread::spawn(move || wire::get(addr, "/sleep/1500"));
    wait_until("two in flight", || p.metric("shim_in_flight") == 2.0);
    p.signal("TERM");
    wait_until("readiness fails at once", || {
        wire::get(admin, "/_shim/ready").status == 503
    });
    assert_eq!(wire::get(admin, "/_shim/live").status, 200);
    assert_eq!(a.join().unwrap().status, 200);
    assert_eq!(b.join().unwrap().status, 200);
    let status = p.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    assert!(
        !std::path::Path::new(&format!("/proc/{worker_pid}")).exists(),
        "the worker was stopped"
    );
}

#[test]
fn oversized_requests_get_413_and_huge_headers_431() {
    let dir = Dir::new("limits");
    let p = fixture_pod(&dir, &[], &[]).ready();
    let big = vec![b'x'; 6 * 1024 * 1024 + 1];
    let r = request(
        p.addr,
        "POST",
        "/echo/",
        &[("content-type", "text/plain")],
        &big,
    )
    .unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(r.header("x-shim-error"), Some("payload_too_large"));
    let long = "y".repeat(100 * 1024);
    let r = request(p.addr, "GET", "/echo/", &[("x-long", &long)], b"").unwrap();
    assert_eq!(r.status, 431);
    // A response over 6 MB is refused too.
    let r = wire::get(p.addr, &format!("/big/{}", 6 * 1024 * 1024 + 10));
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-shim-error"), Some("response_too_large"));
    assert_eq!(wire::get(p.addr, "/echo/").status, 200);
}

#[test]
fn an_init_failure_keeps_the_pod_not_ready() {
    let dir = Dir::new("initfail");
    let mut p = fixture_pod(
        &dir,
        &["--queue-timeout", "0.5"],
        &[("FIXTURE_FAIL_INIT", "1")],
    );
    p.wait_for("/_shim/live", 200, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let r = wire::get(p.admin, "/_shim/ready");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["reason"], "no worker is polling");
    let r = wire::get(p.addr, "/echo/");
    assert_eq!(r.status, 503);
    assert!(p.metric("shim_init_failures_total") >= 1.0);
}

#[test]
fn streamed_responses_are_bridged_to_chunked_http() {
    let dir = Dir::new("stream");
    let p = fixture_pod(&dir, &[], &[("FIXTURE_MODE", "stream")]).ready();
    let r = wire::get(p.addr, "/anything");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("x-streamed"), Some("yes"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.text(), "chunk-0\nchunk-1\nchunk-2\n");
    assert_eq!(
        p.metric("shim_invocations_total{function=\"lambda-fixture\",outcome=\"ok\"}"),
        1.0
    );
}

#[test]
fn internals_are_only_on_the_admin_listener() {
    let dir = Dir::new("ports");
    let p = fixture_pod(&dir, &[], &[]).ready();
    let invoke = "/2015-03-31/functions/function/invocations";
    // The public port carries the function's routes only: the fixture's
    // catch-all route gets these paths as ordinary API Gateway requests,
    // never the shim's endpoints or the emulator.
    for path in ["/_shim/metrics", "/_shim/ready", invoke] {
        let r = request(p.addr, "POST", path, &[], br#"{"x":1}"#).unwrap();
        // The fixture's own answer for a path it does not know.
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(
            r.json(),
            json!({"error": "fixture: no such path"}),
            "{path}"
        );
        assert_eq!(r.header("x-shim-error"), None, "{path}");
    }
    assert_eq!(
        p.metric("shim_invocations_total{function=\"lambda-fixture\",outcome=\"ok\"}"),
        3.0
    );
    // ... and the admin listener serves the metrics (readiness may be 0
    // for an instant while the worker polls again, so only its presence).
    assert!(wire::get(p.admin, "/_shim/metrics")
        .text()
        .contains("# TYPE shim_ready gauge"));
    // The admin listener serves no route, and the emulator path only with
    // --invoke-api.
    for path in [invoke, "/echo/"] {
        let r = request(p.admin, "POST", path, &[], br#"{"x":1}"#).unwrap();
        assert_eq!(r.status, 404, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], "shim_not_found");
    }
}

#[test]
fn a_413_reaches_clients_that_send_the_whole_body_first() {
    use std::io::{Read, Write};
    let dir = Dir::new("linger");
    let p = fixture_pod(&dir, &[], &[]).ready();
    let big = vec![b'x'; 7 * 1024 * 1024];
    // As Python's urllib and many mobile stacks do: the whole request, then
    // the answer. With a declared length, and chunked without one.
    for chunked in [false, true] {
        let mut s = std::net::TcpStream::connect(p.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let framing = if chunked {
            "transfer-encoding: chunked".to_string()
        } else {
            format!("content-length: {}", big.len())
        };
        write!(s, "POST /echo/ HTTP/1.1\r\nhost: x\r\n{framing}\r\n\r\n").unwrap();
        if chunked {
            for part in big.chunks(64 * 1024) {
                write!(s, "{:x}\r\n", part.len()).unwrap();
                s.write_all(part).unwrap();
                s.write_all(b"\r\n").unwrap();
            }
            s.write_all(b"0\r\n\r\n").unwrap();
        } else {
            s.write_all(&big)
                .expect("the whole body is taken, not reset");
        }
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).expect("the answer, not a reset");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 413"),
            "chunked={chunked}: {text}"
        );
        assert!(
            text.contains("\"code\":\"shim_payload_too_large\""),
            "{text}"
        );
    }
    assert_eq!(wire::get(p.addr, "/echo/").status, 200);
}

#[test]
fn the_emulator_invoke_path_works() {
    let dir = Dir::new("rie");
    let p = fixture_pod(&dir, &["--invoke-api"], &[("FIXTURE_MODE", "raw")]).ready();
    let r = request(
        p.admin,
        "POST",
        "/2015-03-31/functions/function/invocations",
        &[],
        br#"{"x":1}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["event"], json!({"x": 1}));
    let r = request(
        p.admin,
        "POST",
        "/2015-03-31/functions/function/invocations",
        &[],
        br#"{"fail":true}"#,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-amz-function-error"), Some("Unhandled"));
    assert!(r.text().contains("failed on purpose"));
}

#[test]
fn invoke_mode_exit_codes() {
    let dir = Dir::new("invoke");
    let ev = dir.write("ev.json", r#"{"hello": "cron"}"#);
    let (code, out, err) = invoke(&dir, &["--event", ev.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["event"]["hello"],
        "cron"
    );

    let (code, out, err) = invoke(
        &dir,
        &["--scheduled", "--time", "2026-03-08T07:00:00Z"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let e = &serde_json::from_str::<Value>(&out).unwrap()["event"];
    assert_eq!(e["detail-type"], "Scheduled Event");
    assert_eq!(e["source"], "aws.events");
    assert_eq!(e["time"], "2026-03-08T07:00:00Z");
    assert!(e["resources"][0]
        .as_str()
        .unwrap()
        .ends_with("rule/lambda-fixture-Hourly"));

    let fail = dir.write("fail.json", r#"{"fail": true}"#);
    let (code, out, _) = invoke(&dir, &["--event", fail.to_str().unwrap()], &[]);
    assert_eq!(code, 1);
    assert!(out.contains("failed on purpose"), "{out}");

    let slow = dir.write("slow.json", r#"{"sleep_ms": 5000}"#);
    let (code, _, _) = invoke(
        &dir,
        &["--event", slow.to_str().unwrap(), "--timeout", "0.5"],
        &[],
    );
    assert_eq!(code, 3);

    let (code, _, err) = invoke(&dir, &["--scheduled"], &[("FIXTURE_FAIL_INIT", "1")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("failed to initialise"), "{err}");

    let (code, _, err) = invoke(&dir, &["--scheduled", "--time", "yesterday"], &[]);
    assert_eq!(code, 64, "{err}");
    let out = shim()
        .args(["invoke", "--function", "nope", "--scheduled", "--template"])
        .arg(dir.0.join("template.yaml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no function \"nope\""));
}
