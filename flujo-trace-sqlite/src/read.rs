//! Read-only queries over `runs` and `steps`, and the read-only open the lens uses: crate-private
//! methods of `SqliteBackend`, public only through `SqliteReader` (`roles.rs`).
//!
//! Every query is served by an index of schema v2 (checked with `EXPLAIN QUERY PLAN` in the tests
//! below): a page of runs walks `runs(start_time)` or one of `runs(status, start_time)` /
//! `runs(pipeline_name, start_time)` newest first and stops after the page, several statuses are
//! merged from one index range per status (`MERGE (UNION ALL)`), a run id prefix is a range of the
//! primary key, and a run's steps come from `steps(run_id, step_run_id)` one row at a time.
//!
//! Schema v1 databases (the FSD's DDL) are read too: columns v1 lacks read as NULL.
//!
//! A run stored as `running` whose writer process is certainly gone reads as `crashed` (see
//! `process.rs`); the database is never changed. Asking for only one of `running` and `crashed`
//! is a filter SQL cannot decide: such a page walks the same index newest first, judges each
//! writer once per query, and stops once the page and one more run are found, or after
//! [`RECHECK_BOUND`] runs (the page then says so, [`RunPage::stopped_after`]).

use std::io::Read as _;
use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, Row};

use flujo_trace_core::{page_of_runs, prefix_upper_bound, StatusPlan, Walk};
pub use flujo_trace_core::{RunCount, RunPage};

use crate::backend::{RunFilter, RunRecord, SqliteBackend, StepRecord};
use crate::migrate::{classify, SCHEMA_VERSION};
use crate::process::{writer_columns, writer_from_columns};
use crate::Error;
use flujo_trace_core::Liveness;

pub use flujo_trace_core::CRASHED;

pub use flujo_trace_core::RECHECK_BOUND;

impl SqliteBackend {
    /// Opens an existing database for reading only. Never creates, migrates or writes the file:
    /// a missing file is [`Error::NotFound`], a file that is not SQLite or has no flujo tables is
    /// [`Error::NotAFlujoDatabase`], a damaged one [`Error::Corrupt`], one written by a newer
    /// flujo [`Error::TooNew`]. Older schema versions are read as they are.
    ///
    /// A database in WAL mode is read through SQLite's `-wal` and `-shm` companion files, which
    /// SQLite creates next to it when missing (empty); the database file itself is not written.
    pub(crate) fn open_read_only(path: impl AsRef<Path>) -> Result<SqliteBackend, Error> {
        let path = path.as_ref();
        check_sqlite_header(path)?;
        let conn = reader_connection(path).map_err(|e| classify(path, e))?;
        let schema_version = stored_version(&conn).map_err(|e| classify(path, e))?;
        if schema_version > SCHEMA_VERSION {
            return Err(Error::TooNew {
                path: path.to_path_buf(),
                found: schema_version,
                supported: SCHEMA_VERSION,
            });
        }
        if !has_flujo_tables(&conn).map_err(|e| classify(path, e))? {
            return Err(Error::NotAFlujoDatabase {
                path: path.to_path_buf(),
            });
        }
        Ok(SqliteBackend {
            conn,
            path: path.to_path_buf(),
            // the FSD's own backend never set user_version: its tables are version 1
            schema_version: schema_version.max(1),
        })
    }

    /// Another read-only connection to the same database, for a read on a thread of its own
    /// (the checks of [`SqliteBackend::open_read_only`] were made when this one was opened).
    pub(crate) fn second_reader(&self) -> Result<SqliteBackend, Error> {
        Ok(SqliteBackend {
            conn: reader_connection(&self.path).map_err(|e| self.read_error(e))?,
            path: self.path.clone(),
            schema_version: self.schema_version,
        })
    }

    /// The schema version of the database as opened (`PRAGMA user_version`, at least 1).
    pub(crate) fn stored_schema_version(&self) -> i64 {
        self.schema_version
    }

    /// One run with its blobs, `None` when no run has this id.
    pub(crate) fn find_run(&self, run_id: &str) -> Result<Option<RunRecord>, Error> {
        run_by_id(&self.conn, self.schema_version, run_id).map_err(|e| self.read_error(e))
    }

    /// The run that started last, with its blobs.
    pub(crate) fn latest_run(&self) -> Result<Option<RunRecord>, Error> {
        let sql = format!(
            "SELECT {} FROM runs ORDER BY start_time DESC LIMIT 1",
            run_columns(self.schema_version, Columns::Detail)
        );
        query_one_run(&self.conn, &sql, &[]).map_err(|e| self.read_error(e))
    }

