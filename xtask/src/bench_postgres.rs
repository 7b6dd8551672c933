//! `cargo xtask bench postgres`: the PostgreSQL store beside SQLite, measured side by side in one
//! invocation: writer throughput from several processes, the overhead of recording a typical
//! pipeline, and whole `flujo lens` processes over a large history.
//!
//! The server is this bench's own (`flujo_test_postgres::TestServer::start_persistent`): started
//! here, stopped at the end, listening on 127.0.0.1 only, with PostgreSQL's default durability
//! (`fsync` and `synchronous_commit` on; the test suite's server runs with `fsync=off`, which
//! would flatter every figure). Its data directory is kept under `target/bench/postgres/`, so
//! the lens database (a copy of `bench lens`'s `target/bench/lens-N.db`, made with
//! `flujo lens copy`) is seeded once and reused; the writer and overhead databases are made
//! afresh for each measurement and dropped after it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use flujo::{BareFlujo, Flujo, Persistence, PostgresLayer, SqliteLayer};
use flujo_test_postgres::TestServer;
use serde::Serialize;
use tracing::instrument::WithSubscriber;
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

use crate::bench_overhead::{median, noop, payload, since_last_step, typical, us, Payload};
use crate::seed;

#[derive(clap::Args)]
pub(crate) struct PostgresArgs {
    /// Rounds of the overhead comparison; each runs every mode, in alternating order.
    #[arg(long, default_value_t = 15)]
    rounds: usize,
    /// Runs in the lens databases (SQLite and PostgreSQL; seeded once, then reused).
    #[arg(long, default_value_t = 1_000_000)]
    runs: u64,
    /// Runs of the typical pipeline per round and mode.
    #[arg(long, default_value_t = 20)]
    typical_runs: usize,
    /// Runs of the no-work pipeline per round and mode (each waiting for its commit).
    #[arg(long, default_value_t = 200)]
    noop_runs: usize,
    /// Runs of 10 no-work steps each writer process records per burst, tiny payloads.
    #[arg(long, default_value_t = 10_000)]
    writer_runs: usize,
    /// The same with ~1 KB payloads (fewer: they fill the disk ten times faster).
    #[arg(long, default_value_t = 2_500)]
    writer_runs_1k: usize,
    /// Bursts of each writer case; the figure is their median.
    #[arg(long, default_value_t = 3)]
    bursts: usize,
    /// Processes timed per lens command and store.
    #[arg(long, default_value_t = 21)]
    iterations: usize,
    /// Only these parts (default: all three).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
}

/// The parts of the bench, for `--only`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    /// Writer throughput from several processes.
    Writer,
    /// Overhead of recording a typical pipeline.
    Overhead,
    /// Whole `flujo lens` processes over a large history.
    Lens,
}

#[derive(clap::Args)]
pub(crate) struct WriterChildArgs {
    /// A `postgres://` URI, or the path of a SQLite file.
    #[arg(long)]
    store: String,
    /// Runs of 10 no-work steps recorded after the start signal.
    #[arg(long)]
    runs: usize,
    /// `tiny` (a number) or `1k` (about 1 KB of JSON).
    #[arg(long)]
    payload: String,
}

/// Runs each writer process records before it says it is ready: the connection, the schema
/// (created once under an advisory lock, whoever comes first) and the prepared statements are
/// in place before the clock starts. They are counted in the database, not in the figure.
const WARMUP_RUNS: usize = 20;
/// Threads (tokio tasks on a multi-thread runtime) running pipelines in each writer process, as
/// `bench overhead`'s burst.
const WRITER_TASKS: usize = 2;
/// Writer processes sharing one PostgreSQL database: the case.
const FLEET: usize = 4;
use crate::bench_overhead::STEPS;
/// What `cargo xtask seed` stores per run in SQLite (measured: 108 MiB for 10,000 runs, 11.1 GiB
/// for 1,000,000), to tell before seeding whether the disk can hold it.
const SQLITE_BYTES_PER_RUN: u64 = 12_000;
/// Room kept for PostgreSQL's WAL while copying: `max_wal_size` is 1 GiB by default.
const WAL_ROOM: u64 = 1 << 30;

