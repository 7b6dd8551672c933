//! `PostgresSink`: the PostgreSQL store as the core's writer drives it. Each batch is one
//! statement, so one round trip and one transaction whatever its size, made of the parts it
//! needs: runs inserted, steps inserted, step ends and run ends updated, each from arrays
//! (`unnest`), and the heartbeat when due. Each combination is prepared once per connection and
//! planned once, with index scans (see [`PLANNER`]). A run or step that starts and ends in the batch is one row, so a short run costs two
//! inserts and no update. Every part is idempotent, so a batch written again after a commit whose
//! answer was lost leaves the same rows: a start never overwrites a row (an insert's conflict
//! updates only from a finished row), and ends set the same values again.
//!
//! The connection is made on the writer thread (`postgres` must not be used on an async
//! runtime's worker thread), at the first write and again after it breaks; a broken connection
//! is a refused batch, which the core's writer retries and, past the retry window, holds in its
//! outage buffer.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use flujo_trace_core::{
    PostgresUri, Row, RunEnd, RunRecord, Sink, SinkError, StepClose, StepRecord, WriterProcess,
};
use postgres::types::Type;
use postgres::{Client, Statement};

pub(crate) use crate::connect::Access;
use crate::connect::{config_for, connect};
use crate::migrate::{build_late_indexes, late_indexes_pending, migrate, Migrated};
use crate::text::{encode, encode_opt};
use crate::Error;

/// The columns of an insert of runs from arrays, in [`RunColumns`]' order, from `$1`.
macro_rules! runs_from_arrays {
    () => {
        "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time, \
         end_time, duration_ms, total_cost, total_tokens, n_steps, input_blob, output_blob, \
         final_context_blob, error_blob, writer_host, writer_pid, writer_pid_start, \
         writer_pid_ns, trace_id) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
         $6::text[], $7::int8[], $8::float8[], $9::int8[], $10::int8[], $11::text[], \
         $12::text[], $13::text[], $14::text[], $15::text[], $16::int8[], $17::int8[], \
         $18::int8[], $63::text[]) \
         ON CONFLICT (run_id) DO UPDATE SET status = excluded.status, \
         end_time = excluded.end_time, duration_ms = excluded.duration_ms, \
         total_cost = excluded.total_cost, total_tokens = excluded.total_tokens, \
         n_steps = excluded.n_steps, output_blob = excluded.output_blob, \
         final_context_blob = excluded.final_context_blob, error_blob = excluded.error_blob, \
         trace_id = excluded.trace_id \
         WHERE runs.status = 'running' AND excluded.status <> 'running'"
    };
}

/// The columns of an insert of steps from arrays, in [`StepColumns`]' order, from `$19`.
macro_rules! steps_from_arrays {
    () => {
        "INSERT INTO steps (step_run_id, run_id, parent_step_run_id, \
         step_name, step_index, step_kind, status, attempts, start_time, end_time, duration_ms, \
         cost, tokens, input_blob, output_blob, error_blob, fallback_taken) \
         SELECT id, run, parent, name, index, kind, status, attempts, start_time, end_time, \
         duration_ms, cost, tokens, input, output, error, fallback \
         FROM unnest($19::text[], $20::text[], $21::text[], $22::text[], $23::int8[], \
         $24::text[], $25::text[], $26::int8[], $27::text[], $28::text[], $29::int8[], \
         $30::float8[], $31::int8[], $32::text[], $33::text[], $34::text[], $35::bool[]) \
         WITH ORDINALITY \
         AS s(id, run, parent, name, index, kind, status, attempts, start_time, end_time, \
         duration_ms, cost, tokens, input, output, error, fallback, position) \
         ORDER BY position \
         ON CONFLICT (step_run_id) DO UPDATE SET status = excluded.status, \
         attempts = excluded.attempts, end_time = excluded.end_time, \
         duration_ms = excluded.duration_ms, cost = excluded.cost, tokens = excluded.tokens, \
         output_blob = excluded.output_blob, error_blob = excluded.error_blob, \
         fallback_taken = excluded.fallback_taken \
         WHERE excluded.status <> 'running'"
    };
}