    /// Up to `max` runs whose id starts with `prefix`, in id order, without their blobs.
    pub(crate) fn find_runs_by_prefix(
        &self,
        prefix: &str,
        max: usize,
    ) -> Result<Vec<RunRecord>, Error> {
        runs_by_prefix(&self.conn, self.schema_version, prefix, max).map_err(|e| self.read_error(e))
    }

    /// `PRAGMA data_version` of the reader's connection.
    pub(crate) fn data_version(&self) -> Result<u64, Error> {
        self.conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut stmt| stmt.query_row([], |row| row.get::<_, i64>(0)))
            .map(|version| version as u64)
            .map_err(|e| self.read_error(e))
    }

    /// The ids of the runs whose id ends with one of `tails`: one probe of `run_tails`'s primary
    /// key per tail once it holds every run (schema version 6, `flujo_backfill` done); before
    /// (an older database, or one the writer is still filling) a scan of the ids.
    pub(crate) fn run_ids_by_tail(&self, tails: &[&str]) -> Result<Vec<String>, Error> {
        let indexed = self.schema_version >= 6
            && self
                .conn
                .query_row(
                    "SELECT done FROM flujo_backfill WHERE name = 'run_tails'",
                    [],
                    |row| row.get::<_, i64>(0),
                )
                .is_ok_and(|done| done == 1);
        let mut ids = Vec::new();
        for chunk in tails.chunks(TAILS_PER_QUERY) {
            let sql = tail_query(chunk.len(), indexed);
            let found = self
                .conn
                .prepare_cached(&sql)
                .and_then(|mut stmt| {
                    stmt.query_map(rusqlite::params_from_iter(chunk), |row| row.get(0))?
                        .collect::<rusqlite::Result<Vec<String>>>()
                })
                .map_err(|e| self.read_error(e))?;
            ids.extend(found);
        }
        Ok(ids)
    }

    /// A page of runs matching `filter`, newest first, without blobs, and how many match:
    /// counted exactly up to `count_bound`, beyond that reported as "more than `count_bound`".
    /// `filter.limit` of `None` returns every matching run.
    ///
    /// When exactly one of `running` and `crashed` is asked for, each candidate's writer must be
    /// checked: the walk stops after the page and one more run (the count is then "more than
    /// the page") or after [`RECHECK_BOUND`] candidates ([`RunPage::stopped_after`]).
    pub(crate) fn list_runs_page(
        &self,
        filter: &RunFilter,
        count_bound: u64,
    ) -> Result<RunPage, Error> {
        let version = self.schema_version;
        let read = |e| self.read_error(e);
        page_of_runs(
            filter,
            count_bound,
            |max, examine_bound| {
                query_runs(
                    &self.conn,
                    version,
                    filter,
                    max,
                    examine_bound,
                    Columns::Summary,
                )
                .map_err(read)
            },
            |bound| count_runs(&self.conn, filter, bound).map_err(read),
        )
    }

    /// Calls `each` with every run, with its payloads, oldest first (by `runs(start_time)`), one
    /// row at a time; stops at the first error `each` returns. For copying a whole store.
    pub(crate) fn for_each_run<E: From<Error>>(
        &self,
        mut each: impl FnMut(RunRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        let sql = format!(
            "SELECT {} FROM runs ORDER BY start_time, run_id",
            run_columns(self.schema_version, Columns::Detail)
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.read_error(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.read_error(e))?;
        let mut liveness = Liveness::default();
        while let Some(row) = rows.next().map_err(|e| self.read_error(e))? {
            let run = run_from_row(row, &mut liveness).map_err(|e| self.read_error(e))?;
            each(run)?;
        }
        Ok(())
    }

    /// How many runs the database holds.
    pub(crate) fn run_count(&self) -> Result<u64, Error> {
        count_runs(&self.conn, &RunFilter::default(), u64::MAX - 1).map_err(|e| self.read_error(e))
    }

    /// Calls `each` with every step of a run in execution order (the order the writer inserted
    /// them, when each started: `rowid`, read through `idx_steps_run_id`), one row at a time, so a run with thousands of large steps is never held in memory at once.
    /// Stops at the first error `each` returns.
    pub(crate) fn for_each_run_step<E: From<Error>>(
        &self,
        run_id: &str,
        mut each: impl FnMut(StepRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        let sql = format!(
            "SELECT {} FROM steps WHERE run_id = ?1 ORDER BY rowid",
            step_columns(self.schema_version)
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.read_error(e))?;
        let mut rows = stmt.query([run_id]).map_err(|e| self.read_error(e))?;
        while let Some(row) = rows.next().map_err(|e| self.read_error(e))? {
            let step = step_from_row(row).map_err(|e| self.read_error(e))?;
            each(step)?;
        }
        Ok(())
    }

    /// The steps of a run still stored as `running`, in execution order: for a crashed run, the
    /// steps that were running when its process died.
    pub(crate) fn running_steps(&self, run_id: &str) -> Result<Vec<StepRecord>, Error> {
        let sql = format!(
            "SELECT {} FROM steps WHERE run_id = ?1 AND status = 'running' ORDER BY rowid",
            step_columns(self.schema_version)
        );
        let read = || -> rusqlite::Result<Vec<StepRecord>> {
            let mut stmt = self.conn.prepare(&sql)?;
            let steps = stmt.query_map([run_id], step_from_row)?;
            steps.collect()
        };
        read().map_err(|e| self.read_error(e))
    }

    pub(crate) fn read_error(&self, source: rusqlite::Error) -> Error {
        classify(&self.path, source)
    }
}

/// A read-only connection, waiting up to 5 s for a lock.
fn reader_connection(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// One run with its blobs (the `StateBackend` implementation calls this).
pub(crate) fn get_run_details(
    conn: &Connection,
    run_id: &str,
) -> rusqlite::Result<Option<RunRecord>> {
    run_by_id(conn, stored_version(conn)?.max(1), run_id)
}

/// A run's steps in execution order (the `StateBackend` implementation calls this).
pub(crate) fn list_run_steps(conn: &Connection, run_id: &str) -> rusqlite::Result<Vec<StepRecord>> {
    let sql = format!(
        "SELECT {} FROM steps WHERE run_id = ?1 ORDER BY rowid",
        step_columns(stored_version(conn)?.max(1))
    );
    let mut stmt = conn.prepare(&sql)?;
    let steps = stmt.query_map([run_id], step_from_row)?;
    steps.collect()
}

/// Runs matching `filter`, newest first, with their blobs (the `StateBackend` implementation
/// calls this).
pub(crate) fn list_runs(conn: &Connection, filter: &RunFilter) -> rusqlite::Result<Vec<RunRecord>> {
    let walk = query_runs(
        conn,
        stored_version(conn)?.max(1),
        filter,
        filter.limit,
        None,
        Columns::Detail,
    )?;
    Ok(walk.runs)
}

fn stored_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
}

fn has_flujo_tables(conn: &Connection) -> rusqlite::Result<bool> {
    let n_tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN ('runs', 'steps')",
        [],
        |row| row.get(0),
    )?;
    Ok(n_tables == 2)
}

/// Refuses, before SQLite sees it, a path that is missing, not a file, or does not start with the
/// SQLite header (an empty file included: SQLite would take it for an empty database).
fn check_sqlite_header(path: &Path) -> Result<(), Error> {
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound {
                path: path.to_path_buf(),
            })
        }
        Err(e) => return Err(io_error(e)),
    };
    if !metadata.is_file() {
        return Err(Error::NotAFlujoDatabase {
            path: path.to_path_buf(),
        });
    }
    let mut header = Vec::with_capacity(16);
    std::fs::File::open(path)
        .and_then(|file| file.take(16).read_to_end(&mut header))
        .map_err(io_error)?;
    if header != b"SQLite format 3\0" {
        return Err(Error::NotAFlujoDatabase {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Which run columns a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Columns {
    /// Everything but the blobs (listing).
    Summary,
    /// Everything.
    Detail,
}

/// The select list of a run, in the order `run_from_row` reads it. Columns older schemas lack
/// read as NULL. The step count is the stored `n_steps` (written when a run ends) or, for a run
/// still running or a v1 database, counted on `steps(run_id)`.
fn run_columns(version: i64, columns: Columns) -> String {
    let counted = "(SELECT count(*) FROM steps WHERE steps.run_id = runs.run_id)";
    let (duration, tokens, n_steps) = if version >= 2 {
        (
            "duration_ms",
            "total_tokens",
            format!("COALESCE(n_steps, {counted})"),
        )
    } else {
        ("NULL", "NULL", counted.to_owned())
    };
    let blobs = match (version, columns) {
        (_, Columns::Summary) => "NULL, NULL, NULL, NULL",
        // since version 4 a run's output is kept once, in the step it came from
        (4.., Columns::Detail) => {
            "input_blob, COALESCE(output_blob, (SELECT s.output_blob FROM steps s \
             WHERE s.step_run_id = runs.output_step_run_id)), final_context_blob, error_blob"
        }
        (2.., Columns::Detail) => "input_blob, output_blob, final_context_blob, error_blob",
        (_, Columns::Detail) => "NULL, NULL, final_context_blob, NULL",
    };
    let trace_id = if version >= 5 { "trace_id" } else { "NULL" };
    format!(
        "run_id, pipeline_name, pipeline_version, status, start_time, end_time, {duration}, \
         total_cost, {tokens}, {n_steps}, {blobs}, {}, {trace_id}",
        writer_columns(version)
    )
}

/// The select list of a step, in the order `step_from_row` reads it.
fn step_columns(version: i64) -> &'static str {
    if version >= 2 {
        "step_run_id, run_id, parent_step_run_id, step_name, step_index, step_kind, status, \
         attempts, start_time, end_time, duration_ms, cost, tokens, input_blob, output_blob, \
         error_blob, fallback_taken"
    } else {
        "step_run_id, run_id, NULL, step_name, step_index, NULL, status, NULL, start_time, \
         end_time, duration_ms, cost, tokens, input_blob, output_blob, error_blob, NULL"
    }
}

/// A run as read, its status derived: `crashed` for a `running` run whose writer is gone.
fn run_from_row(row: &Row<'_>, liveness: &mut Liveness) -> rusqlite::Result<RunRecord> {
    let writer = writer_from_columns(row, 14)?;
    let mut run = RunRecord {
        run_id: row.get(0)?,
        pipeline_name: row.get(1)?,
        pipeline_version: row.get(2)?,
        status: row.get(3)?,
        start_time: row.get(4)?,
        end_time: row.get(5)?,
        duration_ms: row.get(6)?,
        total_cost: row.get(7)?,
        total_tokens: row.get(8)?,
        n_steps: row.get(9)?,
        input_blob: row.get(10)?,
        output_blob: row.get(11)?,
        final_context_blob: row.get(12)?,
        error_blob: row.get(13)?,
        writer,
        trace_id: row.get(18)?,
    };
    if run.duration_ms.is_none() {
        run.duration_ms = run
            .end_time
            .as_deref()
            .and_then(|end| duration_between(&run.start_time, end));
    }
    if liveness.derived_status(&run.status, run.writer.as_ref()) == CRASHED {
        run.status = CRASHED.to_owned();
    }
    Ok(run)
}

fn step_from_row(row: &Row<'_>) -> rusqlite::Result<StepRecord> {
    Ok(StepRecord {
        step_run_id: row.get(0)?,
        run_id: row.get(1)?,
        parent_step_run_id: row.get(2)?,
        step_name: row.get(3)?,
        step_index: row.get(4)?,
        step_kind: row.get(5)?,
        status: row.get(6)?,
        attempts: row.get(7)?,
        start_time: row.get(8)?,
        end_time: row.get(9)?,
        duration_ms: row.get(10)?,
        cost: row.get(11)?,
        tokens: row.get(12)?,
        input_blob: row.get(13)?,
        output_blob: row.get(14)?,
        error_blob: row.get(15)?,
        fallback_taken: row.get(16)?,
    })
}

/// Milliseconds from `start` to `end` (RFC 3339), for rows that did not store a duration.
fn duration_between(start: &str, end: &str) -> Option<i64> {
    let start = flujo_trace_core::parse_timestamp(start)?;
    let end = flujo_trace_core::parse_timestamp(end)?;
    i64::try_from((end - start).whole_milliseconds()).ok()
}

fn run_by_id(conn: &Connection, version: i64, run_id: &str) -> rusqlite::Result<Option<RunRecord>> {
    let sql = format!(
        "SELECT {} FROM runs WHERE run_id = ?1",
        run_columns(version, Columns::Detail)
    );
    query_one_run(conn, &sql, &[Value::Text(run_id.to_owned())])
}

fn query_one_run(
    conn: &Connection,
    sql: &str,
    params: &[Value],
) -> rusqlite::Result<Option<RunRecord>> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut liveness = Liveness::default();
    rows.next()?
        .map(|row| run_from_row(row, &mut liveness))
        .transpose()
}

/// The SQL of a prefix lookup: a range of the primary key, `[prefix, next(prefix))`.
fn prefix_query(version: i64, prefix: &str, max: usize) -> (String, Vec<Value>) {
    let columns = run_columns(version, Columns::Summary);
    let mut params = vec![Value::Text(prefix.to_owned())];
    let range = match prefix_upper_bound(prefix) {
        Some(upper) => {
            params.push(Value::Text(upper));
            "run_id >= ?1 AND run_id < ?2"
        }
        None => "run_id >= ?1",
    };
    params.push(Value::Integer(i64::try_from(max).unwrap_or(i64::MAX)));
    let limit = params.len();
    (
        format!("SELECT {columns} FROM runs WHERE {range} ORDER BY run_id LIMIT ?{limit}"),
        params,
    )
}

/// The ids ending with one of `n` tails (each the last [`flujo_trace_core::TAIL_LEN`]
/// characters of an id): from `run_tails` when it is `indexed` (complete), else by a scan.
fn tail_query(n: usize, indexed: bool) -> String {
    let marks = vec!["?"; n].join(", ");
    if indexed {
        format!("SELECT run_id FROM run_tails WHERE tail IN ({marks})")
    } else {
        format!("SELECT run_id FROM runs WHERE substr(run_id, -8) IN ({marks})")
    }
}

/// Tails looked up by one statement (SQLite binds at most 32,766 parameters).
const TAILS_PER_QUERY: usize = 500;

fn runs_by_prefix(
    conn: &Connection,
    version: i64,
    prefix: &str,
    max: usize,
) -> rusqlite::Result<Vec<RunRecord>> {
    let (sql, params) = prefix_query(version, prefix, max);
    let mut stmt = conn.prepare(&sql)?;
    let mut liveness = Liveness::default();
    let runs = stmt.query_map(rusqlite::params_from_iter(&params), |row| {
        run_from_row(row, &mut liveness)
    })?;
    runs.filter(|run| !matches!(run, Ok(run) if !run.run_id.starts_with(prefix)))
        .collect()
}

pub(crate) fn status_plan(statuses: &[String]) -> StatusPlan {
    StatusPlan::of(statuses)
}

/// The runs query for `filter`: newest first, one `runs` index range per stored status merged
/// in start-time order, or a single indexed walk when at most one status is asked for.
fn runs_query(
    filter: &RunFilter,
    plan: &StatusPlan,
    select: &str,
    limit: Option<usize>,
) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    let arms: Vec<String> = if plan.stored.is_empty() {
        vec![runs_arm(select, None, filter, &mut params)]
    } else {
        plan.stored
            .iter()
            .map(|status| runs_arm(select, Some(status), filter, &mut params))
            .collect()
    };
    let mut sql = arms.join(" UNION ALL ");
    sql.push_str(" ORDER BY start_time DESC");
    if let Some(limit) = limit {
        params.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        sql.push_str(&format!(" LIMIT ?{}", params.len()));
    }
    (sql, params)
}

