//! `SqliteLayer`: the `tracing_subscriber::Layer` that turns flujo's run and step spans into rows
//! (the FSD's StateManager role), and `SqliteHandle`, its durability barrier.
//!
//! The span callbacks are the core's (`flujo_trace_core::RecordingLayer`): they decode the span
//! contract into rows and hand them to the core's writer thread (`flujo_trace_core::WriterLink`,
//! driving this crate's `SqliteSink`) over a bounded channel; they never touch SQLite. This file
//! only opens the database and names the layer.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flujo_trace_core::{
    Flushed, RecordingLayer, WriterLink, WriterOptions, DEFAULT_PAYLOAD_CAP, DEFAULT_RETRY_WINDOW,
};

use crate::backend::SqliteBackend;
use crate::sink::SqliteSink;
use crate::{migrate, Error};

/// A [`Layer`] that records flujo runs and steps (the span contract in `ARCHITECTURE.md`) in a
/// SQLite database, beside any other layers of a `Registry`.
///
/// ```no_run
/// use tracing_subscriber::prelude::*;
///
/// let sqlite = flujo_trace_sqlite::SqliteLayer::open("flujo_ops.db")?;
/// tracing_subscriber::registry()
///     .with(sqlite)
///     .with(tracing_subscriber::fmt::layer().with_filter(tracing_subscriber::EnvFilter::new("warn")))
///     .init();
/// # Ok::<(), flujo_trace_sqlite::Error>(())
/// ```
///
/// Opening creates or upgrades the database on the calling thread, so every storage problem that
/// can be known up front is an error here. Rows are then written by one writer thread in batched
/// transactions, at least every flush interval (5 ms by default) and at every
/// [`SqliteHandle::flush`]. A storage failure afterwards never reaches the instrumented code: it
/// is counted ([`SqliteHandle::rows_not_recorded`]) and reported once on stderr. When the layer
/// and all its handles are dropped, the writer commits what it holds and stops.
///
/// The layer carries its own per-layer filter (flujo's run and step spans, nothing else), so
/// beside it every other callsite costs what it cost without it, and other layers' filters are
/// left to decide for themselves. It needs a [`Registry`](tracing_subscriber::Registry) at the
/// root of the stack, like every per-layer filtered layer.
pub struct SqliteLayer {
    /// The span callbacks, shared with every store.
    recording: RecordingLayer,
    writer: Arc<SqliteWriter>,
}

/// A cheap, cloneable handle on a [`SqliteLayer`]'s writer: the durability barrier.
#[derive(Clone)]
pub struct SqliteHandle {
    writer: Arc<SqliteWriter>,
}

/// What the layer and its handles share: the link to the writer thread (the last one dropped
/// stops it, after it has committed everything sent) and the database file.
struct SqliteWriter {
    link: Arc<WriterLink>,
    path: PathBuf,
}

/// Options of a [`SqliteLayer`]; `SqliteLayer::builder().with_...(..).open(path)`.
#[derive(Debug, Clone)]
pub struct SqliteLayerBuilder {
    flush_interval: Duration,
    queue_capacity: usize,
    busy_timeout: Duration,
    payload_cap: usize,
    max_db_bytes: Option<u64>,
    retry_window: Duration,
    page_size: i64,
}

impl Default for SqliteLayerBuilder {
    fn default() -> Self {
        SqliteLayerBuilder {
            flush_interval: Duration::from_millis(5),
            queue_capacity: 4096,
            busy_timeout: migrate::DEFAULT_BUSY_TIMEOUT,
            payload_cap: DEFAULT_PAYLOAD_CAP,
            max_db_bytes: None,
            retry_window: DEFAULT_RETRY_WINDOW,
            page_size: migrate::PAGE_SIZE,
        }
    }
}

impl SqliteLayerBuilder {
    /// The longest time a row waits in memory before it is committed (default 5 ms, so a
    /// run's barrier finds little left to write).
    pub fn with_flush_interval(mut self, flush_interval: Duration) -> Self {
        self.flush_interval = flush_interval;
        self
    }

    /// How many rows may wait for the writer before span callbacks block (default 4096, at
    /// least 1). Rows are never dropped: a full queue makes the instrumented thread wait.
    pub fn with_queue_capacity(mut self, queue_capacity: usize) -> Self {
        self.queue_capacity = queue_capacity.max(1);
        self
    }

    /// How long a write waits for another process's lock before those rows count as not
    /// recorded (default 5 s).
    pub fn with_busy_timeout(mut self, busy_timeout: Duration) -> Self {
        self.busy_timeout = busy_timeout;
        self
    }

    /// The most bytes of one payload (a run's or step's input, output, error or final context)
    /// that are stored (default [`DEFAULT_PAYLOAD_CAP`], 1 MiB). A longer payload is stored cut
    /// at a character boundary, followed by a marker with its original size (see
    /// [`truncated`](crate::truncated)); the cut happens while the span's field is copied, so a
    /// huge payload costs the instrumented thread a copy of `payload_cap` bytes. `usize::MAX`
    /// stores every payload whole.
    pub fn with_payload_cap(mut self, payload_cap: usize) -> Self {
        self.payload_cap = payload_cap;
        self
    }

