//! `GET /api/openapi.json`: the OpenAPI 3.1 document of the whole API. It
//! is generated from every function's route table (the same tables that
//! build the functions' routers) by the workspace's end-to-end crate
//! (`make openapi`), committed next to this crate, and checked current by
//! `make test`; this function only serves it, so a change in another
//! function does not rebuild or redeploy this one.

use axum::http::header;
use axum::response::IntoResponse;
use axum::Router;

honeydue_http::routes! { ();
    GET "/api/openapi.json" => openapi, Public, "This document";
}

/// The committed document (compact JSON, one line).
pub const DOCUMENT: &str = include_str!("../openapi.json");

async fn openapi() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        DOCUMENT.trim_end(),
    )
}

/// The function's router.
pub fn app() -> Router {
    honeydue_http::finish(router(), 1024)
}
