//! The `cron-email-dispatch` function: delivers the email outbox. Runs every
//! minute (EventBridge on AWS, a CronJob through `shim invoke --scheduled` on
//! k3s); concurrent or overlapping runs are safe (rows are claimed with
//! `SKIP LOCKED`).

use honeydue_core::config::{AppConfig, DbConfig};
use honeydue_core::Env;
use honeydue_mail::deliver::{dispatch, Mailer, Policy, SmtpConfig, Stats};
use sqlx::PgPool;

/// What the function needs, built once per process.
#[derive(Clone)]
pub struct Dispatcher {
    /// The pool.
    pub db: PgPool,
    /// The SMTP client.
    pub mailer: Mailer,
    /// Batch size, attempts, time budget.
    pub policy: Policy,
}

impl Dispatcher {
    /// Reads `DATABASE_URL`, `SMTP_*`, `MAIL_FROM`; checks the schema.
    pub async fn init(mut env: Env) -> anyhow::Result<Self> {
        let db = DbConfig::read(&mut env);
        let app = AppConfig::read(&mut env);
        let smtp = SmtpConfig::read(&mut env);
        env.finish()?;
        let pool = honeydue_core::db::pool(&db.expect("checked"))?;
        honeydue_core::db::check_schema(&pool).await?;
        let mailer = Mailer::new(&smtp.expect("checked"), &app.mail_from)?;
        Ok(Self {
            db: pool,
            mailer,
            policy: Policy::default(),
        })
    }

    /// One run.
    pub async fn run(&self) -> anyhow::Result<Stats> {
        let stats = dispatch(&self.db, &self.mailer, self.policy).await?;
        tracing::info!(
            sent = stats.sent,
            retried = stats.retried,
            dead = stats.dead,
            "outbox dispatched"
        );
        Ok(stats)
    }
}
