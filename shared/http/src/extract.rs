//! Extractors that answer bad input with our JSON errors: malformed JSON is
//! 400, well-formed JSON with wrong or missing fields is 422 with the field
//! named, an oversized body is 413.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use honeydue_core::{AppError, FieldErrors};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// JSON body in (validated as described above) and out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type_ok = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let ct = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                ct == "application/json" || ct.ends_with("+json")
            })
            // A missing content type is read as JSON: the app's clients are
            // not always careful, and the body is checked anyway.
            .unwrap_or(true);
        if !content_type_ok {
            return Err(AppError::BadRequest(
                "Content-Type must be application/json.".into(),
            ));
        }
        let limit_bytes = req
            .extensions()
            .get::<crate::BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(crate::DEFAULT_BODY_LIMIT);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge { limit_bytes }
            } else {
                AppError::BadRequest("The request body could not be read.".into())
            }
        })?;
        parse_json(&bytes).map(Json)
    }
}

/// Parses JSON bytes into `T`, naming the failing field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(AppError::BadRequest("A JSON body is required.".into()));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            use serde_json::error::Category;
            match inner.classify() {
                Category::Syntax | Category::Eof | Category::Io => {
                    Err(AppError::BadRequest(format!("Malformed JSON: {inner}")))
                }
                Category::Data => Err(AppError::Validation(field_error(&path, &inner.to_string()))),
            }
        }
    }
}

fn field_error(path: &str, message: &str) -> FieldErrors {
    let message = message.split(" at line ").next().unwrap_or(message);
    let mut fields = FieldErrors::new();
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`');
        let full = if path == "." || path.is_empty() {
            name.to_string()
        } else {
            format!("{path}.{name}")
        };
        fields.insert(full, vec!["This field is required.".into()]);
    } else {
        let key = if path == "." || path.is_empty() {
            "non_field_errors".to_string()
        } else {
            path.to_string()
        };
        fields.insert(key, vec![capitalise(message)]);
    }
    fields
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str() + ".",
        None => String::new(),
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string parsed into `T`; errors are 422 naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded_de(q);
        de.map(Query)
    }
}

fn serde_urlencoded_de<T: DeserializeOwned>(q: &str) -> Result<T, AppError> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{q}")
            .parse()
            .map_err(|_| AppError::BadRequest("Malformed query string.".into()))?,
    )
    .map(|axum::extract::Query(v)| v)
    .map_err(|e| {
        let text = e.body_text();
        let text = text
            .strip_prefix("Failed to deserialize query string: ")
            .unwrap_or(&text)
            .to_string();
        let mut fields = FieldErrors::new();
        let (key, msg) = match text.split_once(": ") {
            Some((k, m)) if !k.contains(' ') => (k.to_string(), m.to_string()),
            _ => ("query".to_string(), text.clone()),
        };
        fields.insert(key, vec![capitalise(&msg)]);
        AppError::Validation(fields)
    })
}

/// The caller's address as the front door saw it: API Gateway's (or the
/// shim's) `requestContext.http.sourceIp`. `None` outside Lambda.
pub fn client_ip(parts: &Parts) -> Option<String> {
    use lambda_http::request::RequestContext;
    match parts.extensions.get::<RequestContext>()? {
        RequestContext::ApiGatewayV2(ctx) => ctx.http.source_ip.clone(),
        RequestContext::ApiGatewayV1(ctx) => ctx.identity.source_ip.clone(),
        RequestContext::Alb(_) => None,
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// A positive integer `{id}` from the path; anything else is a 404 (an id
/// that cannot exist is simply not found).
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) = axum::extract::Path::<
            std::collections::HashMap<String, String>,
        >::from_request_parts(parts, state)
        .await
        .map_err(|_| AppError::NotFound("resource"))?;
        raw.get("id")
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|v| *v > 0)
            .map(PathId)
            .ok_or(AppError::NotFound("resource"))
    }
}

/// The caller's address (see [`client_ip`]), `None` when the event carries
/// none (a direct invocation): never a shared stand-in that would make
/// every such caller one client.
#[derive(Debug, Clone)]
pub struct ClientIp(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// The `Idempotency-Key` header of a create: a retry with the same key
/// returns what the first request created instead of creating it again (the
/// client lost the answer, not the write). Blank is no key; over 200
/// characters is a 422.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

/// The longest `Idempotency-Key` accepted.
pub const IDEMPOTENCY_KEY_MAX: usize = 200;

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let v = v
            .to_str()
            .map_err(|_| AppError::field("Idempotency-Key", "Use visible ASCII characters."))?
            .trim();
        if v.len() > IDEMPOTENCY_KEY_MAX {
            return Err(AppError::field(
                "Idempotency-Key",
                format!("At most {IDEMPOTENCY_KEY_MAX} characters."),
            ));
        }
        Ok(IdempotencyKey((!v.is_empty()).then(|| v.to_string())))
    }
}

/// For PATCH bodies: `Option<Option<T>>` where an absent field is `None`
/// (keep), `null` is `Some(None)` (clear) and a value is `Some(Some(v))`.
/// Use with `#[serde(default, deserialize_with = "honeydue_http::extract::nullable")]`.
pub fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Option::<T>::deserialize(d).map(Some)
}

/// Whether the request's `If-None-Match` names `tag` (weak or strong), or
/// is `*`: a GET whose answer would carry `tag` is then answered 304.
pub fn none_match(headers: &axum::http::HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == tag || t == "*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Login {
        email: String,
        age: Option<u8>,
    }

    #[test]
    fn malformed_is_400_missing_is_422_named() {
        assert!(matches!(
            parse_json::<Login>(b"{"),
            Err(AppError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json::<Login>(b""),
            Err(AppError::BadRequest(_))
        ));
        match parse_json::<Login>(b"{}") {
            Err(AppError::Validation(f)) => assert!(f.contains_key("email"), "{f:?}"),
            other => panic!("{other:?}"),
        }
        match parse_json::<Login>(br#"{"email": 5}"#) {
            Err(AppError::Validation(f)) => assert!(f.contains_key("email"), "{f:?}"),
            other => panic!("{other:?}"),
        }
        match parse_json::<Login>(br#"{"email": "a", "age": 300}"#) {
            Err(AppError::Validation(f)) => assert!(f.contains_key("age"), "{f:?}"),
            other => panic!("{other:?}"),
        }
    }
}
