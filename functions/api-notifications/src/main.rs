#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    honeydue_http::state::serve_requiring(
        "api-notifications",
        &["APP_SECRET"],
        api_notifications::app,
    )
    .await
}
