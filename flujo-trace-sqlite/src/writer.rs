//! The writer thread: the one place the layer's rows reach SQLite, in batched IMMEDIATE
//! transactions, with durability barriers and the "rows not recorded" accounting.
//!
//! The thread runs with `NoSubscriber` as its default, so nothing it (or SQLite, or rusqlite)
//! does can re-enter a tracing layer.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
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
    /// Commit everything sent before this, then acknowledge.
    Barrier(futures::channel::oneshot::Sender<()>),
}

/// State shared by the layer, its handles and the writer thread.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The database file, for messages.
    pub(crate) path: PathBuf,
    rows_not_recorded: AtomicU64,
    warned: AtomicBool,
    /// The count the warning gave.
    rows_in_warning: AtomicU64,
    /// The size cap of the database file, to explain a "full" database.
    max_db_bytes: Option<u64>,
}

impl Shared {
    pub(crate) fn new(path: PathBuf, max_db_bytes: Option<u64>) -> Shared {
        Shared {
            path,
            rows_not_recorded: AtomicU64::new(0),
            warned: AtomicBool::new(false),
            rows_in_warning: AtomicU64::new(0),
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
            (Some(ErrorCode::DiskFull), None) => format!("{error} (free some disk space)"),
            _ => error.to_string(),
        }
    }

    pub(crate) fn rows_not_recorded(&self) -> u64 {
        self.rows_not_recorded.load(Ordering::Relaxed)
    }

    /// Counts `n` rows that will never reach the database and, the first time only, says so on
    /// stderr.
    pub(crate) fn not_recorded(&self, n: u64, what_failed: &dyn std::fmt::Display) {
        if n == 0 {
            return;
        }
        let total = self.rows_not_recorded.fetch_add(n, Ordering::Relaxed) + n;
        if !self.warned.swap(true, Ordering::Relaxed) {
            self.rows_in_warning.store(total, Ordering::Relaxed);
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

    /// At the writer's exit: the total, when rows were lost after the warning.
    fn report_total(&self) {
        let total = self.rows_not_recorded();
        if total > self.rows_in_warning.load(Ordering::Relaxed) {
            let _ = writeln!(
                std::io::stderr(),
                "flujo: warning: {total} rows in all were not recorded to {}",
                self.path.display()
            );
        }
    }
}

/// The writer thread's state.
pub(crate) struct Writer {
    backend: SqliteBackend,
    shared: std::sync::Arc<Shared>,
    flush_interval: Duration,
    process: Option<WriterProcess>,
    /// The rows of the last batch that storage refused, written again once, in front of the
    /// next batch, before they count as not recorded.
    retry: Vec<Message>,
    /// Why they were refused.
    retry_failure: String,
    /// Commits since the last checkpoint (see `checkpoint_if_due`).
    commits_since_checkpoint: u32,
}

/// Commits between two checkpoints of the WAL. SQLite's own auto-checkpoint (every 1,000 pages)
/// runs inside a commit, fsyncs included, and so would stall whichever run's barrier is waiting
/// on that commit; the writer turns it off and checkpoints after the barrier has been answered.
const COMMITS_PER_CHECKPOINT: u32 = 64;

impl Writer {
    pub(crate) fn new(
        backend: SqliteBackend,
        shared: std::sync::Arc<Shared>,
        flush_interval: Duration,
    ) -> Writer {
        Writer {
            backend,
            shared,
            flush_interval,
            process: crate::process::current_writer(),
            retry: Vec::new(),
            retry_failure: String::new(),
            commits_since_checkpoint: 0,
        }
    }

    /// A PASSIVE checkpoint every `COMMITS_PER_CHECKPOINT` commits, run after the barriers of
    /// the last batch were answered, so no run waits for it. It never blocks on readers or other
    /// writers (PASSIVE); what it cannot copy now is copied by a later one.
    fn checkpoint_if_due(&mut self) {
        if self.commits_since_checkpoint < COMMITS_PER_CHECKPOINT {
            return;
        }
        self.commits_since_checkpoint = 0;
        // a failure here loses nothing: the rows are committed in the WAL either way
        let _ = self
            .backend
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }

    /// Runs until every sender is gone, then commits what is left and returns.
    pub(crate) fn run(mut self, receiver: Receiver<Message>) {
        // checkpoints happen after barriers are answered, in `checkpoint_if_due`
        let _ = self
            .backend
            .conn
            .pragma_update(None, "wal_autocheckpoint", 0);
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
            self.run_loop(&receiver);
        });
    }

