//! Running the shipped binaries as processes: the shim in its modes, with
//! the readiness wait and signals a test needs.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The workspace's root (where template.yaml lives).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf()
}

/// The directory of the binaries built alongside the running test.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/<test> -> target/debug
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .to_path_buf()
}

/// A built binary of the workspace, or a clear failure.
pub fn binary(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} is not built: run `cargo build --workspace` (make test does)",
        p.display()
    );
    p
}

/// A free loopback port.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// A running process that is killed when dropped.
pub struct Proc {
    /// The child.
    pub child: Child,
    /// Where it listens, if it does.
    pub addr: SocketAddr,
    /// Where the shim's own endpoints answer (`/_shim/*`): the admin
    /// listener of a pod, the same port for a gateway.
    pub admin: SocketAddr,
}

impl Proc {
    /// Starts `cmd` (which must listen on `addr`, and serve its `/_shim/*`
    /// endpoints there too).
    pub fn spawn(cmd: Command, addr: SocketAddr) -> Self {
        Self::spawn_with_admin(cmd, addr, addr)
    }

    /// Starts a `shim pod`: `cmd` is given `--admin-listen admin`.
    pub fn spawn_pod(mut cmd: Command, addr: SocketAddr) -> Self {
        let admin = free_addr();
        cmd.env("SHIM_ADMIN_LISTEN", admin.to_string());
        Self::spawn_with_admin(cmd, addr, admin)
    }

    /// Starts a `shim pod` whose stderr (its log and REPORT lines) goes to
    /// the file `log`.
    pub fn spawn_pod_logged(mut cmd: Command, addr: SocketAddr, log: &std::path::Path) -> Self {
        let admin = free_addr();
        cmd.env("SHIM_ADMIN_LISTEN", admin.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log file"));
        let child = cmd.spawn().expect("spawn");
        Self { child, addr, admin }
    }

    /// Starts `cmd`, which listens on `addr` and answers `/_shim/*` on
    /// `admin`.
    pub fn spawn_with_admin(mut cmd: Command, addr: SocketAddr, admin: SocketAddr) -> Self {
        cmd.stdin(Stdio::null());
        if std::env::var_os("TEST_SHOW_LOGS").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let child = cmd.spawn().expect("spawn");
        Self { child, addr, admin }
    }

    /// Waits until `GET path` answers `status` (or panics after `within`);
    /// `/_shim/*` paths are asked on the admin listener.
    pub fn wait_for(&mut self, path: &str, status: u16, within: Duration) {
        let deadline = Instant::now() + within;
        let addr = if path.starts_with("/_shim/") {
            self.admin
        } else {
            self.addr
        };
        loop {
            if let Ok(r) = crate::wire::request(addr, "GET", path, &[], b"") {
                if r.status == status {
                    return;
                }
            }
            if let Ok(Some(s)) = self.child.try_wait() {
                panic!("process exited early: {s}");
            }
            assert!(Instant::now() < deadline, "{path} never answered {status}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until ready (`/_shim/ready` 200).
    pub fn ready(mut self) -> Self {
        self.wait_for("/_shim/ready", 200, Duration::from_secs(20));
        self
    }

    /// Sends a signal.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for exit (panics after `within`).
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(Instant::now() < deadline, "process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A metric's value from `/_shim/metrics` (first series whose name and
    /// labels start with `prefix`).
    pub fn metric(&self, prefix: &str) -> f64 {
        let r = crate::wire::get(self.admin, "/_shim/metrics");
        r.text()
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no metric {prefix}"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first so a shim stops its workers; SIGKILL if it lingers.
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
