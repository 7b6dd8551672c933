//! `PostgresReader`'s queries for `flujo lens stats` and `flujo lens search`, streamed through
//! portals (a window of a million runs is never held at once).
//!
//! Stats read a window of `runs` through `idx_runs_stats` (start time, with every counted column
//! included: an index-only scan once vacuumed), the status derived as for a page of runs, and the
//! window's steps through `steps(run_id)`. A search of errors reads `idx_steps_error_trgm`
//! (`pg_trgm` on `lower(error_blob)`) where the migration could create the extension, else the
//! partial index of the steps that have an error: either way only errored steps are read. The
//! SQL test is a prefilter on the needle's longest run of ASCII characters (`lower()` folds
//! ASCII the same in every locale; other scripts fold by the database's `LC_CTYPE`, which may be
//! `C`), and the caller checks each candidate. Payloads are scanned within the window, newest
//! run first.

use std::ops::ControlFlow;

use flujo_trace_core::{
    Candidate, IndexState, Liveness, RunFilter, RunStat, SearchField, StepStat, WriterProcess,
    CRASHED,
};
use postgres::types::ToSql;
use postgres::Row;

use crate::read::{PostgresReader, STATUS};
use crate::text::{decode, decode_opt};
use crate::Error;

/// Rows read per round trip of a portal.
const CHUNK: i32 = 4096;

type Params = Vec<Box<dyn ToSql + Sync>>;

/// The `AND ...` terms of a filter's window and pipeline over runs aliased `r`.
fn window(filter: &RunFilter, params: &mut Params) -> String {
    let mut sql = String::new();
    let mut bind = |condition: &str, value: &str, params: &mut Params| {
        params.push(Box::new(value.to_owned()));
        sql.push_str(&format!(" AND {condition} ${}", params.len()));
    };
    if let Some(since) = &filter.since {
        bind("r.start_time >=", since, params);
    }
    if let Some(until) = &filter.until {
        bind("r.start_time <", until, params);
    }
    if let Some(pipeline) = &filter.pipeline_name {
        bind("r.pipeline_name =", pipeline, params);
    }
    sql
}

/// The longest run of ASCII characters of `needle` (folded), if it has 3 or more: what the SQL
/// prefilter looks for.
fn ascii_part(needle: &str) -> Option<String> {
    let folded = needle.to_lowercase();
    folded
        .split(|c: char| !c.is_ascii())
        .max_by_key(|part| part.len())
        .filter(|part| part.len() >= 3)
        .map(str::to_owned)
}

