//! The configuration and shared state of a database-backed HTTP function,
//! built once per process.

use std::sync::Arc;

use axum::extract::FromRef;
use honeydue_cache::Cache;
use honeydue_core::config::{AppConfig, ConfigError, DbConfig};
use honeydue_core::Env;
use sqlx::PgPool;

/// What every database-backed HTTP function reads at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Postgres.
    pub db: DbConfig,
    /// Public app settings.
    pub app: AppConfig,
    /// `REDIS_URL` (optional): cache and rate limits; absent = neither.
    pub redis_url: Option<String>,
}

impl Config {
    /// Reads every variable, naming all problems at once.
    pub fn from_env(mut env: Env) -> Result<Self, ConfigError> {
        let db = DbConfig::read(&mut env);
        let app = AppConfig::read(&mut env);
        let redis_url = env.optional("REDIS_URL");
        env.finish()?;
        Ok(Self {
            db: db.expect("checked by finish"),
            app,
            redis_url,
        })
    }

    /// A configuration for tests: this database, defaults for the rest.
    pub fn for_tests(database_url: &str, redis_url: Option<String>) -> Self {
        let mut env = Env::from_pairs([
            ("DATABASE_URL", database_url),
            ("APP_SECRET", "test-secret-not-for-production"),
        ]);
        let db = DbConfig::read(&mut env).expect("valid test URL");
        let app = AppConfig::read(&mut env);
        Self { db, app, redis_url }
    }
}

/// Shared by every handler of a function.
#[derive(Clone)]
pub struct State {
    /// The pool.
    pub db: PgPool,
    /// Optional Redis.
    pub cache: Cache,
    /// Configuration.
    pub cfg: Arc<Config>,
}

impl FromRef<State> for Cache {
    fn from_ref(s: &State) -> Cache {
        s.cache.clone()
    }
}

impl FromRef<State> for PgPool {
    fn from_ref(s: &State) -> PgPool {
        s.db.clone()
    }
}

impl State {
    /// Reads configuration, builds the pool and cache, and checks that the
    /// database schema is current (an init error otherwise).
    pub async fn init(env: Env) -> anyhow::Result<Self> {
        let cfg = Config::from_env(env)?;
        let db = honeydue_core::db::pool(&cfg.db)?;
        honeydue_core::db::check_schema(&db).await?;
        Ok(Self::new(cfg, db))
    }

    /// Builds state from parts (tests).
    pub fn new(cfg: Config, db: PgPool) -> Self {
        let cache = Cache::new(cfg.redis_url.as_deref());
        Self {
            db,
            cache,
            cfg: Arc::new(cfg),
        }
    }
}

/// A function's `main`: tracing, state from the environment (exit 2 with
/// every configuration problem named), then the router on the Runtime API.
pub async fn serve(name: &str, app: fn(State) -> axum::Router) -> Result<(), lambda_http::Error> {
    serve_requiring(name, &[], app).await
}

/// [`serve`] for a function that also needs optional settings to be set
/// (`APP_SECRET`, ...): their absence is an init error naming them.
pub async fn serve_requiring(
    name: &str,
    required: &[&str],
    app: fn(State) -> axum::Router,
) -> Result<(), lambda_http::Error> {
    honeydue_core::telemetry::init();
    let missing: Vec<String> = required
        .iter()
        .filter(|v| {
            std::env::var(v)
                .map(|s| s.trim().is_empty())
                .unwrap_or(true)
        })
        .map(|v| format!("{v} is not set"))
        .collect();
    let state = match State::init(Env::from_process()).await {
        Ok(_) if !missing.is_empty() => Err(anyhow::anyhow!(
            "invalid configuration: {}",
            missing.join("; ")
        )),
        Err(e) if !missing.is_empty() => Err(anyhow::anyhow!("{e:#}; {}", missing.join("; "))),
        other => other,
    };
    let state = match state {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "init failed");
            eprintln!("{name}: {e:#}");
            std::process::exit(2);
        }
    };
    crate::run(app(state)).await
}
