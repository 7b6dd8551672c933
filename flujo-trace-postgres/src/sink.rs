//! `PostgresSink`: the PostgreSQL store as the core's writer drives it. Each batch is one
//! transaction of at most five statements, whatever its size: runs inserted, steps inserted
//! (a step that starts and ends in the batch is one row), step ends and run ends updated, each
//! from arrays (`unnest`), then the heartbeat when due. Every statement is idempotent, so a batch
//! written again after a commit whose answer was lost leaves the same rows: a start never
//! overwrites a row (`ON CONFLICT DO NOTHING`, or an update only from a finished step), and ends
//! set the same values again.
//!
//! The connection is made on the writer thread (`postgres` must not be used on an async
//! runtime's worker thread), at the first write and again after it breaks; a broken connection
//! is a refused batch, which the core's writer retries and, past the retry window, holds in its
//! outage buffer.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use flujo_trace_core::{
    PostgresUri, Row, RunRecord, Sink, SinkError, StepClose, StepRecord, WriterProcess,
};
use postgres::{Client, Statement};

use crate::connect::{config_for, connect, Access};
use crate::migrate::{migrate, Migrated};
use crate::text::{encode, encode_opt};
use crate::Error;

/// Inserts runs from arrays, in [`RunColumns`]' order; the conflict clause follows.
macro_rules! insert_runs {
    ($on_conflict:literal) => {
        concat!(
            "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time, \
             end_time, duration_ms, total_cost, total_tokens, n_steps, input_blob, output_blob, \
             final_context_blob, error_blob, writer_host, writer_pid, writer_pid_start, \
             writer_pid_ns) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::int8[], $8::float8[], $9::int8[], $10::int8[], $11::text[], \
             $12::text[], $13::text[], $14::text[], $15::text[], $16::int8[], $17::int8[], \
             $18::int8[]) ",
            $on_conflict
        )
    };
}

/// The writer's insert: a run starts once; a start written again changes nothing.
const INSERT_RUNS: &str = insert_runs!("ON CONFLICT (run_id) DO NOTHING");

/// The importer's insert (`flujo lens copy`): a whole run, which replaces a copy made while it
/// was running once it has ended, and never the other way round.
const UPSERT_RUNS: &str = insert_runs!(
    "ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, \
     end_time = excluded.end_time, duration_ms = excluded.duration_ms, \
     total_cost = excluded.total_cost, total_tokens = excluded.total_tokens, \
     n_steps = excluded.n_steps, output_blob = excluded.output_blob, \
     final_context_blob = excluded.final_context_blob, error_blob = excluded.error_blob \
     WHERE runs.status = 'running' AND excluded.status <> 'running'"
);

const INSERT_STEPS: &str = "INSERT INTO steps (step_run_id, run_id, parent_step_run_id, \
     step_name, step_index, step_kind, status, attempts, start_time, end_time, duration_ms, \
     cost, tokens, input_blob, output_blob, error_blob, fallback_taken) \
     SELECT id, run, parent, name, index, kind, status, attempts, start_time, end_time, \
     duration_ms, cost, tokens, input, output, error, fallback \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::text[], \
     $7::text[], $8::int8[], $9::text[], $10::text[], $11::int8[], $12::float8[], $13::int8[], \
     $14::text[], $15::text[], $16::text[], $17::bool[]) WITH ORDINALITY \
     AS s(id, run, parent, name, index, kind, status, attempts, start_time, end_time, \
     duration_ms, cost, tokens, input, output, error, fallback, position) \
     ORDER BY position \
     ON CONFLICT (step_run_id) DO UPDATE SET status = excluded.status, \
     attempts = excluded.attempts, end_time = excluded.end_time, \
     duration_ms = excluded.duration_ms, cost = excluded.cost, tokens = excluded.tokens, \
     output_blob = excluded.output_blob, error_blob = excluded.error_blob, \
     fallback_taken = excluded.fallback_taken \
     WHERE excluded.status <> 'running'";

