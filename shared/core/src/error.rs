//! The one error type every handler returns, and its JSON form:
//! `{"error": {"code": "...", "message": "...", "fields": {...}}}`.
//!
//! Each variant documents its status. Internal errors are logged once, here,
//! and clients see only a generic message.

use std::collections::BTreeMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Field name -> what is wrong with it.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// Result alias for handlers and the shared helpers they call.
pub type AppResult<T> = Result<T, AppError>;

/// Every failure a client can see.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request cannot be read (malformed JSON, bad query string).
    #[error("{0}")]
    BadRequest(String),
    /// 400 with a specific code (for example `invalid_code`).
    #[error("{message}")]
    BadRequestCode {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// 422: the request was read but fields are invalid.
    #[error("validation failed")]
    Validation(FieldErrors),
    /// 401: no valid credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 403 `limit_exceeded`: the subscription tier's limit is reached.
    #[error("limit for {resource} reached ({usage}/{limit})")]
    LimitExceeded {
        /// What is limited (`residences`, `tasks`, ...).
        resource: String,
        /// The tier's limit.
        limit: i64,
        /// Current usage.
        usage: i64,
    },
    /// 404: absent, or outside what the caller may see.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 409: conflicts with existing state.
    #[error("{message}")]
    Conflict {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// 413: body over the limit.
    #[error("request body is larger than {limit_bytes} bytes")]
    PayloadTooLarge {
        /// The limit that applies.
        limit_bytes: usize,
    },
    /// 429: rate limited; retry after the given number of seconds.
    #[error("too many attempts; try again in {retry_after_secs} seconds")]
    RateLimited {
        /// Seconds until the window resets.
        retry_after_secs: u64,
    },
    /// 503: a dependency the request needs is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// 503 `busy` with `Retry-After`: this instance is at its bound for
    /// expensive work (password hashing); another try soon will succeed.
    #[error("the server is busy; try again in {retry_after_secs} seconds")]
    Busy {
        /// Seconds to wait.
        retry_after_secs: u64,
    },
    /// 501 `not_configured`: a feature this deployment has not set up.
    #[error("{0}")]
    NotConfigured(String),
    /// 500: anything unexpected; details are logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl AppError {
    /// A 422 with one field error.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        let mut fields = FieldErrors::new();
        fields.insert(field.to_string(), vec![message.into()]);
        AppError::Validation(fields)
    }

    /// A 409 with a code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Conflict {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) | AppError::BadRequestCode { .. } => StatusCode::BAD_REQUEST,
            AppError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) | AppError::LimitExceeded { .. } => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict { .. } => StatusCode::CONFLICT,
            AppError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) | AppError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            AppError::NotConfigured(_) => StatusCode::NOT_IMPLEMENTED,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "bad_request",
            AppError::BadRequestCode { code, .. } => code,
            AppError::Validation(_) => "validation_failed",
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::LimitExceeded { .. } => "limit_exceeded",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict { code, .. } => code,
            AppError::PayloadTooLarge { .. } => "payload_too_large",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::Unavailable(_) => "unavailable",
            AppError::Busy { .. } => "busy",
            AppError::NotConfigured(_) => "not_configured",
            AppError::Internal(_) => "internal_error",
        }
    }
}

/// Seconds a client is asked to wait after a 503 `unavailable`: a database
/// restart or failover, a dependency coming back.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

impl From<sqlx::Error> for AppError {
    /// The database being unreachable, restarting, out of connections or
    /// cancelling the statement is a 503 `unavailable` with `Retry-After`
    /// (nothing was changed: the transaction did not commit, or its commit
    /// is retried safely with an Idempotency-Key); anything else is a 500.
    fn from(e: sqlx::Error) -> Self {
        if db_unavailable(&e) {
            tracing::warn!(error = %e, "database unavailable");
            return AppError::Unavailable("The database is unavailable; try again shortly.".into());
        }
        AppError::Internal(anyhow::Error::new(e).context("database"))
    }
}

