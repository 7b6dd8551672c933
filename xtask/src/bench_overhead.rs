//! `cargo xtask bench overhead`: what recording costs a pipeline (NFR-9), measured side by side.
//!
//! Persistence on means the facade's default: the run's spans go to a `Registry` with a
//! `SqliteLayer`, and `run()` returns once the run's rows are committed. Off means no subscriber
//! and no backend at all. The two alternate round by round in one process, so drift in the
//! machine's load hits both alike; the figures are medians of per-run wall times.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use flujo::{step, BareFlujo, Flujo, Persistence, Pipeline, SqliteLayer, StepContext};
use serde::Serialize;
use tracing::instrument::WithSubscriber;
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

#[derive(clap::Args)]
pub(crate) struct OverheadArgs {
    /// Rounds; each runs every case with persistence on and off.
    #[arg(long, default_value_t = 15)]
    rounds: usize,
    /// Runs of the typical pipeline per round and mode.
    #[arg(long, default_value_t = 20)]
    typical_runs: usize,
    /// Runs of the no-work pipeline per round and mode.
    #[arg(long, default_value_t = 400)]
    noop_runs: usize,
    /// Runs of 10 no-work steps in the writer-throughput burst.
    #[arg(long, default_value_t = 30_000)]
    burst_runs: usize,
    /// Pairs of failing-mix bursts (schema 7 and the write path before it) compared side by
    /// side.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    write_path_pairs: u32,
    /// Runs per child process in the peak-memory check (also measured at a tenth of it).
    #[arg(long, default_value_t = 100_000)]
    memory_runs: u64,
}

#[derive(clap::Args)]
pub(crate) struct ChildArgs {
    /// `on` or `off`.
    #[arg(long)]
    mode: String,
    #[arg(long)]
    runs: u64,
    #[arg(long)]
    db: std::path::PathBuf,
}

/// About 1 KB of JSON, passed from step to step.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Payload {
    pub(crate) step: u64,
    pub(crate) customer: String,
    pub(crate) notes: String,
}

pub(crate) fn payload() -> Payload {
    Payload {
        step: 0,
        customer: "ana@example.com".into(),
        notes: "the quick brown fox jumps over the lazy dog; ".repeat(22),
    }
}

pub(crate) const STEPS: usize = 10;

/// Ten steps, each awaiting about 1 ms (a stand-in for a model or tool call).
pub(crate) fn typical() -> Pipeline<Payload, Payload> {
    let mut pipeline = Pipeline::new(sleep_step(0));
    for i in 1..STEPS {
        pipeline = pipeline.then(sleep_step(i));
    }
    pipeline
}

/// When the typical pipeline's last step last finished its work: what `run()` takes after it is
/// the recording of the last step's end and the run's, and the wait for their commit.
static LAST_STEP_DONE: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);

/// The time from the typical pipeline's last step finishing its work to `returned`, and forgets
/// it (zero for a run of another pipeline).
pub(crate) fn since_last_step(returned: Instant) -> Duration {
    let done = LAST_STEP_DONE.lock().expect("not poisoned").take();
    done.map_or(Duration::ZERO, |done| {
        returned.saturating_duration_since(done)
    })
}

fn sleep_step(i: usize) -> flujo::Step<Payload, Payload> {
    step(
        format!("call_{i}"),
        move |p: Payload, _: StepContext<()>| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if i == STEPS - 1 {
                *LAST_STEP_DONE.lock().expect("not poisoned") = Some(Instant::now());
            }
            Ok(Payload {
                step: p.step + 1,
                ..p
            })
        },
    )
}

/// Ten steps that do no work.
pub(crate) fn noop<T: Serialize + Send + 'static>() -> Pipeline<T, T> {
    let mut pipeline = Pipeline::new(noop_step(0));
    for i in 1..STEPS {
        pipeline = pipeline.then(noop_step(i));
    }
    pipeline
}

fn noop_step<T: Serialize + Send + 'static>(i: usize) -> flujo::Step<T, T> {
    step(format!("noop_{i}"), |x: T, _: StepContext<()>| async move {
        Ok(x)
    })
}