const END_STEPS: &str = "UPDATE steps SET status = e.status, attempts = e.attempts, \
     end_time = e.end_time, duration_ms = e.duration_ms, cost = e.cost, tokens = e.tokens, \
     output_blob = e.output, error_blob = e.error, fallback_taken = e.fallback \
     FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::int8[], $6::float8[], \
     $7::int8[], $8::text[], $9::text[], $10::bool[]) \
     AS e(id, status, attempts, end_time, duration_ms, cost, tokens, output, error, fallback) \
     WHERE steps.step_run_id = e.id";

const END_RUNS: &str = "UPDATE runs SET status = e.status, end_time = e.end_time, \
     duration_ms = e.duration_ms, total_cost = e.cost, total_tokens = e.tokens, \
     final_context_blob = e.context, error_blob = e.error, output_blob = e.output, \
     n_steps = (SELECT count(*) FROM steps WHERE steps.run_id = runs.run_id) \
     FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::float8[], $6::int8[], \
     $7::text[], $8::text[], $9::text[]) \
     AS e(id, status, end_time, duration_ms, cost, tokens, context, error, output) \
     WHERE runs.run_id = e.id";

const BEAT: &str = "INSERT INTO flujo_writers (host, pid, pid_start, pid_ns, beat_interval_ms, \
     missed_beats) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (host, pid, pid_start, pid_ns) DO UPDATE SET last_beat = now(), \
     stopped_at = NULL, beat_interval_ms = excluded.beat_interval_ms, \
     missed_beats = excluded.missed_beats";

const STOPPED: &str = "UPDATE flujo_writers SET stopped_at = now(), last_beat = now() \
     WHERE host = $1 AND pid = $2 AND pid_start = $3 AND pid_ns = $4";

/// Writers gone for a week whose runs all ended are forgotten, so the table stays small.
const FORGET_OLD_WRITERS: &str = "DELETE FROM flujo_writers w \
     WHERE w.last_beat < now() - interval '7 days' AND NOT EXISTS (SELECT 1 FROM runs r \
     WHERE r.status = 'running' AND r.writer_host = w.host AND r.writer_pid = w.pid \
     AND r.writer_pid_start = w.pid_start)";

/// How this writer's liveness is shown to readers on other hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    /// How often the writer beats, idle or not.
    pub(crate) interval: Duration,
    /// How many intervals without a beat make its running runs read as crashed.
    pub(crate) missed: u32,
}

/// The prepared statements of one connection.
struct Statements {
    insert_runs: Statement,
    upsert_runs: Statement,
    insert_steps: Statement,
    end_steps: Statement,
    end_runs: Statement,
    beat: Statement,
}

/// A live connection and its statements.
struct Connection {
    client: Client,
    statements: Statements,
}

/// The writer's side of a PostgreSQL store.
pub(crate) struct PostgresSink {
    uri: PostgresUri,
    config: postgres::Config,
    connection: Option<Connection>,
    /// The identity recorded with every run and beaten in `flujo_writers`; `None`: no heartbeat.
    writer: Option<WriterProcess>,
    heartbeat: Heartbeat,
    last_beat: Option<Instant>,
}

impl PostgresSink {
    pub(crate) fn new(
        uri: PostgresUri,
        writer: Option<WriterProcess>,
        heartbeat: Heartbeat,
    ) -> Result<PostgresSink, Error> {
        let config = config_for(&uri, Access::Write)?;
        Ok(PostgresSink {
            uri,
            config,
            connection: None,
            writer,
            heartbeat,
            last_beat: None,
        })
    }

    /// The connection, made (and the schema migrated, this writer registered) when there is none.
    fn connection(&mut self) -> Result<&mut Connection, SinkError> {
        if self.connection.is_none() {
            let connection = self.connect().map_err(|error| SinkError {
                message: error.cause(),
                row_rejected: false,
            })?;
            self.connection = Some(connection);
        }
        Ok(self.connection.as_mut().expect("connected above"))
    }

