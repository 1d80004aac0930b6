#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    honeydue_http::state::serve("api-contractors", api_contractors::app).await
}
