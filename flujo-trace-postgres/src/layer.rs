//! `PostgresLayer`: the `tracing_subscriber::Layer` that records flujo's runs and steps in
//! PostgreSQL, and `PostgresHandle`, its durability barrier. The span callbacks are the core's
//! (`RecordingLayer`); this file opens the store and names the layer.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flujo_trace_core::{
    Flushed, OutageBuffer, PostgresUri, RecordingLayer, WriterLink, WriterOptions, WriterProcess,
    DEFAULT_PAYLOAD_CAP,
};

use crate::sink::{Access, Heartbeat, PostgresSink};
use crate::Error;

/// The outage buffer by default: rows held while the server is unreachable.
pub const DEFAULT_OUTAGE_BUFFER: OutageBuffer = OutageBuffer {
    max_rows: 100_000,
    max_bytes: 64 * 1024 * 1024,
    max_age: Duration::from_secs(300),
};

/// A [`Layer`](tracing_subscriber::Layer) that records flujo runs and steps (the span contract
/// in `ARCHITECTURE.md`) in a PostgreSQL database, beside any other layers of a `Registry`.
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// let postgres = flujo_trace_postgres::PostgresLayer::open("postgres://flujo@db.internal/ops")?;
/// tracing_subscriber::registry().with(postgres).init();
/// # Ok::<(), flujo_trace_postgres::Error>(())
/// ```
///
/// Opening checks the URI and starts the writer thread; it never waits for the network. The
/// writer connects, creates or upgrades the schema (once, under an advisory lock, however many
/// processes start at once) and writes batched transactions, at least every flush interval
/// (5 ms) and at every [`PostgresHandle::flush`], the barrier each run's end waits for.
///
/// While the server is unreachable, refused rows are written again for the retry window (1 s,
/// the longest a barrier waits), then held in memory within the outage buffer
/// ([`DEFAULT_OUTAGE_BUFFER`]: 100,000 rows, 64 MiB, 5 minutes) and written once the server is
/// back; past the buffer they count as not recorded. Both are reported on stderr while the
/// process runs.
pub struct PostgresLayer {
    /// The span callbacks, shared with every store.
    recording: RecordingLayer,
    writer: Arc<PostgresWriter>,
}

/// A cheap, cloneable handle on a [`PostgresLayer`]'s writer: the durability barrier.
#[derive(Clone)]
pub struct PostgresHandle {
    writer: Arc<PostgresWriter>,
}

/// What the layer and its handles share.
struct PostgresWriter {
    link: Arc<WriterLink>,
    uri: PostgresUri,
}

/// Options of a [`PostgresLayer`]; `PostgresLayer::builder().with_...(..).open(uri)`.
#[derive(Debug, Clone)]
pub struct PostgresLayerBuilder {
    flush_interval: Duration,
    queue_capacity: usize,
    payload_cap: usize,
    retry_window: Duration,
    outage_buffer: OutageBuffer,
    heartbeat: Heartbeat,
    writer: Option<WriterProcess>,
}

impl Default for PostgresLayerBuilder {
    fn default() -> Self {
        PostgresLayerBuilder {
            flush_interval: Duration::from_millis(5),
            queue_capacity: 4096,
            payload_cap: DEFAULT_PAYLOAD_CAP,
            retry_window: flujo_trace_core::DEFAULT_RETRY_WINDOW,
            outage_buffer: DEFAULT_OUTAGE_BUFFER,
            heartbeat: Heartbeat {
                interval: Duration::from_secs(5),
                missed: 6,
            },
            writer: flujo_trace_core::current_writer(),
        }
    }
}

impl PostgresLayerBuilder {
    /// The longest time a row waits in memory before it is written (default 5 ms).
    pub fn with_flush_interval(mut self, flush_interval: Duration) -> Self {
        self.flush_interval = flush_interval;
        self
    }

    /// How many rows may wait for the writer before span callbacks block (default 4096).
    pub fn with_queue_capacity(mut self, queue_capacity: usize) -> Self {
        self.queue_capacity = queue_capacity.max(1);
        self
    }

    /// Payloads longer than this many bytes are stored cut, with a marker (default 1 MiB).
    pub fn with_payload_cap(mut self, payload_cap: usize) -> Self {
        self.payload_cap = payload_cap;
        self
    }

    /// How long refused rows are written again before a barrier stops waiting for them
    /// (default 1 s); after that they wait in the outage buffer.
    pub fn with_retry_window(mut self, retry_window: Duration) -> Self {
        self.retry_window = retry_window;
        self
    }

