//! The migrate function. On Lambda (or under the shim) it runs once per
//! invocation; started by hand without `AWS_LAMBDA_RUNTIME_API` it runs once
//! and exits, which is how `make dev` and the tests use it.

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    honeydue_core::telemetry::init();
    let cfg = match migrate::Config::from_env(honeydue_core::Env::from_process()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "configuration");
            eprintln!("migrate: {e}");
            std::process::exit(2);
        }
    };
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_none() {
        return match migrate::run(&cfg).await {
            Ok(outcome) => {
                println!("{}", serde_json::to_string(&outcome)?);
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = ?e, "migration failed");
                eprintln!("migrate: {e:#}");
                std::process::exit(1);
            }
        };
    }
    let cfg = &cfg;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        let outcome = migrate::run(cfg).await.map_err(|e| format!("{e:#}"))?;
        tracing::info!(?outcome, "migrations applied");
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(outcome)?)
    }))
    .await
}
