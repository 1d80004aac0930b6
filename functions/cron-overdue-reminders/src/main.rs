#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    honeydue_jobs::serve(&cron_overdue_reminders::JOB).await
}
