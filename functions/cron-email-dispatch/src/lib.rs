//! The `cron-email-dispatch` function: delivers the email outbox. Runs every
//! minute (EventBridge on AWS, a CronJob through `shim invoke --scheduled` on
//! k3s); concurrent or overlapping runs are safe (rows are claimed with
//! `SKIP LOCKED`).

use honeydue_core::config::{AppConfig, BoxError, DbConfig, Function};
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

/// The function as `honeydue_core::config::start` runs it: `DATABASE_*`,
/// `SMTP_*` and `MAIL_FROM` from one environment (the SMTP client is built
/// while reading, so an unusable one is named with every other problem),
/// then the pool (schema checked), then one [`Dispatcher::run`] per
/// invocation.
pub struct EmailDispatch;

impl Function for EmailDispatch {
    type Config = (DbConfig, Mailer);
    type State = Dispatcher;

    fn name(&self) -> &str {
        "cron-email-dispatch"
    }

    fn read(&self, env: &mut Env) -> Option<Self::Config> {
        let db = DbConfig::read(env);
        let app = AppConfig::read(env);
        let mailer = match SmtpConfig::read(env) {
            Some(smtp) => match Mailer::new(&smtp, &app.mail_from) {
                Ok(mailer) => Some(mailer),
                Err(e) => {
                    env.problem(format!("SMTP settings unusable: {e:#}"));
                    None
                }
            },
            None => None,
        };
        Some((db?, mailer?))
    }

    async fn build(&self, (db, mailer): Self::Config) -> anyhow::Result<Dispatcher> {
        let pool = honeydue_core::db::open(&db).await?;
        Ok(Dispatcher {
            db: pool,
            mailer,
            policy: Policy::default(),
        })
    }

    async fn serve(&self, dispatcher: Dispatcher) -> Result<(), BoxError> {
        let d = &dispatcher;
        honeydue_core::config::serve_each(|_| d.run()).await
    }
}
