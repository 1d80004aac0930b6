#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    honeydue_jobs::start(&cron_cleanup::JOB).await
}