/// The part of [`write_batch_sql`] that updates step rows of earlier batches (`$36`-`$45`).
const ENDED_STEPS: &str = "ended_steps AS (UPDATE steps SET (status, attempts, end_time, \
     duration_ms, cost, tokens, output_blob, error_blob, fallback_taken) = (SELECT e.status, \
     e.attempts, e.end_time, e.duration_ms, e.cost, e.tokens, e.output, e.error, e.fallback \
     FROM unnest($36::text[], $37::text[], $38::int8[], $39::text[], $40::int8[], \
     $41::float8[], $42::int8[], $43::text[], $44::text[], $45::bool[]) \
     AS e(id, status, attempts, end_time, duration_ms, cost, tokens, output, error, fallback) \
     WHERE e.id = steps.step_run_id) \
     WHERE steps.step_run_id = ANY($36::text[]) RETURNING 1)";

/// The part of [`write_batch_sql`] that updates run rows of earlier batches (`$46`-`$55`, and
/// `$64` their trace ids).
const ENDED_RUNS: &str = "ended_runs AS (UPDATE runs SET (status, end_time, duration_ms, \
     total_cost, total_tokens, final_context_blob, error_blob, output_blob, trace_id, n_steps) = \
     (SELECT e.status, e.end_time, e.duration_ms, e.cost, e.tokens, e.context, e.error, \
     e.output, e.trace_id, e.batch_steps + (SELECT count(*) FROM steps \
     WHERE steps.run_id = runs.run_id AND NOT (steps.step_run_id = ANY($19::text[]))) \
     FROM unnest($46::text[], $47::text[], $48::text[], $49::int8[], $50::float8[], \
     $51::int8[], $52::text[], $53::text[], $54::text[], $55::int8[], $64::text[]) \
     AS e(id, status, end_time, duration_ms, cost, tokens, context, error, output, batch_steps, \
     trace_id) \
     WHERE e.id = runs.run_id) \
     WHERE runs.run_id = ANY($46::text[]) RETURNING 1)";

/// The part of [`write_batch_sql`] that beats the heartbeat (`$56`-`$61`).
const BEAT_PART: &str = "beat AS (INSERT INTO flujo_writers (host, pid, pid_start, pid_ns, \
     beat_interval_ms, missed_beats) \
     SELECT $56::text, $57::int8, $58::int8, $59::int8, $60::int8, $61::int8 \
     ON CONFLICT (host, pid, pid_start, pid_ns) DO UPDATE SET last_beat = now(), \
     stopped_at = NULL, beat_interval_ms = excluded.beat_interval_ms, \
     missed_beats = excluded.missed_beats)";

/// The parameter types of [`write_batch_sql`]'s statements, `$1`-`$64` (`$62` unused: it keeps
/// the numbering of the parts fixed), so every variant binds the same parameters.
const WRITE_BATCH_TYPES: [Type; 64] = {
    use Type as T;
    const TEXTS: Type = T::TEXT_ARRAY;
    const INTS: Type = T::INT8_ARRAY;
    const FLOATS: Type = T::FLOAT8_ARRAY;
    const BOOLS: Type = T::BOOL_ARRAY;
    [
        // runs
        TEXTS,
        TEXTS,
        TEXTS,
        TEXTS,
        TEXTS,
        TEXTS,
        INTS,
        FLOATS,
        INTS,
        INTS,
        TEXTS,
        TEXTS,
        TEXTS,
        TEXTS,
        TEXTS,
        INTS,
        INTS,
        INTS,
        // steps
        TEXTS,
        TEXTS,
        TEXTS,
        TEXTS,
        INTS,
        TEXTS,
        TEXTS,
        INTS,
        TEXTS,
        TEXTS,
        INTS,
        FLOATS,
        INTS,
        TEXTS,
        TEXTS,
        TEXTS,
        BOOLS,
        // step ends
        TEXTS,
        TEXTS,
        INTS,
        TEXTS,
        INTS,
        FLOATS,
        INTS,
        TEXTS,
        TEXTS,
        BOOLS,
        // run ends
        TEXTS,
        TEXTS,
        TEXTS,
        INTS,
        FLOATS,
        INTS,
        TEXTS,
        TEXTS,
        TEXTS,
        INTS,
        // heartbeat
        T::TEXT,
        T::INT8,
        T::INT8,
        T::INT8,
        T::INT8,
        T::INT8,
        T::BOOL,
        // trace ids of the runs inserted ($63) and of the runs ended ($64), added in version 5
        TEXTS,
        TEXTS,
    ]
};

