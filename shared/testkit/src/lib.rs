//! Test helpers shared by every crate's tests: a fresh, migrated Postgres
//! database per test (cloned from a template migrated once), a throwaway
//! Redis server, and a small client for calling a router in process.
//!
//! The servers come from `DATABASE_URL` (any database on the server; the
//! helpers connect to the server's `postgres` database to create others) —
//! `make test` sets it from `scripts/services.sh`.

pub mod db;
pub mod fixtures;
pub mod http;
pub mod proc;
pub mod redis;
pub mod s3;
pub mod smtp;
pub mod wire;

pub use db::TestDb;
pub use http::{TestClient, TestResponse};
