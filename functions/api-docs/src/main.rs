#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    honeydue_core::telemetry::init();
    honeydue_http::run(api_docs::app()).await
}
