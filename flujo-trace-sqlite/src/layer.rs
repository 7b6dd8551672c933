//! `SqliteLayer`: the `tracing_subscriber::Layer` that turns flujo's run and step spans into rows
//! (the FSD's StateManager role), and `SqliteHandle`, its durability barrier.
//!
//! Span callbacks only decode the span contract into the core's row structs and hand them to
//! the core's writer thread (`flujo_trace_core::WriterLink`, driving this crate's `SqliteSink`)
//! over a bounded channel; they never touch SQLite.

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_subscriber::filter::Filtered;
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use flujo_trace_core::{
    decode_run_record, decode_run_start, decode_step_record, decode_step_start, finish_run,
    finish_step, Flushed, Row, RunEnd, StepClose, WriterLink, WriterOptions, DEFAULT_PAYLOAD_CAP,
    DEFAULT_RETRY_WINDOW, RUN_SPAN, STEP_SPAN, TARGET,
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
    recorder: SpanRecorder,
    /// `Filtered<SpanRecorder, FlujoSpans, S>`, built in `on_layer` once the subscriber type `S` is
    /// known; until then (or outside a registry stack) the recorder is called directly.
    filtered: Option<Box<dyn Any + Send + Sync>>,
}

/// The recording half of the layer: turns span callbacks into rows for the writer.
#[derive(Clone)]
struct SpanRecorder {
    writer: Arc<SqliteWriter>,
}

/// A cheap, cloneable handle on a [`SqliteLayer`]'s writer: the durability barrier.
#[derive(Clone)]
pub struct SqliteHandle {
    writer: Arc<SqliteWriter>,
}

/// What the layer and its handles share: the link to the writer thread (the last one dropped
/// stops it, after it has committed everything sent), the database file and the payload cap.
struct SqliteWriter {
    link: Arc<WriterLink>,
    path: PathBuf,
    /// Payloads longer than this are stored cut.
    payload_cap: usize,
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

