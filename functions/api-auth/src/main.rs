#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    honeydue_core::telemetry::init();
    let state = match api_auth::State::init(honeydue_core::Env::from_process()).await {
        Ok(s) => s,
        Err(e) => {
            // Reported to the runtime as an init error by exiting non-zero
            // before polling; the message names what is wrong.
            tracing::error!(error = format!("{e:#}"), "init failed");
            eprintln!("api-auth: {e:#}");
            std::process::exit(2);
        }
    };
    honeydue_http::run(api_auth::app(state)).await
}