    fn connect(&mut self) -> Result<Connection, Error> {
        let mut client = connect(&self.uri, &self.config)?;
        let client_error = |error: postgres::Error| Error::from_client(&self.uri, &error);
        match migrate(&mut client).map_err(client_error)? {
            Migrated::Current { .. } => {}
            Migrated::TooNew(found) => {
                return Err(Error::TooNew {
                    store: self.uri.redacted(),
                    found,
                    supported: flujo_trace_core::SCHEMA_VERSION,
                })
            }
        }
        let statements = Statements {
            insert_runs: client.prepare(INSERT_RUNS).map_err(client_error)?,
            upsert_runs: client.prepare(UPSERT_RUNS).map_err(client_error)?,
            insert_steps: client.prepare(INSERT_STEPS).map_err(client_error)?,
            end_steps: client.prepare(END_STEPS).map_err(client_error)?,
            end_runs: client.prepare(END_RUNS).map_err(client_error)?,
            beat: client.prepare(BEAT).map_err(client_error)?,
        };
        let mut connection = Connection { client, statements };
        if let Some(writer) = &self.writer {
            beat(
                &mut connection.client,
                &connection.statements.beat,
                writer,
                self.heartbeat,
            )
            .map_err(client_error)?;
            self.last_beat = Some(Instant::now());
            // housekeeping only: a failure here changes nothing recorded
            let _ = connection.client.execute(FORGET_OLD_WRITERS, &[]);
        }
        Ok(connection)
    }

    /// What a failed write means: the connection is dropped unless the server refused a row for
    /// itself (a constraint or a value it cannot store), which the writer then writes alone.
    fn refused(&mut self, error: &postgres::Error) -> SinkError {
        let row_rejected = error
            .code()
            .is_some_and(|code| code.code().starts_with("23") || code.code().starts_with("22"));
        if !row_rejected {
            self.connection = None;
        }
        SinkError {
            message: Error::from_client(&self.uri, error).cause(),
            row_rejected,
        }
    }

    /// Writes whole runs and their steps in one transaction (the importer): a run copied while
    /// running is brought up to date by a later copy; a finished one is never changed.
    pub(crate) fn import(&mut self, runs: &[RunRecord], steps: &[StepRecord]) -> Result<(), Error> {
        let uri = self.uri.clone();
        let connection = self.connection().map_err(|error| Error::Unreachable {
            store: uri.redacted(),
            message: error.message,
        })?;
        let result = import_batch(connection, runs, steps);
        result.map_err(|error| {
            let refused = self.refused(&error);
            Error::Query {
                store: uri.redacted(),
                message: refused.message,
            }
        })
    }

    fn beat_due(&self) -> bool {
        self.writer.is_some()
            && self
                .last_beat
                .is_none_or(|at| at.elapsed() >= self.heartbeat.interval)
    }
}

impl Sink for PostgresSink {
    fn open(&mut self) {
        // connect early, so the first run does not wait for it; a failure is retried (and
        // reported) by the first write
        let _ = self.connection();
    }

    fn write_batch(&mut self, rows: &[Row]) -> Result<u64, SinkError> {
        let beat_due = self.beat_due();
        let heartbeat = self.heartbeat;
        let writer = self.writer.clone();
        let connection = self.connection()?;
        let beat_as = if beat_due { writer.as_ref() } else { None };
        let result = write_batch(connection, rows, beat_as, heartbeat);
        match result {
            Ok(missing) => {
                if beat_due {
                    self.last_beat = Some(Instant::now());
                }
                Ok(missing)
            }
            Err(error) => Err(self.refused(&error)),
        }
    }

    fn heartbeat_interval(&self) -> Option<Duration> {
        self.writer.as_ref().map(|_| self.heartbeat.interval)
    }

    fn heartbeat(&mut self) {
        let Some(writer) = self.writer.clone() else {
            return;
        };
        let heartbeat = self.heartbeat;
        // reconnecting registers the writer, which is a beat
        let had_connection = self.connection.is_some();
        let Ok(connection) = self.connection() else {
            return;
        };
        if had_connection {
            let Connection { client, statements } = connection;
            if let Err(error) = beat(client, &statements.beat, &writer, heartbeat) {
                let _ = self.refused(&error);
                return;
            }
        }
        self.last_beat = Some(Instant::now());
    }

    /// Marks this writer stopped, so its runs still `running` read as crashed at once.
    fn close(mut self) {
        if let (Some(connection), Some(writer)) = (self.connection.as_mut(), &self.writer) {
            let pid_ns = writer.pid_ns.unwrap_or(0);
            let _ = connection.client.execute(
                STOPPED,
                &[&writer.host, &writer.pid, &writer.pid_start, &pid_ns],
            );
        }
        drop(self.connection.take());
    }
}

