//! The writer loop every store shares (opentelemetry-sdk's `BatchSpanProcessor` over its
//! `SpanExporter` is the model): one thread gathers the rows a layer sends into batches and
//! hands each to the store's [`Sink`], at the latest every flush interval and at once on a
//! barrier; rows the sink refuses are written again with a backoff until the retry window has
//! passed, then counted as not recorded and reported (`LossReport`); at the end it closes the
//! sink. The sink only writes, checkpoints and closes: it never sees barriers, retries or losses.
//!
//! The thread runs with `NoSubscriber` as its default, so nothing it (or a store's client
//! library) does can re-enter a tracing layer.

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::rows::{RunEnd, RunRecord, StepClose, StepRecord, WriterProcess};

/// The most rows written in one batch.
const MAX_BATCH: usize = 8192;

/// A row of a batch, in the order its span opened or closed: what a [`Sink`] writes.
// Boxing the records would cost an allocation per row on the instrumented thread; the queue is
// bounded, so the larger slots cost a fixed amount of memory.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// A run span opened: insert its `running` row.
    RunStart(RunRecord),
    /// A step span opened: insert its `running` row (a sink may merge it with its end, when
    /// that is in the same batch).
    StepStart(StepRecord),
    /// A step span closed: record its close fields on its row.
    StepEnd(StepClose),
    /// A run span closed: record its end on its row.
    RunEnd {
        /// The run.
        run_id: String,
        /// Its end.
        end: RunEnd,
    },
}

/// What a layer sends to the writer thread.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Message {
    /// A row to write.
    Row(Row),
    /// Commit everything sent before this (or count it as not recorded), then acknowledge.
    Barrier(futures::channel::oneshot::Sender<Flushed>),
    /// The process is exiting: commit what is left, close the sink, acknowledge and stop.
    Shutdown(std::sync::mpsc::SyncSender<()>),
}

/// Why a [`Sink`] did not write a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkError {
    /// What failed, as the user reads it in the warning (the cause and what to do).
    pub message: String,
    /// True when one row of the batch is refused for itself (a constraint): the writer then
    /// writes the rows one per batch, so only that row is lost, and never retries it. False when
    /// storage refused the whole batch (full, locked, read-only, I/O): it is written again.
    pub row_rejected: bool,
}

/// A store, as the writer thread drives it; every call is on the writer thread, one at a time.
///
/// Invariant: [`write_batch`](Sink::write_batch) is all or nothing (one transaction), so a
/// batch written again after an error never writes a row twice.
pub trait Sink: Send + 'static {
    /// Before the first write, on the writer thread (per-connection settings).
    fn open(&mut self) {}

    /// Writes `rows` in one transaction, all or nothing. Returns how many ends had no row to
    /// update (their start was not recorded): they count as not recorded.
    fn write_batch(&mut self, rows: &[Row]) -> Result<u64, SinkError>;

    /// After a commit whose barriers were answered: compact or checkpoint when due (no run
    /// waits for it). A failure here must lose nothing already committed.
    fn checkpoint(&mut self) {}

    /// The last writes are coming (the process is exiting or the layer was dropped): wait only
    /// briefly on other processes from now on.
    fn ending(&mut self) {}

    /// The writer stops: make what was committed durable where it belongs and release the
    /// store. Called once, after the last write.
    fn close(self);

    /// How often [`heartbeat`](Sink::heartbeat) is called while no row arrives; `None` (the
    /// default) never.
    fn heartbeat_interval(&self) -> Option<Duration> {
        None
    }

    /// Called when the writer has been idle for [`heartbeat_interval`](Sink::heartbeat_interval)
    /// (for a store that must keep a connection or a lease alive).
    fn heartbeat(&mut self) {}
}

