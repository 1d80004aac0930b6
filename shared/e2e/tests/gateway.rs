//! The workspace's real functions under the shim: one as a pod from the
//! real template, and every HTTP function behind the gateway with a real
//! database (what `make dev` runs).

use std::process::Command;

use honeydue_testkit::proc::{bin_dir, binary, free_addr, workspace_root, Proc};
use honeydue_testkit::wire::{self, request};
use serde_json::json;

fn shim() -> Command {
    Command::new(binary("shim"))
}

#[test]
fn api_health_as_a_pod_from_the_real_template() {
    let addr = free_addr();
    let mut cmd = shim();
    cmd.current_dir(workspace_root())
        .args([
            "pod",
            "--function",
            "api-health",
            "--listen",
            &addr.to_string(),
            "--drain-delay",
            "0",
        ])
        .arg("--bin-dir")
        .arg(bin_dir());
    let p = Proc::spawn_pod(cmd, addr).ready();
    let r = wire::get(p.addr, "/api/health/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["status"], "ok");
    // Routes come from the template: other paths never reach the function.
    let r = wire::get(p.addr, "/api/health/other/");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-shim-error"), Some("not_found"));
    let r = request(p.addr, "POST", "/api/health/", &[], b"").unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_serves_every_function_with_a_real_database() {
    let db = honeydue_testkit::TestDb::new().await;
    let _ = binary("api-auth");
    let addr = free_addr();
    let mut cmd = shim();
    cmd.current_dir(workspace_root())
        .args([
            "gateway",
            "--listen",
            &addr.to_string(),
            "--drain-delay",
            "0",
        ])
        .arg("--bin-dir")
        .arg(bin_dir())
        .env("DATABASE_URL", &db.url)
        .env("APP_SECRET", "gateway-test-secret-0123")
        .env_remove("REDIS_URL")
        // api-uploads needs a bucket configured; nothing here touches it.
        .env("S3_BUCKET", "unused")
        .env("S3_ENDPOINT", "http://127.0.0.1:9")
        .env("S3_FORCE_PATH_STYLE", "true")
        .env("S3_ACCESS_KEY_ID", "unused")
        .env("S3_SECRET_ACCESS_KEY", "unused");
    let p = tokio::task::spawn_blocking(move || Proc::spawn(cmd, addr).ready())
        .await
        .unwrap();
    let a = p.addr;
    tokio::task::spawn_blocking(move || {
        assert_eq!(wire::get(a, "/api/health/").status, 200);
        let r = wire::post_json(
            a,
            "/api/auth/register/",
            &json!({"email": "gw@example.com", "password": "gateway-pass"}),
            None,
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let token = r.json()["token"].as_str().unwrap().to_string();
        let r = request(
            a,
            "GET",
            "/api/auth/me/",
            &[("authorization", &format!("Bearer {token}"))],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["email"], "gw@example.com");
        // The function's own errors come back as the function wrote them.
        let r = wire::post_json(
            a,
            "/api/auth/login/",
            &json!({"email": "gw@example.com", "password": "wrong-pass"}),
            None,
        );
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["error"]["code"], "unauthorized");
        assert!(r.header("x-shim-error").is_none());
        // The gateway's own 404 and 405.
        assert_eq!(wire::get(a, "/api/nothing/").status, 404);
        let r = wire::get(a, "/api/auth/login/");
        assert_eq!(r.status, 405);
        assert_eq!(r.header("allow"), Some("POST"));
    })
    .await
    .unwrap();
    drop(p);
}
