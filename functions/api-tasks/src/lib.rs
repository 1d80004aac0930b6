//! The `api-tasks` function: the task board, tasks and their actions,
//! recurrence, completions, and the iCal feed of due tasks.

pub mod calendar;
mod completions;
mod tasks;

/// Every route of the function (tasks and completions).
pub fn routes() -> Vec<honeydue_http::routes::RouteDoc> {
    tasks::ROUTES
        .iter()
        .chain(completions::ROUTES)
        .chain(calendar::ROUTES)
        .copied()
        .collect()
}

use axum::Router;
pub use honeydue_http::{Config, State};

/// The function's router.
pub fn app(state: State) -> Router {
    honeydue_http::finish(
        tasks::router()
            .merge(completions::router())
            .merge(calendar::router()),
        64 * 1024,
    )
    .with_state(state)
}