fn beat(
    client: &mut Client,
    statement: &Statement,
    writer: &WriterProcess,
    heartbeat: Heartbeat,
) -> Result<u64, postgres::Error> {
    client.execute(statement, &beat_params(writer, heartbeat).as_params())
}

/// The parameters of [`BEAT`].
struct BeatParams<'a> {
    host: &'a str,
    pid: i64,
    pid_start: i64,
    pid_ns: i64,
    interval_ms: i64,
    missed: i64,
}

impl BeatParams<'_> {
    fn as_params(&self) -> [&(dyn postgres::types::ToSql + Sync); 6] {
        [
            &self.host,
            &self.pid,
            &self.pid_start,
            &self.pid_ns,
            &self.interval_ms,
            &self.missed,
        ]
    }
}

fn beat_params(writer: &WriterProcess, heartbeat: Heartbeat) -> BeatParams<'_> {
    BeatParams {
        host: &writer.host,
        pid: writer.pid,
        pid_start: writer.pid_start,
        pid_ns: writer.pid_ns.unwrap_or(0),
        interval_ms: i64::try_from(heartbeat.interval.as_millis()).unwrap_or(i64::MAX),
        missed: i64::from(heartbeat.missed),
    }
}

/// Writes `rows` in one transaction (see the module docs); returns how many ends had no row.
fn write_batch(
    connection: &mut Connection,
    rows: &[Row],
    beat_as: Option<&WriterProcess>,
    heartbeat: Heartbeat,
) -> Result<u64, postgres::Error> {
    let mut ends: HashMap<&str, &StepClose> = HashMap::new();
    for row in rows {
        if let Row::StepEnd(close) = row {
            ends.insert(&close.step_run_id, close);
        }
    }
    let mut runs = RunColumns::default();
    let mut steps = StepColumns::default();
    let mut step_ends = StepEndColumns::default();
    let mut run_ends = RunEndColumns::default();
    let mut merged = std::collections::HashSet::new();
    for row in rows {
        match row {
            Row::RunStart(run) => runs.push(run),
            Row::StepStart(start) => {
                let close = ends.get(start.step_run_id.as_str()).copied();
                if close.is_some() {
                    merged.insert(start.step_run_id.as_str());
                }
                steps.push(start, close);
            }
            Row::StepEnd(_) | Row::RunEnd { .. } => {}
        }
    }
    for row in rows {
        match row {
            Row::StepEnd(close) if !merged.contains(close.step_run_id.as_str()) => {
                step_ends.push(close)
            }
            Row::RunEnd { run_id, end } => run_ends.push(run_id, end),
            _ => {}
        }
    }
    let Connection { client, statements } = connection;
    let mut tx = client.transaction()?;
    let mut missing = 0;
    if !runs.id.is_empty() {
        tx.execute(&statements.insert_runs, &runs.as_params())?;
    }
    if !steps.id.is_empty() {
        tx.execute(&statements.insert_steps, &steps.as_params())?;
    }
    if !step_ends.id.is_empty() {
        let updated = tx.execute(
            &statements.end_steps,
            &[
                &step_ends.id,
                &step_ends.status,
                &step_ends.attempts,
                &step_ends.end,
                &step_ends.duration,
                &step_ends.cost,
                &step_ends.tokens,
                &step_ends.output,
                &step_ends.error,
                &step_ends.fallback,
            ],
        )?;
        missing += (step_ends.id.len() as u64).saturating_sub(updated);
    }
    if !run_ends.id.is_empty() {
        let updated = tx.execute(
            &statements.end_runs,
            &[
                &run_ends.id,
                &run_ends.status,
                &run_ends.end,
                &run_ends.duration,
                &run_ends.cost,
                &run_ends.tokens,
                &run_ends.context,
                &run_ends.error,
                &run_ends.output,
            ],
        )?;
        missing += (run_ends.id.len() as u64).saturating_sub(updated);
    }
    if let Some(writer) = beat_as {
        tx.execute(
            &statements.beat,
            &beat_params(writer, heartbeat).as_params(),
        )?;
    }
    tx.commit()?;
    Ok(missing)
}

