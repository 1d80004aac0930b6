//! The landing page at `/` and its assets under `/static/`, with a strict
//! Content-Security-Policy that the page's own assets satisfy: no inline
//! styles or scripts, everything from this origin.

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;

/// The policy every response carries.
pub const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self' data:; font-src 'self'; \
                       base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The assets, compiled in: (path under /static/, content type, bytes).
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "site.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/site.css"),
    ),
    (
        "logo.svg",
        "image/svg+xml",
        include_bytes!("assets/logo.svg"),
    ),
];

const INDEX: &str = include_str!("assets/index.html");

honeydue_http::routes! { ();
    GET "/" => index, Public, "The landing page";
    GET "/static/{proxy+}" => asset, Public, "Landing page assets";
}

/// The function's router.
pub fn app() -> Router {
    honeydue_http::finish(router(), 1024)
}

fn secure(mut r: Response, cache: &'static str) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("strict-origin-when-cross-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    r
}

async fn index() -> Response {
    secure(
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response(),
        "public, max-age=300",
    )
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, ct, bytes)) => secure(
            ([(header::CONTENT_TYPE, *ct)], *bytes).into_response(),
            "public, max-age=86400",
        ),
        None => secure(
            honeydue_core::AppError::NotFound("asset").into_response(),
            "no-store",
        ),
    }
}
