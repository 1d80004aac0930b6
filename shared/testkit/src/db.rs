//! One database per test.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The server URL tests use.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

fn url_for(db: &str) -> String {
    let base = server_url();
    let opts: PgConnectOptions = base.parse().expect("DATABASE_URL parses");
    let opts = opts.database(db);
    opts.to_url_lossy().to_string()
}

/// A database that exists for one test and is dropped after it.
pub struct TestDb {
    /// Pool on the test's database.
    pub pool: PgPool,
    /// URL of the test's database (for child processes).
    pub url: String,
    name: String,
}

fn template_name() -> String {
    // The template is keyed on the migrations' checksums: editing a
    // migration gives a new template instead of a stale one.
    let mut h: u64 = 0xcbf29ce484222325;
    for m in honeydue_core::db::MIGRATOR.iter() {
        for b in m.version.to_be_bytes().iter().chain(m.checksum.iter()) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    format!("honeydue_tpl_{h:016x}")
}

async fn admin() -> PgConnection {
    PgConnection::connect(&url_for("postgres"))
        .await
        .expect("connect to Postgres (is DATABASE_URL right? `make test` starts one)")
}

async fn ensure_template() -> String {
    let name = template_name();
    let mut conn = admin().await;
    // Serialise template creation across test processes.
    sqlx::query("SELECT pg_advisory_lock(727201)")
        .execute(&mut conn)
        .await
        .expect("advisory lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .expect("pg_database");
    if !exists {
        let building = format!("{name}_build");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)"
        ))
        .execute(&mut conn)
        .await
        .expect("drop stale template build");
        sqlx::query(&format!("CREATE DATABASE \"{building}\""))
            .execute(&mut conn)
            .await
            .expect("create template");
        {
            let mut t = PgConnection::connect(&url_for(&building))
                .await
                .expect("connect template");
            honeydue_core::db::MIGRATOR
                .run(&mut t)
                .await
                .expect("migrate template");
            t.close().await.ok();
        }
        sqlx::query(&format!(
            "ALTER DATABASE \"{building}\" RENAME TO \"{name}\""
        ))
        .execute(&mut conn)
        .await
        .expect("publish template");
    }
    sqlx::query("SELECT pg_advisory_unlock(727201)")
        .execute(&mut conn)
        .await
        .ok();
    conn.close().await.ok();
    name
}

impl TestDb {
    /// A fresh database with every migration applied.
    pub async fn new() -> Self {
        let template = ensure_template().await;
        Self::create(Some(&template)).await
    }

    /// A fresh, empty database (for testing the migrator itself).
    pub async fn empty() -> Self {
        Self::create(None).await
    }

    async fn create(template: Option<&str>) -> Self {
        let name = format!(
            "honeydue_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand_suffix()
        );
        let mut conn = admin().await;
        let sql = match template {
            Some(t) => format!("CREATE DATABASE \"{name}\" TEMPLATE \"{t}\""),
            None => format!("CREATE DATABASE \"{name}\""),
        };
        sqlx::query(&sql)
            .execute(&mut conn)
            .await
            .expect("create test database");
        conn.close().await.ok();
        let url = url_for(&name);
        let pool = PgPoolOptions::new()
            .max_connections(5)
            .connect(&url)
            .await
            .expect("connect test database");
        Self { pool, url, name }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

fn rand_suffix() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t % 100_000
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            // FORCE ends the test pool's connections server-side; closing
            // the pool from here would wait on the test's own runtime.
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&url_for("postgres")).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}
