//! The writer thread: the one place the layer's rows reach SQLite, in batched IMMEDIATE
//! transactions, with durability barriers and the "rows not recorded" accounting.
//!
//! The thread runs with `NoSubscriber` as its default, so nothing it (or SQLite, or rusqlite)
//! does can re-enter a tracing layer.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use crate::backend::{
    insert_run, insert_step, update_run_end, update_step_end, RunEnd, RunRecord, SqliteBackend,
    StepClose, StepRecord, StepRow, WriterProcess,
};

/// The most messages written in one transaction.
const MAX_BATCH: usize = 8192;

/// What the layer sends to the writer thread, in the order its spans opened and closed.
// Boxing the records would cost an allocation per row on the instrumented thread; the queue is
// bounded, so the larger slots cost a fixed amount of memory.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Message {
    /// A run span opened: insert its `running` row.
    RunStart(RunRecord),
    /// A step span opened: insert its `running` row (unless it closes in the same batch).
    StepStart(StepRecord),
    /// A step span closed.
    StepEnd(StepClose),
    /// A run span closed.
    RunEnd {
        /// The run.
        run_id: String,
        /// Its end.
        end: RunEnd,
    },
    /// Commit everything sent before this (or count it as not recorded), then acknowledge.
    Barrier(futures::channel::oneshot::Sender<Flushed>),
    /// The process is exiting: commit what is left, checkpoint the WAL into the database file,
    /// close the connection, acknowledge and stop.
    Shutdown(std::sync::mpsc::SyncSender<()>),
}

/// What a barrier ([`SqliteHandle::flush`](crate::SqliteHandle::flush)) found once every row
/// sent before it was committed or counted as not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Flushed {
    /// Rows this layer could not record since it was opened (storage refused them past the retry
    /// window, or the writer had stopped), counted when the barrier was answered. Compare it
    /// with an earlier value to tell whether the rows of one run were lost.
    pub rows_not_recorded: u64,
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

/// State shared by the layer, its handles and the writer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The database file, for messages.
    pub(crate) path: PathBuf,
    rows_not_recorded: AtomicU64,
    /// The count the last warning gave, and when it was printed (`None`: the next loss is
    /// reported at once).
    reported: Mutex<(u64, Option<Instant>)>,
    /// The size cap of the database file, to explain a "full" database.
    max_db_bytes: Option<u64>,
}

impl Shared {
    pub(crate) fn new(path: PathBuf, max_db_bytes: Option<u64>) -> Shared {
        Shared {
            path,
            rows_not_recorded: AtomicU64::new(0),
            reported: Mutex::new((0, None)),
            max_db_bytes,
        }
    }

    /// What a storage failure means to the user.
    fn describe(&self, error: &rusqlite::Error) -> String {
        match (error.sqlite_error_code(), self.max_db_bytes) {
            (Some(ErrorCode::DiskFull), Some(max_db_bytes)) => format!(
                "{error} (the file may not grow past the {max_db_bytes} bytes of \
                 with_max_db_bytes, or the disk is full: free space, e.g. with flujo lens prune)"
            ),
            (Some(ErrorCode::DiskFull), None) => format!(
                "{error} (the disk holding it is full: free space there, delete old runs with \
                 flujo lens prune, or point FLUJO_STATE_URI elsewhere)"
            ),
            _ => error.to_string(),
        }
    }

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
                self.path.display()
            );
        }
    }

    /// A write succeeded after rows were lost: says so once per loss.
    fn resumed(&self) {
        let total = self.rows_not_recorded();
        let _ = writeln!(
            std::io::stderr(),
            "flujo: recording to {} works again ({total} rows were not recorded before)",
            self.path.display()
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
                self.path.display()
            );
        }
    }
}

/// How long rows refused by storage are retried before they count as not recorded, by default:
/// the longest a barrier waits on a full disk (a held lock adds one busy timeout).
pub(crate) const DEFAULT_RETRY_WINDOW: Duration = Duration::from_secs(1);
/// The first wait before a refused batch is written again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_millis(200);
/// The busy timeout of the last writes and the checkpoint at exit: exit never waits long on a
/// lock held by another process.
const EXIT_BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// The writer thread's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriterOptions {
    pub(crate) flush_interval: Duration,
    pub(crate) busy_timeout: Duration,
    pub(crate) retry_window: Duration,
}

/// The writer thread's state.
pub(crate) struct Writer {
    backend: SqliteBackend,
    shared: std::sync::Arc<Shared>,
    options: WriterOptions,
    process: Option<WriterProcess>,
    /// The `-wal` file beside the database, whose size decides checkpoints.
    wal_path: PathBuf,
    /// Rows storage refused, written again (in front of newer rows) until they are committed or
    /// the retry window has passed.
    retry: Vec<Message>,
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
    /// Commits since the last checkpoint (see `checkpoint_if_due`).
    commits_since_checkpoint: u32,
}

