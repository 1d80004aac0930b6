//! What the shim's integration tests share: temporary folders, the fixture
//! template, the shim started as a pod or for one invocation, the runtime
//! clients that are not ours.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use testwire::proc::{bin_dir, free_addr, workspace_root, Proc};
use testwire::wire;

pub const FIXTURE_TEMPLATE: &str = r#"
Globals:
  Function:
    Timeout: 5
    Environment:
      Variables:
        FIXTURE_FROM_TEMPLATE: "from-template"
        DATABASE_URL: !Ref DatabaseUrl
Resources:
  Fixture:
    Type: AWS::Serverless::Function
    Metadata:
      BuildProperties: {Binary: lambda-fixture}
    Properties:
      MemorySize: 256
      Events:
        Items: {Type: HttpApi, Properties: {Method: GET, Path: "/echo/items/{id}/"}}
        Any: {Type: HttpApi, Properties: {Method: ANY, Path: "/{proxy+}"}}
        Hourly: {Type: Schedule, Properties: {Schedule: "cron(0 * * * ? *)"}}
"#;

pub struct Dir(pub PathBuf);

impl Dir {
    pub fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!(
            "shim-test-{tag}-{}-{}",
            std::process::id(),
            rand_u32()
        ));
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

pub fn shim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shim"))
}

/// `shim pod` on the fixture, from a template, with extra flags.
pub fn fixture_pod(dir: &Dir, flags: &[&str], env: &[(&str, &str)]) -> Proc {
    let template = dir.write("template.yaml", FIXTURE_TEMPLATE);
    let addr = free_addr();
    let mut cmd = shim();
    cmd.args([
        "pod",
        "--function",
        "lambda-fixture",
        "--listen",
        &addr.to_string(),
    ])
    .arg("--template")
    .arg(&template)
    .arg("--bin-dir")
    .arg(bin_dir())
    .args(if flags.contains(&"--drain-delay") {
        &[][..]
    } else {
        &["--drain-delay", "0"][..]
    })
    .args(flags)
    // Inherited by the workers unless the shim sets or removes it (it must).
    .env("AWS_LAMBDA_MAX_CONCURRENCY", "8");
    for (k, v) in env {
        cmd.env(k, v);
    }
    Proc::spawn_pod(cmd, addr)
}

pub fn in_parallel(
    n: usize,
    f: impl Fn(usize) -> wire::WireResponse + Send + Sync + 'static,
) -> Vec<wire::WireResponse> {
    let f = std::sync::Arc::new(f);
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let f = f.clone();
            std::thread::spawn(move || f(i))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn invoke(dir: &Dir, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let template = dir.write("template.yaml", FIXTURE_TEMPLATE);
    let mut cmd = shim();
    cmd.args(["invoke", "--function", "lambda-fixture"])
        .arg("--template")
        .arg(&template)
        .arg("--bin-dir")
        .arg(bin_dir())
        .args(args)
        .env("FIXTURE_MODE", "raw");
    outcome(cmd, env)
}

/// Runs `cmd` with `env` added: its exit code, stdout and stderr.
pub fn outcome(mut cmd: Command, env: &[(&str, &str)]) -> (i32, String, String) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn python() -> PathBuf {
    let p = std::env::var_os("HONEYDUE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".local/venv/bin/python"));
    let ok = Command::new(&p)
        .args(["-c", "import awslambdaric"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{} with awslambdaric is needed: run `make test` (it installs it)",
        p.display()
    );
    p
}
