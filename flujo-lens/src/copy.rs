//! `flujo lens copy --to postgres://...`: every run of the local SQLite database, with its
//! steps, copied into a PostgreSQL store, oldest first, in transactions of about a thousand
//! rows. The source is opened read-only; the importer's writes are idempotent (see
//! `PostgresImporter`), so running the copy again finishes an interrupted one.

use std::io::Write;
use std::time::{Duration, Instant};

use flujo_trace_postgres::PostgresImporter;
use flujo_trace_sqlite::{RunReader, RunRecord, SqliteReader, StepRecord, CRASHED};
use serde::Serialize;

use crate::config::{Config, CopyConfig, Format, Store};
use crate::error::LensError;
use crate::json;
use crate::text::thousands;
use crate::Environment;

/// Rows (runs and steps) written in one transaction, at most (a run's steps stay together).
const BATCH_ROWS: usize = 1_000;
/// Payload bytes in one transaction, at most (one large run may exceed it alone).
const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Serialize)]
struct CopyJson {
    runs_copied: u64,
    steps_copied: u64,
    unfinished: u64,
}

/// What is gathered for the next transaction.
#[derive(Default)]
struct Batch {
    runs: Vec<RunRecord>,
    steps: Vec<StepRecord>,
    bytes: usize,
}

pub(crate) fn run(
    config: &Config,
    copy: &CopyConfig,
    env: &Environment,
    stderr: &mut dyn Write,
    out: &mut dyn Write,
) -> Result<(), LensError> {
    let Store::Sqlite(state) = &config.store else {
        return Err(LensError::Usage(format!(
            "flujo lens copy copies from a local SQLite database; {} is already PostgreSQL: \
             point --state-uri at the flujo_ops.db to copy",
            config.store.name()
        )));
    };
    let source = SqliteReader::open(&state.path)?;
    let total = source.run_count()?;
    let mut importer = PostgresImporter::open(&copy.to)?;
    let show_progress = env.stderr_is_terminal;
    let mut last_progress = Instant::now();
    let (mut runs_copied, mut steps_copied, mut unfinished) = (0u64, 0u64, 0u64);
    let mut batch = Batch::default();
    let flush = |batch: &mut Batch, importer: &mut PostgresImporter| -> Result<u64, LensError> {
        let runs = batch.runs.len() as u64;
        importer.import(&batch.runs, &batch.steps)?;
        *batch = Batch::default();
        Ok(runs)
    };
    source.for_each_run(|mut run: RunRecord| -> Result<(), LensError> {
        if run.status == "running" || run.status == CRASHED {
            unfinished += 1;
            // copied as stored: PostgreSQL readers judge the writer themselves
            run.status = "running".to_owned();
        }
        batch.bytes += payload_bytes_of_run(&run);
        source.for_each_run_step(&run.run_id, |step| -> Result<(), LensError> {
            batch.bytes += [&step.input_blob, &step.output_blob, &step.error_blob]
                .iter()
                .map(|blob| blob.as_ref().map_or(0, String::len))
                .sum::<usize>();
            batch.steps.push(step);
            Ok(())
        })?;
        batch.runs.push(run);
        if batch.runs.len() + batch.steps.len() >= BATCH_ROWS || batch.bytes >= BATCH_BYTES {
            steps_copied += batch.steps.len() as u64;
            runs_copied += flush(&mut batch, &mut importer)?;
            if show_progress && last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = Instant::now();
                let _ = write!(
                    stderr,
                    "\rcopying: {} of {} runs",
                    thousands(runs_copied),
                    thousands(total)
                );
                let _ = stderr.flush();
            }
        }
        Ok(())
    })?;
    steps_copied += batch.steps.len() as u64;
    runs_copied += flush(&mut batch, &mut importer)?;
    if show_progress {
        let _ = write!(stderr, "\r\x1b[2K");
    }
    match config.format {
        Format::Table => {
            writeln!(
                out,
                "copied {} runs and {} steps from {} to {}",
                thousands(runs_copied),
                thousands(steps_copied),
                state.path.display(),
                copy.to
            )?;
            if unfinished > 0 {
                writeln!(
                    out,
                    "{} of them had not ended (running, or crashed): copy again once they end \
                     to bring them up to date",
                    thousands(unfinished)
                )?;
            }
        }
        Format::Json | Format::Jsonl => json::write_line(
            out,
            &CopyJson {
                runs_copied,
                steps_copied,
                unfinished,
            },
        )?,
    }
    if runs_copied == 0 {
        return Err(LensError::NothingFound(format!(
            "no runs recorded in {} yet: nothing copied",
            state.path.display()
        )));
    }
    Ok(())
}

fn payload_bytes_of_run(run: &RunRecord) -> usize {
    [
        &run.input_blob,
        &run.output_blob,
        &run.final_context_blob,
        &run.error_blob,
    ]
    .iter()
    .map(|blob| blob.as_ref().map_or(0, String::len))
    .sum()
}
