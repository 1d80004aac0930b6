//! Test helpers shared by every crate's tests: a fresh, migrated Postgres
//! database per test (cloned from a template migrated once), a throwaway
//! Redis server, a small client for calling a router in process, and the
//! context a scheduled job runs with.
//!
//! The servers come from `DATABASE_URL` (any database on the server; the
//! helpers connect to the server's `postgres` database to create others) —
//! `make test` sets it from `scripts/services.sh`.

pub mod db;
pub mod fixtures;
pub mod http;
pub mod jobs;
pub mod push;
pub mod redis;
pub mod s3;
pub mod smtp;
pub mod statements;

pub use db::TestDb;
pub use http::{TestClient, TestResponse};
/// Processes and raw HTTP on the wire (the generic `testwire` crate).
pub use testwire::{proc, wire};
