//! Compile-fail: a `SqliteReader` (the lens's role) has no method that writes a run.
use flujo_trace_sqlite::{RunRecord, SqliteReader, StateBackend};

fn record(reader: &SqliteReader, run: &RunRecord) {
    let _ = reader.save_run_start(run);
}

fn main() {
    let _ = record;
    let _ = <flujo_trace_sqlite::SqliteBackend as StateBackend>::save_run_start;
}
