//! The `api-tasks` function: the task board, tasks and their actions,
//! recurrence, and completions.

mod completions;
mod tasks;

/// Every route of the function (tasks and completions).
pub fn routes() -> Vec<honeydue_http::routes::RouteDoc> {
    tasks::ROUTES
        .iter()
        .chain(completions::ROUTES)
        .copied()
        .collect()
}

use axum::Router;
pub use honeydue_http::{Config, State};

/// The function's router.
pub fn app(state: State) -> Router {
    honeydue_http::finish(tasks::router().merge(completions::router()), 64 * 1024).with_state(state)
}
