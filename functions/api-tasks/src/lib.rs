//! The `api-tasks` function: the task board, tasks and their actions,
//! recurrence, and completions.

mod completions;
mod tasks;

use axum::Router;
pub use honeydue_http::{Config, State};

/// The function's router.
pub fn app(state: State) -> Router {
    honeydue_http::finish(tasks::router().merge(completions::router()), 64 * 1024).with_state(state)
}
