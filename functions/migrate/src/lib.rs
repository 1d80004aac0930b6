//! Applies every migration and seeds accounts. Safe to run twice, or twice
//! at once: sqlx takes a Postgres advisory lock around the migrations, and
//! seeds insert only when absent.

use anyhow::Context;
use honeydue_core::config::{BoxError, DbConfig, Function};
use honeydue_core::types::{Email, NewPassword};
use honeydue_core::{Env, Secret};
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Serialize;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

pub mod custom_resource;

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
    /// Reads `DATABASE_*` and the seeds into `env`, recording every problem
    /// there; `None` only when one was recorded.
    pub fn read(env: &mut Env) -> Option<Self> {
        let db = DbConfig::read(env);
        let admin = seed(env, "ADMIN_EMAIL", "ADMIN_PASSWORD");
        let demo = seed(env, "DEMO_EMAIL", "DEMO_PASSWORD");
        Some(Self {
            db: db?,
            admin,
            demo,
        })
    }

    /// Reads the environment, naming every problem.
    pub fn from_env(mut env: Env) -> Result<Self, honeydue_core::config::ConfigError> {
        let cfg = Self::read(&mut env);
        env.finish_with(cfg)
    }
}

/// The function as `honeydue_core::config::start` runs it. On Lambda (or
/// under the shim) it applies the migrations once per invocation; started
/// by hand without `AWS_LAMBDA_RUNTIME_API` it runs once, prints the
/// [`Outcome`] as JSON and exits (1 when the run fails), which is how
/// `make dev` and the tests use it.
pub struct Migrate;

impl Function for Migrate {
    type Config = Config;
    type State = Config;

    fn name(&self) -> &str {
        "migrate"
    }

    fn read(&self, env: &mut Env) -> Option<Config> {
        Config::read(env)
    }

    async fn build(&self, cfg: Config) -> anyhow::Result<Config> {
        // Nothing to build: each run opens its own connection, and there is
        // no schema to check before migrating it.
        Ok(cfg)
    }

    async fn serve(&self, cfg: Config) -> Result<(), BoxError> {
        if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
            return match run(&cfg).await {
                Ok(outcome) => {
                    println!("{}", serde_json::to_string(&outcome)?);
                    Ok(())
                }
                Err(e) => {
                    tracing::error!(error = ?e, "migration failed");
                    eprintln!("migrate: {e:#}");
                    std::process::exit(1);
                }
            };
        }
        let cfg = &cfg;
        lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| async move {
            // The stack's Custom::Migrations resource (sam deploy).
            if let Some(req) = custom_resource::Request::from_event(&ev.payload) {
                let req = req?;
                let doc = custom_resource::answer(cfg, &req).await;
                custom_resource::send(&req.response_url, &doc)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                tracing::info!(status = %doc["Status"], request = req.request_type, "answered CloudFormation");
                return Ok::<_, lambda_runtime::Error>(doc);
            }
            let outcome = run(cfg).await.map_err(|e| format!("{e:#}"))?;
            tracing::info!(?outcome, "migrations applied");
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(outcome)?)
        }))
        .await
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

/// Applies migrations and seeds; returns what changed. Migrations newer
/// than this binary are left alone (see [`honeydue_core::db::MIGRATOR`]).
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
