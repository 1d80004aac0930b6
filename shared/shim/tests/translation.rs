//! Property tests of the translation, with the official Rust runtime's own
//! types as the oracle: any request the shim turns into an event must come
//! out of `lambda_http` as the same request, and any answer `lambda_http`
//! can produce must come back out of the shim as the same response.

use std::collections::BTreeMap;

use honeydue_shim::event::{build_event, decode_answer, PayloadFormat, RequestInfo};
use http::{HeaderMap, HeaderName, HeaderValue};
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use lambda_http::request::LambdaRequest;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    binary: bool,
}

fn header_value() -> impl Strategy<Value = String> {
    "[!-~]([ -~]{0,16}[!-~])?"
}

fn req() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE"]),
        // Dot segments are left out: the http crate normalises them away.
        prop::collection::vec("[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,7}", 0..5),
        any::<bool>(),
        prop::collection::vec(("[a-z]{1,5}", "[a-zA-Z0-9 %&=+/]{0,8}"), 0..4),
        prop::collection::vec(("x-[a-z]{1,8}", header_value()), 0..5),
        prop::collection::vec(any::<u8>(), 0..200),
        any::<bool>(),
    )
        .prop_map(|(method, segs, slash, query, headers, body, binary)| {
            let mut path = format!("/{}", segs.join("/"));
            if slash && !path.ends_with('/') {
                path.push('/');
            }
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &query {
                q.append_pair(k, v);
            }
            let body = if binary {
                body
            } else {
                String::from_utf8_lossy(&body).into_owned().into_bytes()
            };
            Req {
                method: method.to_string(),
                path,
                query: q.finish(),
                headers,
                body,
                binary,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn requests_survive_the_trip_through_lambda_http(r in req()) {
        let mut headers = HeaderMap::new();
        for (k, v) in &r.headers {
            headers.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        let ct = if r.binary { "application/octet-stream" } else { "application/json" };
        headers.insert("content-type", HeaderValue::from_static(ct));
        let params = BTreeMap::new();
        let info = RequestInfo {
            method: &r.method,
            path: &r.path,
            query: &r.query,
            headers: &headers,
            body: &r.body,
            source_ip: "192.0.2.1",
            route_key: "$default",
            path_params: &params,
            request_id: "id",
            time_epoch_ms: 0,
            protocol: "HTTP/1.1",
        };
        let event = build_event(&info, PayloadFormat::V2);
        let parsed: LambdaRequest = serde_json::from_slice(&event).expect("lambda_http reads the event");
        let got: http::Request<lambda_http::Body> = parsed.into();
        prop_assert_eq!(got.method().as_str(), r.method.as_str());
        prop_assert_eq!(got.uri().path(), r.path.as_str());
        prop_assert_eq!(got.uri().query().unwrap_or(""), r.query.as_str());
        for name in headers.keys() {
            let want: Vec<&str> = headers.get_all(name).iter().map(|v| v.to_str().unwrap()).collect();
            let have: Vec<&str> = got.headers().get_all(name).iter().map(|v| v.to_str().unwrap()).collect();
            prop_assert_eq!(have.join(","), want.join(","), "header {}", name);
        }
        let body: &[u8] = got.body().as_ref();
        prop_assert_eq!(body, &r.body[..]);
    }

    #[test]
    fn answers_survive_the_trip_back(
        status in 200u16..600,
        headers in prop::collection::btree_map("x-[a-z]{1,8}", prop::collection::vec(header_value(), 1..3), 0..4),
        cookies in prop::collection::vec("[a-z]{1,5}=[a-z0-9]{0,5}", 0..3),
        body in prop::collection::vec(any::<u8>(), 0..200),
        binary in any::<bool>(),
    ) {
        let mut resp = ApiGatewayV2httpResponse::default();
        resp.status_code = status as i64;
        let mut hm = HeaderMap::new();
        for (k, vs) in &headers {
            for v in vs {
                hm.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
            }
        }
        resp.headers = hm.clone();
        resp.multi_value_headers = hm.clone();
        resp.cookies = cookies.clone();
        let text = String::from_utf8_lossy(&body).into_owned();
        if binary {
            resp.body = Some(lambda_http::Body::Binary(body.clone()));
            resp.is_base64_encoded = true;
        } else if !text.is_empty() {
            resp.body = Some(lambda_http::Body::Text(text.clone()));
        }
        let payload = serde_json::to_vec(&resp).unwrap();
        let a = decode_answer(&payload).expect("decodes");
        prop_assert_eq!(a.status.as_u16(), status);
        for (k, vs) in &headers {
            let have: Vec<&str> = a.headers.get_all(k.as_str()).iter().map(|v| v.to_str().unwrap()).collect();
            prop_assert_eq!(have.join(","), vs.join(","), "header {}", k);
        }
        let set: Vec<&str> = a.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
        prop_assert_eq!(set, cookies.iter().map(String::as_str).collect::<Vec<_>>());
        let want: Vec<u8> = if binary { body } else { text.into_bytes() };
        prop_assert_eq!(&a.body[..], &want[..]);
    }

    #[test]
    fn any_bytes_decode_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_answer(&bytes);
    }

    #[test]
    fn any_answer_shaped_json_decodes_or_fails_cleanly(
        status in prop::option::of(any::<i64>()),
        header in prop::option::of(("[ -~]{0,10}", "[\\x00-\\x7f]{0,10}")),
        body in prop::option::of("[\\x00-\\x7f]{0,20}"),
        b64 in any::<bool>(),
    ) {
        let mut o = serde_json::Map::new();
        if let Some(s) = status { o.insert("statusCode".into(), s.into()); }
        if let Some((k, v)) = header { o.insert("headers".into(), serde_json::json!({k: v})); }
        if let Some(b) = body { o.insert("body".into(), b.into()); }
        o.insert("isBase64Encoded".into(), b64.into());
        let _ = decode_answer(serde_json::Value::Object(o).to_string().as_bytes());
    }
}