/// Which parts a batch needs: a bit per part of [`write_batch_sql`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parts(u8);

impl Parts {
    const RUNS: u8 = 1;
    const STEPS: u8 = 2;
    const STEP_ENDS: u8 = 4;
    const RUN_ENDS: u8 = 8;
    const BEAT: u8 = 16;
    /// Every combination, for the statement cache.
    const ALL: usize = 32;

    fn has(self, part: u8) -> bool {
        self.0 & part != 0
    }
}

/// A writer's batch as one statement, so one round trip and one implicit transaction
/// (`$1`-`$18` runs, `$19`-`$35` steps, `$36`-`$45` step ends, `$46`-`$55` run ends, `$56`-`$61`
/// the heartbeat), made of the `parts` the batch needs: a part with nothing to write is left
/// out rather than run on empty arrays (the batch at a run's end, one step end and the run's
/// end, is two updates).
///
/// A run or step that starts and ends in the batch is one inserted row (its start and end
/// merged by the caller), so the updates touch only rows of earlier batches: the statement's
/// parts never modify one row twice, and each sees the rows as they were before it. A start
/// written again changes nothing (a finished row is never taken back to `running`); an end
/// written again sets the same values. A run's `n_steps` counts its rows outside the batch
/// (`$19` are the batch's step ids) plus its steps in the batch (`$55`), so it is exact even when
/// the batch is written a second time.
fn write_batch_sql(parts: Parts) -> String {
    let mut ctes: Vec<String> = Vec::new();
    if parts.has(Parts::RUNS) {
        ctes.push(format!("new_runs AS ({})", runs_from_arrays!()));
    }
    if parts.has(Parts::STEPS) {
        ctes.push(format!("new_steps AS ({})", steps_from_arrays!()));
    }
    if parts.has(Parts::STEP_ENDS) {
        ctes.push(ENDED_STEPS.to_owned());
    }
    if parts.has(Parts::RUN_ENDS) {
        ctes.push(ENDED_RUNS.to_owned());
    }
    if parts.has(Parts::BEAT) {
        ctes.push(BEAT_PART.to_owned());
    }
    let count = |part, cte| {
        if parts.has(part) {
            format!("(SELECT count(*) FROM {cte})")
        } else {
            "0::int8".to_owned()
        }
    };
    let select = format!(
        "SELECT {}, {}",
        count(Parts::STEP_ENDS, "ended_steps"),
        count(Parts::RUN_ENDS, "ended_runs")
    );
    if ctes.is_empty() {
        select
    } else {
        format!("WITH {} {select}", ctes.join(", "))
    }
}

/// How the writer's session plans its statements, set once the schema is migrated: every one
/// finds its rows by key, so it is planned once (a generic plan, which saves planning each
/// batch) and with index scans whatever the tables' statistics say. Without this, a table not
/// yet analyzed (a new store, for up to a minute or more) gets plans that read the whole table
/// for every batch, even one whose arrays are empty, and so cost more as the table grows.
const PLANNER: &str = "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off";

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
    /// [`write_batch_sql`] of each combination of parts, prepared when a batch first needs it.
    write_batch: [Option<Statement>; Parts::ALL],
    beat: Statement,
}

