//! HTTP request -> API Gateway / ALB event, and the function's answer ->
//! HTTP response.
//!
//! The default is the HTTP API payload format 2.0; the REST API (1.0) and ALB
//! shapes are options. Bodies travel as text when they are textual UTF-8 and
//! as base64 otherwise, as API Gateway does.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, COOKIE, SET_COOKIE};
use http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};

/// Which event shape a function receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PayloadFormat {
    /// API Gateway HTTP API, payload format 2.0.
    V2,
    /// API Gateway REST API (payload format 1.0).
    V1,
    /// Application Load Balancer target.
    Alb,
}

/// What the shim knows about one incoming request.
#[derive(Debug)]
pub struct RequestInfo<'a> {
    /// Method, upper-case.
    pub method: &'a str,
    /// Path as received (not decoded).
    pub path: &'a str,
    /// Query string as received, without `?`.
    pub query: &'a str,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// Body bytes.
    pub body: &'a [u8],
    /// The client's address.
    pub source_ip: &'a str,
    /// `METHOD /template` or `$default`.
    pub route_key: &'a str,
    /// Path parameters.
    pub path_params: &'a BTreeMap<String, String>,
    /// The invocation's request id.
    pub request_id: &'a str,
    /// Request time, milliseconds since the epoch.
    pub time_epoch_ms: i64,
    /// The protocol (`HTTP/1.1`).
    pub protocol: &'a str,
}

/// Whether a content type is textual (sent as text, not base64).
pub fn is_text_content_type(ct: &str) -> bool {
    let ct = ct.to_ascii_lowercase();
    ct.starts_with("text/")
        || ct.starts_with("application/json")
        || ct.contains("+json")
        || ct.contains("xml")
        || ct.contains("javascript")
        || ct.starts_with("application/x-www-form-urlencoded")
        || ct.starts_with("application/graphql")
}

fn body_field(headers: &HeaderMap, body: &[u8]) -> (Option<String>, bool) {
    if body.is_empty() {
        return (None, false);
    }
    let textual = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(is_text_content_type)
        .unwrap_or(false);
    if textual {
        if let Ok(s) = std::str::from_utf8(body) {
            return (Some(s.to_string()), false);
        }
    }
    (Some(B64.encode(body)), true)
}

/// Header values joined per name with `,` (API Gateway 2.0 and ALB).
fn joined_headers(headers: &HeaderMap, skip_cookie: bool) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for (name, value) in headers {
        if skip_cookie && name == COOKIE {
            continue;
        }
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match out.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                out.insert(name.as_str().to_string(), Value::String(v));
            }
        }
    }
    out
}

fn multi_headers(headers: &HeaderMap) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for (name, value) in headers {
        let v = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match out.get_mut(name.as_str()) {
            Some(Value::Array(a)) => a.push(v),
            _ => {
                out.insert(name.as_str().to_string(), Value::Array(vec![v]));
            }
        }
    }
    out
}

fn cookies(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect()
}

fn query_joined(query: &str) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match out.get_mut(k.as_ref()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&v);
            }
            _ => {
                out.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
    }
    out
}

fn query_multi(query: &str) -> Map<String, Value> {
    let mut out: Map<String, Value> = Map::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        let v = Value::String(v.into_owned());
        match out.get_mut(k.as_ref()) {
            Some(Value::Array(a)) => a.push(v),
            _ => {
                out.insert(k.into_owned(), Value::Array(vec![v]));
            }
        }
    }
    out
}

fn clf_time(epoch_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(epoch_ms)
        .unwrap_or_default()
        .format("%d/%b/%Y:%H:%M:%S +0000")
        .to_string()
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct V2Http<'a> {
    method: &'a str,
    path: &'a str,
    protocol: &'a str,
    source_ip: &'a str,
    user_agent: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct V2Context<'a> {
    account_id: &'a str,
    api_id: &'a str,
    domain_name: &'a str,
    domain_prefix: &'a str,
    http: V2Http<'a>,
    request_id: &'a str,
    route_key: &'a str,
    stage: &'a str,
    time: String,
    time_epoch: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct V2Event<'a> {
    version: &'a str,
    route_key: &'a str,
    raw_path: &'a str,
    raw_query_string: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cookies: Vec<String>,
    headers: Map<String, Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    query_string_parameters: Map<String, Value>,
    request_context: V2Context<'a>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    path_parameters: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    is_base64_encoded: bool,
}

