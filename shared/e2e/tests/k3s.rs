//! The k3s manifests: generated from template.yaml and committed up to
//! date, and every workload's exact container args and environment start
//! the real binaries as local processes whose probes answer on the ports
//! and paths the manifests name.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use honeydue_testkit::proc::{bin_dir, binary, free_addr, workspace_root, Proc};
use honeydue_testkit::TestDb;
use k3s_gen::{self as k3s, Inputs};
use sam_template::Template;
use serde_json::Value;

fn root() -> std::path::PathBuf {
    workspace_root()
}

fn rendered() -> Vec<(String, String)> {
    let t = Template::load(&root().join("template.yaml")).unwrap();
    let i = Inputs::load(
        &root().join("k3s/base/configmap.yaml"),
        &root().join("k3s/generator.yaml"),
    )
    .unwrap();
    k3s::render(&t, &i).unwrap()
}

#[test]
fn committed_manifests_match_the_template() {
    let stale = k3s::sync(&root().join("k3s"), &rendered(), true).unwrap();
    assert!(
        stale.is_empty(),
        "k3s/ is out of date with template.yaml (run `make k3s`): {stale:?}"
    );
}

/// Every document of the generated files.
fn documents() -> Vec<Value> {
    let mut docs = Vec::new();
    for (path, text) in rendered() {
        if !path.starts_with("base/generated/") {
            continue;
        }
        for d in text.split("\n---\n").skip(1) {
            docs.push(serde_norway::from_str::<Value>(d).unwrap());
        }
    }
    docs
}

fn config_map() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root().join("k3s/base/configmap.yaml")).unwrap();
    let doc: Value = serde_norway::from_str(&text).unwrap();
    doc["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

/// The process a container would run: its args, the ConfigMap through
/// envFrom, its env (Secret keys from `secrets`), and the image's own
/// environment with its paths pointed at this build.
fn command_of(container: &Value, secrets: &BTreeMap<&str, String>) -> Command {
    let mut cmd = Command::new(binary("shim"));
    cmd.env_clear();
    cmd.env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in config_map() {
        cmd.env(k, v);
    }
    // In-cluster names do not resolve here: no Redis (fail-open), a
    // loopback mail server that is never reached by these runs.
    cmd.env("REDIS_URL", "");
    for e in container["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        if let Some(v) = e["value"].as_str() {
            cmd.env(name, v);
        } else {
            let r = &e["valueFrom"]["secretKeyRef"];
            assert_eq!(r["name"], "honeydue-secrets", "{name}");
            match secrets.get(r["key"].as_str().unwrap()) {
                Some(v) => {
                    cmd.env(name, v);
                }
                None => assert_eq!(
                    r["optional"], true,
                    "{name} is required but has no test value"
                ),
            }
        }
    }
    // What the Dockerfile's ENV sets, for this checkout instead of /var/task.
    cmd.env("SHIM_TEMPLATE", root().join("template.yaml"));
    cmd.env("SHIM_BIN_DIR", bin_dir());
    cmd.args(
        container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap()),
    );
    cmd
}

#[tokio::test]
async fn every_workload_starts_from_its_manifest_and_answers_its_probes() {
    let db = TestDb::new().await;
    let secrets: BTreeMap<&str, String> = [
        ("DATABASE_URL", db.url.clone()),
        ("APP_SECRET", "k3s-test-secret-0123456789".to_string()),
        ("S3_ACCESS_KEY_ID", "test".to_string()),
        ("S3_SECRET_ACCESS_KEY", "test".to_string()),
    ]
    .into();
    let docs = documents();
    let mut deployments = 0;
    let mut running = Vec::new();
    for d in docs.iter().filter(|d| d["kind"] == "Deployment") {
        let name = d["metadata"]["name"].as_str().unwrap();
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        // The ports the manifest names are the ones `shim pod` listens on.
        let port_named = |n: &str| {
            c["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == n)
                .and_then(|p| p["containerPort"].as_u64())
                .unwrap_or_else(|| panic!("{name}: no port {n}"))
        };
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        let cli = <honeydue_shim::cli::Cli as clap::Parser>::try_parse_from(
            std::iter::once("shim").chain(args.iter().copied()),
        )
        .unwrap();
        let honeydue_shim::cli::Mode::Pod(pod) = cli.mode else {
            panic!("{name}: a Deployment runs `shim pod`")
        };
        assert_eq!(pod.listen.port() as u64, port_named("http"), "{name}: http");
        assert_eq!(
            pod.admin_listen.port() as u64,
            port_named("admin"),
            "{name}: admin"
        );
        assert!(!pod.invoke_api, "{name}: the emulator path is off in pods");
        assert_eq!(pod.function, name);
        // Run it, on free ports instead of 8080 and 9090 (SHIM_LISTEN and
        // SHIM_ADMIN_LISTEN, as the flags are not in the args).
        let addr = free_addr();
        let mut cmd = command_of(c, &secrets);
        cmd.env("SHIM_LISTEN", addr.to_string());
        let mut p = tokio::task::spawn_blocking(move || {
            let mut p = Proc::spawn_pod(cmd, addr);
            p.wait_for("/_shim/live", 200, Duration::from_secs(30));
            p
        })
        .await
        .unwrap();
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            let path = c[probe]["httpGet"]["path"].as_str().unwrap().to_string();
            assert_eq!(c[probe]["httpGet"]["port"], "admin", "{name} {probe}");
            p = tokio::task::spawn_blocking(move || {
                p.wait_for(&path, 200, Duration::from_secs(30));
                p
            })
            .await
            .unwrap();
        }
        let grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap();
        running.push((name.to_string(), p, grace));
        deployments += 1;
    }
    assert!(deployments >= 10, "only {deployments} Deployments");
    // The grace period covers the shim's drain: SIGTERM, exit 0 (all at
    // once: each drain waits out its delay).
    for (_, p, _) in &running {
        p.signal("TERM");
    }
    for (name, mut p, grace) in running {
        let status = p.wait_exit(Duration::from_secs(grace));
        assert!(status.success(), "{name}: {status}");
    }

    // CronJobs and the migrate Job: their exact command runs once, exit 0.
    let mut runs = 0;
    for d in docs
        .iter()
        .filter(|d| d["kind"] == "CronJob" || d["kind"] == "Job")
    {
        let name = d["metadata"]["name"].as_str().unwrap();
        let spec = if d["kind"] == "CronJob" {
            &d["spec"]["jobTemplate"]["spec"]
        } else {
            &d["spec"]
        };
        let c = &spec["template"]["spec"]["containers"][0];
        let mut cmd = command_of(c, &secrets);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        runs += 1;
    }
    assert!(runs >= 8, "only {runs} CronJobs and Jobs");
}
