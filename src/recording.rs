//! Persistence by default (FR-21): find the store's layer (`SqliteLayer`, `PostgresLayer`: any
//! built on the core's `RecordingLayer`) in the current subscriber, or install the default
//! subscriber when there is none, and wait for each run's rows to be committed; and [`layer`],
//! the configured store's layer for a subscriber you build yourself. A state URI of `off`
//! (`FLUJO_STATE_URI=off`, `state_uri = "off"`) records nothing and says nothing; a
//! `postgres://` one records into PostgreSQL.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use flujo_runner::RunObserver;
use flujo_trace_core::{RecordingLayer, StateSetting, WriterLink};
use flujo_trace_postgres::PostgresLayer;
use flujo_trace_sqlite::SqliteLayer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Whether a [`Flujo`](crate::Flujo) records its runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Persistence {
    /// Record every run: through the store's layer (`SqliteLayer`, `PostgresLayer`) of the
    /// current subscriber when it has one; when no global subscriber exists, by installing the
    /// default one (a `Registry` with the layer of the configured state URI: a SQLite file or a
    /// PostgreSQL database). Each run returns once its rows are committed.
    #[default]
    Default,
    /// Never install the default subscriber and never wait for the database. A `SqliteLayer`
    /// you installed yourself still records what it sees: leave it out of your subscriber to
    /// record nothing.
    Disabled,
}

/// The `RunObserver` the facade plugs into every runner: finds the layer, installs the default
/// subscriber, awaits the barrier.
#[derive(Debug, Default)]
pub(crate) struct PersistenceObserver;

/// Whether this process installed the default subscriber (false when that failed, already
/// reported, or recording is off); set once.
static DEFAULT_INSTALL: OnceLock<bool> = OnceLock::new();
static WARNED_NO_LAYER: AtomicBool = AtomicBool::new(false);