/// What a barrier (a store handle's `flush`, e.g. `SqliteHandle::flush`) found once every row
/// sent before it was committed or counted as not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Flushed {
    /// Rows this layer could not record since it was opened (storage refused them past the retry
    /// window, or the writer had stopped), counted when the barrier was answered. Compare it
    /// with an earlier value to tell whether the rows of one run were lost.
    pub rows_not_recorded: u64,
    /// Rows held in memory because the store is unreachable (only for stores with an outage
    /// buffer, e.g. PostgreSQL): not lost yet, written once the store is reachable again.
    pub rows_pending: u64,
    /// False when the writer had already stopped (the process is exiting): nothing sent after
    /// that point is recorded, and those rows are counted.
    pub writer_running: bool,
}

impl Flushed {
    /// True when no row has been lost so far.
    pub fn all_recorded(&self) -> bool {
        self.rows_not_recorded == 0
    }
}

/// How often, at most, a further loss is reported while the process runs (the first one is
/// reported at once).
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// The rows a writer could not record, shared by its layer, its handles and its thread: counted,
/// and reported on stderr at once, then at most every 10 s, with the total at the end.
#[derive(Debug)]
pub(crate) struct LossReport {
    /// The store, as the warnings name it (e.g. the database file).
    store: String,
    rows_not_recorded: AtomicU64,
    /// The count the last warning gave, and when it was printed (`None`: the next loss is
    /// reported at once).
    reported: Mutex<(u64, Option<Instant>)>,
}

impl LossReport {
    /// Nothing lost yet; `store` names the store in the warnings.
    pub(crate) fn new(store: String) -> LossReport {
        LossReport {
            store,
            rows_not_recorded: AtomicU64::new(0),
            reported: Mutex::new((0, None)),
        }
    }

    /// Rows that could not be recorded so far.
    pub(crate) fn rows_not_recorded(&self) -> u64 {
        self.rows_not_recorded.load(Ordering::Relaxed)
    }

    /// Counts `n` rows that will never reach the database and says so on stderr: the first loss
    /// at once, later ones at most every [`REPORT_EVERY`] (and the total when the writer stops).
    pub(crate) fn not_recorded(&self, n: u64, what_failed: &dyn std::fmt::Display) {
        if n == 0 {
            return;
        }
        let total = self.rows_not_recorded.fetch_add(n, Ordering::Relaxed) + n;
        let Ok(mut reported) = self.reported.lock() else {
            return;
        };
        let now = Instant::now();
        let due = match reported.1 {
            None => true,
            Some(at) => now.duration_since(at) >= REPORT_EVERY,
        };
        if due {
            *reported = (total, Some(now));
            // stderr may be closed: never panic over a warning
            let _ = writeln!(
                std::io::stderr(),
                "flujo: warning: could not record to {}: {what_failed}; {total} rows not \
                 recorded so far (runs keep going; later rows are recorded once writing works \
                 again)",
                self.store
            );
        }
    }

    /// The store became unreachable and rows are held: says so once per outage.
    pub(crate) fn unreachable(&self, what_failed: &str, buffer: &OutageBuffer) {
        let _ = writeln!(
            std::io::stderr(),
            "flujo: warning: cannot reach {}: {what_failed}; runs keep going, and their rows are \
             held in memory (up to {} rows, {} MiB, {} s) until it is reachable again",
            self.store,
            buffer.max_rows,
            buffer.max_bytes / (1024 * 1024),
            buffer.max_age.as_secs()
        );
    }

    /// The store is reachable again after an outage; `written` rows held meanwhile were written.
    pub(crate) fn reachable_again(&self, written: u64) {
        let _ = writeln!(
            std::io::stderr(),
            "flujo: {} is reachable again: {written} rows held meanwhile are recorded",
            self.store
        );
    }

    /// A write succeeded after rows were lost: says so once per loss.
    fn resumed(&self) {
        let total = self.rows_not_recorded();
        let _ = writeln!(
            std::io::stderr(),
            "flujo: recording to {} works again ({total} rows were not recorded before)",
            self.store
        );
        if let Ok(mut reported) = self.reported.lock() {
            // the next loss is reported at once
            reported.1 = None;
        }
    }

