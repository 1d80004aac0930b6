//! The configuration and shared state of a database-backed HTTP function,
//! built once per process by [`start`](fn@crate::start).

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
    /// Reads the common variables into `env`, recording every problem
    /// there; `None` only when one was recorded.
    pub fn read(env: &mut Env) -> Option<Self> {
        Self::read_with(env, |_, _| Some(())).map(|(cfg, ())| cfg)
    }

    /// Reads the common variables and then, from the same `env`, what
    /// `more` reads (it sees the app settings already read: the sender
    /// address, the secret).
    pub(crate) fn read_with<T>(
        env: &mut Env,
        more: impl FnOnce(&mut Env, &AppConfig) -> Option<T>,
    ) -> Option<(Self, T)> {
        let db = DbConfig::read(env);
        let app = AppConfig::read(env);
        let redis_url = env.optional("REDIS_URL");
        let extra = more(env, &app);
        Some((
            Self {
                db: db?,
                app,
                redis_url,
            },
            extra?,
        ))
    }

    /// Reads every variable, naming all problems at once.
    pub fn from_env(mut env: Env) -> Result<Self, ConfigError> {
        let cfg = Self::read(&mut env);
        env.finish_with(cfg)
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
    /// Builds the pool and the cache from a complete configuration, and
    /// checks that the database schema is current (an init error
    /// otherwise). Functions get theirs from [`start`](fn@crate::start).
    pub async fn open(cfg: Config) -> anyhow::Result<Self> {
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
