//! A real SMTP server for tests (aiosmtpd, installed by `make test` into
//! .local/venv): accepts mail into a folder, 550 for `reject*@`, 451 for
//! `tempfail*@`.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running SMTP server and the messages it accepted.
pub struct TestSmtp {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl TestSmtp {
    /// Starts a server on a free port.
    pub fn start() -> Self {
        Self::start_on(crate::proc::free_addr().port())
    }

    /// Starts a server on `port` (to bring one back after an outage).
    pub fn start_on(port: u16) -> Self {
        let dir = std::env::temp_dir().join(format!("smtp-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let python = std::env::var_os("HONEYDUE_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::proc::workspace_root().join(".local/venv/bin/python"));
        let script = crate::proc::workspace_root().join("shared/testkit/smtp_server.py");
        let child = Command::new(python)
            .arg(script)
            .arg(port.to_string())
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the test SMTP server (aiosmtpd; make test installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the SMTP server did not start");
            std::thread::sleep(Duration::from_millis(30));
        }
        Self {
            port,
            dir,
            child: Some(child),
        }
    }

    /// The messages accepted so far (raw, with an `X-Envelope-To` line first).
    pub fn messages(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// Stops the server (the port closes).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for TestSmtp {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
