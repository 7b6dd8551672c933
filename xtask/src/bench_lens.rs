//! `cargo xtask bench lens`: times whole `flujo lens` processes on a seeded database (NFR-10).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::seed;

#[derive(clap::Args)]
pub(crate) struct LensArgs {
    /// Runs in the database (seeded once, then reused).
    #[arg(long, default_value_t = 10_000)]
    runs: u64,
    /// Database to use; default `target/bench/lens-<runs>.db`, seeded when missing.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Processes timed per command.
    #[arg(long, default_value_t = 21)]
    iterations: usize,
}

pub(crate) fn run(args: &LensArgs) -> Result<()> {
    let flujo = crate::build_flujo_binary()?;
    let db = args.db.clone().unwrap_or_else(|| {
        crate::workspace_root()
            .join("target/bench")
            .join(format!("lens-{}.db", args.runs))
    });
    let existing = seed::count_runs(&db).unwrap_or(0);
    if existing < args.runs {
        if db.exists() {
            bail!(
                "{} holds {existing} runs, fewer than --runs {}: remove it or pass another --db",
                db.display(),
                args.runs
            );
        }
        if let Some(dir) = db.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        seed::run(&seed::SeedArgs::new(args.runs, db.clone()))?;
    }
    let n_runs = seed::count_runs(&db)?;
    let db_bytes = std::fs::metadata(&db)?.len();
    let (some_id, some_pipeline) = seed::sample_run(&db)?;
    let prefix: String = some_id.chars().take(13).collect();

    let state = db
        .to_str()
        .context("database path is not UTF-8")?
        .to_string();
    let cases: Vec<(String, Vec<String>)> = vec![
        ("lens list".into(), vec!["lens".into(), "list".into()]),
        (
            "lens list --status failed".into(),
            vec![
                "lens".into(),
                "list".into(),
                "--status".into(),
                "failed".into(),
            ],
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
            "lens list -o json".into(),
            vec!["lens".into(), "list".into(), "-o".into(), "json".into()],
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
            vec!["lens".into(), "show".into(), "latest".into()],
        ),
        (
            "lens trace <id>".into(),
            vec!["lens".into(), "trace".into(), some_id.clone()],
        ),
        (
            "lens trace latest".into(),
            vec!["lens".into(), "trace".into(), "latest".into()],
        ),
        (
            "lens diff <id> latest".into(),
            vec![
                "lens".into(),
                "diff".into(),
                some_id.clone(),
                "latest".into(),
            ],
        ),
    ];

    println!(
        "flujo lens on {} ({} runs, {:.1} MiB), {} processes per command, median wall time",
        crate::shown_path(&db),
        n_runs,
        db_bytes as f64 / (1024.0 * 1024.0),
        args.iterations
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "command", "median", "min", "max"
    );
    for (label, argv) in &cases {
        let timed = time_command(&flujo, &state, label, argv, args.iterations)?;
        println!(
            "{:<44} {:>10} {:>10} {:>10} {:>12}",
            label,
            ms(timed.median),
            ms(timed.min),
            ms(timed.max),
            ms(timed.first)
        );
    }

    // two runs of 10,000 steps each (a map over 10,000 items), recorded by the real runner
    let dir = tempfile::tempdir()?;
    let big = dir.path().join("big-runs.db");
    let (a, b) = big_runs(&big, BIG_STEPS)?;
    let big_state = big.to_str().context("path is not UTF-8")?.to_string();
    println!();
    println!(
        "two runs of {} steps each ({} items of one map, ~100 bytes each), {} processes per command",
        BIG_STEPS + 1,
        BIG_STEPS,
        args.iterations
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10} {:>12}",
        "command", "median", "min", "max", "peak memory"
    );
    for (label, argv) in [
        (
            "lens trace <10,000-step run>",
            vec!["lens".to_owned(), "trace".into(), a.clone()],
        ),
        (
            "lens trace <10,000-step run> --expand",
            vec![
                "lens".to_owned(),
                "trace".into(),
                a.clone(),
                "--expand".into(),
            ],
        ),
        (
            "lens diff <10,000-step run> <another>",
            vec!["lens".to_owned(), "diff".into(), a.clone(), b.clone()],
        ),
    ] {
        let timed = time_command(&flujo, &big_state, label, &argv, args.iterations)?;
        println!(
            "{:<44} {:>10} {:>10} {:>10} {:>8.1} MiB",
            label,
            ms(timed.median),
            ms(timed.min),
            ms(timed.max),
            timed.peak_kib as f64 / 1024.0
        );
    }
    println!("(goals: trace of 10,000 steps < 200 ms, diff of two < 500 ms, typical runs < 10 ms)");
    Ok(())
}

