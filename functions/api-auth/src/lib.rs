//! The `api-auth` function: accounts and sessions under `/api/auth/`.

mod routes;

pub use routes::ROUTES;

use axum::Router;
pub use honeydue_http::{Config, State};

/// The function's router.
pub fn app(state: State) -> Router {
    honeydue_http::finish(routes::router(), 16 * 1024).with_state(state)
}