/// Commits between two checkpoints of the WAL, whatever its size. SQLite's own auto-checkpoint
/// runs inside a commit, fsyncs included, and so would stall whichever run's barrier is waiting
/// on that commit; the writer turns it off and checkpoints after the barrier has been answered.
const COMMITS_PER_CHECKPOINT: u32 = 64;
/// A WAL larger than this is checkpointed after the next commit, and is cut back to this size
/// when SQLite starts it over (`journal_size_limit`).
pub(crate) const WAL_CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;
/// Payload bytes that make a batch be written at once, so one transaction never grows the WAL
/// by much more than this.
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

impl Writer {
    pub(crate) fn new(
        backend: SqliteBackend,
        shared: std::sync::Arc<Shared>,
        options: WriterOptions,
    ) -> Writer {
        let mut wal_path = backend.path().as_os_str().to_owned();
        wal_path.push("-wal");
        Writer {
            backend,
            shared,
            options,
            process: crate::process::current_writer(),
            wal_path: PathBuf::from(wal_path),
            retry: Vec::new(),
            retry_failure: String::new(),
            refused_since: None,
            next_retry: None,
            backoff: FIRST_BACKOFF,
            last_loss: None,
            last_resumed: None,
            lost_since_commit: false,
            batch_bytes: 0,
            commits_since_checkpoint: 0,
        }
    }

    /// A PASSIVE checkpoint when the WAL has grown past [`WAL_CHECKPOINT_BYTES`] or every
    /// [`COMMITS_PER_CHECKPOINT`] commits, run after the barriers of the last batch were
    /// answered, so no run waits for it. It never blocks on readers or other writers (PASSIVE);
    /// what it cannot copy now is copied by a later one. Once SQLite starts the WAL over, it cuts
    /// the file back to `journal_size_limit`.
    fn checkpoint_if_due(&mut self) {
        if self.commits_since_checkpoint == 0 {
            return;
        }
        let wal_bytes = std::fs::metadata(&self.wal_path).map_or(0, |m| m.len());
        if self.commits_since_checkpoint < COMMITS_PER_CHECKPOINT
            && wal_bytes < WAL_CHECKPOINT_BYTES
        {
            return;
        }
        self.commits_since_checkpoint = 0;
        // a failure here loses nothing: the rows are committed in the WAL either way
        let _ = self
            .backend
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }

    /// At the end: copies the WAL into the database file and empties it (TRUNCATE), waiting at
    /// most [`EXIT_BUSY_TIMEOUT`] on other processes; closing the connection afterwards removes
    /// the `-wal` file when no other connection is open. So `flujo_ops.db` alone holds every run.
    fn final_checkpoint(&mut self) {
        let _ = self.backend.conn.busy_timeout(EXIT_BUSY_TIMEOUT);
        let _ = self
            .backend
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }

