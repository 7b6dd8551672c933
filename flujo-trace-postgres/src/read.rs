//! `PostgresReader`: the lens's read-only view of a PostgreSQL store, the core's `RunReader`.
//!
//! It connects with `default_transaction_read_only`, needs no more than SELECT on `runs`,
//! `steps`, `flujo_schema` and `flujo_writers`, and never creates or migrates anything: a
//! database with no flujo tables or a newer schema is one clear error. Every query is an index
//! walk that stops after the page (checked with `EXPLAIN` in the tests): newest first on
//! `runs(start_time)`, `runs(status, start_time)` per status merged in order, or
//! `runs(pipeline_name, start_time)`; a run id prefix is a range of the primary key (ids are
//! `COLLATE "C"`); a run's steps come from `steps(run_id, seq)` one row at a time.
//!
//! A `running` run reads as `crashed` when its writer stopped beating in `flujo_writers` for the
//! writer's stated number of intervals (in the server's clock, so hosts' clocks do not matter) or
//! closed without ending it, and, for a writer on this host, at once when its process is gone.

use std::cell::RefCell;
use std::ops::ControlFlow;

use flujo_trace_core::{
    page_of_runs, prefix_upper_bound, Candidate, IndexState, Liveness, PostgresUri, RunFilter,
    RunPage, RunReader, RunRecord, RunStat, SearchField, StatusPlan, StepRecord, StepStat, Walk,
    WriterProcess, CRASHED, SCHEMA_VERSION,
};
use postgres::types::ToSql;
use postgres::{Client, Row};

use crate::connect::{config_for, connect, Access};
use crate::migrate::{stored_version, Stored};
use crate::text::{decode, decode_opt};
use crate::Error;

/// The derived status: `crashed` for a `running` run whose writer stopped beating or stopped.
/// A scalar subquery looked up by `flujo_writers`' primary key, only for `running` rows (CASE
/// evaluates lazily); not `EXISTS`, which the planner turns into a hashed scan of the table.
pub(crate) const STATUS: &str = "CASE WHEN r.status = 'running' AND coalesce((SELECT \
     w.stopped_at IS NOT NULL \
     OR w.last_beat < now() - w.beat_interval_ms * w.missed_beats * interval '1 millisecond' \
     FROM flujo_writers w WHERE w.host = r.writer_host AND w.pid = r.writer_pid \
     AND w.pid_start = r.writer_pid_start AND w.pid_ns = coalesce(r.writer_pid_ns, 0) LIMIT 1), \
     false) THEN 'crashed' ELSE r.status END";

/// Which run columns a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Columns {
    /// Everything but the payloads (listing).
    Summary,
    /// Everything.
    Detail,
}

/// The select list of a run, in the order `run_from_row` reads it.
fn run_columns(columns: Columns) -> String {
    let blobs = match columns {
        Columns::Summary => "NULL::text, NULL::text, NULL::text, NULL::text",
        Columns::Detail => "r.input_blob, r.output_blob, r.final_context_blob, r.error_blob",
    };
    format!(
        "r.run_id, r.pipeline_name, r.pipeline_version, {STATUS}, r.start_time, r.end_time, \
         r.duration_ms, r.total_cost, r.total_tokens, \
         coalesce(r.n_steps, (SELECT count(*) FROM steps s WHERE s.run_id = r.run_id)), \
         {blobs}, r.writer_host, r.writer_pid, r.writer_pid_start, r.writer_pid_ns, r.trace_id"
    )
}

/// The oldest schema version the reader reads: from version 5 on every column it reads is
/// there; versions 6 and 7 add indexes only (`migrate::LATE_INDEXES`), without which it scans.
const MIN_READABLE: i64 = 5;

/// The ids ending with one of the tails of `$1` (`right(run_id, 8)` is `idx_runs_id_tail`'s
/// expression, the last [`flujo_trace_core::TAIL_LEN`] characters).
const TAIL_QUERY: &str = "SELECT run_id FROM runs WHERE right(run_id, 8) = ANY($1)";