/// Items of the map in each large run.
const BIG_STEPS: usize = 10_000;

/// Records two runs of a pipeline mapping over `items` items into `db`; their ids.
fn big_runs(db: &std::path::Path, items: usize) -> Result<(String, String)> {
    use flujo::{map_over, step, BareFlujo, Pipeline, SqliteLayer, StepContext};
    use tracing::instrument::WithSubscriber;
    use tracing_subscriber::layer::SubscriberExt;
    let layer = SqliteLayer::open(db)?;
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let item = step("score_item", |x: u64, _: StepContext<()>| async move {
        Ok(format!("item {x} scored {}", x * 7 % 100))
    });
    let flujo = BareFlujo::new("big", Pipeline::new(map_over("score", item, 16)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut ids = Vec::new();
    for offset in [0u64, 1] {
        let input: Vec<u64> = (offset..offset + items as u64).collect();
        let result = runtime.block_on(flujo.run(input).with_subscriber(dispatch.clone()));
        anyhow::ensure!(
            result.is_completed(),
            "the large run failed: {:?}",
            result.error
        );
        ids.push(result.run_id);
    }
    let flushed = handle.flush_blocking();
    anyhow::ensure!(
        handle.rows_not_recorded() == 0,
        "rows were not recorded: {flushed:?}"
    );
    drop(dispatch);
    Ok((ids[0].clone(), ids[1].clone()))
}

struct Timed {
    median: Duration,
    min: Duration,
    max: Duration,
    first: Duration,
    /// The largest peak resident set of the processes, KiB.
    peak_kib: i64,
}

/// Runs `flujo ARGV` `iterations + 1` times over `state`: the first apart (the page cache as it
/// was), the rest timed.
fn time_command(
    flujo: &std::path::Path,
    state: &str,
    label: &str,
    argv: &[String],
    iterations: usize,
) -> Result<Timed> {
    let mut times = Vec::with_capacity(iterations);
    let mut first = Duration::ZERO;
    let mut peak_kib = 0;
    for i in 0..iterations + 1 {
        let started = Instant::now();
        let child = Command::new(flujo)
            .args(argv)
            .env("FLUJO_STATE_URI", state)
            .env("COLUMNS", "160")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("running flujo {label}"))?;
        let (code, max_rss_kib) = wait_with_peak(child)?;
        let elapsed = started.elapsed();
        if code != 0 && code != 1 {
            bail!("flujo {label} failed with exit code {code}");
        }
        peak_kib = peak_kib.max(max_rss_kib);
        if i == 0 {
            // the first process meets the page cache as it was (cold after a reboot or a
            // large seed); it is shown apart and not counted in the median
            first = elapsed;
        } else {
            times.push(elapsed);
        }
    }
    times.sort();
    Ok(Timed {
        median: times[times.len() / 2],
        min: times[0],
        max: times[times.len() - 1],
        first,
        peak_kib,
    })
}

/// Waits for `child` with wait4: its exit code and its peak resident set (KiB).
fn wait_with_peak(child: std::process::Child) -> Result<(i32, i64)> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for the child we spawned and have not waited
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    // the child is reaped: std must not wait for it again
    std::mem::forget(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    Ok((code, usage.ru_maxrss))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
