//! A test fixture, not shipped: an external Lambda extension on AWS's own
//! extension library, as an observability agent would be. It appends each
//! event it is given to the file `EXT_RECORD` names (`<name> INVOKE
//! <request id>`, `<name> SHUTDOWN <reason>`), and on `SHUTDOWN` exits.
//!
//! `EXT_FLUSH_MS` makes it work that long after each INVOKE before asking
//! for its next event (an agent flushing); `EXT_FAIL=invoke` makes it fail
//! on its first INVOKE (the library then reports the error and exits).

use std::io::Write;
use std::time::Duration;

use lambda_extension::{service_fn, Error, LambdaEvent, NextEvent};

fn record(line: &str) {
    if let Ok(path) = std::env::var("EXT_RECORD") {
        let name = std::env::args()
            .next()
            .and_then(|a| a.rsplit('/').next().map(str::to_string))
            .unwrap_or_default();
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            // One write per line (O_APPEND): several extensions share the file.
            let _ = f.write_all(format!("{name} {line}\n").as_bytes());
        }
    }
}

async fn on_event(event: LambdaEvent) -> Result<(), Error> {
    match event.next {
        NextEvent::Invoke(e) => {
            record(&format!("INVOKE {}", e.request_id));
            if std::env::var("EXT_FAIL").as_deref() == Ok("invoke") {
                return Err("failing on purpose".into());
            }
            let flush: u64 = std::env::var("EXT_FLUSH_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if flush > 0 {
                tokio::time::sleep(Duration::from_millis(flush)).await;
                record(&format!("FLUSHED {}", e.request_id));
            }
        }
        NextEvent::Shutdown(e) => {
            record(&format!("SHUTDOWN {}", e.shutdown_reason));
            std::process::exit(0);
        }
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let ext = lambda_extension::Extension::new()
        .with_events_processor(service_fn(on_event))
        .register()
        .await?;
    record("REGISTERED");
    ext.run().await
}
