use honeydue_http::Stateless;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    honeydue_http::start(&Stateless::new("web", web::app)).await
}