    /// At the writer's end: the total, when rows were lost after the last warning.
    fn report_total(&self) {
        let total = self.rows_not_recorded();
        let reported = self.reported.lock().map_or(0, |reported| reported.0);
        if total > reported {
            let _ = writeln!(
                std::io::stderr(),
                "flujo: warning: {total} rows in all were not recorded to {}",
                self.store
            );
        }
    }
}

/// How long rows refused by storage are retried before they count as not recorded, by default:
/// the longest a barrier waits on a full disk (a held lock adds one busy timeout).
pub const DEFAULT_RETRY_WINDOW: Duration = Duration::from_secs(1);
/// The first wait before a refused batch is written again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// The writer thread's settings.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// The longest a row waits before its batch is written.
    pub flush_interval: Duration,
    /// How long refused rows are written again before they count as not recorded.
    pub retry_window: Duration,
    /// The process recorded with every run it writes (crash detection).
    pub process: Option<WriterProcess>,
    /// For a store across a network: rows refused past the retry window are held in memory
    /// within these bounds and written once the store is reachable again, rather than counted as
    /// not recorded; barriers no longer wait for them. `None` (SQLite): count them.
    pub outage_buffer: Option<OutageBuffer>,
}

/// The bounds of rows held while a store is unreachable ([`WriterOptions::outage_buffer`]).
/// Past any of them, the oldest rows held count as not recorded (and are reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutageBuffer {
    /// The most rows held.
    pub max_rows: usize,
    /// The most payload bytes held.
    pub max_bytes: usize,
    /// The longest the oldest row is held.
    pub max_age: Duration,
}

/// The longest wait between two attempts to reach an unreachable store.
const MAX_OUTAGE_BACKOFF: Duration = Duration::from_secs(1);

/// The writer thread's state: the loop around a [`Sink`].
pub(crate) struct Writer<K: Sink> {
    sink: K,
    losses: std::sync::Arc<LossReport>,
    options: WriterOptions,
    /// Rows storage refused, written again (in front of newer rows) until they are committed or
    /// the retry window has passed.
    retry: Vec<Row>,
    /// Why they were refused.
    retry_failure: String,
    /// When the first write of `retry` was attempted.
    refused_since: Option<Instant>,
    /// When `retry` is written again, and the wait after that.
    next_retry: Option<Instant>,
    backoff: Duration,
    /// When rows were last counted as not recorded. For [`REPORT_EVERY`] after that, refused
    /// rows get one attempt each, without the retry window, so a disk that stays full (or fills
    /// up again at every large row) does not stall every run.
    last_loss: Option<Instant>,
    /// Rows were lost since the last commit: the next commit says recording works again.
    lost_since_commit: bool,
    /// When "recording works again" was last said (at most every [`REPORT_EVERY`]).
    last_resumed: Option<Instant>,
    /// Payload bytes in the batch being gathered.
    batch_bytes: usize,
    /// The store is unreachable and `retry` is the outage buffer: barriers do not wait for it,
    /// and it is written again only when `next_retry` is due.
    buffering: bool,
}

/// The most payload bytes in one batch: a fuller batch is written at once, so one transaction
/// never grows a store's log by much more than this.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

impl<K: Sink> Writer<K> {
    pub(crate) fn new(
        sink: K,
        losses: std::sync::Arc<LossReport>,
        options: WriterOptions,
    ) -> Writer<K> {
        Writer {
            sink,
            losses,
            options,
            retry: Vec::new(),
            retry_failure: String::new(),
            refused_since: None,
            next_retry: None,
            backoff: FIRST_BACKOFF,
            last_loss: None,
            last_resumed: None,
            lost_since_commit: false,
            batch_bytes: 0,
            buffering: false,
        }
    }