fn median_f64(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The durability barrier of either store's layer.
#[derive(Clone)]
enum Handle {
    Sqlite(flujo::SqliteHandle),
    Postgres(flujo::PostgresHandle),
}

impl Handle {
    async fn flush(&self) {
        match self {
            Handle::Sqlite(handle) => drop(handle.flush().await),
            Handle::Postgres(handle) => drop(handle.flush().await),
        }
    }

    fn rows_not_recorded(&self) -> u64 {
        match self {
            Handle::Sqlite(handle) => handle.rows_not_recorded(),
            Handle::Postgres(handle) => handle.rows_not_recorded(),
        }
    }
}

/// A `Registry` with the default layer (the options a user gets) of the store: a `postgres://`
/// URI or a SQLite file.
fn recording_dispatch(store: &str) -> Result<(Dispatch, Handle)> {
    if store.starts_with("postgres://") {
        let layer = PostgresLayer::builder()
            .open(store)
            .context("opening the PostgreSQL store")?;
        let handle = Handle::Postgres(layer.handle());
        Ok((
            Dispatch::new(tracing_subscriber::registry().with(layer)),
            handle,
        ))
    } else {
        let layer = SqliteLayer::builder()
            .open(store)
            .with_context(|| format!("opening {store}"))?;
        let handle = Handle::Sqlite(layer.handle());
        Ok((
            Dispatch::new(tracing_subscriber::registry().with(layer)),
            handle,
        ))
    }
}

/// Per-run wall times of `runs` runs of `flujo` under `dispatch` (as `bench overhead`'s), each
/// with the part of it after the last step's work (zero but for the typical pipeline).
async fn time_runs<I, O>(
    flujo: &Flujo<I, O>,
    dispatch: &Dispatch,
    runs: usize,
    input: &I,
) -> Vec<(Duration, Duration)>
where
    I: Serialize + Clone + Send + 'static,
    O: Serialize + Send + 'static,
{
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let input = input.clone();
        let started = Instant::now();
        let result = flujo.run(input).with_subscriber(dispatch.clone()).await;
        let returned = Instant::now();
        times.push((returned - started, since_last_step(returned)));
        assert!(
            result.is_completed(),
            "benchmark pipeline failed: {:?}",
            result.error
        );
    }
    times
}

/// The bench's server and what it says about itself.
struct Server {
    server: TestServer,
    /// `target/bench/postgres`, where the data directory is kept.
    dir: PathBuf,
}

impl Server {
    fn start() -> Server {
        let dir = crate::workspace_root().join("target/bench/postgres");
        eprintln!("bench postgres: starting the server in {}", dir.display());
        Server {
            server: TestServer::start_persistent(&dir),
            dir,
        }
    }

    fn psql(&self, database: &str, sql: &str) -> String {
        self.server.psql(database, sql)
    }

    fn uri(&self, database: &str) -> String {
        self.server.superuser_uri(database)
    }

    /// An empty database named `name`, dropped first if it exists.
    fn fresh_database(&self, name: &str) -> String {
        self.drop_database(name);
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.uri(name)
    }

    /// Drops `name` (and any connection still open to it).
    fn drop_database(&self, name: &str) {
        self.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
    }

    fn database_exists(&self, name: &str) -> bool {
        self.psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
        ) == "1"
    }
}

pub(crate) fn run(args: &PostgresArgs) -> Result<()> {
    anyhow::ensure!(
        args.rounds > 0 && args.bursts > 0 && args.iterations > 0,
        "--rounds, --bursts and --iterations must be at least 1"
    );
    let part = |part: Part| args.only.is_empty() || args.only.contains(&part);
    // the SQLite lens database first: seeding it is the longest step and needs no server
    let lens_inputs = if part(Part::Lens) {
        Some((crate::build_flujo_binary()?, sqlite_lens_db(args.runs)?))
    } else {
        None
    };

    let server = Server::start();
    let facts = server.psql(
        "postgres",
        "SELECT current_setting('server_version') || '|' || current_setting('synchronous_commit') \
         || '|' || current_setting('fsync') || '|' || current_setting('wal_sync_method') || '|' \
         || current_setting('full_page_writes') || '|' || current_setting('shared_buffers')",
    );
    let facts: Vec<&str> = facts.split('|').collect();
    let [version, synchronous_commit, fsync, wal_sync, full_page_writes, shared_buffers] =
        facts[..]
    else {
        bail!("unexpected answer to the settings query: {facts:?}");
    };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "flujo bench postgres: PostgreSQL beside SQLite, measured side by side in one invocation"
    );
    println!(
        "machine: {cores} cores, {:.0} GiB RAM; PostgreSQL {version} on 127.0.0.1 (this bench's \
         own server, data in {})",
        mem_total_gib(),
        crate::shown_path(&server.dir)
    );
    println!(
        "durability: PostgreSQL synchronous_commit={synchronous_commit} fsync={fsync} \
         wal_sync_method={wal_sync} full_page_writes={full_page_writes} \
         shared_buffers={shared_buffers} (the server's settings; flujo's recorder sessions set \
         synchronous_commit=off unless the URI's options say otherwise); SQLite WAL with \
         synchronous=NORMAL (commits are not fsynced, checkpoints are)"
    );

    if part(Part::Writer) {
        writer_throughput(&server, args)?;
    }
    if part(Part::Overhead) {
        overhead(&server, args)?;
    }
    if let Some((flujo_bin, sqlite_db)) = &lens_inputs {
        lens(&server, args, flujo_bin, sqlite_db)?;
    }

    println!();
    println!(
        "disk: {:.1} MiB under {} after the run, of which {:.1} MiB of WAL (recycled, bounded by \
         max_wal_size); the lens database is kept, the others dropped",
        mib(disk_bytes(&server.dir)),
        crate::shown_path(&server.dir),
        mib(disk_bytes(&server.dir.join("data/pg_wal")))
    );
    drop(server);
    Ok(())
}