impl Statements {
    /// The batch statement of `parts`, prepared on `client` unless it was.
    fn write_batch(
        &mut self,
        client: &mut Client,
        parts: Parts,
    ) -> Result<Statement, postgres::Error> {
        let slot = &mut self.write_batch[usize::from(parts.0)];
        if let Some(statement) = slot {
            return Ok(statement.clone());
        }
        let statement = client.prepare_typed(&write_batch_sql(parts), &WRITE_BATCH_TYPES)?;
        *slot = Some(statement.clone());
        Ok(statement)
    }
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
    /// A sink for `access`: [`Access::Record`] (the layer's writer) or [`Access::Import`].
    pub(crate) fn new(
        uri: PostgresUri,
        access: Access,
        writer: Option<WriterProcess>,
        heartbeat: Heartbeat,
    ) -> Result<PostgresSink, Error> {
        let config = config_for(&uri, access)?;
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
        if late_indexes_pending(&mut client).map_err(client_error)? {
            self.build_late_indexes();
        }
        client.batch_execute(PLANNER).map_err(client_error)?;
        let statements = Statements {
            write_batch: std::array::from_fn(|_| None),
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

    /// Builds the indexes of newer schema versions that a large database lacks
    /// ([`build_late_indexes`]) on a thread of its own, with a connection of its own, once per
    /// database and process: the writer goes on recording meanwhile, and readers scan until they are built.
    /// A build cut short by the process's exit leaves an invalid index, which the next writer
    /// builds again. The thread's own tracing goes nowhere, as the writer's.
    fn build_late_indexes(&self) {
        static STARTED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        {
            let mut started = STARTED.lock().unwrap_or_else(|e| e.into_inner());
            let store = self.uri.redacted();
            if started.contains(&store) {
                return;
            }
            started.push(store);
        }
        let (uri, config) = (self.uri.clone(), self.config.clone());
        let _ = std::thread::Builder::new()
            .name("flujo-postgres-indexes".into())
            .spawn(move || {
                tracing::dispatcher::with_default(&tracing::Dispatch::none(), || {
                    // housekeeping only: without the indexes readers scan, with the same answers
                    if let Ok(mut client) = connect(&uri, &config) {
                        let _ = build_late_indexes(&mut client);
                    }
                })
            });
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
    /// The parameters of a batch without a beat.
    const NONE: BeatParams<'static> = BeatParams {
        host: "",
        pid: 0,
        pid_start: 0,
        pid_ns: 0,
        interval_ms: 0,
        missed: 0,
    };

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

/// Writes `rows` in one statement (see the module docs); returns how many ends had no row.
fn write_batch(
    connection: &mut Connection,
    rows: &[Row],
    beat_as: Option<&WriterProcess>,
    heartbeat: Heartbeat,
) -> Result<u64, postgres::Error> {
    let mut step_closes: HashMap<&str, &StepClose> = HashMap::new();
    let mut run_ends: HashMap<&str, &RunEnd> = HashMap::new();
    let mut batch_steps: HashMap<&str, i64> = HashMap::new();
    for row in rows {
        match row {
            Row::StepEnd(close) => {
                step_closes.insert(&close.step_run_id, close);
            }
            Row::RunEnd { run_id, end } => {
                run_ends.insert(run_id, end);
            }
            Row::StepStart(start) => *batch_steps.entry(&start.run_id).or_default() += 1,
            Row::RunStart(_) => {}
        }
    }
    let mut columns = BatchColumns::default();
    // the ids whose start is in the batch: their end is merged into the inserted row
    let mut merged = std::collections::HashSet::new();
    for row in rows {
        match row {
            Row::RunStart(run) => {
                let end = run_ends.get(run.run_id.as_str()).copied();
                if end.is_some() {
                    merged.insert(run.run_id.as_str());
                }
                let n_steps = batch_steps.get(run.run_id.as_str()).copied().unwrap_or(0);
                columns.runs.push(run, end.map(|end| (end, n_steps)));
            }
            Row::StepStart(start) => {
                let close = step_closes.get(start.step_run_id.as_str()).copied();
                if close.is_some() {
                    merged.insert(start.step_run_id.as_str());
                }
                columns.steps.push(start, close);
            }
            Row::StepEnd(_) | Row::RunEnd { .. } => {}
        }
    }
    for row in rows {
        match row {
            Row::StepEnd(close) if !merged.contains(close.step_run_id.as_str()) => {
                columns.step_ends.push(close)
            }
            Row::RunEnd { run_id, end } if !merged.contains(run_id.as_str()) => {
                let in_batch = batch_steps.get(run_id.as_str()).copied().unwrap_or(0);
                columns.run_ends.push(run_id, end, in_batch)
            }
            _ => {}
        }
    }
    let Connection { client, statements } = connection;
    let beat = beat_as.map_or(BeatParams::NONE, |writer| beat_params(writer, heartbeat));
    let beat_due = beat_as.is_some();
    let statement = statements.write_batch(client, columns.parts(beat_due))?;
    let row = client.query_one(&statement, &columns.as_params(&beat, &beat_due))?;
    let (ended_steps, ended_runs): (i64, i64) = (row.get(0), row.get(1));
    let expected = columns.step_ends.id.len() + columns.run_ends.id.len();
    Ok((expected as u64).saturating_sub((ended_steps + ended_runs) as u64))
}

/// [`PostgresSink::import`]'s statement: whole runs and steps, nothing to update.
fn import_batch(
    connection: &mut Connection,
    runs: &[RunRecord],
    steps: &[StepRecord],
) -> Result<(), postgres::Error> {
    let mut columns = BatchColumns::default();
    for run in runs {
        columns.runs.push(run, None);
    }
    for step in steps {
        columns.steps.push(step, None);
    }
    let Connection { client, statements } = connection;
    let statement = statements.write_batch(client, columns.parts(false))?;
    client.query_one(&statement, &columns.as_params(&BeatParams::NONE, &false))?;
    Ok(())
}

/// The arrays of one [`write_batch_sql`] statement.
#[derive(Default)]
struct BatchColumns<'a> {
    runs: RunColumns<'a>,
    steps: StepColumns<'a>,
    step_ends: StepEndColumns<'a>,
    run_ends: RunEndColumns<'a>,
}

impl BatchColumns<'_> {
    /// The parts of the statement this batch needs.
    fn parts(&self, beat_due: bool) -> Parts {
        let mut parts = 0;
        for (needed, part) in [
            (!self.runs.id.is_empty(), Parts::RUNS),
            (!self.steps.id.is_empty(), Parts::STEPS),
            (!self.step_ends.id.is_empty(), Parts::STEP_ENDS),
            (!self.run_ends.id.is_empty(), Parts::RUN_ENDS),
            (beat_due, Parts::BEAT),
        ] {
            if needed {
                parts |= part;
            }
        }
        Parts(parts)
    }

    fn as_params<'p>(&'p self, beat: &'p BeatParams<'p>, beat_due: &'p bool) -> Vec<Param<'p>> {
        let mut params: Vec<Param<'p>> = Vec::with_capacity(64);
        params.extend(self.runs.as_params());
        params.extend(self.steps.as_params());
        let e = &self.step_ends;
        params.extend::<[Param<'p>; 10]>([
            &e.id,
            &e.status,
            &e.attempts,
            &e.end,
            &e.duration,
            &e.cost,
            &e.tokens,
            &e.output,
            &e.error,
            &e.fallback,
        ]);
        let r = &self.run_ends;
        params.extend::<[Param<'p>; 10]>([
            &r.id,
            &r.status,
            &r.end,
            &r.duration,
            &r.cost,
            &r.tokens,
            &r.context,
            &r.error,
            &r.output,
            &r.batch_steps,
        ]);
        params.extend(beat.as_params());
        params.push(beat_due);
        params.push(&self.runs.trace_id);
        params.push(&r.trace_id);
        params
    }
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
    trace_id: OptText<'a>,
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

    /// A run as recorded, or its start with its end (and its number of steps) in the batch.
    fn push(&mut self, run: &'a RunRecord, end: Option<(&'a RunEnd, i64)>) {
        self.id.push(encode(&run.run_id));
        self.name.push(encode(&run.pipeline_name));
        self.version.push(encode(&run.pipeline_version));
        self.start.push(encode(&run.start_time));
        self.input.push(encode_opt(run.input_blob.as_deref()));
        match end {
            Some((end, n_steps)) => {
                self.status.push(encode(&end.status));
                self.end.push(Some(encode(&end.end_time)));
                self.duration.push(end.duration_ms);
                self.cost.push(end.total_cost);
                self.tokens.push(end.total_tokens);
                self.n_steps.push(Some(n_steps));
                self.output.push(encode_opt(end.output_blob.as_deref()));
                self.context
                    .push(encode_opt(end.final_context_blob.as_deref()));
                self.error.push(encode_opt(end.error_blob.as_deref()));
                self.trace_id.push(encode_opt(end.trace_id.as_deref()));
            }
            None => {
                self.status.push(encode(&run.status));
                self.end.push(encode_opt(run.end_time.as_deref()));
                self.duration.push(run.duration_ms);
                self.cost.push(run.total_cost);
                self.tokens.push(run.total_tokens);
                self.n_steps.push(run.n_steps);
                self.output.push(encode_opt(run.output_blob.as_deref()));
                self.context
                    .push(encode_opt(run.final_context_blob.as_deref()));
                self.error.push(encode_opt(run.error_blob.as_deref()));
                self.trace_id.push(encode_opt(run.trace_id.as_deref()));
            }
        }
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
    /// The run's steps that start in the batch.
    batch_steps: Vec<i64>,
    trace_id: OptText<'a>,
}

