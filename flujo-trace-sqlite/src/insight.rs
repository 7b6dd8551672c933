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
    fn run_stat_queries(&self, filter: &RunFilter, upto: Option<i64>) -> Vec<(String, Vec<Value>)> {
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
            return vec![(from_runs(""), values)];
        };
        let with_upto = || {
            let mut all = vec![Value::Integer(upto)];
            all.extend(values.iter().cloned());
            all
        };
        vec![
            (
                format!(
                    "SELECT r.start_time, r.pipeline_name, r.pipeline_version, r.status, \
                     r.duration_ms, r.total_tokens, r.total_cost, NULL, NULL, NULL, NULL \
                     FROM run_stats r{}",
                    where_all(&["r.run_rowid <= ?", &terms])
                ),
                with_upto(),
            ),
            (
                // by rowid (NOT INDEXED still allows it): the few runs after the index
                from_runs("r.rowid > ?").replacen("FROM runs r", "FROM runs r NOT INDEXED", 1),
                with_upto(),
            ),
            // the indexed runs that had not ended when indexed (running, crashed, or ended since)
            (
                from_runs("r.rowid IN (SELECT run_rowid FROM run_stats_pending) AND r.rowid <= ?"),
                with_upto(),
            ),
        ]
    }

    /// Every run in the filter's window, for stats (see `RunReader::for_each_run_stat`).
    pub(crate) fn for_each_run_stat<E: From<Error>>(
        &self,
        filter: &RunFilter,
        mut each: impl FnMut(RunStat) -> Result<(), E>,
    ) -> Result<(), E> {
        let read = |e| self.read_error(e);
        // one snapshot for every query: a run that ends or is indexed meanwhile counts once
        let tx = self.conn.unchecked_transaction().map_err(read)?;
        let upto = self.indexed_upto(&tx, "run_stats").map_err(read)?;
        let mut liveness = Liveness::default();
        for (sql, values) in self.run_stat_queries(filter, upto) {
            let mut stmt = tx.prepare(&sql).map_err(read)?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(values))
                .map_err(read)?;
            while let Some(row) = rows.next().map_err(read)? {
                let writer = writer_from_columns(row, 7).map_err(read)?;
                let mut status: String = row.get(3).map_err(read)?;
                if liveness.derived_status(&status, writer.as_ref()) == CRASHED {
                    status = CRASHED.to_owned();
                }
                each(RunStat {
                    start_time: row.get(0).map_err(read)?,
                    pipeline_name: row.get(1).map_err(read)?,
                    pipeline_version: row.get(2).map_err(read)?,
                    status,
                    duration_ms: row.get(4).map_err(read)?,
                    total_tokens: row.get(5).map_err(read)?,
                    total_cost: row.get(6).map_err(read)?,
                })?;
            }
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