/// Total RAM from `/proc/meminfo`, in GiB (0 when it cannot be read).
fn mem_total_gib() -> f64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / (1024.0 * 1024.0))
}

/// Bytes a directory takes on disk (allocated blocks, as `du`), following no symlinks.
fn disk_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                total += disk_bytes(&entry.path());
            }
        }
    }
    total
}

/// Bytes free for this user on the file system holding `path` (`df`), if it can be told.
fn free_bytes(path: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(path).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: u64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

// ---------------------------------------------------------------------------------------------
// 1. writer throughput

/// Where one writer case records.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `processes` processes into one PostgreSQL database.
    Postgres,
    /// `processes` processes, each into a SQLite file of its own.
    Sqlite,
}

struct WriterCase {
    label: &'static str,
    target: Target,
    processes: usize,
    tiny: Vec<f64>,
    kb: Vec<f64>,
}

fn writer_throughput(server: &Server, args: &PostgresArgs) -> Result<()> {
    let exe = std::env::current_exe()?;
    let files = tempfile::tempdir()?;
    let mut cases = [
        WriterCase {
            label: "PostgreSQL, 4 processes into one database",
            target: Target::Postgres,
            processes: FLEET,
            tiny: vec![],
            kb: vec![],
        },
        WriterCase {
            label: "PostgreSQL, 1 process",
            target: Target::Postgres,
            processes: 1,
            tiny: vec![],
            kb: vec![],
        },
        WriterCase {
            label: "SQLite, 1 process (as bench overhead)",
            target: Target::Sqlite,
            processes: 1,
            tiny: vec![],
            kb: vec![],
        },
        WriterCase {
            label: "SQLite, 4 processes into 4 files",
            target: Target::Sqlite,
            processes: FLEET,
            tiny: vec![],
            kb: vec![],
        },
    ];
    let n = cases.len();
    for burst in 0..args.bursts {
        // alternate the order, so drift in the machine's load hits every case alike
        let order: Vec<usize> = if burst % 2 == 0 {
            (0..n).collect()
        } else {
            (0..n).rev().collect()
        };
        for &i in &order {
            for tiny in [true, false] {
                let case = &mut cases[i];
                let (payload, runs) = if tiny {
                    ("tiny", args.writer_runs)
                } else {
                    ("1k", args.writer_runs_1k)
                };
                eprintln!(
                    "bench postgres: writer burst {}/{}: {}, {payload} payloads",
                    burst + 1,
                    args.bursts,
                    case.label
                );
                let rate = writer_burst(server, &exe, files.path(), case, runs, payload)?;
                if tiny {
                    case.tiny.push(rate);
                } else {
                    case.kb.push(rate);
                }
            }
        }
    }
    println!();
    println!(
        "writer: no-work steps committed per second, from the start signal to the last process's \
         final commit; {WRITER_TASKS} threads per process, {} runs of {STEPS} steps per process \
         with tiny payloads, {} with ~1 KB; median (min-max) of {} bursts, each into a fresh \
         database, every run and step counted there afterwards",
        args.writer_runs, args.writer_runs_1k, args.bursts
    );
    println!(
        "  {:<44} {:>24} {:>24}",
        "", "tiny payloads", "~1 KB payloads"
    );
    for case in &cases {
        let goal = if case.target == Target::Postgres && case.processes == FLEET {
            "   (goal >= 50,000 tiny)"
        } else {
            ""
        };
        println!(
            "  {:<44} {:>24} {:>24}{goal}",
            case.label,
            rate_cell(&case.tiny),
            rate_cell(&case.kb)
        );
    }
    Ok(())
}

fn rate_cell(rates: &[f64]) -> String {
    let min = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rates.iter().copied().fold(0.0, f64::max);
    format!("{:.0} ({:.0}-{:.0})", median_f64(rates.to_vec()), min, max)
}

