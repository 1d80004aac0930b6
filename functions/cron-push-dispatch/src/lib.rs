//! The `cron-push-dispatch` function: delivers the push outbox to APNs and
//! FCM. Runs every minute (EventBridge on AWS, a CronJob through `shim
//! invoke --scheduled` on k3s); concurrent or overlapping runs are safe
//! (rows are claimed with `SKIP LOCKED` and a lease). With no `APNS_*` and
//! no `FCM_*` set it sends nothing and only expires day-old rows.

use honeydue_core::config::{BoxError, DbConfig, Function};
use honeydue_core::outbox::Policy;
use honeydue_core::Env;
use honeydue_push::outbox::{dispatch, Stats};
use honeydue_push::Push;
use sqlx::PgPool;

/// What the function needs, built once per process.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    /// The pool.
    pub db: PgPool,
    /// The senders configured.
    pub push: Push,
    /// Batch size, attempts, time budget.
    pub policy: Policy,
}

impl Dispatcher {
    /// One run.
    pub async fn run(&self) -> anyhow::Result<Stats> {
        let stats = dispatch(&self.db, &self.push, self.policy).await?;
        tracing::info!(
            sent = stats.sent,
            retried = stats.retried,
            dead = stats.dead,
            deactivated = stats.deactivated,
            expired = stats.expired,
            "push outbox dispatched"
        );
        Ok(stats)
    }
}

/// The function as `honeydue_core::config::start` runs it: `DATABASE_*`,
/// `APNS_*` and `FCM_*` from one environment (keys are checked while
/// reading, so an unusable one is named with every other problem), then the
/// pool (schema checked), then one [`Dispatcher::run`] per invocation.
pub struct PushDispatch;

impl Function for PushDispatch {
    type Config = (DbConfig, Push);
    type State = Dispatcher;

    fn name(&self) -> &str {
        "cron-push-dispatch"
    }

    fn read(&self, env: &mut Env) -> Option<Self::Config> {
        let db = DbConfig::read(env);
        let push = Push::read(env);
        Some((db?, push?))
    }

    async fn build(&self, (db, push): Self::Config) -> anyhow::Result<Dispatcher> {
        let pool = honeydue_core::db::open(&db).await?;
        if push.platforms().is_empty() {
            tracing::info!("no APNS_* or FCM_* settings: push is off");
        }
        Ok(Dispatcher {
            db: pool,
            push,
            policy: Policy::default(),
        })
    }

    async fn serve(&self, dispatcher: Dispatcher) -> Result<(), BoxError> {
        let d = &dispatcher;
        honeydue_core::config::serve_each(|_| d.run()).await
    }
}
