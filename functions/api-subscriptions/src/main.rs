#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    honeydue_core::telemetry::init();
    // Unusable App Store settings (an App Store without its pro products
    // would grant pro for any product) are an init error naming them, not
    // a function that starts with purchases quietly switched off.
    if let Err(e) = api_subscriptions::Stores::from_env(honeydue_core::Env::from_process()) {
        tracing::error!(error = %e, "init failed");
        eprintln!("api-subscriptions: {e}");
        std::process::exit(2);
    }
    honeydue_http::state::serve("api-subscriptions", api_subscriptions::app).await
}
