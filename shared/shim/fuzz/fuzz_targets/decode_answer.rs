//! Any bytes a function answers with: the shim either refuses them with a
//! reason or produces a response hyper can send (valid status and headers),
//! and never panics.
#![no_main]

use honeydue_shim::event::decode_answer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = decode_answer(data) {
        let mut b = http::Response::builder().status(a.status);
        for (k, v) in a.headers.iter() {
            b = b.header(k, v);
        }
        assert!(b.body(()).is_ok(), "an accepted answer must be sendable");
    }
});
