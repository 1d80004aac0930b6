//! The `api-admin` function: the admin panel's own realm. Admins sign in
//! with `admin_users` accounts and get `admin_tokens`; app tokens are never
//! accepted here, and admin tokens are never accepted by the app's functions.

mod auth;
mod routes;

pub use routes::ROUTES;

use axum::Router;
pub use honeydue_http::{Config, State};

/// The function's router.
pub fn app(state: State) -> Router {
    honeydue_http::finish(routes::router(), 64 * 1024).with_state(state)
}
