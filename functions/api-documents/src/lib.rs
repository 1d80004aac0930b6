//! The `api-documents` function: a residence's warranties, manuals,
//! receipts, insurance, inspections and contracts.

mod routes;

pub use routes::ROUTES;

use axum::Router;
pub use honeydue_http::{Config, State};

/// The function's router.
pub fn app(state: State) -> Router {
    honeydue_http::finish(routes::router(), 64 * 1024).with_state(state)
}
