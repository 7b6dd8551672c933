//! Read-only queries of `flujo lens stats` and `flujo lens search`: crate-private methods of
//! `SqliteBackend`, public only through `SqliteReader`'s `RunReader` implementation.
//!
//! From schema version 7, stats read `run_stats` (the ended runs by start time, a range of its
//! primary key) for the runs the writer has indexed (rowid up to its `flujo_backfill.after`),
//! the runs after that directly from `runs` (a rowid range: the few the writer has not indexed
//! yet), and the indexed runs that had not ended when indexed (`run_stats_pending`), in one read
//! transaction so each run is counted once; a search of errors reads the steps after `after`
//! directly, then those the writer found not ended when it indexed (`error_search_pending`)
//! that have an error now, then the FTS5 trigram index `error_search` newest first (its rowids
//! are the steps'). While the writer still fills the tables for the rows before an upgrade, `after` is
//! low and most rows are read directly, with the same answers; an older database is scanned.
//! Payloads (inputs, outputs, contexts) are never indexed: a search in them walks the window's
//! runs newest first through `runs(start_time)` and their steps through `steps(run_id)`.

use std::ops::ControlFlow;

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Row};

use flujo_trace_core::{
    Candidate, IndexState, Liveness, RunFilter, RunStat, SearchField, StepStat, CRASHED,
};

use crate::backend::SqliteBackend;
use crate::backfill;
use crate::process::{writer_columns, writer_from_columns};
use crate::Error;

/// A run as the stats reader hands it over: its figures, and its writer when it may still be
/// running (for the liveness check).
type RunStatRow = (RunStat, Option<flujo_trace_core::WriterProcess>);
/// What the stats reader's thread sends: a batch of runs, or why it stopped.
type StatBatch = Result<Vec<RunStatRow>, Error>;
/// Runs per batch handed from the stats reader's thread to the caller's.
const STAT_BATCH_ROWS: usize = 4096;
/// Batches the reader may be ahead of the caller (bounds the memory in between).
const STAT_BATCHES_IN_FLIGHT: usize = 4;

/// The fewest characters the trigram index finds a substring of.
pub(crate) const TRIGRAM_MIN_CHARS: usize = 3;

/// The `WHERE` terms of a filter's window and pipeline over runs aliased `r`, and their values.
fn window(filter: &RunFilter, start_column: &str) -> (String, Vec<Value>) {
    let mut terms = Vec::new();
    let mut values = Vec::new();
    if let Some(since) = &filter.since {
        terms.push(format!("{start_column} >= ?"));
        values.push(Value::Text(since.clone()));
    }
    if let Some(until) = &filter.until {
        terms.push(format!("{start_column} < ?"));
        values.push(Value::Text(until.clone()));
    }
    if let Some(pipeline) = &filter.pipeline_name {
        terms.push("r.pipeline_name = ?".to_owned());
        values.push(Value::Text(pipeline.clone()));
    }
    (terms.join(" AND "), values)
}

/// `WHERE a AND b`, leaving out empty terms.
fn where_all(terms: &[&str]) -> String {
    let terms: Vec<&str> = terms.iter().copied().filter(|t| !t.is_empty()).collect();
    if terms.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", terms.join(" AND "))
    }
}

/// An FTS5 phrase of `needle`: its text in double quotes, each quote doubled.
fn fts_phrase(needle: &str) -> String {
    format!("\"{}\"", needle.replace('"', "\"\""))
}

/// Fills `slot` with the run of a stats query's `row` (columns as `run_stat_queries` selects
/// them), reusing its strings' buffers; the writer's columns are read only when `has_writer`.
fn fill_run_stat(slot: &mut RunStatRow, row: &Row<'_>, has_writer: bool) -> rusqlite::Result<()> {
    let (run, writer) = slot;
    for (column, text) in [
        &mut run.start_time,
        &mut run.pipeline_name,
        &mut run.pipeline_version,
        &mut run.status,
    ]
    .into_iter()
    .enumerate()
    {
        let value = row.get_ref(column)?;
        let value = value.as_str().map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(column, value.data_type(), Box::new(error))
        })?;
        text.clear();
        text.push_str(value);
    }
    run.duration_ms = row.get(4)?;
    run.total_tokens = row.get(5)?;
    run.total_cost = row.get(6)?;
    *writer = if has_writer {
        writer_from_columns(row, 7)?
    } else {
        None
    };
    Ok(())
}

