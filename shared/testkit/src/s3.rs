//! A real S3-compatible server for tests: moto's server (installed by
//! `make test` into .local/venv), on a free loopback port, stopped on drop.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running S3 server.
pub struct TestS3 {
    port: u16,
    child: Child,
}

fn moto_server() -> PathBuf {
    if let Some(p) = std::env::var_os("HONEYDUE_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let p = crate::proc::workspace_root().join(".local/venv/bin/moto_server");
    assert!(
        p.is_file(),
        "{} is missing: run `make test` (it installs moto[server])",
        p.display()
    );
    p
}

impl TestS3 {
    /// Starts the server and waits until it answers.
    pub fn start() -> Self {
        let port = crate::proc::free_addr().port();
        let child = Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { port, child }
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `S3_*` environment for a function using this server.
    pub fn env(&self, bucket: &str) -> Vec<(&'static str, String)> {
        vec![
            ("S3_BUCKET", bucket.to_string()),
            ("S3_ENDPOINT", self.endpoint()),
            ("S3_REGION", "us-east-1".to_string()),
            ("S3_FORCE_PATH_STYLE", "true".to_string()),
            ("S3_ACCESS_KEY_ID", "test".to_string()),
            ("S3_SECRET_ACCESS_KEY", "test".to_string()),
        ]
    }
}

impl TestS3 {
    /// Stops the server (an outage); later calls fail to connect.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
