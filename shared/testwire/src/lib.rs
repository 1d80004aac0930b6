//! Test helpers for servers run as real processes: start one, wait until it
//! answers, signal it, stop it on drop (`proc`), and talk raw HTTP/1.1 to
//! it (`wire`), as a client would. No knowledge of any product: the shim's
//! own tests use it, and so do the product's end-to-end tests.

pub mod proc;
pub mod wire;