impl<'a> RunEndColumns<'a> {
    fn push(&mut self, run_id: &'a str, end: &'a RunEnd, batch_steps: i64) {
        self.batch_steps.push(batch_steps);
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
        self.trace_id.push(encode_opt(end.trace_id.as_deref()));
    }
}

#[cfg(test)]
mod tests {
    //! The one-statement batch on a real server: starts and ends merged or not, batches written
    //! again after their commit, and ends without a row.

    use super::*;
    use flujo_test_postgres::TestServer;

    fn run_start(id: &str) -> Row {
        Row::RunStart(RunRecord {
            run_id: id.to_owned(),
            pipeline_name: "p".into(),
            pipeline_version: "v1".into(),
            status: "running".into(),
            start_time: "2026-12-02T09:00:00.000000Z".into(),
            end_time: None,
            duration_ms: None,
            total_cost: None,
            total_tokens: None,
            n_steps: None,
            input_blob: Some("1".into()),
            output_blob: None,
            final_context_blob: None,
            error_blob: None,
            writer: None,
            trace_id: None,
        })
    }

    fn run_end(id: &str) -> Row {
        Row::RunEnd {
            run_id: id.to_owned(),
            end: RunEnd {
                status: "completed".into(),
                end_time: "2026-12-02T09:00:01.000000Z".into(),
                duration_ms: Some(1000),
                total_cost: Some(0.5),
                total_tokens: Some(7),
                output_blob: Some("2".into()),
                output_step_run_id: None,
                final_context_blob: Some("{}".into()),
                error_blob: None,
                trace_id: None,
            },
        }
    }

