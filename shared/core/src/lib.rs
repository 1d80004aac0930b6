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

/// Every function allocates through mimalloc instead of glibc's malloc.
///
/// glibc gave the top of its heap back to the kernel once more than its
/// trim threshold was free, then faulted the pages in again on the next
/// answer: 40 page faults per 200-task board (its ~130 KB answer buffers;
/// in one run, turning glibc's trimming off through GLIBC_TUNABLES took
/// the function's CPU per board from ~1,040 to ~900 µs). With mimalloc:
/// no faults, as fast, and no deployment setting to forget. And glibc's
/// per-thread arenas kept the 19 MiB of
/// each password hash on the blocking threads that ran it: 160 logins,
/// eight at a time, took an api-auth worker over its 256 MB MemorySize
/// (the shim replaced it); with mimalloc its peak was 74 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The version every function reports (the workspace version, or
/// `HONEYDUE_VERSION` baked in at build time by the release pipeline).
pub const VERSION: &str = match option_env!("HONEYDUE_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};