/// [`PostgresSink::import`]'s transaction.
fn import_batch(
    connection: &mut Connection,
    runs: &[RunRecord],
    steps: &[StepRecord],
) -> Result<(), postgres::Error> {
    let mut run_columns = RunColumns::default();
    for run in runs {
        run_columns.push(run);
    }
    let mut step_columns = StepColumns::default();
    for step in steps {
        step_columns.push(step, None);
    }
    let Connection { client, statements } = connection;
    let mut tx = client.transaction()?;
    if !run_columns.id.is_empty() {
        tx.execute(&statements.upsert_runs, &run_columns.as_params())?;
    }
    if !step_columns.id.is_empty() {
        tx.execute(&statements.insert_steps, &step_columns.as_params())?;
    }
    tx.commit()
}

type Text<'a> = Vec<Cow<'a, str>>;
type OptText<'a> = Vec<Option<Cow<'a, str>>>;

/// The columns of the runs inserted by a batch, as arrays.
#[derive(Default)]
struct RunColumns<'a> {
    id: Text<'a>,
    name: Text<'a>,
    version: Text<'a>,
    status: Text<'a>,
    start: Text<'a>,
    end: OptText<'a>,
    duration: Vec<Option<i64>>,
    cost: Vec<Option<f64>>,
    tokens: Vec<Option<i64>>,
    n_steps: Vec<Option<i64>>,
    input: OptText<'a>,
    output: OptText<'a>,
    context: OptText<'a>,
    error: OptText<'a>,
    host: OptText<'a>,
    pid: Vec<Option<i64>>,
    pid_start: Vec<Option<i64>>,
    pid_ns: Vec<Option<i64>>,
}

type Param<'p> = &'p (dyn postgres::types::ToSql + Sync);

impl<'a> RunColumns<'a> {
    fn as_params(&self) -> [Param<'_>; 18] {
        [
            &self.id,
            &self.name,
            &self.version,
            &self.status,
            &self.start,
            &self.end,
            &self.duration,
            &self.cost,
            &self.tokens,
            &self.n_steps,
            &self.input,
            &self.output,
            &self.context,
            &self.error,
            &self.host,
            &self.pid,
            &self.pid_start,
            &self.pid_ns,
        ]
    }

    fn push(&mut self, run: &'a RunRecord) {
        self.id.push(encode(&run.run_id));
        self.name.push(encode(&run.pipeline_name));
        self.version.push(encode(&run.pipeline_version));
        self.status.push(encode(&run.status));
        self.start.push(encode(&run.start_time));
        self.end.push(encode_opt(run.end_time.as_deref()));
        self.duration.push(run.duration_ms);
        self.cost.push(run.total_cost);
        self.tokens.push(run.total_tokens);
        self.n_steps.push(run.n_steps);
        self.input.push(encode_opt(run.input_blob.as_deref()));
        self.output.push(encode_opt(run.output_blob.as_deref()));
        self.context
            .push(encode_opt(run.final_context_blob.as_deref()));
        self.error.push(encode_opt(run.error_blob.as_deref()));
        let writer = run.writer.as_ref();
        self.host.push(encode_opt(writer.map(|w| w.host.as_str())));
        self.pid.push(writer.map(|w| w.pid));
        self.pid_start.push(writer.map(|w| w.pid_start));
        self.pid_ns.push(writer.and_then(|w| w.pid_ns));
    }
}

/// The columns of the steps inserted by a batch (with their close, when it is in the batch).
#[derive(Default)]
struct StepColumns<'a> {
    id: Text<'a>,
    run: Text<'a>,
    parent: OptText<'a>,
    name: Text<'a>,
    index: Vec<i64>,
    kind: OptText<'a>,
    status: Text<'a>,
    attempts: Vec<Option<i64>>,
    start: Text<'a>,
    end: OptText<'a>,
    duration: Vec<Option<i64>>,
    cost: Vec<Option<f64>>,
    tokens: Vec<Option<i64>>,
    input: OptText<'a>,
    output: OptText<'a>,
    error: OptText<'a>,
    fallback: Vec<Option<bool>>,
}