/// One `SELECT ... FROM runs WHERE ...` with bound parameters (never user text in the SQL).
fn runs_arm(
    select: &str,
    status: Option<&str>,
    filter: &RunFilter,
    params: &mut Vec<Value>,
) -> String {
    let mut conditions = Vec::new();
    let mut bind = |condition: &str, value: &str, params: &mut Vec<Value>| {
        params.push(Value::Text(value.to_owned()));
        conditions.push(format!("{condition} ?{}", params.len()));
    };
    if let Some(status) = status {
        bind("status =", status, params);
    }
    if let Some(pipeline_name) = &filter.pipeline_name {
        bind("pipeline_name =", pipeline_name, params);
    }
    if let Some(since) = &filter.since {
        bind("start_time >=", since, params);
    }
    if let Some(until) = &filter.until {
        bind("start_time <", until, params);
    }
    if conditions.is_empty() {
        format!("SELECT {select} FROM runs")
    } else {
        format!(
            "SELECT {select} FROM runs WHERE {}",
            conditions.join(" AND ")
        )
    }
}

/// Up to `max` runs matching `filter`, newest first. When the derived status must be checked
/// (`running` vs `crashed`), rows are read one at a time until `max` of them match or, with
/// `examine_bound`, until that many rows were read.
fn query_runs(
    conn: &Connection,
    version: i64,
    filter: &RunFilter,
    max: Option<usize>,
    examine_bound: Option<u64>,
    columns: Columns,
) -> rusqlite::Result<Walk> {
    let plan = status_plan(&filter.statuses);
    let select = run_columns(version, columns);
    let sql_limit = if plan.recheck {
        examine_bound.map(|bound| usize::try_from(bound).unwrap_or(usize::MAX))
    } else {
        max
    };
    let (sql, params) = runs_query(filter, &plan, &select, sql_limit);
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(&params))?;
    let mut liveness = Liveness::default();
    let mut walk = Walk {
        runs: Vec::new(),
        examined: 0,
        complete: false,
    };
    while max.is_none_or(|max| walk.runs.len() < max) {
        let Some(row) = rows.next()? else {
            walk.complete = sql_limit.is_none_or(|limit| walk.examined < limit as u64);
            break;
        };
        walk.examined += 1;
        #[cfg(test)]
        tests::EXAMINED.with(|examined| examined.set(examined.get() + 1));
        let run = run_from_row(row, &mut liveness)?;
        if !plan.recheck || filter.statuses.contains(&run.status) {
            walk.runs.push(run);
        }
    }
    Ok(walk)
}

