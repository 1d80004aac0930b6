//! What every scheduled function shares: the scheduled time taken from the
//! event (never the wall clock), runs claimed per (job, slot) in `job_runs`
//! so a repeated or overlapping run does nothing twice, bounded catch-up of
//! missed hours, the per-user local-hour rule, and fan-out of in-app
//! notifications and emails.
//!
//! A function is a [`Job`]: a name, a cadence and a `run` for one slot. Its
//! binary is `honeydue_jobs::start(&JOB)`, the one entry point of every
//! function (`honeydue_core::config::start`).

pub mod reminders;
pub mod runs;
pub mod send;

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use honeydue_core::config::{AppConfig, BoxError, DbConfig, Function};
use honeydue_core::Env;
use honeydue_storage::{Storage, StorageConfig};
use serde_json::Value;
use sqlx::PgPool;

pub use runs::{run_event, Cadence, RunReport};

/// The one entry point of every function, `honeydue_core::config::start`:
/// a scheduled function's `main` is `start(&JOB).await`.
pub use honeydue_core::config::start;

/// A future borrowed from the context.
pub type JobFuture<'a> = Pin<Box<dyn Future<Output = anyhow::Result<Value>> + Send + 'a>>;

/// One scheduled function.
pub struct Job {
    /// Its name in `job_runs` (and logs).
    pub name: &'static str,
    /// Hourly (with catch-up) or daily.
    pub cadence: Cadence,
    /// Needs `APP_SECRET` (it signs unsubscribe links).
    pub mails: bool,
    /// Needs the S3 settings (it deletes files).
    pub storage: bool,
    /// Serves one slot: the scheduled hour (or day) it stands for.
    pub run: for<'a> fn(&'a Ctx, DateTime<Utc>) -> JobFuture<'a>,
}

/// What a job may use.
pub struct Ctx {
    /// The pool.
    pub db: PgPool,
    /// Name, base URL, sender.
    pub app: AppConfig,
    /// The secret that signs unsubscribe links (jobs that mail).
    pub secret: Option<String>,
    /// The file store (jobs that delete files).
    pub storage: Option<Storage>,
}

impl Ctx {
    /// Reads the configuration `job` needs from `env` and builds the
    /// context, as [`start`] does at cold start; every problem is named at
    /// once.
    pub async fn init(job: &Job, env: Env) -> anyhow::Result<Self> {
        honeydue_core::config::init(job, env).await
    }

    /// The secret for signing; present for jobs with `mails`.
    pub fn secret(&self) -> &str {
        self.secret.as_deref().unwrap_or_default()
    }
}

/// A scheduled function at cold start: `DATABASE_*` and the app settings,
/// `APP_SECRET` required when it `mails`, `S3_*` when it needs `storage`,
/// all from one environment; then the pool (schema checked) and the bucket;
/// then one [`run_event`] per invocation.
impl Function for Job {
    type Config = (DbConfig, AppConfig, Option<StorageConfig>);
    type State = Ctx;

    fn name(&self) -> &str {
        self.name
    }

    fn read(&self, env: &mut Env) -> Option<Self::Config> {
        let db = DbConfig::read(env);
        let app = AppConfig::read(env);
        if self.mails && app.secret.is_none() {
            env.problem("APP_SECRET is required (it signs unsubscribe links)");
        }
        let storage = if self.storage {
            StorageConfig::read(env).map(Some)
        } else {
            Some(None)
        };
        Some((db?, app, storage?))
    }

    async fn build(&self, (db, app, storage): Self::Config) -> anyhow::Result<Ctx> {
        let pool = honeydue_core::db::open(&db).await?;
        let storage = match storage {
            Some(cfg) => Some(Storage::new(&cfg).await),
            None => None,
        };
        Ok(Ctx {
            db: pool,
            secret: app.secret.as_ref().map(|s| s.expose().clone()),
            app,
            storage,
        })
    }

    async fn serve(&self, ctx: Ctx) -> Result<(), BoxError> {
        let ctx = &ctx;
        honeydue_core::config::serve_each(|event| async move { run_event(ctx, self, &event).await })
            .await
    }
}

/// User ids in `[lo, hi]` ranges of `size`, covering every user: scans take
/// one transaction per range, so a run's memory and lock time stay bounded.
pub async fn user_batches(pool: &PgPool, size: i64) -> sqlx::Result<Vec<(i64, i64)>> {
    let r = sqlx::query!(
        r#"SELECT coalesce(min(id), 0) AS "lo!", coalesce(max(id), -1) AS "hi!" FROM users"#
    )
    .fetch_one(pool)
    .await?;
    Ok((r.lo..=r.hi)
        .step_by(size as usize)
        .map(|start| (start, start + size - 1))
        .collect())
}