/// Ten steps that do no work, the last failing for one input in twenty (the seed's mix of failed
/// runs), with a short error.
fn noop_failing() -> Pipeline<u64, u64> {
    let mut pipeline = Pipeline::new(noop_step(0));
    for i in 1..STEPS - 1 {
        pipeline = pipeline.then(noop_step(i));
    }
    pipeline.then(step("last", |x: u64, _: StepContext<()>| async move {
        if x.is_multiple_of(20) {
            return Err(flujo::StepError::new(format!(
                "CRM API rejected the update for cust-{x}: 422 missing owner"
            )));
        }
        Ok(x)
    }))
}

/// Schema 7's triggers (on deletes, and short ids of changed ids): dropped (and the writer's
/// indexing in the background with them), the database records as schema 6 did, for the
/// side-by-side comparison.
const SCHEMA_7_TRIGGERS: [&str; 3] = [
    "run_stats_delete",
    "error_search_delete",
    "run_tails_update",
];

/// Opens a layer on a fresh `db` and, for `before`, drops schema 7's triggers first.
fn write_path_dispatch(db: &Path, before: bool) -> Result<(Dispatch, flujo::SqliteHandle)> {
    let opened = recording_dispatch(db)?;
    if before {
        let conn = rusqlite::Connection::open(db)?;
        for trigger in SCHEMA_7_TRIGGERS {
            conn.execute_batch(&format!("DROP TRIGGER {trigger}"))?;
        }
        // and nothing for the writer to index in the background
        conn.execute_batch(
            "DELETE FROM flujo_backfill WHERE name IN ('run_stats', 'error_search')",
        )?;
    }
    Ok(opened)
}

/// A burst of `runs` failing-mix runs from 2 threads into a fresh database: steps per second
/// to commit, and the database's bytes per step.
fn failing_burst(dir: &Path, name: &str, before: bool, runs: usize) -> Result<(f64, f64)> {
    let db = dir.join(format!("{name}.db"));
    let (dispatch, handle) = write_path_dispatch(&db, before)?;
    let multi = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    multi.block_on(async {
        let bare = std::sync::Arc::new(BareFlujo::new("bench-burst", noop_failing()));
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let bare = bare.clone();
                tokio::spawn(
                    async move {
                        for i in 0..runs / 2 {
                            bare.run((w * runs + i) as u64).await;
                        }
                    }
                    .with_subscriber(dispatch.clone()),
                )
            })
            .collect();
        for worker in workers {
            worker.await.expect("burst worker panicked");
        }
        handle.flush().await;
    });
    let elapsed = started.elapsed();
    if handle.rows_not_recorded() > 0 {
        bail!("{} rows were not recorded", handle.rows_not_recorded());
    }
    drop(dispatch);
    drop(handle);
    let steps = (runs / 2 * 2 * STEPS) as f64;
    let bytes = disk_use(&db)?.file_bytes as f64;
    Ok((steps / elapsed.as_secs_f64(), bytes / steps))
}

pub(crate) fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// The median of `xs` (of an even count, the mean of the middle two).
fn median_f64(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n.is_multiple_of(2) {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    } else {
        xs[n / 2]
    }
}

pub(crate) fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The configured layer (`flujo::layer()`) recording into `db` and exporting to `endpoint`, as a
/// user with `FLUJO_STATE_URI` and `OTEL_EXPORTER_OTLP_ENDPOINT` set gets it.
fn otlp_dispatch(db: &Path, endpoint: &str) -> Result<Dispatch> {
    // set before any other thread of this process reads the environment
    std::env::set_var("FLUJO_STATE_URI", db);
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
    let layer = flujo::layer::<tracing_subscriber::Registry>()?;
    std::env::remove_var("FLUJO_STATE_URI");
    std::env::remove_var("OTEL_EXPORTER_OTLP_ENDPOINT");
    Ok(Dispatch::new(tracing_subscriber::registry().with(layer)))
}

/// An OTLP/HTTP receiver on 127.0.0.1: reads each request whole and answers 200, counting
/// requests and bytes.
struct OtlpReceiver {
    server: std::sync::Arc<tiny_http::Server>,
    counts: std::sync::Arc<(AtomicU64, AtomicU64)>,
}

