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
