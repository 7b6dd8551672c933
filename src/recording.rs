//! Persistence by default (FR-21): find the `SqliteLayer` in the current subscriber, or install
//! the default subscriber when there is none, and wait for each run's rows to be committed.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use flujo_runner::RunObserver;
use flujo_trace_sqlite::{SqliteHandle, SqliteLayer};
use tracing_subscriber::layer::SubscriberExt;

/// Whether a [`Flujo`](crate::Flujo) records its runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Persistence {
    /// Record every run: through the `SqliteLayer` of the current subscriber when it has one;
    /// when no global subscriber exists, by installing the default one (a `Registry` with a
    /// `SqliteLayer` at the configured state URI). Each run returns once its rows are committed.
    #[default]
    Default,
    /// Never install the default subscriber and never wait for the database. A `SqliteLayer`
    /// you installed yourself still records what it sees: leave it out of your subscriber to
    /// record nothing.
    Disabled,
}

/// The `RunObserver` the facade plugs into every runner.
#[derive(Debug, Default)]
pub(crate) struct Recorder;

/// The default subscriber's layer handle; `None` when installing it failed (already reported).
static DEFAULT_INSTALL: OnceLock<Option<SqliteHandle>> = OnceLock::new();
static WARNED_NO_LAYER: AtomicBool = AtomicBool::new(false);

impl RunObserver for Recorder {
    fn before_run(&self) {
        if current_layer().is_some() {
            return;
        }
        let no_subscriber_at_all = !tracing::dispatcher::has_been_set()
            && tracing::dispatcher::get_default(|dispatch| {
                dispatch.is::<tracing::subscriber::NoSubscriber>()
            });
        if no_subscriber_at_all {
            DEFAULT_INSTALL.get_or_init(install_default);
        } else if DEFAULT_INSTALL.get().is_none() && !WARNED_NO_LAYER.swap(true, Ordering::Relaxed)
        {
            eprintln!(
                "flujo: warning: runs are not recorded: the tracing subscriber has no SqliteLayer; \
                 add one with `tracing_subscriber::registry().with(flujo::SqliteLayer::open(\"flujo_ops.db\")?)`, \
                 or use Persistence::Disabled to silence this"
            );
        }
    }

    fn after_run<'a>(&'a self, _run_id: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        match current_layer() {
            Some(handle) => Box::pin(async move {
                // a loss was already reported on stderr by the writer
                handle.flush().await;
            }),
            None => Box::pin(std::future::ready(())),
        }
    }
}

/// The `SqliteLayer` of the subscriber that spans go to on this thread now.
fn current_layer() -> Option<SqliteHandle> {
    tracing::dispatcher::get_default(|dispatch| {
        dispatch
            .downcast_ref::<SqliteLayer>()
            .map(SqliteLayer::handle)
    })
}

/// Installs `Registry + SqliteLayer` as the global default; reports a failure once on stderr.
fn install_default() -> Option<SqliteHandle> {
    let state = match flujo_trace_sqlite::resolve_state_path(None) {
        Ok(state) => state,
        Err(error) => {
            eprintln!("flujo: warning: runs are not recorded: {error}");
            return None;
        }
    };
    let mut builder = SqliteLayer::builder();
    if let Some(cap) = crate::settings::settings().payload_cap {
        builder = builder.with_payload_cap(cap);
    }
    let layer = match builder.open(&state.path) {
        Ok(layer) => layer,
        Err(error) => {
            eprintln!("flujo: warning: runs are not recorded: {error}");
            return None;
        }
    };
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);
    match tracing::subscriber::set_global_default(subscriber) {
        Ok(()) => Some(handle),
        // another thread installed a subscriber between our check and now: use that one
        Err(_) => None,
    }
}