    /// The bounds of the rows held while the server is unreachable (default
    /// [`DEFAULT_OUTAGE_BUFFER`]).
    pub fn with_outage_buffer(mut self, outage_buffer: OutageBuffer) -> Self {
        self.outage_buffer = outage_buffer;
        self
    }

    /// How often the writer beats in `flujo_writers`, idle or not (default 5 s), and how many
    /// intervals without a beat make its `running` runs read as `crashed` from any host
    /// (default 6, so 30 s).
    pub fn with_heartbeat(mut self, interval: Duration, missed_beats: u32) -> Self {
        self.heartbeat = Heartbeat {
            interval: interval.max(Duration::from_millis(1)),
            missed: missed_beats.max(1),
        };
        self
    }

    /// The writer identity recorded with every run and beaten in `flujo_writers` (default: this
    /// process on this host). Tests give a writer another host's identity with it.
    pub fn with_writer_identity(mut self, writer: WriterProcess) -> Self {
        self.writer = Some(writer);
        self
    }

    /// Checks `uri` (a `postgres://` or `postgresql://` URI) and starts the writer thread.
    pub fn open(self, uri: &str) -> Result<PostgresLayer, Error> {
        let uri = PostgresUri::parse(uri).ok_or_else(|| Error::Config {
            message: "a PostgreSQL store needs a postgres:// or postgresql:// URI, e.g. \
                      postgres://flujo@db.internal/ops"
                .to_owned(),
        })?;
        self.open_uri(uri)
    }

    /// [`open`](Self::open) with a URI already parsed (the facade's configured store).
    pub fn open_uri(self, uri: PostgresUri) -> Result<PostgresLayer, Error> {
        let sink = PostgresSink::new(
            uri.clone(),
            Access::Record,
            self.writer.clone(),
            self.heartbeat,
        )?;
        let options = WriterOptions {
            flush_interval: self.flush_interval,
            retry_window: self.retry_window,
            process: self.writer,
            outage_buffer: Some(self.outage_buffer),
        };
        let link = WriterLink::spawn(
            sink,
            format!("PostgreSQL at {uri}"),
            options,
            self.queue_capacity,
            "flujo-postgres-writer",
        )
        .map_err(|source| Error::Config {
            message: format!("cannot start the flujo writer thread: {source}"),
        })?;
        let recording = RecordingLayer::new(Arc::clone(&link), self.payload_cap);
        Ok(PostgresLayer {
            recording,
            writer: Arc::new(PostgresWriter { link, uri }),
        })
    }
}

impl PostgresLayer {
    /// Opens the store at `uri` with the default options.
    pub fn open(uri: &str) -> Result<PostgresLayer, Error> {
        PostgresLayerBuilder::default().open(uri)
    }

    /// Options other than the defaults.
    pub fn builder() -> PostgresLayerBuilder {
        PostgresLayerBuilder::default()
    }

    /// A handle on this layer's writer, to wait for rows to be committed.
    pub fn handle(&self) -> PostgresHandle {
        PostgresHandle {
            writer: Arc::clone(&self.writer),
        }
    }
}

impl PostgresHandle {
    /// Resolves once every row sent before this call is committed, held in the outage buffer
    /// ([`Flushed::rows_pending`]) or counted as not recorded: at most the retry window (1 s by
    /// default) plus one connection attempt (3 s unless the URI sets `connect_timeout`) while
    /// the server is unreachable. Committed means as durable as the writer session's
    /// `synchronous_commit` makes a commit: `off` unless the URI's `options` set it (in the
    /// server's WAL, not yet on its disk: it survives this process and its host, not a crash of
    /// the server's host in the next moments; see the README's *Durability*).
    pub fn flush(&self) -> impl Future<Output = Flushed> + Send + 'static {
        self.writer.link.flush()
    }

    /// [`flush`](Self::flush), blocking the calling thread (never on an async runtime's worker).
    pub fn flush_blocking(&self) -> Flushed {
        futures::executor::block_on(self.flush())
    }

    /// Rows that could not be written so far; 0 when all was recorded.
    pub fn rows_not_recorded(&self) -> u64 {
        self.writer.link.rows_not_recorded()
    }
}

impl fmt::Debug for PostgresLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresLayer")
            .field("uri", &self.writer.uri)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for PostgresHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresHandle")
            .field("uri", &self.writer.uri)
            .field("rows_not_recorded", &self.rows_not_recorded())
            .finish()
    }
}

flujo_trace_core::store_layer!(PostgresLayer, recording);
