//! The `api-auth` function: accounts and sessions under `/api/auth/`.

mod routes;

use std::sync::Arc;

use axum::extract::FromRef;
use axum::Router;
use honeydue_cache::Cache;
use honeydue_core::config::{AppConfig, DbConfig};
use honeydue_core::Env;
use sqlx::PgPool;

/// Configuration read once at cold start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Postgres.
    pub db: DbConfig,
    /// Public app settings.
    pub app: AppConfig,
    /// `REDIS_URL` (optional): rate limits; absent = not enforced.
    pub redis_url: Option<String>,
}

impl Config {
    /// Reads every variable, naming all problems at once.
    pub fn from_env(mut env: Env) -> Result<Self, honeydue_core::config::ConfigError> {
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
}

/// What every handler shares: built once per process.
#[derive(Clone)]
pub struct State {
    /// The pool.
    pub db: PgPool,
    /// Optional Redis.
    pub cache: Cache,
    /// Configuration.
    pub cfg: Arc<Config>,
}

impl FromRef<State> for PgPool {
    fn from_ref(s: &State) -> PgPool {
        s.db.clone()
    }
}

impl State {
    /// Reads configuration, builds the pool and cache, and checks that the
    /// database schema is current.
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

/// The function's router.
pub fn app(state: State) -> Router {
    honeydue_http::finish(routes::router(), 16 * 1024).with_state(state)
}