/// Whether a database error means "not reachable now" rather than a bug:
/// connection failures and the server's shutdown, connection-limit and
/// cancel answers (SQLSTATE classes 08 and 57, and 53300).
pub fn db_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57") || c == "53300"),
        _ => false,
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<&'a FieldErrors>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extra: Option<serde_json::Value>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            AppError::Internal(e) => {
                // Logged once, here, where it is handled.
                tracing::error!(error = format!("{e:#}"), "internal error");
                "An internal error occurred.".to_string()
            }
            AppError::Validation(_) => "Some fields are invalid.".to_string(),
            other => other.to_string(),
        };
        let extra = match &self {
            AppError::LimitExceeded {
                resource,
                limit,
                usage,
            } => Some(serde_json::json!({"resource": resource, "limit": limit, "usage": usage})),
            AppError::RateLimited { retry_after_secs } | AppError::Busy { retry_after_secs } => {
                Some(serde_json::json!({"retry_after": retry_after_secs}))
            }
            AppError::Unavailable(_) => {
                Some(serde_json::json!({"retry_after": UNAVAILABLE_RETRY_AFTER_SECS}))
            }
            _ => None,
        };
        let fields = match &self {
            AppError::Validation(f) => Some(f),
            _ => None,
        };
        let body = Body {
            error: ErrorBody {
                code: self.code(),
                message,
                fields,
                extra,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        let retry_after = match &self {
            AppError::RateLimited { retry_after_secs } | AppError::Busy { retry_after_secs } => {
                Some(*retry_after_secs)
            }
            AppError::Unavailable(_) => Some(UNAVAILABLE_RETRY_AFTER_SECS),
            _ => None,
        };
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
        }
        resp
    }
}

/// Accumulates field errors during validation, then yields
/// [`AppError::Validation`] if any were found.
#[derive(Debug, Default)]
pub struct Validator {
    fields: FieldErrors,
}

impl Validator {
    /// A fresh validator.
    pub fn new() -> Self {
        Self::default()
    }
    /// Records an error on `field`.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.fields
            .entry(field.to_string())
            .or_default()
            .push(message.into());
    }
    /// Checks an amount of money for a `NUMERIC(12,2)` column that must not
    /// be negative: at most 10 digits before the point and 2 after.
    /// Postgres refuses an 11th digit with an error (a 500) and rounds extra
    /// decimals (a silent change, and 9999999999.999 rounds into that same
    /// overflow), so both are field errors here.
    pub fn money(&mut self, field: &str, value: rust_decimal::Decimal) {
        use rust_decimal::Decimal;
        if value < Decimal::ZERO {
            self.add(field, "Must be zero or more.");
        } else if value.normalize().scale() > 2 {
            self.add(field, "Use at most 2 decimal places.");
        } else if value >= Decimal::from(10_000_000_000i64) {
            self.add(field, "Must be less than 10000000000.");
        }
    }

    /// Records an error on `field` unless `ok`.
    pub fn check(&mut self, ok: bool, field: &str, message: impl Into<String>) {
        if !ok {
            self.add(field, message);
        }
    }
    /// Keeps the `Ok` value, or records the error on `field`.
    pub fn take<T>(&mut self, field: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(t) => Some(t),
            Err(m) => {
                self.add(field, m);
                None
            }
        }
    }
    /// A text field that must be present when `required` (creating) and,
    /// when present, non-blank and at most `max` characters.
    pub fn text(&mut self, field: &str, value: Option<&str>, required: bool, max: usize) {
        match value {
            Some(t) => self.check(
                !t.trim().is_empty() && t.chars().count() <= max,
                field,
                format!("Enter at most {max} characters (not blank)."),
            ),
            None if required => self.add(field, "This field is required."),
            None => {}
        }
    }

    /// An optional text field of at most `max` characters (blank allowed).
    pub fn max_len(&mut self, field: &str, value: Option<&str>, max: usize) {
        if let Some(t) = value {
            self.check(
                t.chars().count() <= max,
                field,
                format!("Enter at most {max} characters."),
            );
        }
    }

    /// An optional http(s) URL (blank allowed).
    pub fn url(&mut self, field: &str, value: Option<&str>) {
        if let Some(u) = value.filter(|u| !u.is_empty()) {
            self.check(
                u.starts_with("https://") || u.starts_with("http://"),
                field,
                "Enter a URL starting with http:// or https://.",
            );
        }
    }

    /// An optional email address (blank allowed), normalised in place.
    pub fn email(&mut self, field: &str, value: &mut Option<String>) {
        if let Some(e) = value.as_deref().filter(|e| !e.trim().is_empty()) {
            match crate::types::Email::parse(e) {
                Ok(e) => *value = Some(e.as_str().to_string()),
                Err(m) => self.add(field, m),
            }
        }
    }

    /// `Ok(())` when nothing was recorded.
    pub fn finish(self) -> AppResult<()> {
        if self.fields.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(self.fields))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_database_is_a_503_with_retry_after() {
        // A port nothing listens on: the connection is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("postgres://nobody@127.0.0.1:{port}/none");
        let e = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap_err();
        assert!(db_unavailable(&e), "{e:?}");
        let r = AppError::from(e).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        for e in [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed] {
            assert!(matches!(AppError::from(e), AppError::Unavailable(_)));
        }
    }

    #[test]
    fn other_database_errors_stay_internal() {
        for e in [
            sqlx::Error::RowNotFound,
            sqlx::Error::ColumnNotFound("x".into()),
        ] {
            assert!(!db_unavailable(&e));
            assert!(matches!(AppError::from(e), AppError::Internal(_)));
        }
    }
}
