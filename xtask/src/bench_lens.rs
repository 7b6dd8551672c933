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
    ];

    println!(
        "flujo lens on {} ({} runs, {:.1} MiB), {} processes per command, median wall time",
        db.display(),
        n_runs,
        db_bytes as f64 / (1024.0 * 1024.0),
        args.iterations
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "command", "median", "min", "max"
    );
    for (label, argv) in &cases {
        let mut times = Vec::with_capacity(args.iterations);
        let mut first = Duration::ZERO;
        for i in 0..args.iterations + 1 {
            let started = Instant::now();
            let status = Command::new(&flujo)
                .args(argv)
                .env("FLUJO_STATE_URI", &state)
                .env("COLUMNS", "160")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .with_context(|| format!("running flujo {label}"))?;
            let elapsed = started.elapsed();
            if !status.status.success() && status.status.code() != Some(1) {
                bail!(
                    "flujo {label} failed: {}",
                    String::from_utf8_lossy(&status.stderr)
                );
            }
            if i == 0 {
                // the first process meets the page cache as it was (cold after a reboot or a
                // large seed); it is shown apart and not counted in the median
                first = elapsed;
            } else {
                times.push(elapsed);
            }
        }
        times.sort();
        println!(
            "{:<44} {:>10} {:>10} {:>10} {:>12}",
            label,
            ms(times[times.len() / 2]),
            ms(times[0]),
            ms(times[times.len() - 1]),
            ms(first)
        );
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