const STEP_COLUMNS: &str = "step_run_id, run_id, parent_step_run_id, step_name, step_index, \
     step_kind, status, attempts, start_time, end_time, duration_ms, cost, tokens, input_blob, \
     output_blob, error_blob, fallback_taken";

/// A PostgreSQL store opened for reading only: what the lens queries. It has no method that
/// writes, and its connection refuses writes (`default_transaction_read_only`).
pub struct PostgresReader {
    pub(crate) uri: PostgresUri,
    pub(crate) client: RefCell<Client>,
    schema_version: i64,
}

impl std::fmt::Debug for PostgresReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresReader")
            .field("uri", &self.uri)
            .field("schema_version", &self.schema_version)
            .finish_non_exhaustive()
    }
}

impl PostgresReader {
    /// Connects read-only to the store at `uri` and checks that it holds flujo tables of a schema
    /// this build reads. Never creates or migrates anything.
    pub fn open(uri: &PostgresUri) -> Result<PostgresReader, Error> {
        let config = config_for(uri, Access::ReadOnly)?;
        let mut client = connect(uri, &config)?;
        let stored = stored_version(&mut client).map_err(|e| Error::from_client(uri, &e))?;
        let schema_version = match stored {
            Stored::Nothing => {
                return Err(Error::NotAFlujoDatabase {
                    store: uri.redacted(),
                })
            }
            Stored::Version(found) if found > SCHEMA_VERSION => {
                return Err(Error::TooNew {
                    store: uri.redacted(),
                    found,
                    supported: SCHEMA_VERSION,
                })
            }
            // versions 5 and 6 have every column the reader reads: only indexes are missing
            // (readers scan instead), which the next writer of this flujo builds
            Stored::Version(found) if found < MIN_READABLE => {
                return Err(Error::Query {
                    store: uri.redacted(),
                    message: format!(
                        "the flujo schema is at version {found}, older than this flujo reads \
                         ({MIN_READABLE} to {SCHEMA_VERSION}): run a pipeline recording there \
                         with this flujo to upgrade it"
                    ),
                })
            }
            Stored::Version(found) => found,
        };
        Ok(PostgresReader {
            uri: uri.clone(),
            client: RefCell::new(client),
            schema_version,
        })
    }

    /// The store, its password hidden.
    pub fn store(&self) -> String {
        self.uri.redacted()
    }

    /// The schema version of the store.
    pub fn stored_schema_version(&self) -> i64 {
        self.schema_version
    }

    fn error(&self, error: &postgres::Error) -> Error {
        Error::from_client(&self.uri, error)
    }

    pub(crate) fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        self.client
            .borrow_mut()
            .query(sql, params)
            .map_err(|e| self.error(&e))
    }

    /// Up to `max` runs matching `filter` newest first, reading at most `examine_bound` rows
    /// when the derived status must be checked (see the core's `page_of_runs`).
    fn walk(
        &self,
        filter: &RunFilter,
        max: Option<usize>,
        examine_bound: Option<u64>,
        columns: Columns,
    ) -> Result<Walk, Error> {
        let plan = StatusPlan::of(&filter.statuses);
        let sql_limit = if plan.recheck {
            examine_bound.map(|bound| usize::try_from(bound).unwrap_or(usize::MAX))
        } else {
            max
        };
        let (sql, params) = runs_query(filter, &plan, &run_columns(columns), sql_limit);
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        let rows = self.query(&sql, &refs)?;
        let mut liveness = Liveness::default();
        let mut walk = Walk {
            runs: Vec::new(),
            examined: 0,
            complete: sql_limit.is_none_or(|limit| rows.len() < limit),
        };
        for row in &rows {
            if max.is_some_and(|max| walk.runs.len() >= max) {
                walk.complete = false;
                break;
            }
            walk.examined += 1;
            let run = run_from_row(row, &mut liveness);
            if !plan.recheck || filter.statuses.contains(&run.status) {
                walk.runs.push(run);
            }
        }
        Ok(walk)
    }

    fn count(&self, filter: &RunFilter, bound: u64) -> Result<u64, Error> {
        let plan = StatusPlan::of(&filter.statuses);
        let limit = usize::try_from(bound.saturating_add(1)).unwrap_or(usize::MAX);
        let (inner, params) = filtered_runs(filter, &plan, "1", Some(limit), Order::Any);
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
        let rows = self.query(
            &format!("SELECT count(*) FROM ({inner}) AS matching"),
            &refs,
        )?;
        Ok(rows
            .first()
            .map_or(0, |row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0)))
    }

    fn one_run(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<RunRecord>, Error> {
        let rows = self.query(sql, params)?;
        let mut liveness = Liveness::default();
        Ok(rows.first().map(|row| run_from_row(row, &mut liveness)))
    }

    fn steps_where(
        &self,
        condition: &str,
        run_id: &str,
        mut each: impl FnMut(StepRecord) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let sql =
            format!("SELECT {STEP_COLUMNS} FROM steps WHERE run_id = $1 {condition} ORDER BY seq");
        let mut client = self.client.borrow_mut();
        let mut tx = client.transaction().map_err(|e| self.error(&e))?;
        // a portal read in chunks: a run of many large steps is never held in memory at once
        let statement = tx.prepare(&sql).map_err(|e| self.error(&e))?;
        let portal = tx
            .bind(&statement, &[&run_id])
            .map_err(|e| self.error(&e))?;
        loop {
            let rows = tx.query_portal(&portal, 256).map_err(|e| self.error(&e))?;
            let done = rows.len() < 256;
            for row in &rows {
                each(step_from_row(row))?;
            }
            if done {
                break;
            }
        }
        tx.commit().map_err(|e| self.error(&e))
    }
}