    /// Runs until every sender is gone or the process exits, then commits what is left,
    /// checkpoints, closes the connection and returns.
    pub(crate) fn run(mut self, receiver: Receiver<Message>) {
        // The writer's own tracing (its drivers' events) goes nowhere. `Dispatch::none()`, not
        // `Dispatch::new(NoSubscriber)`: a new dispatch registers itself under tracing-core's
        // global lock, where another thread may be dropping the last handle on a subscriber
        // whose layer then joins its writer thread: a writer starting then would wait for that
        // lock forever (seen in `tests/compose_layers.rs`, two tests at once).
        let none = tracing::Dispatch::none();
        let shutdown = tracing::dispatcher::with_default(&none, || {
            self.sink.open();
            self.run_loop(&receiver)
        });
        // later senders find the channel closed and count their rows
        drop(receiver);
        tracing::dispatcher::with_default(&none, || {
            if !self.retry.is_empty() {
                // rows held for an unreachable store when the writer stops: they are lost now
                let failure = format!(
                    "{} (the writer stopped before the store was reachable again)",
                    self.retry_failure
                );
                self.losses.not_recorded(rows_in(&self.retry), &failure);
            }
            let Writer { sink, losses, .. } = self;
            sink.close();
            losses.report_total();
        });
        if let Some(ack) = shutdown {
            let _ = ack.send(());
        }
    }

