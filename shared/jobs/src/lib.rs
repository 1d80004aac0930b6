//! What every scheduled function shares: the scheduled time taken from the
//! event (never the wall clock), runs claimed per (job, slot) in `job_runs`
//! so a repeated or overlapping run does nothing twice, bounded catch-up of
//! missed hours, the per-user local-hour rule, and fan-out of in-app
//! notifications and emails.
//!
//! A function is a [`Job`]: a name, a cadence and a `run` for one slot. Its
//! binary is `honeydue_jobs::serve(&JOB)`.

pub mod reminders;
pub mod runs;
pub mod send;

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use honeydue_core::config::{AppConfig, DbConfig};
use honeydue_core::Env;
use honeydue_storage::{Storage, StorageConfig};
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;
use sqlx::PgPool;

pub use runs::{run_event, Cadence, RunReport};

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
    /// Reads the configuration `job` needs; every problem is named at once.
    pub async fn init(job: &Job, mut env: Env) -> anyhow::Result<Self> {
        let db = DbConfig::read(&mut env);
        let app = AppConfig::read(&mut env);
        if job.mails && app.secret.is_none() {
            env.problem("APP_SECRET is required (it signs unsubscribe links)");
        }
        let storage = if job.storage {
            StorageConfig::read(&mut env)
        } else {
            None
        };
        env.finish()?;
        let pool = honeydue_core::db::pool(&db.expect("checked"))?;
        honeydue_core::db::check_schema(&pool).await?;
        let storage = match storage {
            Some(cfg) => Some(Storage::new(&cfg).await),
            None => None,
        };
        Ok(Self {
            db: pool,
            secret: app.secret.as_ref().map(|s| s.expose().clone()),
            app,
            storage,
        })
    }

    /// The secret for signing; present for jobs with `mails`.
    pub fn secret(&self) -> &str {
        self.secret.as_deref().unwrap_or_default()
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

/// The binary of a scheduled function: configuration, then the Lambda
/// runtime loop. A configuration problem exits 2 before the loop, which the
/// shim and Lambda report as an init error.
pub async fn serve(job: &'static Job) -> Result<(), lambda_runtime::Error> {
    honeydue_core::telemetry::init();
    let ctx = match Ctx::init(job, Env::from_process()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(job = job.name, error = format!("{e:#}"), "init failed");
            eprintln!("{}: {e:#}", job.name);
            std::process::exit(2);
        }
    };
    let ctx = &ctx;
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<Value>| async move {
        let report = run_event(ctx, job, &ev.payload).await?;
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
    }))
    .await
}
