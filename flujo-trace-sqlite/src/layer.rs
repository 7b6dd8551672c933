//! `SqliteLayer`: the `tracing_subscriber::Layer` that turns flujo's run and step spans into rows
//! (the FSD's StateManager role), and `SqliteHandle`, its durability barrier.
//!
//! Span callbacks only copy field values into row structs and hand them to the writer thread
//! (`writer.rs`) over a bounded channel; they never touch SQLite.

use std::any::{Any, TypeId};
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Once, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    finish_step, RunEnd, StepClose, DEFAULT_PAYLOAD_CAP, RUN_SPAN, STEP_SPAN, TARGET,
};

use crate::backend::SqliteBackend;
use crate::writer::{Flushed, Message, Shared, Writer, WriterOptions, DEFAULT_RETRY_WINDOW};
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
    recorder: Recorder,
    /// `Filtered<Recorder, FlujoSpans, S>`, built in `on_layer` once the subscriber type `S` is
    /// known; until then (or outside a registry stack) the recorder is called directly.
    filtered: Option<Box<dyn Any + Send + Sync>>,
}

/// The recording half of the layer: turns span callbacks into rows for the writer.
#[derive(Clone)]
struct Recorder {
    inner: Arc<Inner>,
}

/// A cheap, cloneable handle on a [`SqliteLayer`]'s writer: the durability barrier.
#[derive(Clone)]
pub struct SqliteHandle {
    inner: Arc<Inner>,
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

    /// Opens (creating or upgrading) the database at `path` and starts the writer thread.
    pub fn open(self, path: impl AsRef<Path>) -> Result<SqliteLayer, Error> {
        let path = path.as_ref();
        let backend = SqliteBackend::open_with_busy_timeout(path, self.busy_timeout)?;
        if let Some(max_db_bytes) = self.max_db_bytes {
            migrate::set_max_db_bytes(&backend.conn, path, max_db_bytes)?;
        }
        let shared = Arc::new(Shared::new(path.to_path_buf(), self.max_db_bytes));
        let (sender, receiver) = sync_channel(self.queue_capacity);
        let options = WriterOptions {
            flush_interval: self.flush_interval,
            busy_timeout: self.busy_timeout,
            retry_window: self.retry_window,
        };
        let writer = Writer::new(backend, Arc::clone(&shared), options);
        let thread = std::thread::Builder::new()
            .name("flujo-sqlite-writer".to_owned())
            .spawn(move || writer.run(receiver))
            .map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let inner = Arc::new(Inner {
            sender: Some(sender),
            thread: Some(thread),
            shared,
            payload_cap: self.payload_cap,
        });
        shut_down_at_exit(&inner);
        Ok(SqliteLayer {
            recorder: Recorder { inner },
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
            inner: Arc::clone(&self.recorder.inner),
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.recorder.inner.shared.path
    }

    fn filtered<S>(&self) -> Option<&Filtered<Recorder, FlujoSpans, S>>
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
        let (ack, acked) = futures::channel::oneshot::channel();
        let sent = self.inner.send_barrier(ack);
        let shared = Arc::clone(&self.inner.shared);
        async move {
            let stopped = || Flushed {
                rows_not_recorded: shared.rows_not_recorded(),
                writer_running: false,
            };
            if !sent {
                return stopped();
            }
            // a writer that stopped drops the sender: nothing more will be committed
            acked.await.unwrap_or_else(|_| stopped())
        }
    }

    /// [`flush`](Self::flush), blocking the calling thread (never call it on an async runtime's
    /// worker thread).
    pub fn flush_blocking(&self) -> Flushed {
        futures::executor::block_on(self.flush())
    }

    /// Rows that could not be written so far (storage failures); 0 when all was recorded.
    pub fn rows_not_recorded(&self) -> u64 {
        self.inner.shared.rows_not_recorded()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.shared.path
    }
}

impl fmt::Debug for SqliteLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteLayer")
            .field("path", &self.recorder.inner.shared.path)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for SqliteHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteHandle")
            .field("path", &self.inner.shared.path)
            .field("rows_not_recorded", &self.rows_not_recorded())
            .finish()
    }
}

/// Owned by the layer and its handles; the last one dropped stops the writer after it has
/// committed everything sent.
struct Inner {
    /// `None` only while dropping.
    sender: Option<SyncSender<Message>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    /// Payloads longer than this are stored cut.
    payload_cap: usize,
}

impl Inner {
    /// Queues a row. A full queue wakes the writer and waits for room: rows are never dropped.
    fn send(&self, message: Message) {
        let Some(sender) = &self.sender else { return };
        let sent = match sender.try_send(message) {
            Ok(()) => return,
            Err(TrySendError::Full(message)) => {
                self.wake_writer();
                sender.send(message).is_ok()
            }
            Err(TrySendError::Disconnected(_)) => false,
        };
        if !sent {
            self.shared
                .not_recorded(1, &"the flujo writer thread has stopped");
        }
    }

