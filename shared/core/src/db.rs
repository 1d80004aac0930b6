//! The Postgres pool, the embedded migrations and the schema check a
//! function runs at init.

use std::time::Duration;

use anyhow::Context;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::Connection;

use crate::config::DbConfig;

/// Every migration in `migrations/`, embedded. Only the `migrate` function
/// applies them; every other function only checks them. Migrations applied
/// by a newer release are left alone instead of being an error, so an older
/// `migrate` after a rollback (CloudFormation's Update with the old code, or
/// a k3s rollback's Job) succeeds.
pub static MIGRATOR: std::sync::LazyLock<Migrator> = std::sync::LazyLock::new(|| {
    let mut m = sqlx::migrate!("../../migrations");
    m.set_ignore_missing(true);
    m
});

/// A pooled connection idle for longer than this is pinged (one round trip
/// to Postgres) before it is handed out; one used more recently is trusted.
///
/// sqlx pings every idle connection at every acquire by default: one more
/// exchange with Postgres on every request's path, before its first
/// statement. (sqlx also pings each connection as it goes back to the
/// pool, after the request's work, and 0.8 has no switch for that one; it
/// is what makes "idle" mean "since its last answered ping", and what
/// drops a connection a failed statement left broken.) A connection that
/// answered within the last second is alive unless the server went away
/// in that second; then the request's statement fails as the database
/// being unavailable (503 with `Retry-After`, nothing changed), as the
/// requests in flight at that moment do anyway, and the broken connection
/// is dropped. When the ping itself fails, sqlx logs a warning and opens
/// another connection. (HikariCP makes the same trade with 500 ms.)
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Builds the pool once per process. Lazy: no connection is opened until the
/// first query, so init stays fast and a database hiccup at cold start is not
/// fatal by itself.
pub fn pool(cfg: &DbConfig) -> anyhow::Result<PgPool> {
    pool_with_ping_window(cfg, PING_IF_IDLE_FOR)
}

/// [`pool`], pinging connections idle for longer than `ping_if_idle_for`
/// (tests choose the window to make either case certain).
pub fn pool_with_ping_window(cfg: &DbConfig, ping_if_idle_for: Duration) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(Duration::from_millis(cfg.acquire_timeout_ms))
        .idle_timeout(Some(Duration::from_secs(300)))
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            Box::pin(async move {
                if meta.idle_for > ping_if_idle_for {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy(cfg.url.expose())
        .context("DATABASE_URL is not a valid Postgres URL")
}

/// The pool of a function that needs the schema it was built for: [`pool`],
/// then [`check_schema`] (an init error when the schema is older).
pub async fn open(cfg: &DbConfig) -> anyhow::Result<PgPool> {
    let pool = pool(cfg)?;
    check_schema(&pool).await?;
    Ok(pool)
}

/// The newest migration version this code was built with.
pub fn expected_schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Fails when the database has not had every migration this code needs.
///
/// A function calls this at init: a pod whose code is newer than its schema
/// reports an init error (and so is never ready) instead of failing requests.
pub async fn check_schema(pool: &PgPool) -> anyhow::Result<()> {
    let expected = expected_schema_version();
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await
            .context("reading applied migrations (has the migrate function run?)")?;
    let applied = applied.unwrap_or(0);
    if applied < expected {
        anyhow::bail!(
            "database schema is at version {applied}, this code needs {expected}: run the migrate function"
        );
    }
    Ok(())
}