    fn step_start(run: &str, step: &str, index: i64) -> Row {
        Row::StepStart(StepRecord {
            step_run_id: step.to_owned(),
            run_id: run.to_owned(),
            parent_step_run_id: None,
            step_name: format!("s{index}"),
            step_index: index,
            step_kind: Some("step".into()),
            status: "running".into(),
            attempts: None,
            start_time: "2026-12-02T09:00:00.100000Z".into(),
            end_time: None,
            duration_ms: None,
            cost: None,
            tokens: None,
            input_blob: Some("1".into()),
            output_blob: None,
            error_blob: None,
            fallback_taken: None,
        })
    }

    fn step_end(step: &str) -> Row {
        Row::StepEnd(StepClose {
            step_run_id: step.to_owned(),
            status: "completed".into(),
            attempts: Some(1),
            end_time: "2026-12-02T09:00:00.200000Z".into(),
            duration_ms: Some(100),
            output_blob: Some("2".into()),
            ..StepClose::default()
        })
    }

    /// `status|n_steps|output` of a run, and `status` of its steps in execution order.
    fn stored(server: &TestServer, db: &str, run: &str) -> (String, String) {
        let run_row = server.psql(
            db,
            &format!(
                "SELECT status || '|' || coalesce(n_steps::text, '-') || '|' || \
                 coalesce(output_blob, '-') FROM runs WHERE run_id = '{run}'"
            ),
        );
        let steps = server.psql(
            db,
            &format!(
                "SELECT string_agg(step_name || ':' || status, ',' ORDER BY seq) FROM steps \
                 WHERE run_id = '{run}'"
            ),
        );
        (run_row.trim().to_owned(), steps.trim().to_owned())
    }