fn candidate(row: &Row<'_>, field: SearchField) -> rusqlite::Result<Candidate> {
    Ok(Candidate {
        run_id: row.get(0)?,
        step_run_id: row.get(1)?,
        step_name: row.get(2)?,
        field,
        text: row.get(3)?,
    })
}

impl SqliteBackend {
    /// How far a table of version 7 is filled: `Ready`, `Filling`, or `Missing` before v7.
    fn backfill_state(&self, name: &str) -> Result<IndexState, Error> {
        if self.schema_version < 7 {
            return Ok(IndexState::Missing);
        }
        let progress = backfill::progress(&self.conn, name).map_err(|e| self.read_error(e))?;
        Ok(match progress {
            Some(done) if done >= 1.0 => IndexState::Ready,
            Some(done) => IndexState::Filling(done),
            None => IndexState::Missing,
        })
    }

    /// Whether stats read `run_stats`.
    pub(crate) fn stats_index(&self) -> Result<IndexState, Error> {
        self.backfill_state("run_stats")
    }

    /// Whether a search of errors reads `error_search`.
    pub(crate) fn error_index(&self) -> Result<IndexState, Error> {
        self.backfill_state("error_search")
    }

    /// Where the writer's indexing of `name` is (`flujo_backfill.after`), `None` before v7.
    fn indexed_upto(
        &self,
        conn: &rusqlite::Connection,
        name: &str,
    ) -> rusqlite::Result<Option<i64>> {
        if self.schema_version < 7 {
            return Ok(None);
        }
        conn.query_row(
            "SELECT CAST(after AS INTEGER) FROM flujo_backfill WHERE name = ?1",
            [name],
            |row| row.get(0),
        )
        .optional()
    }

    /// The SQL of the runs stats count, and its values: with the writer's index (`upto`), the
    /// indexed ended runs from `run_stats`, the runs after `upto` and the indexed runs not ended
    /// when indexed (`run_stats_pending`) from `runs`; without it, every run from `runs`.
    fn run_stat_queries(
        &self,
        filter: &RunFilter,
        upto: Option<i64>,
    ) -> Vec<(String, Vec<Value>, bool)> {
        let writer = writer_columns(self.schema_version);
        let (duration, tokens) = if self.schema_version >= 2 {
            ("r.duration_ms", "r.total_tokens")
        } else {
            ("NULL", "NULL")
        };
        let (terms, values) = window(filter, "r.start_time");
        let from_runs = |term: &str| {
            format!(
                "SELECT r.start_time, r.pipeline_name, r.pipeline_version, r.status, {duration}, \
                 {tokens}, r.total_cost, {writer} FROM runs r{}",
                where_all(&[term, &terms])
            )
        };
        let Some(upto) = upto else {
            return vec![(from_runs(""), values, true)];
        };
        let with_upto = || {
            let mut all = vec![Value::Integer(upto)];
            all.extend(values.iter().cloned());
            all
        };
        vec![
            (
                // ended runs: no writer to look up
                format!(
                    "SELECT r.start_time, r.pipeline_name, r.pipeline_version, r.status, \
                     r.duration_ms, r.total_tokens, r.total_cost \
                     FROM run_stats r{}",
                    where_all(&["r.run_rowid <= ?", &terms])
                ),
                with_upto(),
                false,
            ),
            (
                // by rowid (NOT INDEXED still allows it): the few runs after the index
                from_runs("r.rowid > ?").replacen("FROM runs r", "FROM runs r NOT INDEXED", 1),
                with_upto(),
                true,
            ),
            // the indexed runs that had not ended when indexed (running, crashed, or ended since)
            (
                from_runs("r.rowid IN (SELECT run_rowid FROM run_stats_pending) AND r.rowid <= ?"),
                with_upto(),
                true,
            ),
        ]
    }

