//! The shipped `migrate` binary against a real, empty Postgres database.

use std::process::{Command, Stdio};

use honeydue_testkit::TestDb;

fn migrate_cmd(db: &TestDb) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_migrate"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("ADMIN_EMAIL", "Admin@Example.com")
        .env("ADMIN_PASSWORD", "admin-password-1")
        .env("AWS_LAMBDA_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[tokio::test]
async fn two_concurrent_runs_both_succeed_and_apply_once() {
    let db = TestDb::empty().await;
    let a = migrate_cmd(&db).spawn().unwrap();
    let b = migrate_cmd(&db).spawn().unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        a.status.success(),
        "first: {}",
        String::from_utf8_lossy(&a.stderr)
    );
    assert!(
        b.status.success(),
        "second: {}",
        String::from_utf8_lossy(&b.stderr)
    );

    let outs: Vec<serde_json::Value> = [&a, &b]
        .iter()
        .map(|o| serde_json::from_slice(&o.stdout).unwrap())
        .collect();
    let expected = honeydue_core::db::MIGRATOR.iter().count() as i64;
    let applied: i64 = outs.iter().map(|o| o["applied"].as_i64().unwrap()).sum();
    assert_eq!(
        applied, expected,
        "the migrations were applied exactly once between the two: {outs:?}"
    );
    let admins_created = outs.iter().filter(|o| o["admin_created"] == true).count();
    assert_eq!(admins_created, 1, "{outs:?}");

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(rows, expected);
    let admins: Vec<String> = sqlx::query_scalar("SELECT email FROM admin_users")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(admins, vec!["admin@example.com".to_string()]);
    honeydue_core::db::check_schema(&db.pool).await.unwrap();

    // A third run changes nothing.
    let c = migrate_cmd(&db).output().unwrap();
    assert!(c.status.success());
    let out: serde_json::Value = serde_json::from_slice(&c.stdout).unwrap();
    assert_eq!(out["applied"], 0);
    assert_eq!(out["admin_created"], false);
}

#[tokio::test]
async fn schema_check_fails_on_an_unmigrated_database() {
    let db = TestDb::empty().await;
    let err = honeydue_core::db::check_schema(&db.pool).await.unwrap_err();
    assert!(format!("{err:#}").contains("migrate"), "{err:#}");
}

#[test]
fn missing_configuration_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_migrate"))
        .env_clear()
        .env("ADMIN_EMAIL", "admin@example.com")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("DATABASE_URL is not set"), "{err}");
    assert!(err.contains("ADMIN_PASSWORD is not set"), "{err}");
}

// ---- the stack's Custom::Migrations resource (sam deploy) -----------------

/// A stand-in for CloudFormation's pre-signed ResponseURL: the answers PUT
/// to it, as JSON.
struct ResponseUrl(honeydue_testkit::wire::Sink);

impl ResponseUrl {
    fn start() -> Self {
        Self(honeydue_testkit::wire::Sink::start())
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.0.addr
    }

    /// The answer PUT by an invocation that must itself have succeeded.
    fn answer_to(&self, out: &std::process::Output) -> serde_json::Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.next().1
    }

    fn next(&self) -> (String, serde_json::Value) {
        let (line, body) = self.0.next();
        (
            line,
            serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        )
    }
}

/// AWS's sample custom-resource request (as `sam local generate-event
/// cloudformation create-request` writes it), pointed at `url`.
fn cfn_event(request_type: &str, url: &str) -> String {
    let mut e = serde_json::json!({
        "RequestType": request_type,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/honeydue/5b91a1e0-0000-11f0-0000-0a1b2c3d4e5f",
        "RequestId": format!("unique-id-for-{}", request_type.to_lowercase()),
        "ResourceType": "Custom::Migrations",
        "LogicalResourceId": "SchemaMigrations",
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:honeydue-migrate",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:honeydue-migrate", "CodeVersion": "1"}
    });
    if request_type != "Create" {
        e["PhysicalResourceId"] = "honeydue-schema".into();
    }
    e.to_string()
}

