//! Applies every migration and seeds accounts. Safe to run twice, or twice
//! at once: sqlx takes a Postgres advisory lock around the migrations, and
//! seeds insert only when absent.

use anyhow::Context;
use honeydue_core::config::DbConfig;
use honeydue_core::types::{Email, NewPassword};
use honeydue_core::{Env, Secret};
use serde::Serialize;
use sqlx::{Connection, PgConnection};

/// An account to seed when absent.
#[derive(Debug, Clone)]
pub struct Seed {
    /// Address.
    pub email: String,
    /// Password (hashed before it is stored).
    pub password: Secret<String>,
}

/// What the function needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The database.
    pub db: DbConfig,
    /// `ADMIN_EMAIL` + `ADMIN_PASSWORD`: the admin-panel account.
    pub admin: Option<Seed>,
    /// `DEMO_EMAIL` + `DEMO_PASSWORD`: a verified app user, for local
    /// development only.
    pub demo: Option<Seed>,
}

fn seed(env: &mut Env, email_var: &str, password_var: &str) -> Option<Seed> {
    let email: Option<String> = env.optional(email_var);
    let password: Option<String> = env.optional(password_var);
    match (email, password) {
        (None, None) => None,
        (Some(e), Some(p)) => {
            let email = match Email::parse(&e) {
                Ok(e) => e,
                Err(m) => {
                    env.problem(format!("{email_var} is malformed: {m}"));
                    return None;
                }
            };
            if let Err(m) = NewPassword::parse(&p) {
                env.problem(format!("{password_var} is too weak: {m}"));
                return None;
            }
            Some(Seed {
                email: email.as_str().to_string(),
                password: Secret::new(p),
            })
        }
        (Some(_), None) => {
            env.problem(format!(
                "{password_var} is not set (required with {email_var})"
            ));
            None
        }
        (None, Some(_)) => {
            env.problem(format!(
                "{email_var} is not set (required with {password_var})"
            ));
            None
        }
    }
}

impl Config {
    /// Reads the environment, naming every problem.
    pub fn from_env(mut env: Env) -> Result<Self, honeydue_core::config::ConfigError> {
        let db = DbConfig::read(&mut env);
        let admin = seed(&mut env, "ADMIN_EMAIL", "ADMIN_PASSWORD");
        let demo = seed(&mut env, "DEMO_EMAIL", "DEMO_PASSWORD");
        env.finish()?;
        Ok(Self {
            db: db.expect("checked by finish"),
            admin,
            demo,
        })
    }
}

/// What a run did.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Outcome {
    /// Schema version after the run.
    pub schema_version: i64,
    /// Migrations this run applied (0 when already current).
    pub applied: usize,
    /// Whether the admin account was created by this run.
    pub admin_created: bool,
    /// Whether the demo user was created by this run.
    pub demo_created: bool,
}

/// Applies migrations and seeds; returns what changed.
pub async fn run(cfg: &Config) -> anyhow::Result<Outcome> {
    let mut conn = PgConnection::connect(cfg.db.url.expose())
        .await
        .context("connecting to DATABASE_URL")?;
    // One run at a time from here on, so that what a run reports is what it
    // did (sqlx locks around the migrations too; this covers the seeds).
    sqlx::query("SELECT pg_advisory_lock(727202)")
        .execute(&mut conn)
        .await
        .context("taking the migrate lock")?;
    let before = applied_versions(&mut conn).await?;
    honeydue_core::db::MIGRATOR
        .run(&mut conn)
        .await
        .context("applying migrations")?;
    let after = applied_versions(&mut conn).await?;

    let admin_created = match &cfg.admin {
        Some(s) => {
            let hash = honeydue_core::auth::hash_password(s.password.expose())?;
            sqlx::query(
                "INSERT INTO admin_users (email, password_hash, name) VALUES ($1, $2, 'Admin')
                 ON CONFLICT (email) DO NOTHING",
            )
            .bind(&s.email)
            .bind(hash)
            .execute(&mut conn)
            .await
            .context("seeding the admin user")?
            .rows_affected()
                == 1
        }
        None => false,
    };
    let demo_created = match &cfg.demo {
        Some(s) => {
            let hash = honeydue_core::auth::hash_password(s.password.expose())?;
            sqlx::query(
                "INSERT INTO users (email, password_hash, first_name, last_name, email_verified_at)
                 VALUES ($1, $2, 'Demo', 'User', now())
                 ON CONFLICT (email) DO NOTHING",
            )
            .bind(&s.email)
            .bind(hash)
            .execute(&mut conn)
            .await
            .context("seeding the demo user")?
            .rows_affected()
                == 1
        }
        None => false,
    };
    sqlx::query("SELECT pg_advisory_unlock(727202)")
        .execute(&mut conn)
        .await
        .ok();
    conn.close().await.ok();
    Ok(Outcome {
        schema_version: after.iter().copied().max().unwrap_or(0),
        applied: after.len().saturating_sub(before.len()),
        admin_created,
        demo_created,
    })
}

async fn applied_versions(conn: &mut PgConnection) -> anyhow::Result<Vec<i64>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    Ok(
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut *conn)
            .await?,
    )
}
