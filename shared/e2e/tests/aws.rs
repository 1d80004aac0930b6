//! Every function binary as AWS Lambda would run it: the SAM transform
//! (aws-sam-translator, offline) of the real template gives each function
//! its environment, resolved against parameters that point at real
//! services on loopback (Postgres, Redis, S3, SMTP), plus what Lambda adds
//! itself (the role's credentials, the region); `shim invoke` delivers
//! AWS's own sample events (`sam local generate-event`): CloudFormation's
//! custom-resource Create to migrate first (the stack's SchemaMigrations),
//! then API Gateway v2 for each HTTP function and the scheduled event for
//! each scheduled one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use honeydue_testkit::proc::{bin_dir, binary, workspace_root};
use honeydue_testkit::wire::{self, Sink};
use sam_template::Template;
use serde_json::Value;

/// The venv `make test` installs aws-sam-cli and aws-sam-translator into.
fn sam_venv() -> PathBuf {
    let venv = std::env::var_os("HONEYDUE_SAM_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".local/tools/sam"));
    assert!(
        venv.join("bin/sam").is_file(),
        "{} has no sam: run `make test` (scripts/pytools.sh sam installs it)",
        venv.display()
    );
    venv
}

/// One of AWS's sample events.
fn sample(venv: &Path, args: &[&str]) -> Value {
    let out = Command::new(venv.join("bin/sam"))
        .args(["local", "generate-event"])
        .args(args)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("SAM_CLI_TELEMETRY", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The environment of every function (by binary) in the transformed
/// template, with these parameter values.
fn environments(
    venv: &Path,
    params: &[(&str, String)],
) -> BTreeMap<String, BTreeMap<String, String>> {
    let out_file = std::env::temp_dir().join(format!("sam-env-{}.json", std::process::id()));
    let mut cmd = Command::new(venv.join("bin/python"));
    cmd.current_dir(workspace_root())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .arg("scripts/sam_translate.py")
        .arg("template.yaml")
        .arg("--env-out")
        .arg(&out_file);
    for (k, v) in params {
        cmd.arg("--param").arg(format!("{k}={v}"));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&out_file).unwrap();
    let _ = std::fs::remove_file(&out_file);
    serde_json::from_str(&text).unwrap()
}

/// `shim invoke` of `function` with `event`, in exactly `env` plus what
/// Lambda adds: its exit code, stdout and stderr.
fn invoke(function: &str, event: &Value, env: &BTreeMap<String, String>) -> (i32, String, String) {
    let file =
        std::env::temp_dir().join(format!("aws-event-{}-{function}.json", std::process::id()));
    std::fs::write(&file, event.to_string()).unwrap();
    let out = Command::new(binary("shim"))
        .current_dir(workspace_root())
        .args(["invoke", "--function", function, "--event"])
        .arg(&file)
        .arg("--bin-dir")
        .arg(bin_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env)
        // What Lambda adds from the execution role and the region (the
        // test S3 server takes any key).
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "ASIATESTROLEKEY")
        .env("AWS_SECRET_ACCESS_KEY", "role-secret")
        .env("AWS_SESSION_TOKEN", "role-session-token")
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A concrete path for a route template (`{id}` -> 1, `{proxy+}` -> x).
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg.strip_prefix('{') {
            Some(p) if p.ends_with("+}") => "x",
            Some(_) => "1",
            None => seg,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_function_runs_with_the_environment_the_transformed_template_gives_it() {
    let venv = sam_venv();
    let db = honeydue_testkit::TestDb::empty().await;
    let redis = honeydue_testkit::redis::TestRedis::start();
    let s3 = honeydue_testkit::s3::TestS3::start();
    let smtp = honeydue_testkit::smtp::TestSmtp::start();
    let bucket = "honeydue-uploads-e2e";
    let s3_addr = s3.endpoint().trim_start_matches("http://").parse().unwrap();
    let made = wire::request(s3_addr, "PUT", &format!("/{bucket}"), &[], b"").unwrap();
    assert_eq!(made.status, 200, "creating the bucket: {}", made.text());

    let envs = environments(
        &venv,
        &[
            ("DatabaseUrl", db.url.clone()),
            ("RedisUrl", redis.url()),
            ("S3Bucket", bucket.into()),
            ("S3Endpoint", s3.endpoint()),
            ("S3ForcePathStyle", "true".into()),
            ("SmtpHost", "127.0.0.1".into()),
            ("SmtpPort", smtp.port.to_string()),
            ("SmtpSecurity", "none".into()),
            ("AppSecret", "aws-e2e-app-secret-0123456789".into()),
            ("AdminEmail", "admin@example.com".into()),
            ("AdminPassword", "admin-password-1".into()),
        ],
    );
    let template = Template::load(&workspace_root().join("template.yaml")).unwrap();
    assert_eq!(
        envs.keys().collect::<Vec<_>>(),
        {
            let mut names: Vec<&String> = template.functions.iter().map(|f| &f.name).collect();
            names.sort();
            names
        },
        "one environment per function of the template"
    );
    for (name, env) in &envs {
        assert!(!env.contains_key("AWS_LAMBDA_MAX_CONCURRENCY"), "{name}");
        assert_eq!(env["AWS_LAMBDA_LOG_FORMAT"], "JSON", "{name}");
    }

    // The deploy's first step: CloudFormation's Create of SchemaMigrations.
    let cfn = Sink::start();
    let mut create = sample(&venv, &["cloudformation", "create-request"]);
    create["ResponseURL"] = format!("http://{}/response?X-Amz-Signature=x", cfn.addr).into();
    let (code, _, err) = invoke("migrate", &create, &envs["migrate"]);
    assert_eq!(code, 0, "migrate: {err}");
    let (_, body) = cfn.next();
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(answer["RequestId"], create["RequestId"]);

    let http_sample = sample(&venv, &["apigateway", "http-api-proxy"]);
    let mut scheduled = sample(&venv, &["cloudwatch", "scheduled-event"]);
    // The sample's 1970 slot would be a day the jobs never ran; the
    // scheduler sends the slot it fires for.
    scheduled["time"] = "2026-12-01T07:00:00Z".into();
    let mut ran = 0;
    for f in &template.functions {
        let env = &envs[&f.name];
        if f.name == "migrate" {
            continue;
        }
        if let Some(route) = f
            .routes
            .iter()
            .find(|r| r.method == "GET")
            .or(f.routes.first())
        {
            let method = if route.method == "ANY" {
                "GET"
            } else {
                &route.method
            };
            let path = concrete(&route.path);
            let mut event = http_sample.clone();
            event["rawPath"] = path.clone().into();
            event["requestContext"]["http"]["method"] = method.into();
            event["requestContext"]["http"]["path"] = path.clone().into();
            let (code, out, err) = invoke(&f.name, &event, env);
            assert_eq!(code, 0, "{}: {err}", f.name);
            let answer: Value = serde_json::from_str(out.trim())
                .unwrap_or_else(|e| panic!("{}: {e}: {out}", f.name));
            let status = answer["statusCode"].as_u64().unwrap_or(0);
            assert!(
                (200..500).contains(&status),
                "{} {method} {path}: {answer}\n{err}",
                f.name
            );
            ran += 1;
        }
        if !f.schedules.is_empty() {
            let (code, out, err) = invoke(&f.name, &scheduled, env);
            assert_eq!(code, 0, "{}: {out}\n{err}", f.name);
            ran += 1;
        }
    }
    assert!(
        ran >= template.functions.len() - 1,
        "every function ran ({ran})"
    );
}