    /// Gathers rows for at most one flush interval, then writes them in one transaction; a
    /// barrier, a full batch or the channel's end writes at once.
    ///
    /// While rows are waiting the thread sleeps in `park_timeout` rather than in `recv`, so a
    /// send does not wake it (a futex call per row would be the main cost on the instrumented
    /// thread). Senders wake it with `unpark` for a barrier, a full queue and the end.
    fn run_loop(&mut self, receiver: &Receiver<Message>) {
        let mut batch: Vec<Message> = Vec::with_capacity(1024);
        let mut acks = Vec::new();
        let mut deadline: Option<Instant> = None;
        loop {
            let mut disconnected = false;
            while acks.is_empty() && batch.len() < MAX_BATCH {
                match receiver.try_recv() {
                    Ok(message) => self.accept(message, &mut batch, &mut acks),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            let now = Instant::now();
            if !acks.is_empty()
                || batch.len() >= MAX_BATCH
                || disconnected
                || deadline.is_some_and(|deadline| now >= deadline)
            {
                self.write(&mut batch);
                deadline = None;
                for ack in acks.drain(..) {
                    // the flushing side may have stopped waiting
                    let _ = ack.send(());
                }
                self.checkpoint_if_due();
                if disconnected {
                    break;
                }
            } else if batch.is_empty() {
                // nothing waits: sleep until the next row, however long that takes
                match receiver.recv() {
                    Ok(message) => self.accept(message, &mut batch, &mut acks),
                    Err(_) => break,
                }
            } else {
                let deadline = *deadline.get_or_insert(now + self.flush_interval);
                std::thread::park_timeout(deadline.saturating_duration_since(now));
            }
        }
        // the last batch's second chance was the end
        let failure = std::mem::take(&mut self.retry_failure);
        self.shared.not_recorded(rows_in(&self.retry), &failure);
        self.shared.report_total();
    }

    fn accept(
        &self,
        message: Message,
        batch: &mut Vec<Message>,
        acks: &mut Vec<futures::channel::oneshot::Sender<()>>,
    ) {
        match message {
            Message::Barrier(ack) => acks.push(ack),
            Message::RunStart(mut run) => {
                run.writer.clone_from(&self.process);
                batch.push(Message::RunStart(run));
            }
            other => batch.push(other),
        }
    }

    /// Writes a batch (after the rows kept for a retry) in one transaction, and empties it.
    ///
    /// Each transaction is all or nothing. When a row breaks a constraint, the rows are written
    /// again one per transaction so only that row is lost. When storage fails (full, locked,
    /// read-only, I/O), the batch's rows are kept and written once more in front of the next
    /// batch; the rows that fail that second time count as not recorded.
    fn write(&mut self, batch: &mut Vec<Message>) {
        let n_retried = self.retry.len();
        let result = if n_retried == 0 {
            if batch.is_empty() {
                return;
            }
            write_batch(&mut self.backend.conn, batch)
        } else {
            self.retry.append(batch);
            write_batch(&mut self.backend.conn, &self.retry)
        };
        let error = match result {
            Ok(missing) => {
                self.commits_since_checkpoint += 1;
                self.retry.clear();
                batch.clear();
                self.shared
                    .not_recorded(missing, &"a step or run whose start was not recorded");
                return;
            }
            Err(error) => error,
        };
        if error.sqlite_error_code() != Some(ErrorCode::ConstraintViolation) {
            if n_retried == 0 {
                // `retry` is empty: the batch moves there and `batch` gets its spare capacity
                std::mem::swap(&mut self.retry, batch);
            } else {
                let failure = std::mem::take(&mut self.retry_failure);
                self.shared
                    .not_recorded(rows_in(&self.retry[..n_retried]), &failure);
                self.retry.drain(..n_retried);
            }
            self.retry_failure = self.shared.describe(&error);
            return;
        }
        if n_retried == 0 {
            self.write_one_by_one(batch);
            batch.clear();
        } else {
            let rows = std::mem::take(&mut self.retry);
            self.write_one_by_one(&rows);
        }
        self.retry_failure.clear();
    }

    /// Writes each message in its own transaction, counting each that fails.
    fn write_one_by_one(&mut self, batch: &[Message]) {
        for message in batch {
            let one = std::slice::from_ref(message);
            match write_batch(&mut self.backend.conn, one) {
                Ok(missing) => self
                    .shared
                    .not_recorded(missing, &"a step or run whose start was not recorded"),
                Err(error) => self.shared.not_recorded(1, &error),
            }
        }
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
            Message::Barrier(_) => {}
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