    /// A sink for `uri` with no writer identity (so no heartbeat).
    fn sink_for(uri: &str, access: Access) -> PostgresSink {
        let heartbeat = Heartbeat {
            interval: Duration::from_secs(5),
            missed: 6,
        };
        PostgresSink::new(PostgresUri::parse(uri).unwrap(), access, None, heartbeat).unwrap()
    }

    /// `synchronous_commit` as the sink's own session sees it.
    fn session_synchronous_commit(uri: &str, access: Access) -> String {
        let mut sink = sink_for(uri, access);
        let connection = sink.connection().unwrap();
        let row = connection
            .client
            .query_one("SHOW synchronous_commit", &[])
            .unwrap();
        row.get(0)
    }

    #[test]
    fn the_recorder_commits_asynchronously_and_the_uri_or_the_importer_can_flush() {
        let server = TestServer::get();
        let uri = server.create_database("durability");
        // the server's own setting, as the other sessions see it
        assert_eq!(
            server.psql("postgres", "SHOW synchronous_commit").trim(),
            "on"
        );
        assert_eq!(session_synchronous_commit(&uri, Access::Record), "off");
        assert_eq!(session_synchronous_commit(&uri, Access::Import), "on");
        let asked = format!("{uri}?options=-c%20synchronous_commit%3Dlocal");
        assert_eq!(session_synchronous_commit(&asked, Access::Record), "local");
    }