impl OtlpReceiver {
    fn start() -> Result<OtlpReceiver> {
        let server = std::sync::Arc::new(
            tiny_http::Server::http("127.0.0.1:0").map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let counts = std::sync::Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let (serving, counted) = (server.clone(), counts.clone());
        std::thread::spawn(move || {
            for mut request in serving.incoming_requests() {
                let mut body = Vec::new();
                let _ = std::io::Read::read_to_end(request.as_reader(), &mut body);
                counted.0.fetch_add(1, Ordering::Relaxed);
                counted.1.fetch_add(body.len() as u64, Ordering::Relaxed);
                let _ = request.respond(tiny_http::Response::empty(200));
            }
        });
        Ok(OtlpReceiver { server, counts })
    }

    fn base_url(&self) -> String {
        match self.server.server_addr().to_ip() {
            Some(addr) => format!("http://{addr}"),
            None => "http://127.0.0.1:4318".to_owned(),
        }
    }

    fn received(&self) -> (u64, u64) {
        (
            self.counts.0.load(Ordering::Relaxed),
            self.counts.1.load(Ordering::Relaxed),
        )
    }
}

fn recording_dispatch(db: &Path) -> Result<(Dispatch, flujo::SqliteHandle)> {
    recording_dispatch_with(db, SqliteLayer::builder())
}

fn recording_dispatch_with(
    db: &Path,
    builder: flujo::SqliteLayerBuilder,
) -> Result<(Dispatch, flujo::SqliteHandle)> {
    // the defaults a user gets (queue of 4,096 rows, 5 ms flush interval)
    let layer = builder
        .open(db)
        .with_context(|| format!("opening {}", db.display()))?;
    let handle = layer.handle();
    Ok((
        Dispatch::new(tracing_subscriber::registry().with(layer)),
        handle,
    ))
}

/// What a database takes on disk, beside the payload bytes it holds.
struct DiskUse {
    /// The database file and its `-wal` (if any).
    file_bytes: u64,
    /// The bytes of the steps' input and output blobs.
    payload_bytes: u64,
    page_size: i64,
}

fn disk_use(db: &Path) -> Result<DiskUse> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let file_bytes = std::fs::metadata(db)?.len() + std::fs::metadata(&wal).map_or(0, |m| m.len());
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let payload_bytes: i64 = conn.query_row(
        "SELECT total(length(CAST(input_blob AS BLOB)) + length(CAST(output_blob AS BLOB))) FROM steps",
        [],
        |row| row.get::<_, f64>(0).map(|bytes| bytes as i64),
    )?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |row| row.get(0))?;
    Ok(DiskUse {
        file_bytes,
        payload_bytes: u64::try_from(payload_bytes).unwrap_or(0),
        page_size,
    })
}

/// Per-run wall times of `runs` runs of `flujo` under `dispatch`.
async fn time_runs<I, O>(
    flujo: &Flujo<I, O>,
    dispatch: &Dispatch,
    runs: usize,
    input: &I,
) -> Vec<Duration>
where
    I: Serialize + Clone + Send + 'static,
    O: Serialize + Send + 'static,
{
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let input = input.clone();
        let started = Instant::now();
        let result = flujo.run(input).with_subscriber(dispatch.clone()).await;
        times.push(started.elapsed());
        assert!(
            result.is_completed(),
            "benchmark pipeline failed: {:?}",
            result.error
        );
    }
    times
}

