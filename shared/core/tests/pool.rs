//! The pool's liveness check against a real Postgres: a connection idle
//! past the window is pinged (and replaced when dead) before it is handed
//! out; one used within it is trusted, and if the server dropped it, the
//! one statement that finds out fails as "unavailable" (a 503) and the
//! pool replaces it.

use std::time::Duration;

use honeydue_core::config::{DbConfig, Secret};
use honeydue_core::db::pool_with_ping_window;
use honeydue_core::error::db_unavailable;
use honeydue_testkit::db::server_url;
use sqlx::{Connection, PgConnection, PgPool};

/// A pool of one connection, so each statement uses the same one.
fn one_connection(ping_if_idle_for: Duration) -> PgPool {
    pool_with_ping_window(
        &DbConfig {
            url: Secret::new(server_url()),
            max_connections: 1,
            acquire_timeout_ms: DbConfig::DEFAULT_ACQUIRE_TIMEOUT_MS,
        },
        ping_if_idle_for,
    )
    .unwrap()
}

async fn backend(pool: &PgPool) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(pool)
        .await
}

/// Terminates a server process and waits until it is gone.
async fn terminate(pid: i32) {
    let mut admin = PgConnection::connect(&server_url()).await.unwrap();
    let done: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(done, "backend {pid} did not exit");
    admin.close().await.ok();
}

#[tokio::test]
async fn a_connection_idle_past_the_window_is_pinged_and_a_dead_one_replaced() {
    let pool = one_connection(Duration::ZERO);
    let first = backend(&pool).await.unwrap();
    terminate(first).await;
    // The ping finds the connection dead; the statement runs on a new one.
    let second = backend(&pool).await.unwrap();
    assert_ne!(first, second);
}

#[tokio::test]
async fn a_connection_used_within_the_window_is_trusted_and_a_dead_one_costs_one_statement() {
    let pool = one_connection(Duration::from_secs(3600));
    // Each statement's connection goes back to the pool through sqlx's
    // release ping, in a task of its own; `terminate` connects first,
    // which yields to that task, so the connection is idle in the pool
    // when its server process is killed.
    let first = backend(&pool).await.unwrap();
    // Reused without a ping: the same server process answers.
    assert_eq!(backend(&pool).await.unwrap(), first);
    terminate(first).await;
    let err = backend(&pool).await.unwrap_err();
    assert!(db_unavailable(&err), "not an unavailable error: {err:?}");
    // The broken connection was dropped, not put back: the next statement
    // opens another.
    let second = backend(&pool).await.unwrap();
    assert_ne!(first, second);
}
