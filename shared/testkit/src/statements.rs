//! Counting the SQL statements a request runs: sqlx reports each statement
//! it executes as a `tracing` event with target `sqlx::query`; [`Counter`]
//! counts them on the current thread (a `#[tokio::test]`'s runtime is
//! single-threaded, and the in-process client runs the handler there).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

struct Count(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for Count {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Counts statements while it lives.
pub struct Counter {
    n: Arc<AtomicUsize>,
    _guard: DefaultGuard,
}

impl Counter {
    /// Starts counting on this thread.
    pub fn install() -> Self {
        let n = Arc::new(AtomicUsize::new(0));
        let filter = tracing_subscriber::filter::Targets::new()
            .with_target("sqlx::query", tracing::Level::TRACE);
        let subscriber = tracing_subscriber::registry().with(Count(n.clone()).with_filter(filter));
        Self {
            n,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    /// Statements since the last call.
    pub fn take(&self) -> usize {
        self.n.swap(0, Ordering::Relaxed)
    }
}
