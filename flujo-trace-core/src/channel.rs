//! The bounded channel from a layer to its writer thread, and the thread's lifetime: spawning
//! it, the durability barrier, stopping it when the last link is dropped, and the process-exit
//! hook that makes every live writer commit and close its sink.

use std::future::Future;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Once, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::writer::{Flushed, LossReport, Message, Row, Sink, Writer, WriterOptions};

/// A layer's link to its writer thread, shared by the layer and its handles; the last one
/// dropped stops the writer after it has committed everything sent.
pub struct WriterLink {
    /// `None` only while dropping.
    sender: Option<SyncSender<Message>>,
    thread: Option<JoinHandle<()>>,
    losses: Arc<LossReport>,
}

impl WriterLink {
    /// Starts a writer thread named `thread_name` around `sink`, with a queue of `capacity`
    /// rows (at least 1), and registers it with the process-exit hook. `store` names the store
    /// in the loss warnings.
    pub fn spawn<K: Sink>(
        sink: K,
        store: String,
        options: WriterOptions,
        capacity: usize,
        thread_name: &str,
    ) -> std::io::Result<Arc<WriterLink>> {
        let losses = Arc::new(LossReport::new(store));
        let (sender, receiver) = sync_channel(capacity.max(1));
        let writer = Writer::new(sink, Arc::clone(&losses), options);
        let thread = std::thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || writer.run(receiver))?;
        let link = Arc::new(WriterLink {
            sender: Some(sender),
            thread: Some(thread),
            losses,
        });
        shut_down_at_exit(&link);
        Ok(link)
    }

    /// Queues a row. A full queue wakes the writer and waits for room: rows are never dropped.
    pub fn send(&self, row: Row) {
        let Some(sender) = &self.sender else { return };
        let sent = match sender.try_send(Message::Row(row)) {
            Ok(()) => return,
            Err(TrySendError::Full(message)) => {
                self.wake_writer();
                sender.send(message).is_ok()
            }
            Err(TrySendError::Disconnected(_)) => false,
        };
        if !sent {
            self.losses
                .not_recorded(1, &"the flujo writer thread has stopped");
        }
    }

    /// The durability barrier: resolves once every row sent before this call is committed or
    /// counted as not recorded (at once when the writer has stopped). The barrier is sent when
    /// `flush` is called, not when the future is polled.
    pub fn flush(&self) -> impl Future<Output = Flushed> + Send + 'static {
        let (ack, acked) = futures::channel::oneshot::channel();
        let sent = self.send_barrier(ack);
        let losses = Arc::clone(&self.losses);
        async move {
            let stopped = || Flushed {
                rows_not_recorded: losses.rows_not_recorded(),
                rows_pending: 0,
                writer_running: false,
            };
            if !sent {
                return stopped();
            }
            // a writer that stopped drops the sender: nothing more will be committed
            acked.await.unwrap_or_else(|_| stopped())
        }
    }

    /// Rows that could not be written so far; 0 when all was recorded.
    pub fn rows_not_recorded(&self) -> u64 {
        self.losses.rows_not_recorded()
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

    /// Asks the writer to commit, close its sink and stop now (the process is exiting); the
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

impl Drop for WriterLink {
    fn drop(&mut self) {
        // closing the channel lets the writer commit what it holds and return
        drop(self.sender.take());
        self.wake_writer();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for WriterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterLink")
            .field("rows_not_recorded", &self.rows_not_recorded())
            .finish_non_exhaustive()
    }
}

/// The writers of this process that may still hold rows when it exits.
static LIVE_WRITERS: Mutex<Vec<Weak<WriterLink>>> = Mutex::new(Vec::new());

/// The longest the process's exit waits for its writers: their last writes (each waiting at most
/// 0.5 s on another process's lock, then retried within the retry window) and checkpoints.
const EXIT_WAIT: Duration = Duration::from_secs(3);

/// Makes the process's exit (returning from `main`, `std::process::exit`) commit the rows this
/// writer still holds and close its sink (for SQLite: checkpoint the WAL into the database file
/// and close the connection): a layer in the global default subscriber is never dropped, and
/// without this its last rows would be left behind.
fn shut_down_at_exit(link: &Arc<WriterLink>) {
    static REGISTERED: Once = Once::new();
    if let Ok(mut live) = LIVE_WRITERS.lock() {
        live.retain(|writer| writer.strong_count() > 0);
        live.push(Arc::downgrade(link));
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
        let live: Vec<Arc<WriterLink>> = match LIVE_WRITERS.lock() {
            Ok(live) => live.iter().filter_map(Weak::upgrade).collect(),
            Err(_) => return,
        };
        let acks: Vec<_> = live
            .iter()
            .filter_map(|link| link.send_shutdown())
            .collect();
        let deadline = Instant::now() + EXIT_WAIT;
        for ack in acks {
            let _ = ack.recv_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        // dropping the last reference would join a writer thread that may still be busy
        std::mem::forget(live);
    });
}