    #[test]
    fn batches_find_their_rows_by_key_on_tables_never_analyzed() {
        let server = TestServer::get();
        let uri = server.create_database("by_key");
        let db = uri.rsplit('/').next().unwrap().to_owned();
        let mut sink = sink_for(&uri, Access::Record);
        // each run split over two batches, as a run longer than the flush interval is: the
        // second updates rows of the first (3,000 runs: with the server's planner defaults, the
        // plans read both tables whole from about 2,500 runs on)
        for r in 0..3000 {
            let run = format!("r{r:04}");
            let step = |i: usize| format!("{run}-s{i}");
            let mut first = vec![run_start(&run)];
            for i in 0..4 {
                first.push(step_start(&run, &step(i), i as i64));
                first.push(step_end(&step(i)));
            }
            first.push(step_start(&run, &step(4), 4));
            assert_eq!(sink.write_batch(&first).unwrap(), 0);
            assert_eq!(
                sink.write_batch(&[step_end(&step(4)), run_end(&run)])
                    .unwrap(),
                0
            );
        }
        // the session's counters are flushed before it answers this
        let connection = sink.connection().unwrap();
        connection
            .client
            .query_one("SELECT pg_stat_force_next_flush()", &[])
            .unwrap();
        connection.client.query_one("SELECT 1", &[]).unwrap();
        let scans = server.psql(
            &db,
            "SELECT string_agg(relname || '=' || seq_scan || '/' || seq_tup_read, ' ' \
             ORDER BY relname) FROM pg_stat_user_tables WHERE relname IN ('runs', 'steps')",
        );
        let analyzed = server.psql(
            &db,
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname IN ('runs', 'steps') \
             AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)",
        );
        assert_eq!(analyzed, "0", "the tables were analyzed meanwhile: {scans}");
        // a sequential scan of a table holding rows would read them: none may have
        for table in scans.split(' ') {
            let (name, counts) = table.split_once('=').unwrap();
            let (_, read) = counts.split_once('/').unwrap();
            assert_eq!(read, "0", "{name} was read whole by a batch: {scans}");
        }
        assert!(
            scans.contains("runs=") && scans.contains("steps="),
            "{scans}"
        );
    }

    #[test]
    fn batches_merge_split_and_replay_to_the_same_rows() {
        let server = TestServer::get();
        let uri = server.create_database("batch");
        let db = uri.rsplit('/').next().unwrap().to_owned();
        let mut sink = sink_for(&uri, Access::Record);

        // a run split over two batches, with steps on both sides of the split
        let first = vec![
            run_start("a"),
            step_start("a", "a1", 0),
            step_end("a1"),
            step_start("a", "a2", 1),
        ];
        let second = vec![
            step_end("a2"),
            step_start("a", "a3", 2),
            step_end("a3"),
            run_end("a"),
        ];
        assert_eq!(sink.write_batch(&first).unwrap(), 0);
        assert_eq!(
            stored(server, &db, "a"),
            ("running|-|-".into(), "s0:completed,s1:running".into())
        );
        assert_eq!(sink.write_batch(&second).unwrap(), 0);
        let done = (
            "completed|3|2".to_owned(),
            "s0:completed,s1:completed,s2:completed".to_owned(),
        );
        assert_eq!(stored(server, &db, "a"), done);
        // the second batch again (its commit's answer lost), then both as one retried batch
        assert_eq!(sink.write_batch(&second).unwrap(), 0);
        assert_eq!(stored(server, &db, "a"), done);
        let both: Vec<Row> = first.iter().chain(&second).cloned().collect();
        assert_eq!(sink.write_batch(&both).unwrap(), 0);
        assert_eq!(stored(server, &db, "a"), done);
        // a start written again never takes a finished run back
        assert_eq!(sink.write_batch(&first).unwrap(), 0);
        assert_eq!(stored(server, &db, "a"), done);

        // only the start committed, then everything retried as one batch: the merged row
        // brings the run up to date
        let first_b = vec![run_start("b"), step_start("b", "b1", 0)];
        assert_eq!(sink.write_batch(&first_b).unwrap(), 0);
        let all_b = vec![
            run_start("b"),
            step_start("b", "b1", 0),
            step_end("b1"),
            step_start("b", "b2", 1),
            step_end("b2"),
            run_end("b"),
        ];
        assert_eq!(sink.write_batch(&all_b).unwrap(), 0);
        assert_eq!(
            stored(server, &db, "b"),
            ("completed|2|2".into(), "s0:completed,s1:completed".into())
        );

        // a whole run in one batch is two inserts
        let c = vec![
            run_start("c"),
            step_start("c", "c1", 0),
            step_end("c1"),
            run_end("c"),
        ];
        assert_eq!(sink.write_batch(&c).unwrap(), 0);
        assert_eq!(
            stored(server, &db, "c"),
            ("completed|1|2".into(), "s0:completed".into())
        );

        // ends whose rows were never written are counted, and the rest of the batch lands
        let orphans = vec![step_end("nowhere"), run_end("missing"), run_start("d")];
        assert_eq!(sink.write_batch(&orphans).unwrap(), 2);
        assert_eq!(
            stored(server, &db, "d"),
            ("running|-|-".into(), String::new())
        );
    }
}
