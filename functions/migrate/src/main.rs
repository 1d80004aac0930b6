//! The migrate function. On Lambda (or under the shim) it runs once per
//! invocation; started by hand without `AWS_LAMBDA_RUNTIME_API` it runs once
//! and exits, which is how `make dev` and the tests use it (see
//! [`migrate::Migrate`]).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    honeydue_core::config::start(&migrate::Migrate).await
}