/// Account id put in events and ARNs (Lambda's local tools use the same).
pub const ACCOUNT_ID: &str = "123456789012";

/// Builds the event JSON for `req` in `format`.
pub fn build_event(req: &RequestInfo<'_>, format: PayloadFormat) -> Vec<u8> {
    let (body, is_b64) = body_field(req.headers, req.body);
    let host = header_str(req.headers, "host").unwrap_or("localhost");
    let domain = host
        .rsplit_once(':')
        .map(|(h, _)| h)
        .filter(|h| !h.ends_with(']') || h.starts_with('['))
        .unwrap_or(host);
    let user_agent = header_str(req.headers, "user-agent").unwrap_or("");
    match format {
        PayloadFormat::V2 => {
            let ev = V2Event {
                version: "2.0",
                route_key: req.route_key,
                raw_path: req.path,
                raw_query_string: req.query,
                cookies: cookies(req.headers),
                headers: joined_headers(req.headers, true),
                query_string_parameters: query_joined(req.query),
                request_context: V2Context {
                    account_id: ACCOUNT_ID,
                    api_id: "shim",
                    domain_name: domain,
                    domain_prefix: domain.split('.').next().unwrap_or(domain),
                    http: V2Http {
                        method: req.method,
                        path: req.path,
                        protocol: req.protocol,
                        source_ip: req.source_ip,
                        user_agent,
                    },
                    request_id: req.request_id,
                    route_key: req.route_key,
                    stage: "$default",
                    time: clf_time(req.time_epoch_ms),
                    time_epoch: req.time_epoch_ms,
                },
                path_parameters: req.path_params,
                body,
                is_base64_encoded: is_b64,
            };
            serde_json::to_vec(&ev).unwrap_or_default()
        }
        PayloadFormat::V1 => {
            let resource = req
                .route_key
                .split_once(' ')
                .map(|(_, p)| p)
                .unwrap_or("/{proxy+}");
            let single: Map<String, Value> = req
                .headers
                .keys()
                .filter_map(|k| {
                    let last = req.headers.get_all(k).iter().next_back()?;
                    Some((
                        k.as_str().to_string(),
                        Value::String(String::from_utf8_lossy(last.as_bytes()).into_owned()),
                    ))
                })
                .collect();
            let qm = query_multi(req.query);
            let qs: Map<String, Value> = qm
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_array()?.last()?.clone())))
                .collect();
            let nullable = |m: Map<String, Value>| {
                if m.is_empty() {
                    Value::Null
                } else {
                    Value::Object(m)
                }
            };
            let ev = serde_json::json!({
                "resource": resource,
                "path": req.path,
                "httpMethod": req.method,
                "headers": single,
                "multiValueHeaders": multi_headers(req.headers),
                "queryStringParameters": nullable(qs),
                "multiValueQueryStringParameters": nullable(qm),
                "pathParameters": if req.path_params.is_empty() { Value::Null } else { serde_json::to_value(req.path_params).unwrap_or(Value::Null) },
                "stageVariables": Value::Null,
                "requestContext": {
                    "accountId": ACCOUNT_ID,
                    "apiId": "shim",
                    "domainName": domain,
                    "httpMethod": req.method,
                    "identity": {"sourceIp": req.source_ip, "userAgent": user_agent},
                    "path": req.path,
                    "protocol": req.protocol,
                    "requestId": req.request_id,
                    "requestTime": clf_time(req.time_epoch_ms),
                    "requestTimeEpoch": req.time_epoch_ms,
                    "resourceId": "shim",
                    "resourcePath": resource,
                    "stage": "$default",
                },
                "body": body,
                "isBase64Encoded": is_b64,
            });
            serde_json::to_vec(&ev).unwrap_or_default()
        }
        PayloadFormat::Alb => {
            let ev = serde_json::json!({
                "requestContext": {"elb": {"targetGroupArn": format!("arn:aws:elasticloadbalancing:us-east-1:{ACCOUNT_ID}:targetgroup/shim/0")}},
                "httpMethod": req.method,
                "path": req.path,
                "queryStringParameters": query_joined(req.query),
                "headers": joined_headers(req.headers, false),
                "body": body.unwrap_or_default(),
                "isBase64Encoded": is_b64,
            });
            serde_json::to_vec(&ev).unwrap_or_default()
        }
    }
}

