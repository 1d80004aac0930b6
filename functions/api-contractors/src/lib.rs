//! The `api-contractors` function. A contractor belongs to the user who
//! added it and, optionally, to a residence (then every member sees it;
//! owners and members may change it).

mod routes;

pub use routes::ROUTES;

use axum::Router;
pub use honeydue_http::{Config, State};

/// The function's router.
pub fn app(state: State) -> Router {
    honeydue_http::finish(routes::router(), 64 * 1024).with_state(state)
}
