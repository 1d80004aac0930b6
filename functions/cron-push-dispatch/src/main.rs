#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    honeydue_core::config::start(&cron_push_dispatch::PushDispatch).await
}