/// One burst of `case`: fresh stores, the processes started and warmed up, then told to go at
/// once; returns the steps committed per second after the signal. Fails unless every run and
/// step of every process is in the store(s) afterwards.
fn writer_burst(
    server: &Server,
    exe: &Path,
    files: &Path,
    case: &WriterCase,
    runs: usize,
    payload: &str,
) -> Result<f64> {
    const DB: &str = "bench_writer";
    let stores: Vec<String> = match case.target {
        Target::Postgres => {
            let uri = server.fresh_database(DB);
            vec![uri; case.processes]
        }
        Target::Sqlite => (0..case.processes)
            .map(|i| {
                let path = files.join(format!("writer-{i}.db"));
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = path.as_os_str().to_owned();
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
                path.to_string_lossy().into_owned()
            })
            .collect(),
    };
    let elapsed = run_writers(exe, &stores, runs, payload)?;
    // every process's runs and steps, warm-up included, must be there
    let per_process = (WARMUP_RUNS + runs) as u64;
    let expected_runs = per_process * case.processes as u64;
    let (found_runs, found_steps) = match case.target {
        Target::Postgres => {
            let counts = server.psql(
                DB,
                "SELECT (SELECT count(*) FROM runs WHERE status = 'completed') || '|' || \
                 (SELECT count(*) FROM steps WHERE status = 'completed')",
            );
            server.drop_database(DB);
            parse_counts(&counts)?
        }
        Target::Sqlite => {
            let (mut runs_found, mut steps_found) = (0, 0);
            for store in &stores {
                let conn = rusqlite::Connection::open_with_flags(
                    store,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )?;
                runs_found += conn.query_row(
                    "SELECT count(*) FROM runs WHERE status = 'completed'",
                    [],
                    |row| row.get::<_, i64>(0),
                )? as u64;
                steps_found += conn.query_row(
                    "SELECT count(*) FROM steps WHERE status = 'completed'",
                    [],
                    |row| row.get::<_, i64>(0),
                )? as u64;
                drop(conn);
                for suffix in ["", "-wal", "-shm"] {
                    let mut file = std::ffi::OsString::from(store);
                    file.push(suffix);
                    let _ = std::fs::remove_file(file);
                }
            }
            (runs_found, steps_found)
        }
    };
    if found_runs != expected_runs || found_steps != expected_runs * STEPS as u64 {
        bail!(
            "{} ({payload} payloads): expected {expected_runs} completed runs and {} completed \
             steps in the store, found {found_runs} runs and {found_steps} steps",
            case.label,
            expected_runs * STEPS as u64
        );
    }
    let timed_steps = (runs * case.processes * STEPS) as f64;
    Ok(timed_steps / elapsed.as_secs_f64())
}

fn parse_counts(counts: &str) -> Result<(u64, u64)> {
    let (runs, steps) = counts
        .split_once('|')
        .with_context(|| format!("unexpected count answer {counts:?}"))?;
    Ok((runs.trim().parse()?, steps.trim().parse()?))
}

/// Starts one writer process per store, waits until each is ready, tells them all to go and
/// returns the time until the last one has committed everything.
fn run_writers(exe: &Path, stores: &[String], runs: usize, payload: &str) -> Result<Duration> {
    let mut children: Vec<Child> = Vec::new();
    for store in stores {
        let child = Command::new(exe)
            .args(["postgres-writer-child", "--store", store])
            .args(["--runs", &runs.to_string(), "--payload", payload])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting a writer process")?;
        children.push(child);
    }
    // a child that fails closes its stdout (we bail); the others see their stdin closed when
    // `children` is dropped, and exit
    let mut outputs: Vec<BufReader<ChildStdout>> = Vec::new();
    for child in &mut children {
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        expect_line(&mut out, "ready")?;
        outputs.push(out);
    }
    let started = Instant::now();
    for child in &mut children {
        child
            .stdin
            .as_mut()
            .expect("piped stdin")
            .write_all(b"go\n")?;
    }
    for out in &mut outputs {
        expect_line(out, "done")?;
    }
    let elapsed = started.elapsed();
    for mut child in children {
        drop(child.stdin.take());
        let status = child.wait()?;
        if !status.success() {
            bail!("a writer process failed with {status}");
        }
    }
    Ok(elapsed)
}

fn expect_line(out: &mut impl BufRead, expected: &str) -> Result<()> {
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.trim() != expected {
        bail!("a writer process said {line:?}, not {expected:?} (its error is above)");
    }
    Ok(())
}

