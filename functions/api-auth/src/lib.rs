//! The `api-auth` function: accounts and sessions under `/api/auth/`.

mod routes;
mod urgent;

pub use routes::ROUTES;
pub use urgent::Urgent;

use axum::Router;
pub use honeydue_http::{Config, State};

/// The function's router without urgent mail: codes wait for
/// `cron-email-dispatch` (tests).
pub fn app(state: State) -> Router {
    app_with(state, Urgent::default())
}

/// The router as `main` runs it
/// (`honeydue_http::start(&Api::new("api-auth", app_started))`): the common
/// state and the urgent mailer, both read at cold start from one
/// environment, so codes go out at once when `SMTP_HOST` is set.
pub fn app_started((state, urgent): (State, Urgent)) -> Router {
    app_with(state, urgent)
}

/// The router with this urgent-mail client.
pub fn app_with(state: State, urgent: Urgent) -> Router {
    honeydue_http::finish(routes::router(), 16 * 1024)
        .layer(axum::Extension(urgent))
        .with_state(state)
}
