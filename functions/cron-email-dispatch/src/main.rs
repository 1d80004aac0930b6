use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::Value;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    honeydue_core::telemetry::init();
    let d = match cron_email_dispatch::Dispatcher::init(honeydue_core::Env::from_process()).await {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "init failed");
            eprintln!("cron-email-dispatch: {e:#}");
            std::process::exit(2);
        }
    };
    let d = &d;
    lambda_runtime::run(service_fn(move |_: LambdaEvent<Value>| async move {
        let stats = d.run().await.map_err(|e| format!("{e:#}"))?;
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(stats)?)
    }))
    .await
}