    /// The page size of a database this layer creates (default 4 KiB; a power of two from 512
    /// to 65,536, others are ignored by SQLite); an existing database keeps its own. Smaller pages
    /// make each commit write less to the WAL, larger ones waste less of each page: at 4 KiB, a
    /// step with ~1 KB of input and output fills a page alone (about 2.25 bytes on disk per
    /// payload byte), at 16 KiB seven share one (1.32), but each small commit writes four times
    /// the WAL bytes, and the typical pipeline's recording overhead grew from about 3% to about
    /// 7% here (`cargo xtask bench overhead` prints both side by side).
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
            process: crate::process::current_writer(),
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
        let writer = Arc::new(SqliteWriter {
            link,
            path: path.to_path_buf(),
            payload_cap: self.payload_cap,
        });
        Ok(SqliteLayer {
            recorder: SpanRecorder { writer },
            filtered: None,
        })
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
            writer: Arc::clone(&self.recorder.writer),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.recorder.writer.path
    }

    fn filtered<S>(&self) -> Option<&Filtered<SpanRecorder, FlujoSpans, S>>
    where
        S: Subscriber + for<'a> LookupSpan<'a> + 'static,
    {
        self.filtered.as_ref()?.downcast_ref()
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
            .field("path", &self.recorder.writer.path)
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

/// A run span's state in the registry's extensions: its id and close fields so far.
struct RunSpan {
    run_id: String,
    end: RunEnd,
    /// SqliteLayers in this subscriber that track the span (normally one).
    layers: usize,
}

/// A step span's state in the registry's extensions.
struct StepSpan {
    close: StepClose,
    layers: usize,
}

/// Enables exactly the spans of the flujo contract, and only for this layer.
struct FlujoSpans;

impl FlujoSpans {
    fn wants(metadata: &Metadata<'_>) -> bool {
        metadata.is_span()
            && metadata.target() == TARGET
            && matches!(metadata.name(), RUN_SPAN | STEP_SPAN)
    }
}

impl<S> Filter<S> for FlujoSpans {
    fn enabled(&self, metadata: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        Self::wants(metadata)
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        if Self::wants(metadata) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // the contract's spans are INFO
        Some(LevelFilter::INFO)
    }
}

/// Forwards every callback to the filtered recorder (the way `Filtered` itself forwards), so
/// the registry sees a per-layer filtered layer and `Dispatch::downcast_ref::<SqliteLayer>`
/// still finds this type.
impl<S> Layer<S> for SqliteLayer
where
    S: Subscriber + for<'a> LookupSpan<'a> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        if let Some(filtered) = self.filtered::<S>() {
            filtered.on_register_dispatch(subscriber);
        }
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        let mut filtered = self.recorder.clone().with_filter(FlujoSpans);
        filtered.on_layer(subscriber);
        self.filtered = Some(Box::new(filtered));
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        match self.filtered::<S>() {
            Some(filtered) => filtered.register_callsite(metadata),
            None => Interest::always(),
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        match self.filtered::<S>() {
            Some(filtered) => filtered.enabled(metadata, ctx),
            None => true,
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.filtered::<S>()?.max_level_hint()
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        match self.filtered::<S>() {
            Some(filtered) => filtered.event_enabled(event, ctx),
            None => true,
        }
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        match self.filtered::<S>() {
            Some(filtered) => filtered.on_new_span(attrs, id, ctx),
            None => self.recorder.on_new_span(attrs, id, ctx),
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        match self.filtered::<S>() {
            Some(filtered) => filtered.on_record(id, values, ctx),
            None => self.recorder.on_record(id, values, ctx),
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        if let Some(filtered) = self.filtered::<S>() {
            filtered.on_follows_from(id, follows, ctx);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if let Some(filtered) = self.filtered::<S>() {
            filtered.on_event(event, ctx);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(filtered) = self.filtered::<S>() {
            filtered.on_enter(id, ctx);
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if let Some(filtered) = self.filtered::<S>() {
            filtered.on_exit(id, ctx);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        match self.filtered::<S>() {
            Some(filtered) => filtered.on_close(id, ctx),
            None => self.recorder.on_close(id, ctx),
        }
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        if let Some(filtered) = self.filtered::<S>() {
            filtered.on_id_change(old, new, ctx);
        }
    }

    #[doc(hidden)]
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // SAFETY: forwarded to the wrapped layer, which answers for its own types (the filter
        // marker the registry looks for included); the pointers stay valid as long as `self`
        unsafe { self.filtered::<S>()?.downcast_raw(id) }
    }
}

impl<S> Layer<S> for SpanRecorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let metadata = attrs.metadata();
        if metadata.target() != TARGET {
            return;
        }
        let row = match metadata.name() {
            RUN_SPAN => {
                let Some((run, end)) = decode_run_start(attrs, self.writer.payload_cap) else {
                    return;
                };
                let Some(span) = ctx.span(id) else { return };
                let mut extensions = span.extensions_mut();
                match extensions.get_mut::<RunSpan>() {
                    Some(state) => state.layers += 1,
                    None => extensions.insert(RunSpan {
                        run_id: run.run_id.clone(),
                        end,
                        layers: 1,
                    }),
                }
                Row::RunStart(run)
            }
            STEP_SPAN => {
                let Some((step, close)) = decode_step_start(attrs, self.writer.payload_cap) else {
                    return;
                };
                let Some(span) = ctx.span(id) else { return };
                let mut extensions = span.extensions_mut();
                match extensions.get_mut::<StepSpan>() {
                    Some(state) => state.layers += 1,
                    None => extensions.insert(StepSpan { close, layers: 1 }),
                }
                Row::StepStart(step)
            }
            _ => return,
        };
        // the extensions guard and span are dropped: sending may wait for the writer
        self.writer.link.send(row);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if span.metadata().target() != TARGET {
            return;
        }
        // the span's name says which state it holds: one extensions lookup per record
        let name = span.metadata().name();
        let mut extensions = span.extensions_mut();
        if name == STEP_SPAN {
            if let Some(state) = extensions.get_mut::<StepSpan>() {
                decode_step_record(values, &mut state.close, self.writer.payload_cap);
            }
        } else if name == RUN_SPAN {
            if let Some(state) = extensions.get_mut::<RunSpan>() {
                decode_run_record(values, &mut state.end, self.writer.payload_cap);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if span.metadata().target() != TARGET {
            return;
        }
        let row = {
            let mut extensions = span.extensions_mut();
            if let Some(state) = extensions.get_mut::<RunSpan>() {
                let (run_id, end) = if state.layers > 1 {
                    state.layers -= 1;
                    (state.run_id.clone(), state.end.clone())
                } else {
                    let Some(state) = extensions.remove::<RunSpan>() else {
                        return;
                    };
                    (state.run_id, state.end)
                };
                Row::RunEnd {
                    run_id,
                    end: finish_run(end),
                }
            } else if let Some(state) = extensions.get_mut::<StepSpan>() {
                let close = if state.layers > 1 {
                    state.layers -= 1;
                    state.close.clone()
                } else {
                    let Some(state) = extensions.remove::<StepSpan>() else {
                        return;
                    };
                    state.close
                };
                Row::StepEnd(finish_step(close))
            } else {
                return;
            }
        };
        drop(span);
        self.writer.link.send(row);
    }
}
