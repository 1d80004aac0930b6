//! Scheduled functions under test: the context a job runs with, read from
//! the same variables the function reads, pointed at a test database (and a
//! test S3 server for jobs that delete files).
//!
//! ```ignore
//! let c = ctx(&db, &JOB).await;
//! let c = CtxBuilder::new(&db, &JOB).s3(&s3, "cleanup-test").build().await;
//! ```

use honeydue_core::Env;
use honeydue_jobs::{Ctx, Job};

use crate::s3::TestS3;
use crate::TestDb;

/// The `APP_SECRET` of a job that mails: it signs unsubscribe links, so a
/// test can verify them with it.
pub const SECRET: &str = "test-secret-0123456789abcdef";

/// The context `job` runs with against `db`: the database, and [`SECRET`]
/// when the job mails. Panics naming every missing setting (a job that
/// deletes files needs [`CtxBuilder::s3`]).
pub async fn ctx(db: &TestDb, job: &Job) -> Ctx {
    CtxBuilder::new(db, job).build().await
}

/// A job's context with more settings than [`ctx`] gives.
pub struct CtxBuilder<'a> {
    job: &'a Job,
    env: Vec<(&'static str, String)>,
}

impl<'a> CtxBuilder<'a> {
    /// The database, and [`SECRET`] when `job` mails.
    pub fn new(db: &TestDb, job: &'a Job) -> Self {
        let mut env = vec![("DATABASE_URL", db.url.clone())];
        if job.mails {
            env.push(("APP_SECRET", SECRET.to_string()));
        }
        Self { job, env }
    }

    /// `APP_BASE_URL`: where links in emails point.
    pub fn base_url(self, url: &str) -> Self {
        self.var("APP_BASE_URL", url)
    }

    /// The `S3_*` settings for `s3`'s server and `bucket`.
    pub fn s3(mut self, s3: &TestS3, bucket: &str) -> Self {
        self.env.extend(s3.env(bucket));
        self
    }

    /// Any other variable the function reads.
    pub fn var(mut self, name: &'static str, value: &str) -> Self {
        self.env.push((name, value.to_string()));
        self
    }

    /// Reads the configuration as the function does at cold start and
    /// connects; panics naming every problem.
    pub async fn build(self) -> Ctx {
        Ctx::init(self.job, Env::from_pairs(self.env))
            .await
            .unwrap_or_else(|e| panic!("job context: {e:#}"))
    }
}
