//! The writer columns of a SQLite `runs` row: which exist at each schema version, and the
//! core's `WriterProcess` read back from them (the liveness check itself is the core's).

use flujo_trace_core::WriterProcess;

/// The select list of a run's writer for a database of schema `version`, in the order
/// [`writer_from_columns`] takes it (columns the schema lacks read as NULL).
pub(crate) fn writer_columns(version: i64) -> &'static str {
    match version {
        3.. => "writer_host, writer_pid, writer_pid_start, writer_pid_ns",
        2 => "writer_host, writer_pid, writer_pid_start, NULL",
        _ => "NULL, NULL, NULL, NULL",
    }
}

/// The writer of a run from the columns of [`writer_columns`], starting at column `first`;
/// `None` when no host and pid were recorded.
pub(crate) fn writer_from_columns(
    row: &rusqlite::Row<'_>,
    first: usize,
) -> rusqlite::Result<Option<WriterProcess>> {
    let host: Option<String> = row.get(first)?;
    let pid: Option<i64> = row.get(first + 1)?;
    let pid_start: Option<i64> = row.get(first + 2)?;
    let pid_ns: Option<i64> = row.get(first + 3)?;
    Ok(match (host, pid) {
        (Some(host), Some(pid)) => Some(WriterProcess {
            host,
            pid,
            pid_start: pid_start.unwrap_or(0),
            pid_ns,
        }),
        _ => None,
    })
}