/// One writer process of the throughput burst: records `WARMUP_RUNS` runs, says `ready`, waits
/// for `go` on stdin, records `--runs` runs from `WRITER_TASKS` tasks, waits until they are
/// committed and says `done`.
pub(crate) fn writer_child(args: &WriterChildArgs) -> Result<()> {
    let (dispatch, handle) = recording_dispatch(&args.store)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let burst = |runs: usize| {
        let dispatch = dispatch.clone();
        let handle = handle.clone();
        let tiny = match args.payload.as_str() {
            "tiny" => true,
            "1k" => false,
            other => bail!("--payload is tiny or 1k, not {other}"),
        };
        runtime.block_on(async move {
            if tiny {
                writer_tasks(&dispatch, runs, |i| i as u64).await;
            } else {
                writer_tasks(&dispatch, runs, |i| Payload {
                    step: i as u64,
                    ..payload()
                })
                .await;
            }
            handle.flush().await;
        });
        Ok(())
    };
    burst(WARMUP_RUNS)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line)? == 0 || line.trim() != "go" {
        bail!("the bench went away before the start signal");
    }
    burst(args.runs)?;
    if handle.rows_not_recorded() > 0 {
        bail!("{} rows were not recorded", handle.rows_not_recorded());
    }
    writeln!(stdout, "done")?;
    stdout.flush()?;
    Ok(())
}