    /// The largest size the database file may grow to (default: no limit but the disk's),
    /// applied as `PRAGMA max_page_count` on the writer's connection and rounded down to whole
    /// pages. A database already larger keeps its size but does not grow. Once the cap is
    /// reached, rows count as not recorded (one warning says so) until space is freed inside the
    /// file, for example by `flujo lens prune`, and recording resumes by itself. The `-wal` file
    /// beside the database is not counted.
    pub fn with_max_db_bytes(mut self, max_db_bytes: u64) -> Self {
        self.max_db_bytes = Some(max_db_bytes);
        self
    }

    /// How long rows that storage refused (a full disk, a lock held past the busy timeout, an
    /// I/O error) are written again, with a backoff from 10 ms doubling up to 200 ms, before they
    /// count as not recorded (default 1 s). A barrier ([`SqliteHandle::flush`]) waits for them, so
    /// this is the longest a run's end waits on a failing store, plus one write attempt (which
    /// waits up to the busy timeout on another process's lock). After such a loss, rows get one
    /// attempt each until a write works again, so a disk that stays full does not slow every
    /// run down by this much.
    pub fn with_retry_window(mut self, retry_window: Duration) -> Self {
        self.retry_window = retry_window;
        self
    }

    /// The page size of a database this layer creates (default 16 KiB; a power of two from 512
    /// to 65,536, others are ignored by SQLite); an existing database keeps its own. Smaller pages
    /// make each commit write less to the WAL, larger ones waste less of each page: at 4 KiB, a
    /// step with ~1 KB of input and output fills a page alone (about 2.2 bytes on disk per
    /// payload byte), at 16 KiB seven share one (about 1.27). `cargo xtask bench overhead`
    /// prints both side by side, with what each costs the typical pipeline and a run's commit.
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = i64::from(page_size);
        self
    }

    /// Opens (creating or upgrading) the database at `path` and starts the writer thread.
    pub fn open(self, path: impl AsRef<Path>) -> Result<SqliteLayer, Error> {
        let path = path.as_ref();
        let backend =
            SqliteBackend::open_with_busy_timeout(path, self.busy_timeout, self.page_size)?;
        if let Some(max_db_bytes) = self.max_db_bytes {
            migrate::set_max_db_bytes(&backend.conn, path, max_db_bytes)?;
        }
        let sink = SqliteSink::new(backend, self.busy_timeout, self.max_db_bytes);
        let options = WriterOptions {
            flush_interval: self.flush_interval,
            retry_window: self.retry_window,
            process: flujo_trace_core::current_writer(),
            outage_buffer: None,
        };
        let link = WriterLink::spawn(
            sink,
            path.display().to_string(),
            options,
            self.queue_capacity,
            "flujo-sqlite-writer",
        )
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let recording = RecordingLayer::new(Arc::clone(&link), self.payload_cap);
        let writer = Arc::new(SqliteWriter {
            link,
            path: path.to_path_buf(),
        });
        Ok(SqliteLayer { recording, writer })
    }
}

impl SqliteLayer {
    /// Opens (creating or upgrading) the database at `path` with the default options.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteLayer, Error> {
        SqliteLayerBuilder::default().open(path)
    }

    /// Options other than the defaults.
    pub fn builder() -> SqliteLayerBuilder {
        SqliteLayerBuilder::default()
    }

    /// A handle on this layer's writer, to wait for rows to be committed.
    pub fn handle(&self) -> SqliteHandle {
        SqliteHandle {
            writer: Arc::clone(&self.writer),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.writer.path
    }
}

impl SqliteHandle {
    /// Resolves once every row sent before this call is committed or counted as not recorded
    /// (at once when the writer has stopped), and says which: see [`Flushed`]. Rows that storage
    /// refuses are written again for up to the retry window
    /// ([`SqliteLayerBuilder::with_retry_window`], 1 s by default) before the barrier is
    /// answered. The barrier is sent when `flush` is called, not when the future is polled.
    pub fn flush(&self) -> impl Future<Output = Flushed> + Send + 'static {
        self.writer.link.flush()
    }

    /// [`flush`](Self::flush), blocking the calling thread (never call it on an async runtime's
    /// worker thread).
    pub fn flush_blocking(&self) -> Flushed {
        futures::executor::block_on(self.flush())
    }

    /// Rows that could not be written so far (storage failures); 0 when all was recorded.
    pub fn rows_not_recorded(&self) -> u64 {
        self.writer.link.rows_not_recorded()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.writer.path
    }
}

impl fmt::Debug for SqliteLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteLayer")
            .field("path", &self.writer.path)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SqliteHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteHandle")
            .field("path", &self.writer.path)
            .field("rows_not_recorded", &self.rows_not_recorded())
            .finish()
    }
}

flujo_trace_core::store_layer!(SqliteLayer, recording);
