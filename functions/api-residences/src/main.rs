use honeydue_http::Api;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    honeydue_http::start(&Api::new("api-residences", api_residences::app)).await
}