    /// Queues a barrier and wakes the writer to commit at once; false when the writer is gone.
    fn send_barrier(&self, ack: futures::channel::oneshot::Sender<Flushed>) -> bool {
        let Some(sender) = &self.sender else {
            return false;
        };
        let message = match sender.try_send(Message::Barrier(ack)) {
            Ok(()) => None,
            Err(TrySendError::Full(message)) => Some(message),
            Err(TrySendError::Disconnected(_)) => return false,
        };
        self.wake_writer();
        match message {
            Some(message) => sender.send(message).is_ok(),
            None => true,
        }
    }

    /// Asks the writer to commit, checkpoint and close now (the process is exiting); the
    /// receiver hears once it has. `None` when the writer is gone.
    fn send_shutdown(&self) -> Option<std::sync::mpsc::Receiver<()>> {
        let sender = self.sender.as_ref()?;
        let (ack, acked) = std::sync::mpsc::sync_channel(1);
        let message = match sender.try_send(Message::Shutdown(ack)) {
            Ok(()) => None,
            Err(TrySendError::Full(message)) => Some(message),
            Err(TrySendError::Disconnected(_)) => return None,
        };
        self.wake_writer();
        if let Some(message) = message {
            sender.send(message).ok()?;
        }
        Some(acked)
    }

    /// The writer sleeps while rows gather (see `writer.rs`); this ends the sleep.
    fn wake_writer(&self) {
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // closing the channel lets the writer commit what it holds and return
        drop(self.sender.take());
        self.wake_writer();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The writers of this process that may still hold rows when it exits.
static LIVE_WRITERS: Mutex<Vec<Weak<Inner>>> = Mutex::new(Vec::new());

/// The longest the process's exit waits for its writers: their last writes (each waiting at most
/// 0.5 s on another process's lock, then retried within the retry window) and checkpoints.
const EXIT_WAIT: Duration = Duration::from_secs(3);

/// Makes the process's exit (returning from `main`, `std::process::exit`) commit the rows this
/// writer still holds, checkpoint the WAL into the database file and close the connection: a
/// layer in the global default subscriber is never dropped, and without this its last rows and
/// its WAL would be left behind.
fn shut_down_at_exit(inner: &Arc<Inner>) {
    static REGISTERED: Once = Once::new();
    if let Ok(mut live) = LIVE_WRITERS.lock() {
        live.retain(|writer| writer.strong_count() > 0);
        live.push(Arc::downgrade(inner));
    }
    REGISTERED.call_once(|| {
        // SAFETY: `at_exit` is an `extern "C" fn()` that catches every panic, so nothing unwinds
        // into libc; `atexit` only stores the pointer
        unsafe {
            libc::atexit(at_exit);
        }
    });
}

/// Runs once at process exit (registered with `atexit`): shuts down every live writer and waits
/// for them, at most [`EXIT_WAIT`] in all.
extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let live: Vec<Arc<Inner>> = match LIVE_WRITERS.lock() {
            Ok(live) => live.iter().filter_map(Weak::upgrade).collect(),
            Err(_) => return,
        };
        let acks: Vec<_> = live
            .iter()
            .filter_map(|inner| inner.send_shutdown())
            .collect();
        let deadline = Instant::now() + EXIT_WAIT;
        for ack in acks {
            let _ = ack.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        // dropping the last reference would join a writer thread that may still be busy
        std::mem::forget(live);
    });
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

impl<S> Layer<S> for Recorder
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let metadata = attrs.metadata();
        if metadata.target() != TARGET {
            return;
        }
        let message = match metadata.name() {
            RUN_SPAN => {
                let Some((run, end)) = decode_run_start(attrs, self.inner.payload_cap) else {
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
                Message::RunStart(run)
            }
            STEP_SPAN => {
                let Some((step, close)) = decode_step_start(attrs, self.inner.payload_cap) else {
                    return;
                };
                let Some(span) = ctx.span(id) else { return };
                let mut extensions = span.extensions_mut();
                match extensions.get_mut::<StepSpan>() {
                    Some(state) => state.layers += 1,
                    None => extensions.insert(StepSpan { close, layers: 1 }),
                }
                Message::StepStart(step)
            }
            _ => return,
        };
        // the extensions guard and span are dropped: sending may wait for the writer
        self.inner.send(message);
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
                decode_step_record(values, &mut state.close, self.inner.payload_cap);
            }
        } else if name == RUN_SPAN {
            if let Some(state) = extensions.get_mut::<RunSpan>() {
                decode_run_record(values, &mut state.end, self.inner.payload_cap);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if span.metadata().target() != TARGET {
            return;
        }
        let message = {
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
                Message::RunEnd {
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
                Message::StepEnd(finish_step(close))
            } else {
                return;
            }
        };
        drop(span);
        self.inner.send(message);
    }
}