/// An HTTP response decoded from a function's answer.
#[derive(Debug)]
pub struct HttpAnswer {
    /// Status.
    pub status: StatusCode,
    /// Headers (Set-Cookie included).
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Why an answer could not be turned into a response.
#[derive(Debug, PartialEq, Eq)]
pub struct BadAnswer(pub String);

fn add_header(
    headers: &mut HeaderMap,
    name: &str,
    value: &str,
    append: bool,
) -> Result<(), BadAnswer> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| BadAnswer(format!("invalid header name {name:?}")))?;
    let v = HeaderValue::from_str(value)
        .map_err(|_| BadAnswer(format!("invalid value for header {name:?}")))?;
    if append {
        headers.append(n, v);
    } else {
        headers.insert(n, v);
    }
    Ok(())
}

fn value_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Decodes an API Gateway / ALB style answer. An answer that is not an object
/// with `statusCode` is, as API Gateway 2.0 does, a 200 JSON body.
pub fn decode_answer(payload: &[u8]) -> Result<HttpAnswer, BadAnswer> {
    let mut parsed: Value = serde_json::from_slice(payload)
        .map_err(|e| BadAnswer(format!("function answer is not JSON: {e}")))?;
    let Some(obj) = parsed
        .as_object_mut()
        .filter(|o| o.contains_key("statusCode"))
    else {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Ok(HttpAnswer {
            status: StatusCode::OK,
            headers,
            body: Bytes::copy_from_slice(payload),
        });
    };
    let code = obj
        .get("statusCode")
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .ok_or_else(|| BadAnswer("statusCode is not a number".into()))?;
    let status = u16::try_from(code)
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| BadAnswer(format!("statusCode {code} is not an HTTP status")))?;
    let mut headers = HeaderMap::new();
    if let Some(m) = obj.get("multiValueHeaders").and_then(|v| v.as_object()) {
        for (k, vs) in m {
            for v in vs.as_array().into_iter().flatten() {
                add_header(&mut headers, k, &value_str(v), true)?;
            }
        }
    }
    if let Some(m) = obj.get("headers").and_then(|v| v.as_object()) {
        for (k, v) in m {
            let already = HeaderName::from_bytes(k.as_bytes())
                .map(|n| headers.contains_key(&n))
                .unwrap_or(false);
            if !already {
                add_header(&mut headers, k, &value_str(v), false)?;
            }
        }
    }
    if let Some(cs) = obj.get("cookies").and_then(|v| v.as_array()) {
        for c in cs {
            let v = HeaderValue::from_str(&value_str(c))
                .map_err(|_| BadAnswer("invalid cookie".into()))?;
            headers.append(SET_COOKIE, v);
        }
    }
    let b64 = obj
        .get("isBase64Encoded")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    // Taken out of the answer, not copied: a board is a megabyte.
    let body = match obj.remove("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if b64 => Bytes::from(
            B64.decode(s.as_bytes())
                .map_err(|_| BadAnswer("body is not valid base64".into()))?,
        ),
        Some(Value::String(s)) => Bytes::from(s.into_bytes()),
        Some(other) => Bytes::from(other.to_string().into_bytes()),
    };
    Ok(HttpAnswer {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(
        headers: &'a HeaderMap,
        body: &'a [u8],
        params: &'a BTreeMap<String, String>,
    ) -> RequestInfo<'a> {
        RequestInfo {
            method: "POST",
            path: "/api/tasks/42/",
            query: "a=1&a=2&b=x%20y",
            headers,
            body,
            source_ip: "198.51.100.7",
            route_key: "POST /api/tasks/{id}/",
            path_params: params,
            request_id: "req-1",
            time_epoch_ms: 1_764_000_000_000,
            protocol: "HTTP/1.1",
        }
    }

    #[test]
    fn v2_event_shape() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("api.example.com:8080"));
        h.append("x-multi", HeaderValue::from_static("one"));
        h.append("x-multi", HeaderValue::from_static("two"));
        h.append("cookie", HeaderValue::from_static("a=1; b=2"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let mut p = BTreeMap::new();
        p.insert("id".to_string(), "42".to_string());
        let ev: Value =
            serde_json::from_slice(&build_event(&req(&h, b"{\"x\":1}", &p), PayloadFormat::V2))
                .unwrap();
        assert_eq!(ev["version"], "2.0");
        assert_eq!(ev["routeKey"], "POST /api/tasks/{id}/");
        assert_eq!(ev["rawQueryString"], "a=1&a=2&b=x%20y");
        assert_eq!(ev["queryStringParameters"]["a"], "1,2");
        assert_eq!(ev["queryStringParameters"]["b"], "x y");
        assert_eq!(ev["headers"]["x-multi"], "one,two");
        assert!(ev["headers"].get("cookie").is_none());
        assert_eq!(ev["cookies"], serde_json::json!(["a=1", "b=2"]));
        assert_eq!(ev["pathParameters"]["id"], "42");
        assert_eq!(ev["requestContext"]["http"]["sourceIp"], "198.51.100.7");
        assert_eq!(ev["requestContext"]["domainName"], "api.example.com");
        assert_eq!(ev["requestContext"]["stage"], "$default");
        assert_eq!(ev["requestContext"]["timeEpoch"], 1_764_000_000_000i64);
        assert_eq!(ev["body"], "{\"x\":1}");
        assert_eq!(ev["isBase64Encoded"], false);
    }

    #[test]
    fn binary_bodies_are_base64() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("image/png"));
        let p = BTreeMap::new();
        let ev: Value = serde_json::from_slice(&build_event(
            &req(&h, &[0, 159, 146, 150], &p),
            PayloadFormat::V2,
        ))
        .unwrap();
        assert_eq!(ev["isBase64Encoded"], true);
        assert_eq!(
            B64.decode(ev["body"].as_str().unwrap()).unwrap(),
            vec![0, 159, 146, 150]
        );
    }

    #[test]
    fn v1_and_alb_shapes() {
        let mut h = HeaderMap::new();
        h.append("x-multi", HeaderValue::from_static("one"));
        h.append("x-multi", HeaderValue::from_static("two"));
        let p = BTreeMap::new();
        let ev: Value =
            serde_json::from_slice(&build_event(&req(&h, b"", &p), PayloadFormat::V1)).unwrap();
        assert_eq!(ev["httpMethod"], "POST");
        assert_eq!(ev["resource"], "/api/tasks/{id}/");
        assert_eq!(ev["headers"]["x-multi"], "two");
        assert_eq!(
            ev["multiValueHeaders"]["x-multi"],
            serde_json::json!(["one", "two"])
        );
        assert_eq!(
            ev["multiValueQueryStringParameters"]["a"],
            serde_json::json!(["1", "2"])
        );
        assert_eq!(ev["requestContext"]["identity"]["sourceIp"], "198.51.100.7");
        let ev: Value =
            serde_json::from_slice(&build_event(&req(&h, b"", &p), PayloadFormat::Alb)).unwrap();
        assert!(ev["requestContext"]["elb"]["targetGroupArn"].is_string());
        assert_eq!(ev["path"], "/api/tasks/42/");
    }

    #[test]
    fn answers_decode() {
        let a = decode_answer(br#"{"statusCode":201,"headers":{"content-type":"text/plain","x-a":"1"},"multiValueHeaders":{"x-a":["1","2"]},"cookies":["s=1; Path=/","t=2"],"body":"hi","isBase64Encoded":false}"#).unwrap();
        assert_eq!(a.status, 201);
        assert_eq!(a.headers.get_all("x-a").iter().count(), 2);
        assert_eq!(a.headers.get_all("set-cookie").iter().count(), 2);
        assert_eq!(&a.body[..], b"hi");
        let a =
            decode_answer(br#"{"statusCode":200,"body":"AAEC","isBase64Encoded":true}"#).unwrap();
        assert_eq!(&a.body[..], &[0, 1, 2]);
        let a = decode_answer(br#"{"hello":"world"}"#).unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.headers["content-type"], "application/json");
        assert_eq!(&a.body[..], br#"{"hello":"world"}"#);
        assert!(decode_answer(b"not json").is_err());
        assert!(decode_answer(br#"{"statusCode":99}"#).is_err());
        assert!(decode_answer(br#"{"statusCode":200,"headers":{"bad name":"x"}}"#).is_err());
    }
}