impl RunReader for PostgresReader {
    type Error = Error;

    fn list_runs_page(&self, filter: &RunFilter, count_bound: u64) -> Result<RunPage, Error> {
        page_of_runs(
            filter,
            count_bound,
            |max, examine_bound| self.walk(filter, max, examine_bound, Columns::Summary),
            |bound| self.count(filter, bound),
        )
    }

    fn find_run(&self, run_id: &str) -> Result<Option<RunRecord>, Error> {
        let sql = format!(
            "SELECT {} FROM runs r WHERE r.run_id = $1",
            run_columns(Columns::Detail)
        );
        self.one_run(&sql, &[&run_id])
    }

    fn latest_run(&self) -> Result<Option<RunRecord>, Error> {
        let sql = format!(
            "SELECT {} FROM runs r ORDER BY r.start_time DESC LIMIT 1",
            run_columns(Columns::Detail)
        );
        self.one_run(&sql, &[])
    }

    fn find_runs_by_prefix(&self, prefix: &str, max: usize) -> Result<Vec<RunRecord>, Error> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        let columns = run_columns(Columns::Summary);
        // a range of the primary key: ids are COLLATE "C", so byte order
        let rows = match prefix_upper_bound(prefix) {
            Some(upper) => self.query(
                &format!(
                    "SELECT {columns} FROM runs r WHERE r.run_id >= $1 AND r.run_id < $2 \
                     ORDER BY r.run_id LIMIT $3"
                ),
                &[&prefix, &upper, &limit],
            )?,
            None => self.query(
                &format!(
                    "SELECT {columns} FROM runs r WHERE r.run_id >= $1 ORDER BY r.run_id LIMIT $2"
                ),
                &[&prefix, &limit],
            )?,
        };
        let mut liveness = Liveness::default();
        Ok(rows
            .iter()
            .map(|row| run_from_row(row, &mut liveness))
            .filter(|run| run.run_id.starts_with(prefix))
            .collect())
    }

    /// The ids ending with one of `tails` (`idx_runs_id_tail`, schema version 6, one probe per
    /// tail).
    fn run_ids_by_tail(&self, tails: &[&str]) -> Result<Vec<String>, Error> {
        if tails.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.query(TAIL_QUERY, &[&tails])?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The cluster's next transaction id (`pg_current_snapshot()`'s xmax): it moves with every
    /// commit of a writing transaction, on any database of the server, and reading it assigns
    /// none and touches no table.
    fn change_token(&self) -> Result<u64, Error> {
        let rows = self.query(
            "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
            &[],
        )?;
        Ok(rows.first().map_or(0, |row| row.get::<_, i64>(0) as u64))
    }

    fn for_each_run_step<E: From<Error>>(
        &self,
        run_id: &str,
        mut each: impl FnMut(StepRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut failed: Option<E> = None;
        let result = self.steps_where("", run_id, |step| match each(step) {
            Ok(()) => Ok(()),
            Err(error) => {
                failed = Some(error);
                Err(Error::Query {
                    store: String::new(),
                    message: String::from("stopped by the caller"),
                })
            }
        });
        match (failed, result) {
            (Some(error), _) => Err(error),
            (None, result) => result.map_err(E::from),
        }
    }

    fn running_steps(&self, run_id: &str) -> Result<Vec<StepRecord>, Error> {
        let mut steps = Vec::new();
        self.steps_where("AND status = 'running'", run_id, |step| {
            steps.push(step);
            Ok(())
        })?;
        Ok(steps)
    }

    /// The window of `runs` through `idx_runs_stats`, the status derived as for a page.
    fn for_each_run_stat<E: From<Error>>(
        &self,
        filter: &RunFilter,
        each: impl FnMut(&RunStat) -> Result<(), E>,
    ) -> Result<(), E> {
        self.run_stats(filter, each)
    }

    fn for_each_step_stat<E: From<Error>>(
        &self,
        filter: &RunFilter,
        each: impl FnMut(StepStat) -> Result<(), E>,
    ) -> Result<(), E> {
        self.step_stats(filter, each)
    }

    /// The state of `idx_runs_stats`: `Missing` on a store of version 6 or before, `Filling`
    /// while its writer builds it concurrently.
    fn stats_index(&self) -> Result<IndexState, Error> {
        self.index_state("idx_runs_stats")
    }

    /// The errored steps through `pg_trgm`'s index (or the partial index of errored steps),
    /// prefiltered in SQL by the needle's ASCII part, newest first.
    fn search_errors<E: From<Error>>(
        &self,
        needle: &str,
        filter: &RunFilter,
        each: impl FnMut(Candidate) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        self.errors_like(needle, filter, each)
    }

    /// `Ready` where `pg_trgm` was created, `Missing` where the migration could not create it
    /// (errors are then read through the partial index of the steps that have one).
    fn error_index(&self) -> Result<IndexState, Error> {
        self.trigram_index()
    }

    fn scan_payloads<E: From<Error>>(
        &self,
        field: SearchField,
        filter: &RunFilter,
        each: impl FnMut(Candidate) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        self.payloads(field, filter, each)
    }
}