    /// Runs until every sender is gone or the process exits, then commits what is left,
    /// checkpoints, closes the connection and returns.
    pub(crate) fn run(mut self, receiver: Receiver<Message>) {
        // checkpoints happen after barriers are answered, in `checkpoint_if_due`
        let _ = self
            .backend
            .conn
            .pragma_update(None, "wal_autocheckpoint", 0);
        let limit = i64::try_from(WAL_CHECKPOINT_BYTES).unwrap_or(i64::MAX);
        let _ =
            self.backend
                .conn
                .pragma_update_and_check(None, "journal_size_limit", limit, |row| {
                    row.get::<_, i64>(0)
                });
        let shutdown =
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
                self.run_loop(&receiver)
            });
        // later senders find the channel closed and count their rows
        drop(receiver);
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            self.final_checkpoint();
            let Writer {
                backend, shared, ..
            } = self;
            // closing the last connection also removes the `-wal` and `-shm` files
            drop(backend);
            shared.report_total();
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
        let mut batch: Vec<Message> = Vec::with_capacity(1024);
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
                    // the last writes wait only briefly on another process's lock
                    let busy = self.options.busy_timeout.min(EXIT_BUSY_TIMEOUT);
                    let _ = self.backend.conn.busy_timeout(busy);
                }
                self.write(&mut batch);
                deadline = None;
                if !acks.is_empty() || ending {
                    // a barrier is answered once nothing sent before it is pending
                    self.settle();
                    let flushed = Flushed {
                        rows_not_recorded: self.shared.rows_not_recorded(),
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
                self.checkpoint_if_due();
            } else if batch.is_empty() && self.retry.is_empty() {
                // nothing waits: sleep until the next row, however long that takes
                match receiver.recv() {
                    Ok(Message::Shutdown(ack)) => shutdown = Some(ack),
                    Ok(message) => self.accept(message, &mut batch, &mut acks),
                    Err(_) => return None,
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
        while !self.retry.is_empty() {
            if let Some(retry) = self.next_retry {
                std::thread::sleep(retry.saturating_duration_since(Instant::now()));
            }
            self.write(&mut empty);
        }
    }

    fn accept(
        &mut self,
        message: Message,
        batch: &mut Vec<Message>,
        acks: &mut Vec<futures::channel::oneshot::Sender<Flushed>>,
    ) {
        self.batch_bytes += payload_bytes(&message);
        match message {
            Message::Barrier(ack) => acks.push(ack),
            Message::RunStart(mut run) => {
                run.writer.clone_from(&self.process);
                batch.push(Message::RunStart(run));
            }
            other => batch.push(other),
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
    fn write(&mut self, batch: &mut Vec<Message>) {
        self.batch_bytes = 0;
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
        let error = match write_batch(&mut self.backend.conn, &self.retry) {
            Ok(missing) => {
                self.commits_since_checkpoint += 1;
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
                        self.shared.resumed();
                    }
                }
                self.shared
                    .not_recorded(missing, &"a step or run whose start was not recorded");
                return;
            }
            Err(error) => error,
        };
        if error.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) {
            let rows = std::mem::take(&mut self.retry);
            self.write_one_by_one(&rows);
            self.refused_since = None;
            self.next_retry = None;
            return;
        }
        self.retry_failure = self.shared.describe(&error);
        let since = *self.refused_since.get_or_insert(attempted);
        let now = Instant::now();
        let after_loss = self
            .last_loss
            .is_some_and(|at| now.duration_since(at) < REPORT_EVERY);
        if after_loss || now.duration_since(since) >= self.options.retry_window {
            let failure = std::mem::take(&mut self.retry_failure);
            self.shared.not_recorded(rows_in(&self.retry), &failure);
            self.retry.clear();
            self.refused_since = None;
            self.next_retry = None;
            self.backoff = FIRST_BACKOFF;
            self.last_loss = Some(now);
            self.lost_since_commit = true;
        } else {
            let window_end = since + self.options.retry_window;
            self.next_retry = Some((now + self.backoff).min(window_end));
            self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Writes each message in its own transaction, counting each that fails.
    fn write_one_by_one(&mut self, batch: &[Message]) {
        for message in batch {
            let one = std::slice::from_ref(message);
            match write_batch(&mut self.backend.conn, one) {
                Ok(missing) => self
                    .shared
                    .not_recorded(missing, &"a step or run whose start was not recorded"),
                Err(error) => self.shared.not_recorded(1, &self.shared.describe(&error)),
            }
        }
    }
}

/// The payload bytes a message carries, to bound a batch's size.
fn payload_bytes(message: &Message) -> usize {
    let len = |blob: &Option<String>| blob.as_ref().map_or(0, String::len);
    match message {
        Message::RunStart(run) => len(&run.input_blob),
        Message::StepStart(step) => len(&step.input_blob),
        Message::StepEnd(close) => len(&close.output_blob) + len(&close.error_blob),
        Message::RunEnd { end, .. } => {
            len(&end.output_blob) + len(&end.final_context_blob) + len(&end.error_blob)
        }
        Message::Barrier(_) | Message::Shutdown(_) => 0,
    }
}

/// The rows a batch would have written.
fn rows_in(batch: &[Message]) -> u64 {
    let step_ends: HashSet<&str> = batch
        .iter()
        .filter_map(|m| match m {
            Message::StepEnd(close) => Some(close.step_run_id.as_str()),
            _ => None,
        })
        .collect();
    let merged = batch
        .iter()
        .filter(
            |m| matches!(m, Message::StepStart(s) if step_ends.contains(s.step_run_id.as_str())),
        )
        .count();
    (batch.len() - merged) as u64
}

/// Writes `batch` in one IMMEDIATE transaction. A step that starts and ends in the batch is
/// inserted once, complete. Returns the number of ends whose row was missing (their start was
/// not recorded).
fn write_batch(conn: &mut Connection, batch: &[Message]) -> rusqlite::Result<u64> {
    // the position of each step's end in the batch, and which ends were merged into their start
    let mut ends: HashMap<&str, (usize, &StepClose), BuildHasherDefault<IdHasher>> =
        HashMap::default();
    for (i, message) in batch.iter().enumerate() {
        if let Message::StepEnd(close) = message {
            ends.insert(&close.step_run_id, (i, close));
        }
    }
    let mut merged = vec![false; if ends.is_empty() { 0 } else { batch.len() }];
    let mut missing = 0;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for (i, message) in batch.iter().enumerate() {
        match message {
            Message::RunStart(run) => insert_run(&tx, run)?,
            Message::StepStart(start) => match ends.get(start.step_run_id.as_str()) {
                Some(&(end, close)) => {
                    insert_step(&tx, &StepRow::from_start_and_close(start, close))?;
                    merged[end] = true;
                }
                None => insert_step(&tx, &StepRow::from_record(start))?,
            },
            Message::StepEnd(close) => {
                if !merged[i] && update_step_end(&tx, close)? == 0 {
                    missing += 1;
                }
            }
            Message::RunEnd { run_id, end } => {
                if update_run_end(&tx, run_id, end)? == 0 {
                    missing += 1;
                }
            }
            Message::Barrier(_) | Message::Shutdown(_) => {}
        }
    }
    tx.commit()?;
    Ok(missing)
}

/// FxHash (rustc's hasher) for the batch's step ids: ids are ours, so no flooding to fear, and
/// SipHash showed in profiles.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
        }
        for &byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(SEED);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}