/// `shim invoke` of the shipped migrate binary, from the real template.
fn invoke_migrate(event: &str, database_url: &str) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("migrate-cfn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ev = dir.join(format!("{}.json", event.len()));
    std::fs::write(&ev, event).unwrap();
    let root = honeydue_testkit::proc::workspace_root();
    Command::new(honeydue_testkit::proc::binary("shim"))
        .args(["invoke", "--function", "migrate", "--event"])
        .arg(&ev)
        .arg("--template")
        .arg(root.join("template.yaml"))
        .arg("--bin-dir")
        .arg(honeydue_testkit::proc::bin_dir())
        .env("DATABASE_URL", database_url)
        .env("AWS_LAMBDA_LOG_LEVEL", "warn")
        .env_remove("ADMIN_EMAIL")
        .env_remove("ADMIN_PASSWORD")
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_custom_resource_migrates_on_create_and_update_and_keeps_data_on_delete() {
    let db = TestDb::empty().await;
    let cfn = ResponseUrl::start();
    let url = format!(
        "http://{}/cloudformation-custom-resource-response?X-Amz-Signature=abc",
        cfn.addr()
    );
    let expected = honeydue_core::db::MIGRATOR.iter().count();

    let out = invoke_migrate(&cfn_event("Create", &url), &db.url);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (line, doc) = cfn.next();
    assert!(
        line.starts_with("PUT /cloudformation-custom-resource-response?X-Amz-Signature=abc "),
        "{line}"
    );
    assert_eq!(doc["Status"], "SUCCESS", "{doc}");
    assert_eq!(doc["RequestId"], "unique-id-for-create");
    assert_eq!(doc["LogicalResourceId"], "SchemaMigrations");
    assert!(doc["StackId"]
        .as_str()
        .unwrap()
        .contains(":stack/honeydue/"));
    assert_eq!(doc["PhysicalResourceId"], "honeydue-schema");
    assert_eq!(doc["Data"]["Applied"], expected.to_string());
    honeydue_core::db::check_schema(&db.pool).await.unwrap();

    // Update (every deploy with new code): idempotent.
    let out = invoke_migrate(&cfn_event("Update", &url), &db.url);
    let doc = cfn.answer_to(&out);
    assert_eq!(doc["Status"], "SUCCESS", "{doc}");
    assert_eq!(doc["Data"]["Applied"], "0");
    assert_eq!(doc["PhysicalResourceId"], "honeydue-schema");

    // A schema newer than the binary (the Update of a rollback) is left alone.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (29991231000000, 'from a newer release', true, '\\x00', 1)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let out = invoke_migrate(&cfn_event("Update", &url), &db.url);
    let doc = cfn.answer_to(&out);
    assert_eq!(doc["Status"], "SUCCESS", "a rollback must not fail: {doc}");

    // Delete keeps the schema and the data.
    sqlx::query("INSERT INTO users (email, password_hash) VALUES ('kept@example.com', 'x')")
        .execute(&db.pool)
        .await
        .unwrap();
    let out = invoke_migrate(&cfn_event("Delete", &url), &db.url);
    let doc = cfn.answer_to(&out);
    assert_eq!(doc["Status"], "SUCCESS", "{doc}");
    let kept: i64 =
        sqlx::query_scalar("SELECT count(*) FROM users WHERE email = 'kept@example.com'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(kept, 1);
}

#[tokio::test]
async fn a_failed_migration_is_reported_to_cloudformation_so_the_deploy_rolls_back() {
    let cfn = ResponseUrl::start();
    let url = format!("http://{}/response", cfn.addr());
    // A database that is not there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = invoke_migrate(
        &cfn_event("Create", &url),
        &format!("postgres://postgres@127.0.0.1:{dead}/nowhere"),
    );
    // The function itself succeeds (CloudFormation has its answer; a
    // function error would only make Lambda retry the event).
    let doc = cfn.answer_to(&out);
    assert_eq!(doc["Status"], "FAILED", "{doc}");
    assert!(
        doc["Reason"]
            .as_str()
            .unwrap()
            .contains("connecting to DATABASE_URL"),
        "{doc}"
    );
    assert_eq!(doc["PhysicalResourceId"], "honeydue-schema");

    // An unknown request type is a failure too, never a silent success.
    let out = invoke_migrate(
        &cfn_event("Replace", &url),
        "postgres://postgres@127.0.0.1:1/x",
    );
    let doc = cfn.answer_to(&out);
    assert_eq!(doc["Status"], "FAILED");
    assert!(
        doc["Reason"]
            .as_str()
            .unwrap()
            .contains("unknown RequestType"),
        "{doc}"
    );

    // An answer CloudFormation's URL refuses makes the invocation fail, so
    // that Lambda's retries try again.
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_url = format!("http://{}/gone", refused.local_addr().unwrap());
    drop(refused);
    let out = invoke_migrate(
        &cfn_event("Delete", &refused_url),
        "postgres://postgres@127.0.0.1:1/x",
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
