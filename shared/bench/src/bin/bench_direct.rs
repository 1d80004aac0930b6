//! The benchmark handlers served directly by axum: `bench-direct ADDR`.
#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    axum::serve(
        listener,
        honeydue_bench::app(honeydue_bench::pool_from_env()),
    )
    .await
    .expect("serve");
}
