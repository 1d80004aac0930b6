//! External Lambda extensions under the shim: the project's own extension on
//! AWS's extension library (lambda-extension-fixture) and small scripts that
//! speak the Extensions API by hand, beside the fixture function.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;
use testwire::proc::Proc;
use testwire::wire;

/// An extensions folder holding the fixture extension under `names`.
fn extensions(dir: &Dir, names: &[&str]) -> std::path::PathBuf {
    let exts = dir.0.join("extensions");
    std::fs::create_dir_all(&exts).unwrap();
    for name in names {
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_lambda-extension-fixture"),
            exts.join(name),
        )
        .unwrap();
    }
    exts
}

fn script(dir: &Path, name: &str, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn pod_with(dir: &Dir, exts: &Path, env: &[(&str, &str)]) -> Proc {
    let record = dir.0.join("record.txt");
    let mut all: Vec<(&str, &str)> = vec![
        ("EXT_RECORD", record.to_str().unwrap()),
        ("SHIM_EXTENSIONS_DIR", exts.to_str().unwrap()),
    ];
    all.extend_from_slice(env);
    fixture_pod(dir, &[], &all)
}

fn record(dir: &Dir) -> Vec<String> {
    std::fs::read_to_string(dir.0.join("record.txt"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn extensions_register_first_hear_every_invocation_and_get_shutdown() {
    let dir = Dir::new("ext");
    let exts = extensions(&dir, &["agent-a", "agent-b"]);
    let mut p = pod_with(&dir, &exts, &[]).ready();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = wire::get(p.addr, "/echo");
        assert_eq!(r.status, 200, "{}", r.text());
        ids.push(r.header("x-request-id").unwrap().to_string());
    }
    p.signal("TERM");
    assert!(p.wait_exit(Duration::from_secs(15)).success());
    let rec = record(&dir);
    for agent in ["agent-a", "agent-b"] {
        let mine: Vec<&String> = rec
            .iter()
            .filter(|l| l.starts_with(&format!("{agent} ")))
            .collect();
        let expected: Vec<String> = std::iter::once(format!("{agent} REGISTERED"))
            .chain(ids.iter().map(|id| format!("{agent} INVOKE {id}")))
            .chain(std::iter::once(format!("{agent} SHUTDOWN spindown")))
            .collect();
        assert_eq!(
            mine.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            expected.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            "every event, in order: {rec:?}"
        );
    }
}

#[test]
fn the_next_invocation_waits_for_every_extension_to_finish() {
    let dir = Dir::new("ext-flush");
    let exts = extensions(&dir, &["flusher"]);
    let p = pod_with(&dir, &exts, &[("EXT_FLUSH_MS", "300")]).ready();
    let first = wire::get(p.addr, "/echo");
    let second = wire::get(p.addr, "/echo");
    assert_eq!((first.status, second.status), (200, 200));
    let (a, b) = (
        first.header("x-request-id").unwrap(),
        second.header("x-request-id").unwrap(),
    );
    let rec = record(&dir);
    let at = |line: String| {
        rec.iter()
            .position(|l| *l == line)
            .unwrap_or_else(|| panic!("{line} missing: {rec:?}"))
    };
    assert!(
        at(format!("flusher FLUSHED {a}")) < at(format!("flusher INVOKE {b}")),
        "the second invocation started only after the extension finished the first: {rec:?}"
    );
}

#[test]
fn a_failing_extension_resets_the_environment() {
    let dir = Dir::new("ext-fail");
    let exts = extensions(&dir, &["fragile"]);
    let p = pod_with(&dir, &exts, &[("EXT_FAIL", "invoke")]).ready();
    // The runtime may answer before the reset; either way the environment
    // (runtime and extension) starts again.
    let _ = wire::get(p.addr, "/echo");
    wait_until("the environment's restart", || {
        p.metric("shim_worker_restarts_total{") >= 1.0
    });
    wait_until("the extension's second registration", || {
        record(&dir)
            .iter()
            .filter(|l| *l == "fragile REGISTERED")
            .count()
            >= 2
    });
}

#[test]
fn extension_init_failures_fail_the_init() {
    let dir = Dir::new("ext-init");
    let exts = dir.0.join("extensions");
    std::fs::create_dir_all(&exts).unwrap();
    // Exits before registering.
    script(&exts, "quitter", "#!/bin/sh\nexit 3\n");
    let ev = dir.write("ev.json", "{}");
    let (code, _, err) = invoke(
        &dir,
        &["--event", ev.to_str().unwrap()],
        &[("SHIM_EXTENSIONS_DIR", exts.to_str().unwrap())],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("extension quitter exited during init"),
        "{err}"
    );

    // Registers, then reports an init error by hand (Python, no library).
    std::fs::remove_file(exts.join("quitter")).unwrap();
    let py = python();
    script(
        &exts,
        "init-error",
        &format!(
            r#"#!{}
import json, os, urllib.request
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2020-01-01/extension"
req = urllib.request.Request(api + "/register", data=json.dumps({{"events": ["SHUTDOWN"]}}).encode(),
                             headers={{"Lambda-Extension-Name": "init-error"}}, method="POST")
ext_id = urllib.request.urlopen(req).headers["Lambda-Extension-Identifier"]
req = urllib.request.Request(api + "/init/error", data=b'{{"errorMessage": "no secrets"}}',
                             headers={{"Lambda-Extension-Identifier": ext_id,
                                       "Lambda-Extension-Function-Error-Type": "Extension.NoSecrets"}},
                             method="POST")
urllib.request.urlopen(req)
import time; time.sleep(30)
"#,
            py.display()
        ),
    );
    let (code, _, err) = invoke(
        &dir,
        &["--event", ev.to_str().unwrap()],
        &[("SHIM_EXTENSIONS_DIR", exts.to_str().unwrap())],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Extension.NoSecrets"), "{err}");
}

#[test]
fn the_extensions_api_refuses_what_lambda_refuses() {
    let dir = Dir::new("ext-api");
    let exts = dir.0.join("extensions");
    std::fs::create_dir_all(&exts).unwrap();
    // Registers with a bad event type, then properly, then twice under one
    // name; asks for events with an unknown id; writes what it got.
    let out = dir.0.join("answers.txt");
    script(
        &exts,
        "prober",
        &format!(
            r#"#!{}
import json, os, urllib.request, urllib.error
api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2020-01-01/extension"
def call(path, body=None, headers={{}}, method="POST"):
    req = urllib.request.Request(api + path, data=body, headers=headers, method=method)
    try:
        r = urllib.request.urlopen(req)
        return r.status, r.headers, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())
lines = []
s, _, b = call("/register", json.dumps({{"events": ["BOGUS"]}}).encode(), {{"Lambda-Extension-Name": "prober"}})
lines.append(f"bad-event {{s}} {{b['errorType']}}")
s, _, b = call("/register", b"{{}}", {{}})
lines.append(f"no-name {{s}} {{b['errorType']}}")
s, h, b = call("/register", json.dumps({{"events": ["INVOKE"]}}).encode(),
               {{"Lambda-Extension-Name": "prober", "Lambda-Extension-Accept-Feature": "accountId"}})
lines.append(f"ok {{s}} {{b['functionName']}} {{b['accountId']}} {{len(h['Lambda-Extension-Identifier'])}}")
ext_id = h["Lambda-Extension-Identifier"]
s, _, b = call("/register", json.dumps({{"events": ["INVOKE"]}}).encode(), {{"Lambda-Extension-Name": "prober"}})
lines.append(f"again {{s}} {{b['errorType']}}")
s, _, b = call("/event/next", None, {{"Lambda-Extension-Identifier": "nope"}}, "GET")
lines.append(f"unknown-id {{s}} {{b['errorType']}}")
open("{}", "w").write("\n".join(lines) + "\n")
while True:
    s, h, b = call("/event/next", None, {{"Lambda-Extension-Identifier": ext_id}}, "GET")
    with open("{}", "a") as f:
        f.write(f"event {{b['eventType']}} {{b.get('requestId')}} {{b['invokedFunctionArn'].endswith(':function:lambda-fixture')}} {{b['deadlineMs'] > 0}}\n")
"#,
            python().display(),
            out.display(),
            out.display()
        ),
    );
    let p = fixture_pod(&dir, &["--extensions-dir", exts.to_str().unwrap()], &[]).ready();
    let r = wire::get(p.addr, "/echo");
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.header("x-request-id").unwrap().to_string();
    wait_until("the extension's INVOKE event", || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains(&id)
    });
    let got = std::fs::read_to_string(&out).unwrap();
    assert_eq!(
        got,
        format!(
            "bad-event 400 Extension.InvalidEventType\n\
             no-name 400 InvalidRequest\n\
             ok 200 lambda-fixture 123456789012 36\n\
             again 409 Extension.AlreadyRegistered\n\
             unknown-id 403 Extension.UnknownExtensionIdentifier\n\
             event INVOKE {id} True True\n"
        )
    );
}