    /// Every run in the filter's window, for stats (see `RunReader::for_each_run_stat`).
    ///
    /// Over a million runs, reading the rows and counting them each take about as long, so the
    /// rows are read on a thread of their own, through a second read-only connection to the
    /// same file ([`SqliteBackend::second_reader`]), and handed over in batches while `each`
    /// counts the previous ones: the two cores each do half. Counted batches go back to the
    /// reader, which fills their runs again in place, so no string is allocated per run.
    /// Statuses are derived on the caller's thread (a writer's liveness is looked up once per
    /// writer there).
    pub(crate) fn for_each_run_stat<E: From<Error>>(
        &self,
        filter: &RunFilter,
        mut each: impl FnMut(&RunStat) -> Result<(), E>,
    ) -> Result<(), E> {
        let reader = self.second_reader()?;
        let (full, received) = std::sync::mpsc::sync_channel(STAT_BATCHES_IN_FLIGHT);
        let (recycle, recycled) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(move || {
                if let Err(error) = reader.read_run_stats(filter, &full, &recycled) {
                    // the caller may have stopped at an error of its own
                    let _ = full.send(Err(error));
                }
            });
            let mut liveness = Liveness::default();
            let counted = received.iter().try_for_each(|batch: StatBatch| {
                let mut batch = batch?;
                for (run, writer) in &mut batch {
                    if liveness.derived_status(&run.status, writer.as_ref()) == CRASHED {
                        CRASHED.clone_into(&mut run.status);
                    }
                    each(run)?;
                }
                // the reader may be done
                let _ = recycle.send(batch);
                Ok(())
            });
            // a reader still sending stops at its next batch
            drop(received);
            counted
        })
    }

    /// What [`SqliteBackend::for_each_run_stat`]'s reading thread does on its own connection:
    /// every query in one read transaction (one snapshot: a run that ends or is indexed
    /// meanwhile counts once), the rows sent in batches of [`STAT_BATCH_ROWS`], each filled in
    /// a batch sent back (`recycled`) when there is one; stops early when the receiver is gone.
    fn read_run_stats(
        &self,
        filter: &RunFilter,
        full: &std::sync::mpsc::SyncSender<StatBatch>,
        recycled: &std::sync::mpsc::Receiver<Vec<RunStatRow>>,
    ) -> Result<(), Error> {
        let read = |e| self.read_error(e);
        let tx = self.conn.unchecked_transaction().map_err(read)?;
        let upto = self.indexed_upto(&tx, "run_stats").map_err(read)?;
        let mut batch = Vec::with_capacity(STAT_BATCH_ROWS);
        let mut filled = 0;
        for (sql, values, has_writer) in self.run_stat_queries(filter, upto) {
            let mut stmt = tx.prepare(&sql).map_err(read)?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(values))
                .map_err(read)?;
            while let Some(row) = rows.next().map_err(read)? {
                if filled == batch.len() {
                    batch.push(RunStatRow::default());
                }
                fill_run_stat(&mut batch[filled], row, has_writer).map_err(read)?;
                filled += 1;
                if filled == STAT_BATCH_ROWS {
                    let next = recycled
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(STAT_BATCH_ROWS));
                    if full.send(Ok(std::mem::replace(&mut batch, next))).is_err() {
                        return Ok(());
                    }
                    filled = 0;
                }
            }
        }
        if filled > 0 {
            batch.truncate(filled);
            let _ = full.send(Ok(batch));
        }
        tx.finish().map_err(read)?;
        Ok(())
    }

    /// The SQL of the steps of the runs stats count, and its values (as `run_stat_queries`).
    fn step_stat_queries(
        &self,
        filter: &RunFilter,
        upto: Option<i64>,
    ) -> Vec<(String, Vec<Value>)> {
        let columns = if self.schema_version >= 2 {
            "s.run_id, r.pipeline_name, s.step_name, s.step_kind, s.status, s.duration_ms, \
             s.attempts, s.fallback_taken, s.tokens, s.cost"
        } else {
            "s.run_id, r.pipeline_name, s.step_name, NULL, s.status, s.duration_ms, NULL, NULL, \
             s.tokens, s.cost"
        };
        let (terms, values) = window(filter, "r.start_time");
        let join = |from: &str, term: &str| {
            format!(
                "SELECT {columns} FROM {from} JOIN steps s ON s.run_id = r.run_id{}",
                where_all(&[term, &terms])
            )
        };
        let Some(upto) = upto else {
            return vec![(join("runs r", ""), values)];
        };
        let with_upto = || {
            let mut all = vec![Value::Integer(upto)];
            all.extend(values.iter().cloned());
            all
        };
        vec![
            (join("run_stats r", "r.run_rowid <= ?"), with_upto()),
            (join("runs r NOT INDEXED CROSS", "r.rowid > ?"), with_upto()),
            (
                join(
                    "runs r",
                    "r.rowid IN (SELECT run_rowid FROM run_stats_pending) AND r.rowid <= ?",
                ),
                with_upto(),
            ),
        ]
    }

    /// Every step execution of the runs in the filter's window, for `stats --by step`.
    pub(crate) fn for_each_step_stat<E: From<Error>>(
        &self,
        filter: &RunFilter,
        mut each: impl FnMut(StepStat) -> Result<(), E>,
    ) -> Result<(), E> {
        let read = |e| self.read_error(e);
        let tx = self.conn.unchecked_transaction().map_err(read)?;
        let upto = self.indexed_upto(&tx, "run_stats").map_err(read)?;
        for (sql, values) in self.step_stat_queries(filter, upto) {
            let mut stmt = tx.prepare(&sql).map_err(read)?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(values))
                .map_err(read)?;
            while let Some(row) = rows.next().map_err(read)? {
                each(StepStat {
                    run_id: row.get(0).map_err(read)?,
                    pipeline_name: row.get(1).map_err(read)?,
                    step_name: row.get(2).map_err(read)?,
                    step_kind: row.get(3).map_err(read)?,
                    status: row.get(4).map_err(read)?,
                    duration_ms: row.get(5).map_err(read)?,
                    attempts: row.get(6).map_err(read)?,
                    fallback_taken: row.get(7).map_err(read)?,
                    tokens: row.get(8).map_err(read)?,
                    cost: row.get(9).map_err(read)?,
                })?;
            }
        }
        tx.finish().map_err(read)?;
        Ok(())
    }

    /// The SQL of a search of errors: the steps after `upto` (not indexed yet) read directly,
    /// then `error_search`'s matches of `needle` up to `upto` (all its rows for a needle below
    /// the trigrams), each newest first.
    fn error_queries(
        &self,
        needle: &str,
        filter: &RunFilter,
        upto: i64,
    ) -> [(String, Vec<Value>); 3] {
        let (terms, values) = window(filter, "r.start_time");
        let runs = if terms.is_empty() {
            ""
        } else {
            " JOIN runs r ON r.run_id = s.run_id"
        };
        let mut tail_values = vec![Value::Integer(upto)];
        tail_values.extend(values.iter().cloned());
        // the steps drive, by rowid (NOT INDEXED still allows it; CROSS JOIN keeps the order)
        let tail_runs = if terms.is_empty() {
            ""
        } else {
            " CROSS JOIN runs r ON r.run_id = s.run_id"
        };
        let tail = format!(
            "SELECT s.run_id, s.step_run_id, s.step_name, s.error_blob FROM steps s NOT INDEXED\
             {tail_runs}{} ORDER BY s.rowid DESC",
            where_all(&["s.rowid > ? AND s.error_blob IS NOT NULL", &terms])
        );
        // the steps the indexer found not ended, which have ended since with an error
        let pending = format!(
            "SELECT s.run_id, s.step_run_id, s.step_name, s.error_blob FROM steps s{runs}{} \
             ORDER BY s.rowid DESC",
            where_all(&[
                "s.rowid IN (SELECT step_rowid FROM error_search_pending) \
                 AND s.error_blob IS NOT NULL",
                &terms
            ])
        );
        let pending_values = values.clone();
        let mut indexed_values = Vec::new();
        let mut match_term = "";
        if needle.chars().count() >= TRIGRAM_MIN_CHARS {
            match_term = "error_search MATCH ?";
            indexed_values.push(Value::Text(fts_phrase(needle)));
        }
        indexed_values.push(Value::Integer(upto));
        indexed_values.extend(values);
        let indexed = format!(
            "SELECT s.run_id, s.step_run_id, s.step_name, s.error_blob FROM error_search e \
             JOIN steps s ON s.rowid = e.rowid{runs}{} ORDER BY e.rowid DESC",
            where_all(&[match_term, "e.rowid <= ?", &terms])
        );
        [
            (tail, tail_values),
            (pending, pending_values),
            (indexed, indexed_values),
        ]
    }

    /// Errors that may contain `needle` (see `RunReader::search_errors`).
    pub(crate) fn search_errors<E: From<Error>>(
        &self,
        needle: &str,
        filter: &RunFilter,
        mut each: impl FnMut(Candidate) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        let read = |e| self.read_error(e);
        let tx = self.conn.unchecked_transaction().map_err(read)?;
        let Some(upto) = self.indexed_upto(&tx, "error_search").map_err(read)? else {
            drop(tx);
            return self.scan_payloads(SearchField::Error, filter, each);
        };
        'queries: for (sql, values) in self.error_queries(needle, filter, upto) {
            let mut stmt = tx.prepare(&sql).map_err(read)?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(values))
                .map_err(read)?;
            while let Some(row) = rows.next().map_err(read)? {
                let found = candidate(row, SearchField::Error).map_err(read)?;
                if each(found)?.is_break() {
                    break 'queries;
                }
            }
        }
        tx.finish().map_err(read)?;
        Ok(())
    }

    /// The SQL of a scan of `field` over the window's runs, newest first.
    fn payload_query(&self, field: SearchField, filter: &RunFilter) -> (String, Vec<Value>) {
        let (terms, values) = window(filter, "r.start_time");
        let sql = match field {
            SearchField::Context => format!(
                "SELECT r.run_id, NULL, NULL, r.final_context_blob FROM runs r{} \
                 ORDER BY r.start_time DESC",
                where_all(&["r.final_context_blob IS NOT NULL", &terms])
            ),
            SearchField::Error | SearchField::Input | SearchField::Output => {
                let column = match field {
                    SearchField::Error => "s.error_blob",
                    SearchField::Input => "s.input_blob",
                    _ => "s.output_blob",
                };
                format!(
                    "SELECT r.run_id, s.step_run_id, s.step_name, {column} FROM runs r \
                     JOIN steps s ON s.run_id = r.run_id{} ORDER BY r.start_time DESC",
                    where_all(&[&format!("{column} IS NOT NULL"), &terms])
                )
            }
        };
        (sql, values)
    }

    /// `field` of every run in the window, newest run first (see `RunReader::scan_payloads`).
    pub(crate) fn scan_payloads<E: From<Error>>(
        &self,
        field: SearchField,
        filter: &RunFilter,
        mut each: impl FnMut(Candidate) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        let read = |e| self.read_error(e);
        let (sql, values) = self.payload_query(field, filter);
        let mut stmt = self.conn.prepare(&sql).map_err(read)?;
        let mut rows = stmt
            .query(rusqlite::params_from_iter(values))
            .map_err(read)?;
        while let Some(row) = rows.next().map_err(read)? {
            let found = candidate(row, field).map_err(read)?;
            if each(found)?.is_break() {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::SqliteBackend;

    /// The plan of `sql`, one line per step.
    fn plan(backend: &SqliteBackend, sql: &str, values: &[Value]) -> String {
        crate::test_support::plan(&backend.conn, sql, values)
    }

    fn backend() -> (tempfile::TempDir, SqliteBackend) {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(dir.path().join("flujo_ops.db")).unwrap();
        (dir, backend)
    }

    fn day() -> RunFilter {
        RunFilter {
            since: Some("2026-12-01T00:00:00.000000Z".into()),
            until: Some("2026-12-02T00:00:00.000000Z".into()),
            ..RunFilter::default()
        }
    }

    /// `n` runs with rowids from 1, each lasting its rowid in ms, the 7th of every 1,000 still
    /// running; `indexed` of them (by rowid) indexed as the writer does.
    fn runs_for_stats(backend: &mut SqliteBackend, n: i64, indexed: i64) {
        backend
            .conn
            .execute(
                "WITH RECURSIVE i(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM i WHERE k < ?1) \
                 INSERT INTO runs (rowid, run_id, pipeline_name, pipeline_version, status, \
                 start_time, end_time, duration_ms, total_tokens, total_cost) \
                 SELECT k, 'run-' || k, 'pipeline-' || (k % 3), 'v' || (k % 2), \
                 CASE WHEN k % 1000 = 7 THEN 'running' WHEN k % 20 = 0 THEN 'failed' \
                 ELSE 'completed' END, \
                 strftime('%Y-%m-%dT%H:%M:%fZ', '2026-12-01', '+' || k || ' seconds'), \
                 CASE WHEN k % 1000 = 7 THEN NULL ELSE '2026-12-02T00:00:00.000000Z' END, \
                 CASE WHEN k % 1000 = 7 THEN NULL ELSE k END, 10, 0.5 FROM i",
                [n],
            )
            .unwrap();
        while backend
            .conn
            .query_row(
                "SELECT CAST(after AS INTEGER) < ?1 FROM flujo_backfill WHERE name = 'run_stats'",
                [indexed],
                |row| row.get::<_, bool>(0),
            )
            .unwrap()
        {
            backfill::step(&mut backend.conn).unwrap();
        }
    }

    #[test]
    fn stats_read_on_their_own_thread_give_every_run_once_with_its_own_fields() {
        let (_dir, mut backend) = backend();
        // more than two batches, part indexed (run_stats and the noted running runs), the rest
        // read from runs
        let n = 3 * STAT_BATCH_ROWS as i64 + 500;
        runs_for_stats(&mut backend, n, 10_000);
        let mut seen = std::collections::HashSet::new();
        let (mut failed, mut running, mut durations, mut tokens) = (0, 0, 0, 0);
        backend
            .for_each_run_stat(&RunFilter::default(), |run| -> Result<(), Error> {
                assert!(seen.insert(run.start_time.clone()), "{run:?} twice");
                failed += i64::from(run.status == "failed");
                running += i64::from(run.status == "running");
                durations += run.duration_ms.unwrap_or(0);
                tokens += run.total_tokens.unwrap_or(0);
                // each run's fields come from the same row, whichever buffer holds them
                if let Some(k) = run.duration_ms {
                    assert_eq!(run.pipeline_name, format!("pipeline-{}", k % 3));
                    assert_eq!(run.pipeline_version, format!("v{}", k % 2));
                }
                Ok(())
            })
            .unwrap();
        assert_eq!(seen.len() as i64, n);
        assert_eq!(
            failed,
            (1..=n).filter(|k| k % 20 == 0 && k % 1000 != 7).count() as i64
        );
        assert_eq!(running, (1..=n).filter(|k| k % 1000 == 7).count() as i64);
        assert_eq!(durations, (1..=n).filter(|k| k % 1000 != 7).sum::<i64>());
        assert_eq!(tokens, 10 * n);

        // a caller that stops at an error gets it back at once, the reader stopping too
        #[derive(Debug)]
        enum Stop {
            Enough,
            Read(String),
        }
        impl From<Error> for Stop {
            fn from(error: Error) -> Stop {
                Stop::Read(error.to_string())
            }
        }
        let mut counted = 0;
        let stopped = backend.for_each_run_stat(&RunFilter::default(), |_| {
            counted += 1;
            if counted == 5_000 {
                return Err(Stop::Enough);
            }
            Ok(())
        });
        match stopped {
            Err(Stop::Enough) => {}
            Err(Stop::Read(error)) => panic!("read error: {error}"),
            Ok(()) => panic!("the caller's error was lost"),
        }
        assert_eq!(counted, 5_000);
    }

    #[test]
    fn stats_of_a_window_are_ranges_of_run_stats_and_of_running_runs() {
        let (_dir, backend) = backend();
        for filter in [day(), RunFilter::default()] {
            let queries = backend.run_stat_queries(&filter, Some(1_000));
            let ended = plan(&backend, &queries[0].0, &queries[0].1);
            let tail = plan(&backend, &queries[1].0, &queries[1].1);
            let running = plan(&backend, &queries[2].0, &queries[2].1);
            if filter.since.is_some() {
                assert!(
                    ended.contains("SEARCH r USING PRIMARY KEY (start_time>? AND start_time<?)"),
                    "{ended}"
                );
            } else {
                assert_eq!(ended, "SCAN r", "{ended}");
            }
            // the runs the writer has not indexed yet: a range of rowids (or of start times)
            assert_eq!(
                tail, "SEARCH r USING INTEGER PRIMARY KEY (rowid>?)",
                "{tail}"
            );
            assert!(!tail.contains("SCAN"), "{tail}");
            // the runs noted as not ended: a list of rowids
            assert!(
                running.contains("SEARCH r USING INTEGER PRIMARY KEY (rowid=?)"),
                "{running}"
            );
            assert!(!running.contains("SCAN r"), "{running}");
            let steps = backend.step_stat_queries(&filter, Some(1_000));
            for (sql, values) in &steps {
                let steps_plan = plan(&backend, sql, values);
                assert!(
                    steps_plan.contains("SEARCH s USING INDEX idx_steps_run_id (run_id=?)"),
                    "{steps_plan}"
                );
                assert!(!steps_plan.contains("TEMP B-TREE"), "{steps_plan}");
            }
            if filter.since.is_some() {
                let ended_steps = plan(&backend, &steps[0].0, &steps[0].1);
                assert!(
                    ended_steps
                        .contains("SEARCH r USING PRIMARY KEY (start_time>? AND start_time<?)"),
                    "{ended_steps}"
                );
            }
        }
        // an older database: the runs themselves
        let scan = backend.run_stat_queries(&day(), None);
        assert_eq!(scan.len(), 1);
        let scan = plan(&backend, &scan[0].0, &scan[0].1);
        assert!(scan.contains("idx_runs_start_time"), "{scan}");
    }

    #[test]
    fn a_pipelines_stats_read_the_window_and_filter_it() {
        let (_dir, backend) = backend();
        let filter = RunFilter {
            pipeline_name: Some("triage".into()),
            ..day()
        };
        let queries = backend.run_stat_queries(&filter, Some(0));
        let ended = plan(&backend, &queries[0].0, &queries[0].1);
        assert!(
            ended.contains("PRIMARY KEY (start_time>? AND start_time<?)"),
            "{ended}"
        );
    }

    #[test]
    fn errors_are_searched_through_the_trigram_index_newest_first() {
        let (_dir, backend) = backend();
        for filter in [RunFilter::default(), day()] {
            let [tail, pending, indexed] = backend.error_queries("rate limit", &filter, 1_000);
            let pending = plan(&backend, &pending.0, &pending.1);
            assert!(
                pending.contains("SEARCH s USING INTEGER PRIMARY KEY (rowid=?)"),
                "{pending}"
            );
            let indexed = plan(&backend, &indexed.0, &indexed.1);
            assert!(indexed.contains("SCAN e VIRTUAL TABLE INDEX"), "{indexed}");
            assert!(
                indexed.contains("SEARCH s USING INTEGER PRIMARY KEY (rowid=?)"),
                "{indexed}"
            );
            assert!(!indexed.contains("TEMP B-TREE"), "{indexed}");
            if filter.since.is_some() {
                assert!(
                    indexed.contains("SEARCH r USING INDEX sqlite_autoindex_runs_1 (run_id=?)"),
                    "{indexed}"
                );
            }
            // the steps after the index: a range of rowids, newest first, no sort
            let tail = plan(&backend, &tail.0, &tail.1);
            assert!(
                tail.contains("SEARCH s USING INTEGER PRIMARY KEY (rowid>?)"),
                "{tail}"
            );
            assert!(!tail.contains("TEMP B-TREE"), "{tail}");
        }
        // below the trigrams: every indexed error, still newest first without a sort
        let [_, _, indexed] = backend.error_queries("42", &RunFilter::default(), 1_000);
        assert!(!indexed.0.contains("MATCH"));
        let indexed = plan(&backend, &indexed.0, &indexed.1);
        assert!(!indexed.contains("TEMP B-TREE"), "{indexed}");
    }

    #[test]
    fn payloads_are_scanned_newest_run_first_within_the_window() {
        let (_dir, backend) = backend();
        for field in [SearchField::Input, SearchField::Output, SearchField::Error] {
            let (sql, values) = backend.payload_query(field, &day());
            let plan = plan(&backend, &sql, &values);
            assert!(
                plan.contains(
                    "SEARCH r USING INDEX idx_runs_start_time (start_time>? AND start_time<?)"
                ),
                "{plan}"
            );
            assert!(
                plan.contains("SEARCH s USING INDEX idx_steps_run_id (run_id=?)"),
                "{plan}"
            );
        }
        let (sql, values) = backend.payload_query(SearchField::Context, &day());
        let plan = plan(&backend, &sql, &values);
        assert!(plan.contains("idx_runs_start_time"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }

    #[test]
    fn phrases_quote_their_quotes() {
        assert_eq!(fts_phrase(r#"say "hi""#), r#""say ""hi""""#);
    }
}