/// The bounded count query: `count(*)` over at most `bound + 1` matching index entries.
fn count_query(filter: &RunFilter, plan: &StatusPlan, bound: u64) -> (String, Vec<Value>) {
    let limit = usize::try_from(bound.saturating_add(1)).unwrap_or(usize::MAX);
    let (inner, params) = runs_query_unordered(filter, plan, limit);
    (format!("SELECT count(*) FROM ({inner})"), params)
}

fn runs_query_unordered(
    filter: &RunFilter,
    plan: &StatusPlan,
    limit: usize,
) -> (String, Vec<Value>) {
    let mut params = Vec::new();
    let arms: Vec<String> = if plan.stored.is_empty() {
        vec![runs_arm("1", None, filter, &mut params)]
    } else {
        plan.stored
            .iter()
            .map(|status| runs_arm("1", Some(status), filter, &mut params))
            .collect()
    };
    params.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    let sql = format!("{} LIMIT ?{}", arms.join(" UNION ALL "), params.len());
    (sql, params)
}

/// How many runs match `filter`, counting at most `bound + 1`.
fn count_runs(conn: &Connection, filter: &RunFilter, bound: u64) -> rusqlite::Result<u64> {
    let plan = status_plan(&filter.statuses);
    let (sql, params) = count_query(filter, &plan, bound);
    let count: i64 = conn.query_row(&sql, rusqlite::params_from_iter(&params), |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    //! Query plans: every lens query is served by an index of schema v2.

    use super::*;
    use crate::backend::WriterProcess;
    use flujo_trace_core::{current_writer, writer_lookups_on_this_thread};
    use std::cell::Cell;

    thread_local! {
        /// Rows `query_runs` read on this thread (each test runs on its own thread).
        pub(super) static EXAMINED: Cell<u64> = const { Cell::new(0) };
    }

    /// Rows examined and writers looked up on this thread so far.
    fn work_done() -> (u64, u64) {
        (EXAMINED.with(Cell::get), writer_lookups_on_this_thread())
    }

    /// A database of the current schema with `n` runs stored as `running`, run `i` started `i`
    /// seconds after the first and written by `writer(i)`.
    fn running_runs(path: &Path, n: usize, writer: impl Fn(usize) -> WriterProcess) {
        drop(SqliteBackend::open(path).unwrap());
        let mut conn = Connection::open(path).unwrap();
        let tx = conn.transaction().unwrap();
        for i in 0..n {
            let writer = writer(i);
            tx.execute(
                "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time, \
                 writer_host, writer_pid, writer_pid_start, writer_pid_ns) \
                 VALUES (?1, 'p', 'v', 'running', ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    format!("r{i:05}"),
                    format!(
                        "2026-01-01T{:02}:{:02}:{:02}.000000Z",
                        i / 3600,
                        i / 60 % 60,
                        i % 60
                    ),
                    writer.host,
                    writer.pid,
                    writer.pid_start,
                    writer.pid_ns,
                ],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    fn only(status: &str, limit: usize) -> RunFilter {
        RunFilter {
            statuses: vec![status.to_owned()],
            limit: Some(limit),
            ..RunFilter::default()
        }
    }

    /// No pid above the kernel's PID_MAX_LIMIT (2^22) ever exists: such a writer is gone.
    fn gone_pid(i: usize) -> i64 {
        5_000_000 + i as i64
    }

    #[test]
    fn running_or_crashed_pages_look_at_the_page_not_the_table() {
        let me = current_writer().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flujo_ops.db");
        running_runs(&path, 3_000, |i| WriterProcess {
            pid: gone_pid(i),
            ..me.clone()
        });
        let backend = SqliteBackend::open_read_only(&path).unwrap();

        let before = work_done();
        let page = backend.list_runs_page(&only(CRASHED, 5), 10_000).unwrap();
        let ids: Vec<_> = page.runs.iter().map(|run| run.run_id.as_str()).collect();
        assert_eq!(ids, ["r02999", "r02998", "r02997", "r02996", "r02995"]);
        assert!(page.runs.iter().all(|run| run.status == CRASHED));
        assert_eq!(
            page.matching,
            RunCount {
                count: 5,
                exact: false
            },
            "more than the page"
        );
        assert_eq!(page.stopped_after, None);
        let after = work_done();
        assert_eq!(
            (after.0 - before.0, after.1 - before.1),
            (6, 6),
            "the page and one more run, not the 3,000 stored as running"
        );

        let page = backend.list_runs_page(&only("running", 5), 10_000).unwrap();
        assert!(page.runs.is_empty());
        assert_eq!(
            page.matching,
            RunCount {
                count: 0,
                exact: false
            }
        );
        assert_eq!(page.stopped_after, Some(RECHECK_BOUND));
        let last = work_done();
        assert_eq!(
            (last.0 - after.0, last.1 - after.1),
            (RECHECK_BOUND, RECHECK_BOUND)
        );
    }

    #[test]
    fn many_runs_of_one_dead_writer_look_it_up_once() {
        let me = current_writer().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flujo_ops.db");
        running_runs(&path, 3_000, |_| WriterProcess {
            pid: gone_pid(0),
            ..me.clone()
        });
        let backend = SqliteBackend::open_read_only(&path).unwrap();
        let before = work_done();
        let page = backend
            .list_runs_page(&only(CRASHED, 5_000), 10_000)
            .unwrap();
        assert_eq!(page.runs.len(), 3_000);
        assert_eq!(
            page.matching,
            RunCount {
                count: 3_000,
                exact: true
            }
        );
        assert_eq!(page.stopped_after, None);
        let after = work_done();
        assert_eq!((after.0 - before.0, after.1 - before.1), (3_000, 1));
    }

    #[test]
    fn a_short_walk_counts_exactly() {
        let me = current_writer().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flujo_ops.db");
        // runs 0 and 2 by this live process, 1 and 3 by gone ones
        running_runs(&path, 4, |i| WriterProcess {
            pid: if i % 2 == 0 { me.pid } else { gone_pid(i) },
            ..me.clone()
        });
        let backend = SqliteBackend::open_read_only(&path).unwrap();
        for (status, ids) in [
            (CRASHED, ["r00003", "r00001"]),
            ("running", ["r00002", "r00000"]),
        ] {
            let page = backend.list_runs_page(&only(status, 5), 10_000).unwrap();
            let found: Vec<_> = page.runs.iter().map(|run| run.run_id.as_str()).collect();
            assert_eq!(found, ids, "{status}");
            assert_eq!(
                page.matching,
                RunCount {
                    count: 2,
                    exact: true
                },
                "{status}"
            );
            assert_eq!(page.stopped_after, None);
        }
    }

    fn v2_database() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("schema/v1.sql")).unwrap();
        conn.execute_batch(include_str!("schema/v1_to_v2.sql"))
            .unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        // a few rows, no ANALYZE: real databases have no statistics either
        for i in 0..50 {
            conn.execute(
                "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time) \
                 VALUES (?1, ?2, 'v1', ?3, ?4)",
                rusqlite::params![
                    format!("0190{i:04}-0000-7000-8000-000000000000"),
                    ["etl", "chat"][i % 2],
                    ["completed", "failed", "running"][i % 3],
                    format!("2026-01-01T00:00:{i:02}.000000Z"),
                ],
            )
            .unwrap();
        }
        conn
    }

    use crate::test_support::plan;

    /// Asserts the plan never sorts, never scans a table without an index, and (unless
    /// `ordered_walk_ok`) never scans `runs` at all, only searches index ranges.
    fn assert_indexed(name: &str, plan: &str, ordered_walk_ok: bool) {
        assert!(!plan.contains("TEMP B-TREE"), "{name} sorts:\n{plan}");
        for line in plan.lines() {
            let line = line.trim();
            if line.starts_with("SCAN runs") || line.starts_with("SCAN steps") {
                assert!(line.contains("USING"), "{name} scans a table:\n{plan}");
                assert!(
                    ordered_walk_ok,
                    "{name} scans instead of searching:\n{plan}"
                );
            }
        }
        assert!(
            plan.contains("runs") || plan.contains("steps"),
            "{name}:\n{plan}"
        );
    }

    fn filters() -> Vec<(&'static str, RunFilter, bool)> {
        let statuses = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        vec![
            ("plain", RunFilter::default(), true),
            (
                "one status",
                RunFilter {
                    statuses: statuses(&["failed"]),
                    ..RunFilter::default()
                },
                false,
            ),
            (
                "two statuses",
                RunFilter {
                    statuses: statuses(&["failed", "cancelled"]),
                    ..RunFilter::default()
                },
                false,
            ),
            (
                "crashed",
                RunFilter {
                    statuses: statuses(&["crashed"]),
                    ..RunFilter::default()
                },
                false,
            ),
            (
                "pipeline",
                RunFilter {
                    pipeline_name: Some("etl".into()),
                    ..RunFilter::default()
                },
                false,
            ),
            (
                "since and until",
                RunFilter {
                    since: Some("2026-01-01T00:00:10.000000Z".into()),
                    until: Some("2026-01-01T00:00:20.000000Z".into()),
                    ..RunFilter::default()
                },
                false,
            ),
            (
                "status, pipeline and since",
                RunFilter {
                    statuses: statuses(&["failed", "completed"]),
                    pipeline_name: Some("etl".into()),
                    since: Some("2026-01-01T00:00:10.000000Z".into()),
                    ..RunFilter::default()
                },
                false,
            ),
        ]
    }

    #[test]
    fn list_and_count_queries_use_indexes() {
        let conn = v2_database();
        for (name, filter, walk_ok) in filters() {
            let status = status_plan(&filter.statuses);
            let select = run_columns(2, Columns::Summary);
            let (sql, params) = runs_query(&filter, &status, &select, Some(51));
            assert_indexed(
                &format!("list {name}"),
                &plan(&conn, &sql, &params),
                walk_ok,
            );
            let (sql, params) = count_query(&filter, &status, 10_000);
            assert_indexed(
                &format!("count {name}"),
                &plan(&conn, &sql, &params),
                walk_ok,
            );
        }
    }

    #[test]
    fn several_statuses_merge_index_ranges() {
        let conn = v2_database();
        let filter = RunFilter {
            statuses: vec!["failed".into(), "completed".into()],
            ..RunFilter::default()
        };
        let status = status_plan(&filter.statuses);
        let (sql, params) = runs_query(
            &filter,
            &status,
            &run_columns(2, Columns::Summary),
            Some(51),
        );
        let plan = plan(&conn, &sql, &params);
        assert!(plan.contains("MERGE (UNION ALL)"), "{plan}");
        assert_eq!(
            plan.matches("SEARCH runs USING INDEX idx_runs_status_start_time")
                .count(),
            2,
            "{plan}"
        );
    }

    #[test]
    fn run_lookups_use_indexes() {
        let conn = v2_database();
        let detail = run_columns(2, Columns::Detail);
        let cases = [
            (
                "by id",
                format!("SELECT {detail} FROM runs WHERE run_id = ?1"),
                vec![Value::Text("x".into())],
            ),
            (
                "latest",
                format!("SELECT {detail} FROM runs ORDER BY start_time DESC LIMIT 1"),
                vec![],
            ),
            (
                "steps",
                format!(
                    "SELECT {} FROM steps WHERE run_id = ?1 ORDER BY rowid",
                    step_columns(2)
                ),
                vec![Value::Text("x".into())],
            ),
            (
                "running steps",
                format!(
                    "SELECT {} FROM steps WHERE run_id = ?1 AND status = 'running' ORDER BY rowid",
                    step_columns(2)
                ),
                vec![Value::Text("x".into())],
            ),
        ];
        for (name, sql, params) in cases {
            let plan = plan(&conn, &sql, &params);
            assert_indexed(name, &plan, name == "latest");
            if name == "latest" {
                assert!(plan.contains("idx_runs_start_time"), "{plan}");
            }
        }
        let (sql, params) = prefix_query(2, "0190", 11);
        let plan = plan(&conn, &sql, &params);
        assert_indexed("prefix", &plan, false);
        assert!(plan.contains("(run_id>? AND run_id<?)"), "{plan}");
    }

    #[test]
    fn short_ids_are_looked_up_by_index_from_version_6() {
        let conn = v2_database();
        for sql in [
            include_str!("schema/v2_to_v3.sql"),
            include_str!("schema/v3_to_v4.sql"),
            include_str!("schema/v4_to_v5.sql"),
            include_str!("schema/v5_to_v6.sql"),
        ] {
            conn.execute_batch(sql).unwrap();
        }
        let tails = vec![
            Value::Text("00000000".into()),
            Value::Text("0000000a".into()),
        ];
        let plan = plan(&conn, &tail_query(2, true), &tails);
        assert!(
            plan.contains("SEARCH run_tails USING PRIMARY KEY (tail=?)"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN"), "{plan}");
    }

    #[test]
    fn prefix_upper_bounds() {
        assert_eq!(prefix_upper_bound("0190").as_deref(), Some("0191"));
        assert_eq!(prefix_upper_bound("abc-f").as_deref(), Some("abc-g"));
        assert_eq!(
            prefix_upper_bound("a\u{d7ff}").as_deref(),
            Some("a\u{e000}")
        );
        assert_eq!(prefix_upper_bound("a\u{10ffff}").as_deref(), Some("b"));
        assert_eq!(prefix_upper_bound(""), None);
    }
}