    /// Gathers rows for at most one flush interval, then writes them in one transaction; a
    /// barrier, a full batch or the channel's end writes at once. Returns the acknowledgement of
    /// a shutdown, if that is what ended it.
    ///
    /// While rows are waiting the thread sleeps in `park_timeout` rather than in `recv`, so a
    /// send does not wake it (a futex call per row would be the main cost on the instrumented
    /// thread). Senders wake it with `unpark` for a barrier, a full queue and the end.
    fn run_loop(
        &mut self,
        receiver: &Receiver<Message>,
    ) -> Option<std::sync::mpsc::SyncSender<()>> {
        let mut batch: Vec<Row> = Vec::with_capacity(1024);
        let mut acks = Vec::new();
        let mut shutdown = None;
        let mut deadline: Option<Instant> = None;
        loop {
            let mut disconnected = false;
            while acks.is_empty()
                && shutdown.is_none()
                && batch.len() < MAX_BATCH
                && self.batch_bytes < MAX_BATCH_BYTES
            {
                match receiver.try_recv() {
                    Ok(Message::Shutdown(ack)) => shutdown = Some(ack),
                    Ok(message) => self.accept(message, &mut batch, &mut acks),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            let now = Instant::now();
            let ending = disconnected || shutdown.is_some();
            if !acks.is_empty()
                || ending
                || batch.len() >= MAX_BATCH
                || self.batch_bytes >= MAX_BATCH_BYTES
                || deadline.is_some_and(|deadline| now >= deadline)
                || self.next_retry.is_some_and(|retry| now >= retry)
            {
                if ending {
                    // the last writes wait only briefly on another process
                    self.sink.ending();
                }
                self.write(&mut batch);
                deadline = None;
                if !acks.is_empty() || ending {
                    // a barrier is answered once nothing sent before it is pending
                    self.settle();
                    let flushed = Flushed {
                        rows_not_recorded: self.losses.rows_not_recorded(),
                        rows_pending: if self.buffering {
                            rows_in(&self.retry)
                        } else {
                            0
                        },
                        writer_running: true,
                    };
                    for ack in acks.drain(..) {
                        // the flushing side may have stopped waiting
                        let _ = ack.send(flushed);
                    }
                }
                if ending {
                    return shutdown;
                }
                self.sink.checkpoint();
            } else if batch.is_empty() && self.retry.is_empty() {
                // nothing waits: sleep until the next row, however long that takes (waking for
                // the sink's heartbeat, when it has one)
                let next = match self.sink.heartbeat_interval() {
                    None => receiver.recv().map_err(|_| true),
                    Some(interval) => match receiver.recv_timeout(interval) {
                        Ok(message) => Ok(message),
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(false),
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(true),
                    },
                };
                match next {
                    Ok(Message::Shutdown(ack)) => shutdown = Some(ack),
                    Ok(message) => self.accept(message, &mut batch, &mut acks),
                    Err(false) => self.sink.heartbeat(),
                    Err(true) => return None,
                }
            } else {
                // rows wait: sleep until the flush deadline or the next retry, whichever is first
                if !batch.is_empty() && deadline.is_none() {
                    deadline = Some(now + self.options.flush_interval);
                }
                let wake = [deadline, self.next_retry]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(now + self.options.flush_interval);
                std::thread::park_timeout(wake.saturating_duration_since(now));
            }
        }
    }

    /// Writes the refused rows again, after their backoff, until they are committed or counted
    /// as not recorded (at most the retry window after they were first refused).
    fn settle(&mut self) {
        let mut empty = Vec::new();
        while !self.retry.is_empty() && !self.buffering {
            if let Some(retry) = self.next_retry {
                std::thread::sleep(retry.saturating_duration_since(Instant::now()));
            }
            self.write(&mut empty);
        }
    }

    fn accept(
        &mut self,
        message: Message,
        batch: &mut Vec<Row>,
        acks: &mut Vec<futures::channel::oneshot::Sender<Flushed>>,
    ) {
        match message {
            Message::Barrier(ack) => acks.push(ack),
            // handled by the loop, never queued behind rows
            Message::Shutdown(_) => {}
            Message::Row(row) => {
                self.batch_bytes += payload_bytes(&row);
                match row {
                    Row::RunStart(mut run) => {
                        run.writer.clone_from(&self.options.process);
                        batch.push(Row::RunStart(run));
                    }
                    other => batch.push(other),
                }
            }
        }
    }

    /// Writes the refused rows and then `batch` in one transaction, and empties `batch`.
    ///
    /// Each transaction is all or nothing. When a row breaks a constraint, the rows are written
    /// again one per transaction so only that row is lost. When storage fails (full, locked,
    /// read-only, I/O), the rows are kept and written again after a backoff (10 ms, doubling up
    /// to 200 ms), together with newer rows, until the retry window has passed since they were
    /// first refused; then they count as not recorded. For [`REPORT_EVERY`] after such a loss,
    /// refused rows get one attempt each.
    fn write(&mut self, batch: &mut Vec<Row>) {
        self.batch_bytes = 0;
        if self.buffering && self.next_retry.is_some_and(|at| Instant::now() < at) {
            // the store is unreachable: hold the rows until the next attempt is due
            self.retry.append(batch);
            self.bound_outage_buffer(Instant::now());
            return;
        }
        if self.retry.is_empty() {
            if batch.is_empty() {
                return;
            }
            // `retry` is empty: the batch moves there and `batch` gets its spare capacity
            std::mem::swap(&mut self.retry, batch);
        } else {
            self.retry.append(batch);
        }
        let attempted = Instant::now();
        let error = match self.sink.write_batch(&self.retry) {
            Ok(missing) => {
                if std::mem::take(&mut self.buffering) {
                    self.losses.reachable_again(rows_in(&self.retry));
                }
                self.retry.clear();
                self.refused_since = None;
                self.next_retry = None;
                self.backoff = FIRST_BACKOFF;
                if std::mem::take(&mut self.lost_since_commit) {
                    let now = Instant::now();
                    if self
                        .last_resumed
                        .is_none_or(|at| now.duration_since(at) >= REPORT_EVERY)
                    {
                        self.last_resumed = Some(now);
                        self.losses.resumed();
                    }
                }
                self.losses
                    .not_recorded(missing, &"a step or run whose start was not recorded");
                return;
            }
            Err(error) => error,
        };
        if error.row_rejected {
            let rows = std::mem::take(&mut self.retry);
            self.write_one_by_one(&rows);
            self.refused_since = None;
            self.next_retry = None;
            return;
        }
        self.retry_failure = error.message;
        let since = *self.refused_since.get_or_insert(attempted);
        let now = Instant::now();
        if let Some(buffer) = self.options.outage_buffer {
            if now.duration_since(since) >= self.options.retry_window
                && now.duration_since(since) < buffer.max_age
            {
                // past the barrier's wait: hold the rows in memory and try again later
                if !self.buffering {
                    self.buffering = true;
                    self.losses.unreachable(&self.retry_failure, &buffer);
                }
                self.bound_outage_buffer(now);
                self.next_retry = Some(now + self.backoff.max(FIRST_BACKOFF));
                self.backoff = (self.backoff * 2).min(MAX_OUTAGE_BACKOFF);
                return;
            }
        }
        let after_loss = self
            .last_loss
            .is_some_and(|at| now.duration_since(at) < REPORT_EVERY);
        if after_loss || now.duration_since(since) >= self.options.retry_window {
            let failure = std::mem::take(&mut self.retry_failure);
            self.losses.not_recorded(rows_in(&self.retry), &failure);
            self.retry.clear();
            self.refused_since = None;
            self.next_retry = None;
            self.backoff = FIRST_BACKOFF;
            self.last_loss = Some(now);
            self.lost_since_commit = true;
            self.buffering = false;
        } else {
            let window_end = since + self.options.retry_window;
            self.next_retry = Some((now + self.backoff).min(window_end));
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Keeps the outage buffer within its bounds: the oldest rows past them count as not
    /// recorded.
    fn bound_outage_buffer(&mut self, now: Instant) {
        let Some(buffer) = self.options.outage_buffer else {
            return;
        };
        let mut bytes: usize = self.retry.iter().map(payload_bytes).sum();
        let mut excess = self.retry.len().saturating_sub(buffer.max_rows);
        while excess < self.retry.len() && bytes > buffer.max_bytes {
            bytes -= payload_bytes(&self.retry[excess]);
            excess += 1;
        }
        if excess > 0 {
            let dropped: Vec<Row> = self.retry.drain(..excess).collect();
            let failure = format!(
                "{} (the outage buffer of {} rows / {} bytes is full)",
                self.retry_failure, buffer.max_rows, buffer.max_bytes
            );
            self.losses.not_recorded(rows_in(&dropped), &failure);
            self.last_loss = Some(now);
            self.lost_since_commit = true;
        }
    }

    /// Writes each message in its own transaction, counting each that fails.
    fn write_one_by_one(&mut self, batch: &[Row]) {
        for row in batch {
            match self.sink.write_batch(std::slice::from_ref(row)) {
                Ok(missing) => self
                    .losses
                    .not_recorded(missing, &"a step or run whose start was not recorded"),
                Err(error) => self.losses.not_recorded(1, &error.message),
            }
        }
    }
}

/// The payload bytes a row carries, to bound a batch's size.
fn payload_bytes(row: &Row) -> usize {
    let len = |blob: &Option<String>| blob.as_ref().map_or(0, String::len);
    match row {
        Row::RunStart(run) => len(&run.input_blob),
        Row::StepStart(step) => len(&step.input_blob),
        Row::StepEnd(close) => len(&close.output_blob) + len(&close.error_blob),
        Row::RunEnd { end, .. } => {
            len(&end.output_blob) + len(&end.final_context_blob) + len(&end.error_blob)
        }
    }
}

/// The rows a batch would have written.
fn rows_in(batch: &[Row]) -> u64 {
    let step_ends: HashSet<&str> = batch
        .iter()
        .filter_map(|row| match row {
            Row::StepEnd(close) => Some(close.step_run_id.as_str()),
            _ => None,
        })
        .collect();
    let merged = batch
        .iter()
        .filter(
            |row| matches!(row, Row::StepStart(s) if step_ends.contains(s.step_run_id.as_str())),
        )
        .count();
    (batch.len() - merged) as u64
}