pub(crate) fn run(args: &OverheadArgs) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let off = Dispatch::none();

    // --- typical and no-work pipelines, on vs off, alternating
    let typical_db = dir.path().join("typical.db");
    let noop_db = dir.path().join("noop.db");
    let (typical_on, typical_handle) = recording_dispatch(&typical_db)?;
    let (noop_on, noop_handle) = recording_dispatch(&noop_db)?;
    // the same with 4 KiB pages (more disk, less WAL per commit), side by side with the
    // default 16 KiB
    let small_pages = || SqliteLayer::builder().with_page_size(4 * 1024);
    let typical_4k_db = dir.path().join("typical-4k.db");
    let noop_4k_db = dir.path().join("noop-4k.db");
    let (typical_4k, typical_4k_handle) = recording_dispatch_with(&typical_4k_db, small_pages())?;
    let (noop_4k, noop_4k_handle) = recording_dispatch_with(&noop_4k_db, small_pages())?;
    let (mut t_4k, mut n_4k) = (vec![], vec![]);
    // SQLite + OpenTelemetry export to a receiver on loopback, wired as a user gets it (the
    // configured layer with an OTLP endpoint set)
    let receiver = OtlpReceiver::start()?;
    let otlp_db = dir.path().join("otlp.db");
    let otlp_on = otlp_dispatch(&otlp_db, &receiver.base_url())?;
    let mut t_otlp = vec![];
    // the write path before schema 7 (its triggers dropped), side by side
    let typical_v6_db = dir.path().join("typical-v6.db");
    let (typical_v6, typical_v6_handle) = write_path_dispatch(&typical_v6_db, true)?;
    let mut t_v6 = vec![];
    let typical_flujo = Flujo::new("bench-typical", typical());
    let typical_off_flujo =
        Flujo::new("bench-typical", typical()).with_persistence(Persistence::Disabled);
    let noop_flujo = Flujo::new("bench-noop", noop::<u64>());
    let noop_off_flujo =
        Flujo::new("bench-noop", noop::<u64>()).with_persistence(Persistence::Disabled);
    let (mut t_on, mut t_off, mut n_on, mut n_off) = (vec![], vec![], vec![], vec![]);
    // recorded by the layer but without waiting for the commit: where the overhead goes
    let mut t_no_barrier = vec![];
    let input = payload();
    runtime.block_on(async {
        // warm-up, not counted
        time_runs(&typical_flujo, &typical_on, 3, &input).await;
        time_runs(&typical_flujo, &otlp_on, 3, &input).await;
        time_runs(&noop_flujo, &noop_on, 50, &0).await;
        for round in 0..args.rounds {
            if round % 2 == 0 {
                t_on.extend(
                    time_runs(&typical_flujo, &typical_on, args.typical_runs, &input).await,
                );
                t_off.extend(time_runs(&typical_off_flujo, &off, args.typical_runs, &input).await);
                t_no_barrier.extend(
                    time_runs(&typical_off_flujo, &typical_on, args.typical_runs, &input).await,
                );
                n_on.extend(time_runs(&noop_flujo, &noop_on, args.noop_runs, &0).await);
                n_off.extend(time_runs(&noop_off_flujo, &off, args.noop_runs, &0).await);
                t_4k.extend(
                    time_runs(&typical_flujo, &typical_4k, args.typical_runs, &input).await,
                );
                t_otlp.extend(time_runs(&typical_flujo, &otlp_on, args.typical_runs, &input).await);
                n_4k.extend(time_runs(&noop_flujo, &noop_4k, args.noop_runs, &0).await);
                t_v6.extend(
                    time_runs(&typical_flujo, &typical_v6, args.typical_runs, &input).await,
                );
            } else {
                t_v6.extend(
                    time_runs(&typical_flujo, &typical_v6, args.typical_runs, &input).await,
                );
                t_otlp.extend(time_runs(&typical_flujo, &otlp_on, args.typical_runs, &input).await);
                n_4k.extend(time_runs(&noop_flujo, &noop_4k, args.noop_runs, &0).await);
                t_4k.extend(
                    time_runs(&typical_flujo, &typical_4k, args.typical_runs, &input).await,
                );
                t_no_barrier.extend(
                    time_runs(&typical_off_flujo, &typical_on, args.typical_runs, &input).await,
                );
                t_off.extend(time_runs(&typical_off_flujo, &off, args.typical_runs, &input).await);
                t_on.extend(
                    time_runs(&typical_flujo, &typical_on, args.typical_runs, &input).await,
                );
                n_off.extend(time_runs(&noop_off_flujo, &off, args.noop_runs, &0).await);
                n_on.extend(time_runs(&noop_flujo, &noop_on, args.noop_runs, &0).await);
            }
        }
    });

    // --- the instrumented thread alone: the layer without the per-run barrier
    let bare_db = dir.path().join("bare.db");
    let (bare_on, bare_handle) = recording_dispatch(&bare_db)?;
    let bare = BareFlujo::new("bench-noop", noop::<u64>());
    let (mut b_on, mut b_off) = (vec![], vec![]);
    runtime.block_on(async {
        for _ in 0..args.rounds {
            for (dispatch, times) in [(&bare_on, &mut b_on), (&off, &mut b_off)] {
                for _ in 0..args.noop_runs {
                    let started = Instant::now();
                    let result = bare.run(0u64).with_subscriber(dispatch.clone()).await;
                    times.push(started.elapsed());
                    assert!(result.is_completed());
                }
            }
            bare_handle.flush().await;
        }
    });

    // --- writer throughput: a burst of runs, timed until all is committed
    let burst_db = dir.path().join("burst.db");
    let (burst_on, burst_handle) = recording_dispatch(&burst_db)?;
    let multi = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let burst_started = Instant::now();
    let burst_runs = args.burst_runs;
    multi.block_on(async {
        let bare = std::sync::Arc::new(BareFlujo::new("bench-burst", noop::<u64>()));
        let workers: Vec<_> = (0..2)
            .map(|w| {
                let bare = bare.clone();
                let dispatch = burst_on.clone();
                tokio::spawn(
                    async move {
                        for i in 0..burst_runs / 2 {
                            bare.run((w * burst_runs + i) as u64).await;
                        }
                    }
                    .with_subscriber(dispatch),
                )
            })
            .collect();
        for worker in workers {
            worker.await.expect("burst worker panicked");
        }
        burst_handle.flush().await;
    });
    let burst_elapsed = burst_started.elapsed();
    let burst_steps = (burst_runs / 2 * 2 * STEPS) as f64;

    // --- schema 7's write path against the one before it: bursts in pairs, the order
    // alternating, each pair's ratio taken between neighbours (the machine's load drifts by
    // ±10% from one burst to the next here: four bursts a side once gave 0.966 for the same code)
    let (mut rate_v7, mut rate_v6, mut ratios, mut disk_v7, mut disk_v6) =
        (vec![], vec![], vec![], 0.0, 0.0);
    for round in 0..args.write_path_pairs {
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut pair = [0.0; 2];
        for before in order {
            let name = format!("failing-{round}-{}", if before { "v6" } else { "v7" });
            let (rate, disk) = failing_burst(dir.path(), &name, before, burst_runs)?;
            pair[usize::from(before)] = rate;
            if before {
                rate_v6.push(rate);
                disk_v6 = disk;
            } else {
                rate_v7.push(rate);
                disk_v7 = disk;
            }
        }
        ratios.push(pair[0] / pair[1]);
    }
    let (rate_v7, rate_v6) = (median_f64(rate_v7), median_f64(rate_v6));
    ratios.sort_by(f64::total_cmp);
    let ratio = median_f64(ratios.clone());
    let (ratio_low, ratio_high) = (ratios[0], ratios[ratios.len() - 1]);

    for handle in [
        &typical_handle,
        &noop_handle,
        &bare_handle,
        &burst_handle,
        &typical_v6_handle,
    ] {
        if handle.rows_not_recorded() > 0 {
            bail!("{} rows were not recorded", handle.rows_not_recorded());
        }
    }
    let typical_steps = (2 * args.rounds * args.typical_runs + 3) * STEPS;
    drop((
        typical_on,
        noop_on,
        bare_on,
        burst_on,
        typical_v6,
        typical_v6_handle,
    ));
    drop((typical_handle, noop_handle, bare_handle, burst_handle));
    drop((typical_4k, noop_4k, typical_4k_handle, noop_4k_handle));
    let typical_4k_disk = disk_use(&typical_4k_db)?;
    let typical_disk = disk_use(&typical_db)?;
    let burst_disk = disk_use(&burst_db)?;
    let typical_bytes = typical_disk.file_bytes as f64;
    let burst_bytes = burst_disk.file_bytes as f64;

    let (tm_on, tm_off) = (median(t_on), median(t_off));
    let tm_no_barrier = median(t_no_barrier);
    let (nm_on, nm_off) = (median(n_on), median(n_off));
    let (bm_on, bm_off) = (median(b_on), median(b_off));
    println!("flujo bench overhead: persistence on vs off, {} alternating rounds, medians of per-run wall time", args.rounds);
    println!();
    println!(
        "typical: {STEPS} steps, each awaiting ~1 ms and passing ~1 KB of JSON ({} runs per mode)",
        args.rounds * args.typical_runs
    );
    println!("  off {:>10.1} us/run   on {:>10.1} us/run   ratio on/off {:.4}   overhead {:+.2}% (FSD limit 5%, goal 1%)",
        us(tm_off), us(tm_on), us(tm_on) / us(tm_off), (us(tm_on) / us(tm_off) - 1.0) * 100.0);
    let tm_4k = median(t_4k);
    println!(
        "  with 4 KiB pages (with_page_size):                  on {:>10.1} us/run   ratio on/off {:.4}   overhead {:+.2}%",
        us(tm_4k),
        us(tm_4k) / us(tm_off),
        (us(tm_4k) / us(tm_off) - 1.0) * 100.0
    );
    let tm_otlp = median(t_otlp);
    println!(
        "  SQLite + OTLP export to 127.0.0.1 (flujo::layer):   on {:>10.1} us/run   ratio on/off {:.4}   overhead {:+.2}% (goal 3%)",
        us(tm_otlp),
        us(tm_otlp) / us(tm_off),
        (us(tm_otlp) / us(tm_off) - 1.0) * 100.0
    );
    let counts = flujo::otlp_counts();
    let (requests, bytes) = receiver.received();
    println!(
        "    spans ended {}, exported {}, failed {} ({requests} requests, {bytes} bytes received so far; the rest at exit)",
        counts.ended, counts.exported, counts.failed
    );
    println!(
        "  of which the per-run durability barrier: recorded without it {:>10.1} us/run, overhead {:+.2}%",
        us(tm_no_barrier),
        (us(tm_no_barrier) / us(tm_off) - 1.0) * 100.0
    );
    println!();
    println!(
        "worst case: {STEPS} steps that do no work ({} runs per mode)",
        args.rounds * args.noop_runs
    );
    println!("  with the per-run durability barrier (the default):");
    println!(
        "  off {:>10.1} us/run   on {:>10.1} us/run   ratio on/off {:.2}   added {:.2} us per step",
        us(nm_off),
        us(nm_on),
        us(nm_on) / us(nm_off),
        (us(nm_on) - us(nm_off)) / STEPS as f64
    );
    let nm_4k = median(n_4k);
    println!(
        "  with 4 KiB pages:            on {:>10.1} us/run   ratio on/off {:.2}   added {:.2} us per step",
        us(nm_4k),
        us(nm_4k) / us(nm_off),
        (us(nm_4k) - us(nm_off)) / STEPS as f64
    );
    println!("  on the instrumented thread alone (layer, no barrier):");
    println!(
        "  off {:>10.1} us/run   on {:>10.1} us/run   ratio on/off {:.2}   added {:.2} us per step",
        us(bm_off),
        us(bm_on),
        us(bm_on) / us(bm_off),
        (us(bm_on) - us(bm_off)) / STEPS as f64
    );
    println!();
    println!("writer: {} steps in {} runs from 2 threads, committed in {:.2} s: {:.0} steps/s sustained to disk (goal 100,000)",
        burst_steps, burst_runs / 2 * 2, burst_elapsed.as_secs_f64(), burst_steps / burst_elapsed.as_secs_f64());
    println!("database size: {:.0} bytes per step with ~1 KB payloads, {:.0} bytes per step with tiny payloads",
        typical_bytes / typical_steps as f64, burst_bytes / burst_steps);
    println!(
        "disk per payload byte at ~1 KB payloads: (database + WAL after the writer's checkpoint) {} bytes / \
         (steps' input and output) {} bytes = {:.3}x (goal <= 1.3x); page size {} bytes",
        typical_disk.file_bytes,
        typical_disk.payload_bytes,
        typical_disk.file_bytes as f64 / typical_disk.payload_bytes as f64,
        typical_disk.page_size
    );
    println!(
        "  the same with 4 KiB pages: {} bytes / {} bytes = {:.3}x",
        typical_4k_disk.file_bytes,
        typical_4k_disk.payload_bytes,
        typical_4k_disk.file_bytes as f64 / typical_4k_disk.payload_bytes as f64
    );

    let tm_v6 = median(t_v6);
    println!();
    println!("schema 7 (stats table and error index, indexed by the writer in the background) beside the write");
    println!("path before it (the same database without schema 7's triggers and indexing), side by side in this run:");
    println!(
        "  typical pipeline: before {:>10.1} us/run   schema 7 {:>10.1} us/run   ratio {:.4}   overhead before {:+.2}%, schema 7 {:+.2}%",
        us(tm_v6),
        us(tm_on),
        us(tm_on) / us(tm_v6),
        (us(tm_v6) / us(tm_off) - 1.0) * 100.0,
        (us(tm_on) / us(tm_off) - 1.0) * 100.0
    );
    println!(
        "  writer, {} runs of {STEPS} no-work steps, one run in 20 failing with an error ({} pairs of bursts, order alternating):",
        burst_runs / 2 * 2,
        args.write_path_pairs
    );
    println!(
        "    median before {rate_v6:>9.0} steps/s   schema 7 {rate_v7:>9.0} steps/s   ratio of each pair: median {ratio:.3} (lowest {ratio_low:.3}, highest {ratio_high:.3})"
    );
    println!(
        "  disk per step (tiny payloads): before {disk_v6:.1} bytes   schema 7 {disk_v7:.1} bytes   ({:+.1}%)",
        (disk_v7 / disk_v6 - 1.0) * 100.0
    );

    // --- peak memory: separate processes, so each starts clean
    println!();
    println!("peak memory (VmHWM) of a process running N runs of {STEPS} no-work steps with ~1 KB payloads:");
    let exe = std::env::current_exe()?;
    for runs in [args.memory_runs / 10, args.memory_runs] {
        let mut line = format!("  {runs:>8} runs:");
        for mode in ["off", "on"] {
            let db = dir.path().join(format!("memory-{mode}-{runs}.db"));
            let out = Command::new(&exe)
                .args([
                    "overhead-child",
                    "--mode",
                    mode,
                    "--runs",
                    &runs.to_string(),
                    "--db",
                ])
                .arg(&db)
                .output()
                .context("running the memory child")?;
            if !out.status.success() {
                bail!(
                    "memory child failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let kib: u64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .context("memory child output")?;
            line.push_str(&format!(
                "   persistence {mode}: {:>6.1} MiB",
                kib as f64 / 1024.0
            ));
        }
        println!("{line}");
    }
    Ok(())
}

/// One memory-measuring child: runs, then prints its peak resident set in KiB.
pub(crate) fn child(args: &ChildArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (flujo, dispatch, handle) = match args.mode.as_str() {
        "on" => {
            let (dispatch, handle) = recording_dispatch(&args.db)?;
            (
                Flujo::new("bench-memory", noop::<Payload>()),
                dispatch,
                Some(handle),
            )
        }
        "off" => (
            Flujo::new("bench-memory", noop::<Payload>()).with_persistence(Persistence::Disabled),
            Dispatch::none(),
            None,
        ),
        other => bail!("--mode is on or off, not {other}"),
    };
    let input = payload();
    runtime.block_on(async {
        for _ in 0..args.runs {
            let result = flujo
                .run(input.clone())
                .with_subscriber(dispatch.clone())
                .await;
            assert!(result.is_completed());
        }
    });
    if let Some(handle) = handle {
        if handle.rows_not_recorded() > 0 {
            bail!("{} rows not recorded", handle.rows_not_recorded());
        }
    }
    let status = std::fs::read_to_string("/proc/self/status")?;
    let hwm = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?;
    println!("{}", hwm.trim().trim_end_matches("kB").trim());
    Ok(())
}
