//! The `api-auth` function: accounts and sessions under `/api/auth/`.

mod routes;
mod urgent;

pub use routes::ROUTES;
pub use urgent::Urgent;

use axum::Router;
pub use honeydue_http::{Config, State};

/// The function's router; codes go out at once when `SMTP_*` is set.
pub fn app(state: State) -> Router {
    let urgent = Urgent::from_process_env(&state.cfg.app.mail_from);
    app_with(state, urgent)
}

/// The router with this urgent-mail client (tests).
pub fn app_with(state: State, urgent: Urgent) -> Router {
    honeydue_http::finish(routes::router(), 16 * 1024)
        .layer(axum::Extension(urgent))
        .with_state(state)
}
