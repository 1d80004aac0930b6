//! Any request the shim may receive (method, path, query, headers, body
//! split out of the fuzzer's bytes) becomes an event that is valid JSON in
//! every payload format and that the official runtime's own types read back
//! (the v2 event as `lambda_http` sees it) with the same method and body.
#![no_main]

use std::collections::BTreeMap;

use honeydue_shim::event::{build_event, PayloadFormat, RequestInfo};
use http::{HeaderMap, HeaderName, HeaderValue};
use lambda_http::request::LambdaRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(5, |b| *b == 0);
    let method = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let query = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let raw_headers = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let method = match method.len() % 5 {
        0 => "GET",
        1 => "POST",
        2 => "PUT",
        3 => "PATCH",
        _ => "DELETE",
    };
    // Only what hyper would have accepted reaches the shim.
    let path = format!("/{}", path.trim_start_matches('/'));
    if http::uri::PathAndQuery::try_from(format!("{path}?{query}")).is_err() {
        return;
    }
    let mut headers = HeaderMap::new();
    for line in raw_headers.split(|b| *b == b'\n') {
        let mut kv = line.splitn(2, |b| *b == b':');
        let (Some(k), Some(v)) = (kv.next(), kv.next()) else {
            continue;
        };
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k), HeaderValue::from_bytes(v)) {
            headers.append(k, v);
        }
    }
    let params = BTreeMap::new();
    let info = RequestInfo {
        method,
        path: &path,
        query: &query,
        headers: &headers,
        body,
        source_ip: "127.0.0.1",
        route_key: "$default",
        path_params: &params,
        request_id: "fuzz",
        time_epoch_ms: 0,
        protocol: "HTTP/1.1",
    };
    for format in [PayloadFormat::V2, PayloadFormat::V1, PayloadFormat::Alb] {
        let event = build_event(&info, format);
        let v: serde_json::Value = serde_json::from_slice(&event).expect("the event is JSON");
        assert!(v.is_object());
    }
    let event = build_event(&info, PayloadFormat::V2);
    let req: LambdaRequest =
        serde_json::from_slice(&event).expect("lambda_http reads the v2 event");
    let req: http::Request<lambda_http::Body> = req.into();
    assert_eq!(req.method().as_str(), method);
    assert_eq!(
        req.body().as_ref(),
        body,
        "the body survives the round trip"
    );
});
