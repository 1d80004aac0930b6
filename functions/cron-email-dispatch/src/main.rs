#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    honeydue_core::config::start(&cron_email_dispatch::EmailDispatch).await
}
