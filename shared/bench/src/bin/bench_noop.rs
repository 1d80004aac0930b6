//! The benchmark handlers as a Lambda function.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    honeydue_http::run(honeydue_bench::app(honeydue_bench::pool_from_env())).await
}
