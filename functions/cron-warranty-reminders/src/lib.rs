//! `cron-warranty-reminders`: warranty expiry reminders (30, 7, 0 days) at
//! each user's local hour. The scan is shared with the other reminder
//! functions: see `honeydue_jobs::reminders`.

use chrono::{DateTime, Utc};
use honeydue_jobs::reminders::{self, Kind};
use honeydue_jobs::{Cadence, Ctx, Job, JobFuture};

/// The job.
pub static JOB: Job = Job {
    name: "warranty-reminders",
    cadence: Cadence::Hourly { lookback: 6 },
    mails: true,
    storage: false,
    run,
};

fn run(ctx: &Ctx, hour: DateTime<Utc>) -> JobFuture<'_> {
    Box::pin(reminders::run(ctx, Kind::Warranty, hour))
}
