#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    honeydue_core::telemetry::init();
    let state = match api_uploads::Uploads::init(honeydue_core::Env::from_process()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "init failed");
            eprintln!("api-uploads: {e:#}");
            std::process::exit(2);
        }
    };
    honeydue_http::run(api_uploads::app(state)).await
}