impl<'a> StepColumns<'a> {
    fn as_params(&self) -> [Param<'_>; 17] {
        [
            &self.id,
            &self.run,
            &self.parent,
            &self.name,
            &self.index,
            &self.kind,
            &self.status,
            &self.attempts,
            &self.start,
            &self.end,
            &self.duration,
            &self.cost,
            &self.tokens,
            &self.input,
            &self.output,
            &self.error,
            &self.fallback,
        ]
    }

    fn push(&mut self, step: &'a StepRecord, close: Option<&'a StepClose>) {
        self.id.push(encode(&step.step_run_id));
        self.run.push(encode(&step.run_id));
        self.parent
            .push(encode_opt(step.parent_step_run_id.as_deref()));
        self.name.push(encode(&step.step_name));
        self.index.push(step.step_index);
        self.kind.push(encode_opt(step.step_kind.as_deref()));
        self.start.push(encode(&step.start_time));
        self.input.push(encode_opt(step.input_blob.as_deref()));
        match close {
            Some(close) => {
                self.status.push(encode(&close.status));
                self.attempts.push(close.attempts);
                self.end.push(Some(encode(&close.end_time)));
                self.duration.push(close.duration_ms);
                self.cost.push(close.cost);
                self.tokens.push(close.tokens);
                self.output.push(encode_opt(close.output_blob.as_deref()));
                self.error.push(encode_opt(close.error_blob.as_deref()));
                self.fallback.push(close.fallback_taken);
            }
            None => {
                self.status.push(encode(&step.status));
                self.attempts.push(step.attempts);
                self.end.push(encode_opt(step.end_time.as_deref()));
                self.duration.push(step.duration_ms);
                self.cost.push(step.cost);
                self.tokens.push(step.tokens);
                self.output.push(encode_opt(step.output_blob.as_deref()));
                self.error.push(encode_opt(step.error_blob.as_deref()));
                self.fallback.push(step.fallback_taken);
            }
        }
    }
}

/// The close fields of the steps that end in a batch but started in an earlier one.
#[derive(Default)]
struct StepEndColumns<'a> {
    id: Text<'a>,
    status: Text<'a>,
    attempts: Vec<Option<i64>>,
    end: Text<'a>,
    duration: Vec<Option<i64>>,
    cost: Vec<Option<f64>>,
    tokens: Vec<Option<i64>>,
    output: OptText<'a>,
    error: OptText<'a>,
    fallback: Vec<Option<bool>>,
}

impl<'a> StepEndColumns<'a> {
    fn push(&mut self, close: &'a StepClose) {
        self.id.push(encode(&close.step_run_id));
        self.status.push(encode(&close.status));
        self.attempts.push(close.attempts);
        self.end.push(encode(&close.end_time));
        self.duration.push(close.duration_ms);
        self.cost.push(close.cost);
        self.tokens.push(close.tokens);
        self.output.push(encode_opt(close.output_blob.as_deref()));
        self.error.push(encode_opt(close.error_blob.as_deref()));
        self.fallback.push(close.fallback_taken);
    }
}

/// The ends of the runs that end in a batch.
#[derive(Default)]
struct RunEndColumns<'a> {
    id: Text<'a>,
    status: Text<'a>,
    end: Text<'a>,
    duration: Vec<Option<i64>>,
    cost: Vec<Option<f64>>,
    tokens: Vec<Option<i64>>,
    context: OptText<'a>,
    error: OptText<'a>,
    output: OptText<'a>,
}

impl<'a> RunEndColumns<'a> {
    fn push(&mut self, run_id: &'a str, end: &'a flujo_trace_core::RunEnd) {
        self.id.push(encode(run_id));
        self.status.push(encode(&end.status));
        self.end.push(encode(&end.end_time));
        self.duration.push(end.duration_ms);
        self.cost.push(end.total_cost);
        self.tokens.push(end.total_tokens);
        self.context
            .push(encode_opt(end.final_context_blob.as_deref()));
        self.error.push(encode_opt(end.error_blob.as_deref()));
        self.output.push(encode_opt(end.output_blob.as_deref()));
    }
}