/// The runs query for `filter`: newest first, one index range per stored status merged in
/// start-time order (`Merge Append`), or a single walk when at most one status is asked for.
/// Only bound parameters carry user text.
fn runs_query(
    filter: &RunFilter,
    plan: &StatusPlan,
    select: &str,
    limit: Option<usize>,
) -> (String, Vec<Box<dyn ToSql + Sync>>) {
    filtered_runs(filter, plan, select, limit, Order::NewestFirst)
}

/// Whether a query's rows come newest first, or in any order (a bounded count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    NewestFirst,
    Any,
}

/// The runs matching `filter`, at most `limit` (per status arm and in all), in `order`.
fn filtered_runs(
    filter: &RunFilter,
    plan: &StatusPlan,
    select: &str,
    limit: Option<usize>,
    order: Order,
) -> (String, Vec<Box<dyn ToSql + Sync>>) {
    let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    let limit_param = |params: &mut Vec<Box<dyn ToSql + Sync>>| {
        limit.map(|limit| {
            params.push(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
            format!(" LIMIT ${}", params.len())
        })
    };
    let arm = |status: Option<&str>, params: &mut Vec<Box<dyn ToSql + Sync>>| {
        let mut conditions = Vec::new();
        let mut bind = |condition: &str, value: &str, params: &mut Vec<Box<dyn ToSql + Sync>>| {
            params.push(Box::new(value.to_owned()));
            conditions.push(format!("{condition} ${}", params.len()));
        };
        if let Some(status) = status {
            bind("r.status =", status, params);
        }
        if let Some(pipeline_name) = &filter.pipeline_name {
            bind("r.pipeline_name =", pipeline_name, params);
        }
        if let Some(since) = &filter.since {
            bind("r.start_time >=", since, params);
        }
        if let Some(until) = &filter.until {
            bind("r.start_time <", until, params);
        }
        let mut sql = format!("SELECT {select}, r.start_time AS sort_key FROM runs r");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        if order == Order::NewestFirst {
            sql.push_str(" ORDER BY r.start_time DESC");
        }
        sql
    };
    let sql = if plan.stored.len() <= 1 {
        let mut sql = arm(plan.stored.first().map(String::as_str), &mut params);
        if let Some(limit) = limit_param(&mut params) {
            sql.push_str(&limit);
        }
        sql
    } else {
        let mut arms = Vec::new();
        for status in &plan.stored {
            let mut sql = arm(Some(status), &mut params);
            if let Some(limit) = limit_param(&mut params) {
                sql.push_str(&limit);
            }
            arms.push(format!("({sql})"));
        }
        let mut sql = format!("SELECT * FROM ({}) AS arms", arms.join(" UNION ALL "));
        if order == Order::NewestFirst {
            sql.push_str(" ORDER BY sort_key DESC");
        }
        if let Some(limit) = limit_param(&mut params) {
            sql.push_str(&limit);
        }
        sql
    };
    (sql, params)
}

/// A run as read, its status derived (see the module docs).
fn run_from_row(row: &Row, liveness: &mut Liveness) -> RunRecord {
    let host: Option<String> = row.get(14);
    let pid: Option<i64> = row.get(15);
    let writer = match (host, pid) {
        (Some(host), Some(pid)) => Some(WriterProcess {
            host: decode(host),
            pid,
            pid_start: row.get::<_, Option<i64>>(16).unwrap_or(0),
            pid_ns: row.get(17),
        }),
        _ => None,
    };
    let mut run = RunRecord {
        run_id: decode(row.get(0)),
        pipeline_name: decode(row.get(1)),
        pipeline_version: decode(row.get(2)),
        status: decode(row.get(3)),
        start_time: decode(row.get(4)),
        end_time: decode_opt(row.get(5)),
        duration_ms: row.get(6),
        total_cost: row.get(7),
        total_tokens: row.get(8),
        n_steps: row.get(9),
        input_blob: decode_opt(row.get(10)),
        output_blob: decode_opt(row.get(11)),
        final_context_blob: decode_opt(row.get(12)),
        error_blob: decode_opt(row.get(13)),
        writer,
        trace_id: decode_opt(row.get(18)),
    };
    if liveness.derived_status(&run.status, run.writer.as_ref()) == CRASHED {
        run.status = CRASHED.to_owned();
    }
    run
}

fn step_from_row(row: &Row) -> StepRecord {
    StepRecord {
        step_run_id: decode(row.get(0)),
        run_id: decode(row.get(1)),
        parent_step_run_id: decode_opt(row.get(2)),
        step_name: decode(row.get(3)),
        step_index: row.get(4),
        step_kind: decode_opt(row.get(5)),
        status: decode(row.get(6)),
        attempts: row.get(7),
        start_time: decode(row.get(8)),
        end_time: decode_opt(row.get(9)),
        duration_ms: row.get(10),
        cost: row.get(11),
        tokens: row.get(12),
        input_blob: decode_opt(row.get(13)),
        output_blob: decode_opt(row.get(14)),
        error_blob: decode_opt(row.get(15)),
        fallback_taken: row.get(16),
    }
}

#[cfg(test)]
mod tests {
    //! Query plans on a real server, over enough rows (and `ANALYZE`) that the planner's choice
    //! is the one it makes in production: every lens query is an index walk, never a scan of a
    //! table nor a sort of its rows.

    use super::*;
    use flujo_test_postgres::TestServer;

    /// 300,000 runs over 10 pipelines (90% completed, 5% failed, 3% cancelled, 2% running),
    /// 60,000 steps and 20,000 writers, analyzed.
    fn seeded() -> PostgresUri {
        let server = TestServer::get();
        let uri = PostgresUri::parse(&server.create_database("plans")).unwrap();
        crate::PostgresImporter::open(&uri).unwrap();
        let db = uri.secret_uri().rsplit('/').next().unwrap().to_owned();
        server.psql(
            &db,
            "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time, \
             end_time, duration_ms, n_steps, writer_host, writer_pid, writer_pid_start, writer_pid_ns) \
             SELECT lpad(to_hex(i), 12, '0') || '-0000-7000-8000-000000000000', \
             'pipeline_' || (i % 10), 'v1', \
             CASE WHEN i % 100 < 90 THEN 'completed' WHEN i % 100 < 95 THEN 'failed' \
             WHEN i % 100 < 98 THEN 'cancelled' ELSE 'running' END, \
             to_char(timestamp '2026-01-01' + i * interval '1 second', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
             NULL, 10, CASE WHEN i % 100 < 98 THEN 3 END, 'host_' || (i % 20000), i % 20000, 1, 0 \
             FROM generate_series(1, 300000) AS i",
        );
        server.psql(
            &db,
            "INSERT INTO steps (step_run_id, run_id, step_name, step_index, status, start_time) \
             SELECT r.run_id || '-' || k, r.run_id, 'step', k, 'completed', r.start_time \
             FROM (SELECT run_id, start_time FROM runs ORDER BY run_id LIMIT 20000) AS r, \
             generate_series(0, 2) AS k",
        );
        server.psql(
            &db,
            "INSERT INTO flujo_writers (host, pid, pid_start, pid_ns, beat_interval_ms, missed_beats) \
             SELECT 'host_' || i, i, 1, 0, 5000, 6 FROM generate_series(0, 19999) AS i",
        );
        server.psql(&db, "ANALYZE");
        uri
    }

    fn plan(reader: &PostgresReader, sql: &str, params: &[&(dyn ToSql + Sync)]) -> String {
        let rows = reader.query(&format!("EXPLAIN {sql}"), params).unwrap();
        rows.iter()
            .map(|row| row.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn assert_index_walk(name: &str, plan: &str) {
        assert!(!plan.contains("Seq Scan"), "{name} scans a table:\n{plan}");
        assert!(
            !plan.lines().any(|line| line
                .trim_start()
                .trim_start_matches("->  ")
                .starts_with("Sort  (")),
            "{name} sorts rows:\n{plan}"
        );
        assert!(plan.contains("Index"), "{name} uses no index:\n{plan}");
    }

    #[test]
    fn every_lens_query_is_an_index_walk() {
        let uri = seeded();
        let reader = PostgresReader::open(&uri).unwrap();
        // the lens's session (connect::READER_SESSION): read-only, and never JIT-compiled,
        // which cost a scan over a large history more than the scan itself
        for (setting, value) in [("default_transaction_read_only", "on"), ("jit", "off")] {
            let rows = reader.query(&format!("SHOW {setting}"), &[]).unwrap();
            assert_eq!(rows[0].get::<_, String>(0), value, "{setting}");
        }
        let filters: Vec<(&str, RunFilter)> = vec![
            ("list", RunFilter::default()),
            (
                "list --status failed",
                RunFilter {
                    statuses: vec!["failed".into()],
                    ..RunFilter::default()
                },
            ),
            (
                "list --status failed,cancelled",
                RunFilter {
                    statuses: vec!["failed".into(), "cancelled".into()],
                    ..RunFilter::default()
                },
            ),
            (
                "list --pipeline P",
                RunFilter {
                    pipeline_name: Some("pipeline_3".into()),
                    ..RunFilter::default()
                },
            ),
            (
                "list --since --until",
                RunFilter {
                    since: Some("2026-01-02T00:00:00.000000Z".into()),
                    until: Some("2026-01-03T00:00:00.000000Z".into()),
                    ..RunFilter::default()
                },
            ),
            (
                "list --status crashed",
                RunFilter {
                    statuses: vec!["crashed".into()],
                    ..RunFilter::default()
                },
            ),
        ];
        for (name, filter) in &filters {
            let plan_of = StatusPlan::of(&filter.statuses);
            let (sql, params) =
                runs_query(filter, &plan_of, &run_columns(Columns::Summary), Some(51));
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
            assert_index_walk(name, &plan(&reader, &sql, &refs));
            // the count reads at most its bound of rows, in whatever order is cheapest
            let (count, params) = filtered_runs(filter, &plan_of, "1", Some(10_001), Order::Any);
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
            let count = format!("SELECT count(*) FROM ({count}) AS matching");
            let count_plan = plan(&reader, &count, &refs);
            let bounded = count_plan
                .lines()
                .nth(1)
                .is_some_and(|line| line.contains("Limit"))
                || count_plan.contains("Append");
            assert!(bounded, "count of {name} is not bounded:\n{count_plan}");
        }
        let detail = run_columns(Columns::Detail);
        let id = "000000000010-0000-7000-8000-000000000000";
        assert_index_walk(
            "show ID",
            &plan(
                &reader,
                &format!("SELECT {detail} FROM runs r WHERE r.run_id = $1"),
                &[&id],
            ),
        );
        assert_index_walk(
            "show latest",
            &plan(
                &reader,
                &format!("SELECT {detail} FROM runs r ORDER BY r.start_time DESC LIMIT 1"),
                &[],
            ),
        );
        let summary = run_columns(Columns::Summary);
        assert_index_walk(
            "show PREFIX",
            &plan(
                &reader,
                &format!(
                    "SELECT {summary} FROM runs r WHERE r.run_id >= $1 AND r.run_id < $2 \
                     ORDER BY r.run_id LIMIT $3"
                ),
                &[&"00000001", &"00000002", &11i64],
            ),
        );
        assert_index_walk(
            "a run's steps",
            &plan(
                &reader,
                &format!("SELECT {STEP_COLUMNS} FROM steps WHERE run_id = $1 ORDER BY seq"),
                &[&id],
            ),
        );
        let tails = vec!["deadbeef", "0000000a"];
        let short_id = plan(&reader, TAIL_QUERY, &[&tails]);
        assert_index_walk("show SHORT_ID", &short_id);
        assert!(short_id.contains("idx_runs_id_tail"), "{short_id}");
    }

    #[test]
    fn stats_and_search_queries_use_their_indexes() {
        use crate::insight::{error_query, payload_query, run_stat_query, step_stat_query};
        let uri = seeded();
        let db = uri.secret_uri().rsplit('/').next().unwrap().to_owned();
        TestServer::get().psql(
            &db,
            "UPDATE steps SET error_blob = 'CRM API rejected the update: 42' || step_index \
             WHERE step_index = 2 AND run_id < '000000001000'; ANALYZE",
        );
        let reader = PostgresReader::open(&uri).unwrap();
        let day = RunFilter {
            since: Some("2026-01-02T00:00:00.000000Z".into()),
            until: Some("2026-01-03T00:00:00.000000Z".into()),
            ..RunFilter::default()
        };
        let plan_of = |(sql, params): (String, Vec<Box<dyn ToSql + Sync>>)| {
            let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref()).collect();
            plan(&reader, &sql, &refs)
        };
        let stats = plan_of(run_stat_query(&day));
        assert!(
            !stats.contains("Seq Scan"),
            "stats of a day scan runs:\n{stats}"
        );
        assert!(
            stats.contains("idx_runs_stats") || stats.contains("idx_runs_start_time"),
            "{stats}"
        );
        let steps = plan_of(step_stat_query(&day));
        assert!(!steps.contains("Seq Scan on runs"), "{steps}");
        assert!(steps.contains("steps"), "{steps}");
        let has_trgm = reader.trigram_index().unwrap() == IndexState::Ready;
        assert!(has_trgm, "pg_trgm is part of the server's contrib modules");
        for needle in ["rejected", "número 42"] {
            let errors = plan_of(error_query(needle, &RunFilter::default()));
            assert!(
                errors.contains("idx_steps_error_trgm"),
                "{needle}: {errors}"
            );
            assert!(!errors.contains("Seq Scan"), "{needle}: {errors}");
        }
        let outputs = plan_of(payload_query(SearchField::Output, &day));
        assert!(!outputs.contains("Seq Scan on runs"), "{outputs}");
    }
}
