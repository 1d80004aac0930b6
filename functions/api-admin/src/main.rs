#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    honeydue_http::state::serve("api-admin", api_admin::app).await
}
