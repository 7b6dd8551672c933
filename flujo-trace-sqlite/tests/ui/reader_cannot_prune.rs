//! Compile-fail: a `SqliteReader` (the lens's role) cannot delete: only a `SqlitePruner` can.
use flujo_trace_sqlite::{PruneFilter, SqliteReader};

fn delete(reader: &mut SqliteReader, filter: &PruneFilter) {
    let _ = reader.prune(filter, |_| {});
}

fn main() {
    let _ = delete;
}