/// `runs` runs of the no-work pipeline from `WRITER_TASKS` tasks, inputs made by `input`.
async fn writer_tasks<T, F>(dispatch: &Dispatch, runs: usize, input: F)
where
    T: Serialize + Send + 'static,
    F: Fn(usize) -> T + Send + Sync + Copy + 'static,
{
    let bare = Arc::new(BareFlujo::new("bench-writer", noop::<T>()));
    let tasks: Vec<_> = (0..WRITER_TASKS)
        .map(|task| {
            let bare = bare.clone();
            // task t runs t, t + TASKS, ...: `runs` in all
            let mine = (task..runs).step_by(WRITER_TASKS).count();
            tokio::spawn(
                async move {
                    for i in 0..mine {
                        let result = bare.run(input(i)).await;
                        assert!(result.is_completed(), "writer pipeline failed");
                    }
                }
                .with_subscriber(dispatch.clone()),
            )
        })
        .collect();
    for task in tasks {
        task.await.expect("writer task panicked");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. overhead of a typical pipeline

fn overhead(server: &Server, args: &PostgresArgs) -> Result<()> {
    eprintln!("bench postgres: overhead, {} rounds", args.rounds);
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // what each mode records into, and its handle (`None`: recording off)
    let sqlite_typical = dir.path().join("typical.db").to_string_lossy().into_owned();
    let sqlite_noop = dir.path().join("noop.db").to_string_lossy().into_owned();
    let pg_async = server.fresh_database("bench_typical");
    let pg_sync = format!(
        "{}?options=-c%20synchronous_commit%3Don",
        server.fresh_database("bench_typical_sync")
    );
    struct Mode {
        label: &'static str,
        typical: Option<(Dispatch, Handle)>,
        noop: Option<(Dispatch, Handle)>,
        times: Vec<(Duration, Duration)>,
        noop_times: Vec<(Duration, Duration)>,
    }
    let mode = |label, typical: Option<&str>, noop: Option<&str>| -> Result<Mode> {
        Ok(Mode {
            label,
            typical: typical.map(recording_dispatch).transpose()?,
            noop: noop.map(recording_dispatch).transpose()?,
            times: vec![],
            noop_times: vec![],
        })
    };
    let mut modes = vec![
        mode("off", None, None)?,
        mode("SQLite", Some(&sqlite_typical), Some(&sqlite_noop))?,
        mode("PostgreSQL", Some(&pg_async), Some(&pg_async))?,
        mode(
            "PostgreSQL, commits flushed",
            Some(&pg_sync),
            Some(&pg_sync),
        )?,
    ];
    let typical_on = Flujo::new("bench-typical", typical());
    let typical_off =
        Flujo::new("bench-typical", typical()).with_persistence(Persistence::Disabled);
    let noop_on = Flujo::new("bench-noop", noop::<u64>());
    let noop_off = Flujo::new("bench-noop", noop::<u64>()).with_persistence(Persistence::Disabled);
    let off = Dispatch::none();
    let input = payload();
    let (tr, nr) = (args.typical_runs, args.noop_runs);
    const WARMUP_TYPICAL: usize = 3;
    const WARMUP_NOOP: usize = 50;
    runtime.block_on(async {
        // warm-up, not counted: connections, schemas, statements
        for mode in &modes {
            if let (Some((typical, _)), Some((noop, _))) = (&mode.typical, &mode.noop) {
                time_runs(&typical_on, typical, WARMUP_TYPICAL, &input).await;
                time_runs(&noop_on, noop, WARMUP_NOOP, &0).await;
            }
        }
        for round in 0..args.rounds {
            let mut order: Vec<usize> = (0..modes.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for &i in &order {
                let mode = &mut modes[i];
                let times = match &mode.typical {
                    Some((dispatch, _)) => time_runs(&typical_on, dispatch, tr, &input).await,
                    None => time_runs(&typical_off, &off, tr, &input).await,
                };
                mode.times.extend(times);
            }
            for &i in order.iter().rev() {
                let mode = &mut modes[i];
                let times = match &mode.noop {
                    Some((dispatch, _)) => time_runs(&noop_on, dispatch, nr, &0).await,
                    None => time_runs(&noop_off, &off, nr, &0).await,
                };
                mode.noop_times.extend(times);
            }
        }
    });
    for mode in &modes {
        for (_, handle) in mode.typical.iter().chain(&mode.noop) {
            if handle.rows_not_recorded() > 0 {
                bail!(
                    "{}: {} rows were not recorded",
                    mode.label,
                    handle.rows_not_recorded()
                );
            }
        }
    }
    // every run the barrier answered for is in the database
    let expected_runs = (args.rounds * (tr + nr) + WARMUP_TYPICAL + WARMUP_NOOP) as u64;
    for db in ["bench_typical", "bench_typical_sync"] {
        let counts = server.psql(
            db,
            "SELECT (SELECT count(*) FROM runs WHERE status = 'completed') || '|' || \
             (SELECT count(*) FROM steps WHERE status = 'completed')",
        );
        let (found_runs, found_steps) = parse_counts(&counts)?;
        if found_runs != expected_runs || found_steps != expected_runs * STEPS as u64 {
            bail!(
                "overhead: expected {expected_runs} runs and {} steps in PostgreSQL ({db}), \
                 found {found_runs} and {found_steps}",
                expected_runs * STEPS as u64
            );
        }
    }
    let total = |times: &[(Duration, Duration)]| median(times.iter().map(|t| t.0).collect());
    let after = |times: &[(Duration, Duration)]| median(times.iter().map(|t| t.1).collect());
    let before = |times: &[(Duration, Duration)]| median(times.iter().map(|t| t.0 - t.1).collect());
    let (off_total, off_before) = (total(&modes[0].times), before(&modes[0].times));
    let off_noop = total(&modes[0].noop_times);
    let pct = |on: Duration, off: Duration| (us(on) / us(off) - 1.0) * 100.0;
    println!();
    println!(
        "overhead: recording off, SQLite, PostgreSQL (flujo's default: the recorder's session \
         commits with synchronous_commit=off) and PostgreSQL with commits flushed (the URI's \
         options=-c synchronous_commit=on), {} alternating rounds, medians of per-run wall \
         time; each recorded run returns once its rows are committed",
        args.rounds
    );
    println!(
        "typical: {STEPS} steps, each awaiting ~1 ms and passing ~1 KB of JSON ({} runs per mode); \
         the run's time split at the end of the last step's work",
        args.rounds * tr
    );
    println!(
        "  {:<30} {:>12} {:>9}   {:>14} {:>9}   {:>14}",
        "mode", "us/run", "overhead", "up to the end", "overhead", "after it"
    );
    for mode in &modes {
        let (t, b, a) = (total(&mode.times), before(&mode.times), after(&mode.times));
        println!(
            "  {:<30} {:>12.1} {:>+8.2}%   {:>14.1} {:>+8.2}%   {:>14.1}",
            mode.label,
            us(t),
            pct(t, off_total),
            us(b),
            pct(b, off_before),
            us(a)
        );
    }
    println!("  (goal: overhead <= 5%, 2%)");
    println!(
        "worst case: {STEPS} steps that do no work ({} runs per mode)",
        args.rounds * nr
    );
    for mode in &modes {
        let t = total(&mode.noop_times);
        println!(
            "  {:<30} {:>12.1} us/run (+{:.1} us)",
            mode.label,
            us(t),
            us(t) - us(off_noop)
        );
    }
    drop(modes);
    server.drop_database("bench_typical");
    server.drop_database("bench_typical_sync");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 3. lens over a large history

/// `target/bench/lens-N.db`, seeded as `bench lens` does when it is missing.
fn sqlite_lens_db(runs: u64) -> Result<PathBuf> {
    let db = crate::workspace_root()
        .join("target/bench")
        .join(format!("lens-{runs}.db"));
    let existing = seed::count_runs(&db).unwrap_or(0);
    if existing < runs {
        if db.exists() {
            bail!(
                "{} holds {existing} runs, fewer than --runs {runs}: remove it",
                db.display()
            );
        }
        if let Some(dir) = db.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            // the seed, then its copy into PostgreSQL (about as large): both must fit
            let needed = runs * SQLITE_BYTES_PER_RUN * 2 + WAL_ROOM;
            if let Some(free) = free_bytes(dir) {
                if free < needed {
                    bail!(
                        "seeding {runs} runs needs about {:.0} MiB on disk ({} bytes a run in \
                         SQLite, as much again in PostgreSQL, and room for its WAL), and only \
                         {:.0} MiB are free under {}",
                        mib(needed),
                        SQLITE_BYTES_PER_RUN,
                        mib(free),
                        dir.display()
                    );
                }
            }
        }
        seed::run(&seed::SeedArgs::new(runs, db.clone()))?;
    }
    Ok(db)
}

/// Copies the SQLite lens database into `lens_N` with `flujo lens copy` unless it was done:
/// a marker table, written once the copy finished, says so (an interrupted copy is finished
/// by the next one, which writes nothing twice). Returns how long the copy took and when.
fn seed_postgres(
    server: &Server,
    flujo_bin: &Path,
    sqlite_db: &Path,
    runs: u64,
) -> Result<(String, f64, String)> {
    let db = format!("lens_{runs}");
    if !server.database_exists(&db) {
        server.psql("postgres", &format!("CREATE DATABASE {db}"));
    }
    let uri = server.uri(&db);
    let marker = "xtask_bench_seed";
    let seeded = server.psql(&db, &format!("SELECT to_regclass('{marker}') IS NOT NULL"));
    if seeded != "t" {
        let sqlite_bytes = std::fs::metadata(sqlite_db)?.len();
        let already = disk_bytes(&server.dir);
        if let Some(free) = free_bytes(&server.dir) {
            // the copy takes a little less than the SQLite file (0.88 of it at 10,000 runs),
            // and the WAL up to max_wal_size (1 GiB) meanwhile
            if free < sqlite_bytes + WAL_ROOM {
                bail!(
                    "copying {} ({:.0} MiB) into PostgreSQL needs about as much again and room \
                     for the WAL, and only {:.0} MiB are free (the data directory takes {:.0} MiB \
                     so far)",
                    sqlite_db.display(),
                    mib(sqlite_bytes),
                    mib(free),
                    mib(already)
                );
            }
        }
        eprintln!(
            "bench postgres: copying {} into PostgreSQL ({db}) with flujo lens copy",
            sqlite_db.display()
        );
        let started = Instant::now();
        crate::run_silently(
            Command::new(flujo_bin)
                .args(["lens", "--state-uri"])
                .arg(sqlite_db)
                .args(["copy", "--to", &uri])
                .stdout(Stdio::null()),
        )?;
        let copy_secs = started.elapsed().as_secs_f64();
        // what autovacuum does soon after a bulk insert, done now so every measurement sees
        // the same statistics and visibility map
        let started = Instant::now();
        server.psql(&db, "VACUUM (ANALYZE)");
        let vacuum_secs = started.elapsed().as_secs_f64();
        eprintln!(
            "bench postgres: copied in {copy_secs:.1} s, VACUUM (ANALYZE) in {vacuum_secs:.1} s"
        );
        server.psql(
            &db,
            &format!(
                "CREATE TABLE {marker} (source text, copy_seconds float8, vacuum_seconds float8, \
                 at timestamptz DEFAULT now()); INSERT INTO {marker} VALUES ('{}', {copy_secs}, \
                 {vacuum_secs})",
                sqlite_db.display()
            ),
        );
    }
    let seeded = server.psql(
        &db,
        &format!("SELECT copy_seconds || '|' || to_char(at, 'YYYY-MM-DD HH24:MI') FROM {marker}"),
    );
    let (secs, at) = seeded
        .split_once('|')
        .with_context(|| format!("unexpected marker {seeded:?}"))?;
    Ok((uri, secs.parse()?, at.to_owned()))
}

fn lens(server: &Server, args: &PostgresArgs, flujo_bin: &Path, sqlite_db: &Path) -> Result<()> {
    let (pg_uri, copy_secs, copied_at) = seed_postgres(server, flujo_bin, sqlite_db, args.runs)?;
    let pg_db = format!("lens_{}", args.runs);
    let n_sqlite = seed::count_runs(sqlite_db)?;
    let n_pg: u64 = server
        .psql(&pg_db, "SELECT count(*) FROM runs")
        .parse()
        .context("counting the PostgreSQL runs")?;
    if n_pg != n_sqlite {
        bail!("PostgreSQL holds {n_pg} runs, the SQLite database {n_sqlite}: they must match");
    }
    let pg_bytes: u64 = server
        .psql(&pg_db, "SELECT pg_database_size(current_database())")
        .parse()?;
    let sqlite_bytes = std::fs::metadata(sqlite_db)?.len();
    let (some_id, some_pipeline) = seed::sample_run(sqlite_db)?;
    let prefix: String = some_id.chars().take(13).collect();
    let cases: Vec<(String, Vec<String>)> = vec![
        ("lens list".into(), vec!["lens".into(), "list".into()]),
        (
            "lens list --status failed".into(),
            ["lens", "list", "--status", "failed"]
                .map(String::from)
                .into(),
        ),
        (
            format!("lens list --pipeline {some_pipeline}"),
            vec![
                "lens".into(),
                "list".into(),
                "--pipeline".into(),
                some_pipeline.clone(),
            ],
        ),
        (
            "lens show <id>".into(),
            vec!["lens".into(), "show".into(), some_id.clone()],
        ),
        (
            "lens show <prefix>".into(),
            vec!["lens".into(), "show".into(), prefix.clone()],
        ),
        (
            "lens show latest".into(),
            ["lens", "show", "latest"].map(String::from).into(),
        ),
    ];
    // stats and search, as `bench lens` times them on SQLite (issue 13's goals are SQLite's)
    let insight: Vec<(String, Vec<String>)> = [
        &["stats", "--since", "24h"][..],
        &["stats"],
        &["stats", "--by", "day", "--since", "90d"],
        &["stats", "--by", "step", "--since", "24h"],
        &["search", "missing owner", "--in", "error"],
        &["search", "refund", "--in", "output", "--since", "1d"],
    ]
    .iter()
    .map(|args| {
        let label = args
            .iter()
            .map(|arg| {
                if arg.contains(' ') {
                    format!("'{arg}'")
                } else {
                    (*arg).to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
        let mut argv = vec!["lens".to_owned()];
        argv.extend(args.iter().map(|arg| (*arg).to_owned()));
        (format!("lens {label}"), argv)
    })
    .collect();
    let cases: Vec<(String, Vec<String>)> = cases.into_iter().chain(insight).collect();
    let sqlite_state = sqlite_db
        .to_str()
        .context("database path is not UTF-8")?
        .to_string();

    println!();
    println!(
        "lens: whole `flujo lens` processes over {n_pg} runs, {} processes per command and store \
         (alternating), median wall time; PostgreSQL over TCP on 127.0.0.1 with a SCRAM password",
        args.iterations
    );
    println!(
        "  SQLite {} ({:.1} MiB); PostgreSQL database {pg_db} ({:.1} MiB, copied from it with \
         `flujo lens copy` in {copy_secs:.1} s on {copied_at}, then VACUUM ANALYZE)",
        crate::shown_path(sqlite_db),
        mib(sqlite_bytes),
        mib(pg_bytes)
    );
    println!(
        "  {:<40} {:>10} {:>10} {:>9}   {:>10} {:>10} {:>12} {:>12}",
        "command",
        "SQLite",
        "PostgreSQL",
        "pg/sqlite",
        "pg min",
        "pg max",
        "sqlite first",
        "pg first"
    );
    for (label, argv) in &cases {
        let (mut sqlite_times, mut pg_times) = (vec![], vec![]);
        let (mut sqlite_first, mut pg_first) = (Duration::ZERO, Duration::ZERO);
        for i in 0..args.iterations + 1 {
            let order: [bool; 2] = if i % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for postgres in order {
                let state = if postgres { &pg_uri } else { &sqlite_state };
                let elapsed = time_lens(flujo_bin, argv, state, label)?;
                match (postgres, i) {
                    // the first process meets the caches as they were; shown apart
                    (false, 0) => sqlite_first = elapsed,
                    (true, 0) => pg_first = elapsed,
                    (false, _) => sqlite_times.push(elapsed),
                    (true, _) => pg_times.push(elapsed),
                }
            }
        }
        pg_times.sort();
        let (sm, pm) = (median(sqlite_times), pg_times[pg_times.len() / 2]);
        println!(
            "  {:<40} {:>10} {:>10} {:>9.2}   {:>10} {:>10} {:>12} {:>12}",
            label,
            ms(sm),
            ms(pm),
            pm.as_secs_f64() / sm.as_secs_f64(),
            ms(pg_times[0]),
            ms(pg_times[pg_times.len() - 1]),
            ms(sqlite_first),
            ms(pg_first)
        );
    }
    println!("  (goal: PostgreSQL < 50 ms each for list and show, 20 ms)");
    Ok(())
}

/// Wall time of one `flujo` process with `argv` on `state`; fails unless it succeeded or found
/// nothing (exit code 1), as `bench lens` does.
fn time_lens(flujo_bin: &Path, argv: &[String], state: &str, label: &str) -> Result<Duration> {
    let started = Instant::now();
    let out = Command::new(flujo_bin)
        .args(argv)
        .env("FLUJO_STATE_URI", state)
        .env("COLUMNS", "160")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running flujo {label}"))?;
    let elapsed = started.elapsed();
    if !out.status.success() && out.status.code() != Some(1) {
        bail!(
            "flujo {label} on {} failed: {}",
            if state.starts_with("postgres://") {
                "PostgreSQL"
            } else {
                "SQLite"
            },
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(elapsed)
}
