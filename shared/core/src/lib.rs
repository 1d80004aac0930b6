//! The core every honeyDue function builds on: typed configuration from the
//! environment, the error type clients see, the Postgres pool and schema
//! check, password and token primitives, validated domain types and rules,
//! named constraints mapped to client errors, and tracing.
//!
//! Nothing here knows about a particular function.

pub mod auth;
pub mod config;
pub mod constraint;
pub mod db;
pub mod domain;
pub mod error;
pub mod iso;
pub mod limits;
pub mod membership;
pub mod notify;
pub mod outbox;
pub mod telemetry;
pub mod types;

pub use config::{Env, Secret};
pub use constraint::OnConstraint;
pub use error::{AppError, AppResult, FieldErrors, Validator};

/// The version every function reports (the workspace version, or
/// `HONEYDUE_VERSION` baked in at build time by the release pipeline).
pub const VERSION: &str = match option_env!("HONEYDUE_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};