impl RunObserver for PersistenceObserver {
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
        } else if DEFAULT_INSTALL.get().is_none()
            && !WARNED_NO_LAYER.load(Ordering::Relaxed)
            && !recording_is_off()
            && !WARNED_NO_LAYER.swap(true, Ordering::Relaxed)
        {
            eprintln!(
                "flujo: warning: runs are not recorded: the tracing subscriber has no SqliteLayer; \
                 add one with `tracing_subscriber::registry().with(flujo::SqliteLayer::open(\"flujo_ops.db\")?)` \
                 (or the configured store's, SQLite or PostgreSQL, with `.with(flujo::layer()?)`), \
                 or use Persistence::Disabled to silence this"
            );
        }
    }

    fn run_span_opened(&self, span: &tracing::Span) {
        #[cfg(feature = "otlp")]
        crate::otlp::record_trace_id(span);
        #[cfg(not(feature = "otlp"))]
        let _ = span;
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

/// The link to the writer of the store's layer (`SqliteLayer`, or any other built on the core's
/// `RecordingLayer`) in the subscriber that spans go to on this thread now.
fn current_layer() -> Option<Arc<WriterLink>> {
    tracing::dispatcher::get_default(|dispatch| {
        dispatch
            .downcast_ref::<RecordingLayer>()
            .map(|layer| Arc::clone(layer.link()))
    })
}

/// Where the default subscriber and [`layer`] record, as messages should name it: the SQLite
/// file (relative to the current directory when below it), or the PostgreSQL URI with its
/// password hidden; `None` when the state URI is `off` or
/// cannot be used (the first run reports why).
pub fn recording_store() -> Option<String> {
    match crate::settings::settings().state() {
        Ok(StateSetting::Store(state)) => {
            // relative to where the user stands, when it is below it
            let cwd = std::env::current_dir().unwrap_or_default();
            let path = state.path.strip_prefix(&cwd).unwrap_or(&state.path);
            Some(path.display().to_string())
        }
        Ok(StateSetting::Postgres { uri, .. }) => Some(uri.redacted()),
        Ok(StateSetting::Off { .. }) | Err(_) => None,
    }
}

/// Whether the state URI is `off` (a setting that cannot be resolved is not `off`).
fn recording_is_off() -> bool {
    matches!(
        crate::settings::settings().state(),
        Ok(StateSetting::Off { .. })
    )
}

/// The layers of the configured store (SQLite or PostgreSQL) and of OpenTelemetry export, built
/// from the settings as the default subscriber's are; `None` when the state URI is `off` and no
/// OTLP endpoint is set.
fn configured_layer<S>(
) -> Result<Option<Box<dyn Layer<S> + Send + Sync>>, flujo_trace_sqlite::Error>
where
    S: tracing::Subscriber + Send + Sync + for<'span> LookupSpan<'span>,
{
    let store = store_layer::<S>()?;
    let export = export_layer::<S>();
    Ok(match (store, export) {
        (Some(store), Some(export)) => Some(Box::new(store.and_then(export))),
        (store, export) => store.or(export),
    })
}

/// The OpenTelemetry export layer when an OTLP endpoint is set; a setting that cannot be used
/// is one warning, and runs are still recorded.
fn export_layer<S>() -> Option<Box<dyn Layer<S> + Send + Sync>>
where
    S: tracing::Subscriber + Send + Sync + for<'span> LookupSpan<'span>,
{
    #[cfg(feature = "otlp")]
    {
        let settings = crate::settings::settings();
        let built = crate::otlp::resolve(|name| std::env::var(name).ok(), settings.toml())
            .and_then(|setting| {
                setting
                    .map(|setting| crate::otlp::layer(&setting))
                    .transpose()
            });
        match built {
            Ok(layer) => layer,
            Err(error) => {
                eprintln!("flujo: warning: runs are not exported to OpenTelemetry: {error}");
                None
            }
        }
    }
    #[cfg(not(feature = "otlp"))]
    {
        let settings = crate::settings::settings();
        let asked = std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
            || settings
                .toml()
                .is_some_and(|(_, toml)| toml.otlp.endpoint.is_some());
        if asked {
            eprintln!(
                "flujo: warning: runs are not exported to OpenTelemetry: this flujo was built \
                 without its `otlp` feature (a default feature: build with default features)"
            );
        }
        None
    }
}

/// The layer of the configured store (SQLite or PostgreSQL); `None` when the state URI is `off`.
fn store_layer<S>() -> Result<Option<Box<dyn Layer<S> + Send + Sync>>, flujo_trace_sqlite::Error>
where
    S: tracing::Subscriber + Send + Sync + for<'span> LookupSpan<'span>,
{
    let settings = crate::settings::settings();
    match settings.state()? {
        StateSetting::Off { .. } => Ok(None),
        StateSetting::Store(state) => {
            let mut builder = SqliteLayer::builder();
            if let Some(cap) = settings.payload_cap {
                builder = builder.with_payload_cap(cap);
            }
            Ok(Some(Box::new(builder.open(&state.path)?)))
        }
        StateSetting::Postgres { uri, source } => {
            let mut builder = PostgresLayer::builder();
            if let Some(cap) = settings.payload_cap {
                builder = builder.with_payload_cap(cap);
            }
            // opening only checks the URI: the connection is made by the writer thread
            let layer =
                builder
                    .open_uri(uri)
                    .map_err(|error| flujo_trace_sqlite::Error::Config {
                        message: format!("{source}: {error}"),
                    })?;
            Ok(Some(Box::new(layer)))
        }
    }
}

/// The configured store's layer, for a subscriber you build yourself: the state URI and the
/// settings resolved exactly as for the default subscriber (`FLUJO_STATE_URI`, then the nearest
/// `flujo.toml`, then `./flujo_ops.db`; its `[storage]` settings), so what you compose records
/// where a zero-setup run would: a [`SqliteLayer`] for a file, a [`PostgresLayer`] for a
/// `postgres://` URI.
///
/// Every [`Flujo`](crate::Flujo) run finds it in the subscriber and returns once its rows are
/// committed, as with the default subscriber. When the state URI is `off` it is a layer that
/// records nothing, and runs neither record nor warn. When an OTLP endpoint is set
/// (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `[otlp] endpoint`
/// in `flujo.toml`), it also exports every run to that OpenTelemetry collector, as the default
/// subscriber does.
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// # fn main() -> Result<(), flujo::StorageError> {
/// tracing_subscriber::registry()
///     .with(flujo::layer()?)
///     .with(tracing_subscriber::fmt::layer().with_filter(tracing_subscriber::EnvFilter::from_default_env()))
///     .init();
/// # Ok(())
/// # }
/// ```
///
/// # Errors
///
/// The state URI or `flujo.toml` cannot be used, or the database cannot be opened or created.
pub fn layer<S>() -> Result<Box<dyn Layer<S> + Send + Sync>, flujo_trace_sqlite::Error>
where
    S: tracing::Subscriber + Send + Sync + for<'span> LookupSpan<'span>,
{
    Ok(match configured_layer()? {
        Some(layer) => layer,
        None => Box::new(tracing_subscriber::layer::Identity::new()),
    })
}

/// Installs `Registry` + the configured store's layer (and the export layer, when an OTLP
/// endpoint is set) as the global default; reports a failure once on stderr. Installs nothing
/// when the state URI is `off` and nothing is exported.
fn install_default() -> bool {
    let layer = match configured_layer::<tracing_subscriber::Registry>() {
        Ok(Some(layer)) => layer,
        Ok(None) => return false,
        Err(error) => {
            eprintln!("flujo: warning: runs are not recorded: {error}");
            return false;
        }
    };
    let subscriber = tracing_subscriber::registry().with(layer);
    // another thread may have installed a subscriber between our check and now: that one is used
    tracing::subscriber::set_global_default(subscriber).is_ok()
}
