//! The runtime-interface shim: runs unmodified Lambda functions (any
//! runtime client speaking the Lambda Runtime API 2018-06-01) behind plain
//! HTTP — as a Kubernetes pod's entrypoint, as a local API gateway for every
//! function in `template.yaml`, or for one-shot invocations (CronJobs).

pub mod body;
pub mod cli;
pub mod event;
pub mod extensions;
pub mod log;
pub mod metrics;
pub mod pool;
pub mod report;
pub mod routes;
pub mod runtime_api;
pub mod server;