/// A `LIKE` pattern matching text that contains `part`.
fn like_pattern(part: &str) -> String {
    let mut pattern = String::from("%");
    for c in part.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// The SQL of the runs stats count.
pub(crate) fn run_stat_query(filter: &RunFilter) -> (String, Params) {
    let mut params = Params::new();
    let terms = window(filter, &mut params);
    let sql = format!(
        "SELECT r.start_time, r.pipeline_name, r.pipeline_version, {STATUS}, r.duration_ms, \
         r.total_tokens, r.total_cost, r.writer_host, r.writer_pid, r.writer_pid_start, \
         r.writer_pid_ns FROM runs r WHERE true{terms}"
    );
    (sql, params)
}

/// The SQL of the steps of those runs, run by run (the lens counts a run once per step).
pub(crate) fn step_stat_query(filter: &RunFilter) -> (String, Params) {
    let mut params = Params::new();
    let terms = window(filter, &mut params);
    let sql = format!(
        "SELECT s.run_id, r.pipeline_name, s.step_name, s.step_kind, s.status, s.duration_ms, \
         s.attempts, s.fallback_taken, s.tokens, s.cost \
         FROM runs r JOIN steps s ON s.run_id = r.run_id \
         WHERE true{terms} ORDER BY s.run_id"
    );
    (sql, params)
}

/// The SQL of a search of errors for `needle`, newest first.
pub(crate) fn error_query(needle: &str, filter: &RunFilter) -> (String, Params) {
    let mut params = Params::new();
    let mut sql =
        String::from("SELECT s.run_id, s.step_run_id, s.step_name, s.error_blob FROM steps s");
    let terms = window(filter, &mut params);
    if !terms.is_empty() {
        sql.push_str(" JOIN runs r ON r.run_id = s.run_id");
    }
    sql.push_str(" WHERE s.error_blob IS NOT NULL");
    if let Some(part) = ascii_part(needle) {
        params.push(Box::new(like_pattern(&part)));
        sql.push_str(&format!(" AND lower(s.error_blob) LIKE ${}", params.len()));
    }
    sql.push_str(&terms);
    sql.push_str(" ORDER BY s.seq DESC");
    (sql, params)
}

/// The SQL of a scan of `field` over the window's runs, newest first.
pub(crate) fn payload_query(field: SearchField, filter: &RunFilter) -> (String, Params) {
    let mut params = Params::new();
    let terms = window(filter, &mut params);
    let sql = match field {
        SearchField::Context => format!(
            "SELECT r.run_id, NULL::text, NULL::text, r.final_context_blob FROM runs r \
             WHERE r.final_context_blob IS NOT NULL{terms} ORDER BY r.start_time DESC"
        ),
        SearchField::Error | SearchField::Input | SearchField::Output => {
            let column = match field {
                SearchField::Error => "s.error_blob",
                SearchField::Input => "s.input_blob",
                _ => "s.output_blob",
            };
            format!(
                "SELECT r.run_id, s.step_run_id, s.step_name, {column} FROM runs r \
                 JOIN steps s ON s.run_id = r.run_id WHERE {column} IS NOT NULL{terms} \
                 ORDER BY r.start_time DESC, s.seq"
            )
        }
    };
    (sql, params)
}

fn candidate(row: &Row, field: SearchField) -> Candidate {
    Candidate {
        run_id: decode(row.get(0)),
        step_run_id: decode_opt(row.get(1)),
        step_name: decode_opt(row.get(2)),
        field,
        text: decode(row.get(3)),
    }
}

impl PostgresReader {
    /// Calls `each` with every row of `sql`, read `CHUNK` rows at a time in one read
    /// transaction, until it answers `Break`.
    fn stream<E: From<Error>>(
        &self,
        sql: &str,
        params: &Params,
        mut each: impl FnMut(&Row) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        let mut client = self.client.borrow_mut();
        let error = |e: postgres::Error| E::from(Error::from_client(&self.uri, &e));
        let mut tx = client.transaction().map_err(error)?;
        let statement = tx.prepare(sql).map_err(error)?;
        let portal = tx.bind(&statement, &refs).map_err(error)?;
        'rows: loop {
            let rows = tx.query_portal(&portal, CHUNK).map_err(error)?;
            let done = rows.len() < CHUNK as usize;
            for row in &rows {
                if each(row)?.is_break() {
                    break 'rows;
                }
            }
            if done {
                break;
            }
        }
        tx.commit().map_err(error)
    }

    pub(crate) fn run_stats<E: From<Error>>(
        &self,
        filter: &RunFilter,
        mut each: impl FnMut(&RunStat) -> Result<(), E>,
    ) -> Result<(), E> {
        let (sql, params) = run_stat_query(filter);
        let mut liveness = Liveness::default();
        self.stream(&sql, &params, |row| {
            let mut status = decode(row.get(3));
            let host: Option<String> = row.get(7);
            let pid: Option<i64> = row.get(8);
            if let (Some(host), Some(pid)) = (host, pid) {
                let writer = WriterProcess {
                    host: decode(host),
                    pid,
                    pid_start: row.get::<_, Option<i64>>(9).unwrap_or(0),
                    pid_ns: row.get(10),
                };
                if liveness.derived_status(&status, Some(&writer)) == CRASHED {
                    status = CRASHED.to_owned();
                }
            }
            each(&RunStat {
                start_time: decode(row.get(0)),
                pipeline_name: decode(row.get(1)),
                pipeline_version: decode(row.get(2)),
                status,
                duration_ms: row.get(4),
                total_tokens: row.get(5),
                total_cost: row.get(6),
            })?;
            Ok(ControlFlow::Continue(()))
        })
    }

    pub(crate) fn step_stats<E: From<Error>>(
        &self,
        filter: &RunFilter,
        mut each: impl FnMut(StepStat) -> Result<(), E>,
    ) -> Result<(), E> {
        let (sql, params) = step_stat_query(filter);
        self.stream(&sql, &params, |row| {
            each(StepStat {
                run_id: decode(row.get(0)),
                pipeline_name: decode(row.get(1)),
                step_name: decode(row.get(2)),
                step_kind: decode_opt(row.get(3)),
                status: decode(row.get(4)),
                duration_ms: row.get(5),
                attempts: row.get(6),
                fallback_taken: row.get(7),
                tokens: row.get(8),
                cost: row.get(9),
            })?;
            Ok(ControlFlow::Continue(()))
        })
    }

    /// `Ready` with the trigram index, `Filling` while a writer builds it, `Missing` without
    /// (`pg_trgm` could not be created, or a store of version 6 or before).
    pub(crate) fn trigram_index(&self) -> Result<IndexState, Error> {
        self.index_state("idx_steps_error_trgm")
    }

    /// `Ready` when the index `name` is there and valid; `Filling` while it is being built
    /// concurrently (invalid until done; the fraction from `pg_stat_progress_create_index`,
    /// 0 where it cannot be read); `Missing` when there is none.
    pub(crate) fn index_state(&self, name: &str) -> Result<IndexState, Error> {
        let rows = self.query(
            "SELECT i.indisvalid, p.blocks_done, p.blocks_total, p.tuples_done, p.tuples_total \
             FROM pg_index i \
             LEFT JOIN pg_stat_progress_create_index p ON p.index_relid = i.indexrelid \
             WHERE i.indexrelid = to_regclass($1::text)",
            &[&name],
        )?;
        let Some(row) = rows.first() else {
            return Ok(IndexState::Missing);
        };
        if row.get::<_, bool>(0) {
            return Ok(IndexState::Ready);
        }
        // a build reads the table (blocks), then sorts and inserts (tuples)
        let fraction = |done: Option<i64>, total: Option<i64>| match (done, total) {
            (Some(done), Some(total)) if total > 0 => Some(done as f64 / total as f64),
            _ => None,
        };
        let done = fraction(row.get(3), row.get(4))
            .or_else(|| fraction(row.get(1), row.get(2)))
            .unwrap_or(0.0);
        Ok(IndexState::Filling(done.clamp(0.0, 1.0)))
    }

    pub(crate) fn errors_like<E: From<Error>>(
        &self,
        needle: &str,
        filter: &RunFilter,
        mut each: impl FnMut(Candidate) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        let (sql, params) = error_query(needle, filter);
        self.stream(&sql, &params, |row| {
            each(candidate(row, SearchField::Error))
        })
    }

    pub(crate) fn payloads<E: From<Error>>(
        &self,
        field: SearchField,
        filter: &RunFilter,
        mut each: impl FnMut(Candidate) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        let (sql, params) = payload_query(field, filter);
        self.stream(&sql, &params, |row| each(candidate(row, field)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefilter_is_the_longest_ascii_part_escaped() {
        assert_eq!(ascii_part("Rate Limit").as_deref(), Some("rate limit"));
        assert_eq!(ascii_part("número").as_deref(), Some("mero"));
        assert_eq!(ascii_part("日本語"), None);
        assert_eq!(ascii_part("42"), None);
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
