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
        // three months of history, so windows like 24 hours hold a day's share of the runs
        let spread = Duration::from_secs(90 * 86_400);
        seed::run(&seed::SeedArgs::new(args.runs, db.clone()).spread(spread))?;
    }
    // a database of an older schema is upgraded the way any writer does it: at once, then the
    // tables of the new versions filled for the rows before by the idle writer in short steps;
    // meanwhile another connection takes the write lock again and again (and writes nothing),
    // to show how long a writer waits
    let upgrade = Instant::now();
    let layer = flujo::SqliteLayer::open(&db).context("opening the database to upgrade it")?;
    let opened = upgrade.elapsed();
    let other = rusqlite::Connection::open(&db)?;
    other.busy_timeout(Duration::from_secs(5))?;
    let mut longest_wait = Duration::ZERO;
    loop {
        let asked = Instant::now();
        other.execute_batch("BEGIN IMMEDIATE")?;
        longest_wait = longest_wait.max(asked.elapsed());
        other.execute_batch("ROLLBACK")?;
        // filled for the rows before, and caught up with the rows written since (a seed
        // that ended in a burst leaves up to BUSY_LAG_RUNS runs to index by the next idle writer)
        let pending: i64 = other.query_row(
            "SELECT count(*) FROM flujo_backfill WHERE done = 0 \
               OR (name = 'run_stats' AND after < (SELECT coalesce(max(rowid), 0) FROM runs)) \
               OR (name = 'error_search' AND after < (SELECT coalesce(max(rowid), 0) FROM steps))",
            [],
            |row| row.get(0),
        )?;
        if pending == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let filled = upgrade.elapsed();
    drop(layer);
    let n_runs = seed::count_runs(&db)?;
    let db_bytes = std::fs::metadata(&db)?.len();
    let (some_id, some_pipeline) = seed::sample_run(&db)?;
    let prefix: String = some_id.chars().take(13).collect();
    let short: String = some_id.chars().skip(24).collect();
    let last_day: i64 =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?
            .query_row(
                "SELECT count(*) FROM runs WHERE start_time >= ?1",
                [flujo::format_timestamp(
                    time_now() - time::Duration::days(1),
                )],
                |row| row.get(0),
            )?;
    let words = |text: &str| -> Vec<String> { text.split(' ').map(str::to_owned).collect() };

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
            "lens show <short id>".into(),
            vec!["lens".into(), "show".into(), short.clone()],
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
        (
            "lens stats --since 24h".into(),
            words("lens stats --since 24h"),
        ),
        (
            "lens stats (all runs, by pipeline)".into(),
            words("lens stats"),
        ),
        (
            "lens stats --by day --since 90d".into(),
            words("lens stats --by day --since 90d"),
        ),
        (
            "lens stats --by step --since 24h".into(),
            words("lens stats --by step --since 24h"),
        ),
        (
            "lens search 'missing owner' --in error".into(),
            vec![
                "lens".into(),
                "search".into(),
                "missing owner".into(),
                "--in".into(),
                "error".into(),
            ],
        ),
        (
            "lens search 'cust-417 in' --in error".into(),
            vec![
                "lens".into(),
                "search".into(),
                "cust-417 in".into(),
                "--in".into(),
                "error".into(),
            ],
        ),
        (
            "lens search refund --in output --since 1d".into(),
            words("lens search refund --in output --since 1d"),
        ),
        (
            "lens search número --in output --since 1d".into(),
            words("lens search número --in output --since 1d"),
        ),
        (
            "lens list --grep 'missing owner'".into(),
            vec![
                "lens".into(),
                "list".into(),
                "--grep".into(),
                "missing owner".into(),
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
        "(opening it for writing, as any writer does, took {}; the tables of newer schema \
         versions (short ids, stats, the error index) held every row {} after the open, filled by \
         the writer in steps while another connection waited at most {} for the write lock)",
        ms(opened),
        ms(filled),
        ms(longest_wait)
    );
    println!(
        "({} runs started in the last 24 hours; `search número` matches nothing: it reads every \
         output of that day)",
        last_day
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10} {:>12}",
        "command", "median", "min", "max", "first"
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
    println!();
    following(&flujo)?;
    Ok(())
}

/// Steps committed one at a time while `show --follow` reads.
const FOLLOWED_STEPS: usize = 50;
/// How long the idle followers are watched.
const IDLE: Duration = Duration::from_secs(10);

/// `show --follow` and `list --watch` as processes: the time from a step's commit to its line
/// on the follower's output, and the CPU an idle follower uses.
fn following(flujo: &std::path::Path) -> Result<()> {
    use std::io::{BufRead, BufReader};

    let dir = tempfile::tempdir()?;
    let db = dir.path().join("followed.db");
    drop(flujo::SqliteLayer::open(&db)?);
    let conn = rusqlite::Connection::open(&db)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let run_id = "0193aaaa-0000-7000-8000-00000000f011";
    conn.execute(
        "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time) \
         VALUES (?1, 'followed', '1', 'running', ?2)",
        rusqlite::params![run_id, flujo::format_timestamp(time_now())],
    )?;
    let state = db.to_str().context("path is not UTF-8")?;
    let spawn = |args: &[&str]| {
        Command::new(flujo)
            .args(args)
            .env("FLUJO_STATE_URI", state)
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("running flujo {}", args.join(" ")))
    };
    let mut follower = spawn(&["lens", "show", run_id, "--follow"])?;
    let mut watcher = spawn(&["lens", "list", "--watch"])?;
    let (send, lines) = std::sync::mpsc::channel::<(Instant, String)>();
    let stdout = follower.stdout.take().context("no stdout")?;
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let wait_for = |what: &str| -> Result<Instant> {
        loop {
            let (at, line) = lines
                .recv_timeout(Duration::from_secs(30))
                .with_context(|| format!("show --follow printed no {what}"))?;
            if line.contains(what) {
                return Ok(at);
            }
        }
    };
    wait_for("following run")?;
    let mut latencies = Vec::with_capacity(FOLLOWED_STEPS);
    for k in 0..FOLLOWED_STEPS {
        // commits at no fixed phase of the follower's polling: 0 to 46 ms after the last line
        std::thread::sleep(Duration::from_millis((k as u64 * 37) % 47));
        let name = format!("step_{k:03}");
        let now = flujo::format_timestamp(time_now());
        let tx = conn.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO steps (step_run_id, run_id, step_name, step_index, status, start_time, \
             end_time, duration_ms) VALUES (?1, ?2, ?3, ?4, 'completed', ?5, ?5, 0)",
            rusqlite::params![format!("{run_id}-{k}"), run_id, name, k as i64, now],
        )?;
        tx.commit()?;
        let committed = Instant::now();
        let shown = wait_for(&format!("completed  {name}"))?;
        latencies.push(shown.saturating_duration_since(committed));
    }
    latencies.sort();
    // idle: nothing committed for IDLE
    let cpu = |pid: u32| -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("unreadable /proc stat")?
            .1
            .split_whitespace()
            .collect();
        // utime and stime, fields 14 and 15 of the line (11 and 12 after the command name)
        let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
        // SAFETY: sysconf has no preconditions
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok(ticks / per_second)
    };
    let (follow_before, watch_before) = (cpu(follower.id())?, cpu(watcher.id())?);
    let idle_started = Instant::now();
    std::thread::sleep(IDLE);
    let idle = idle_started.elapsed().as_secs_f64();
    let follow_idle = (cpu(follower.id())? - follow_before) / idle * 100.0;
    let watch_idle = (cpu(watcher.id())? - watch_before) / idle * 100.0;
    conn.execute(
        "UPDATE runs SET status = 'completed', end_time = ?2, duration_ms = 1 WHERE run_id = ?1",
        rusqlite::params![run_id, flujo::format_timestamp(time_now())],
    )?;
    let ended = Instant::now();
    let code = follower.wait()?.code();
    let exit_after = ended.elapsed();
    // SAFETY: the watcher is our child; SIGINT is how a user stops it
    unsafe { libc::kill(watcher.id() as libc::pid_t, libc::SIGINT) };
    let watch_code = watcher.wait()?.code();
    if code != Some(0) || watch_code != Some(0) {
        bail!("show --follow exited {code:?}, list --watch {watch_code:?}: expected 0 and 0");
    }
    let pct = |q: usize| latencies[(latencies.len() * q / 100).min(latencies.len() - 1)];
    println!(
        "following: show --follow over a run whose steps are committed one at a time ({} commits)",
        FOLLOWED_STEPS
    );
    println!(
        "  commit to line on the follower's output: median {}, p95 {}, max {} (goal <= 100 ms)",
        ms(pct(50)),
        ms(pct(95)),
        ms(latencies[latencies.len() - 1])
    );
    println!(
        "  run's end to the follower's exit (code 0): {}",
        ms(exit_after)
    );
    println!(
        "  idle for {:.0} s: show --follow {:.2}% of a core, list --watch {:.2}% (goal < 0.5%)",
        idle, follow_idle, watch_idle
    );
    Ok(())
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
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
    for i in 0..iterations + 1 {
        let started = Instant::now();
        let status = Command::new(flujo)
            .args(argv)
            .env("FLUJO_STATE_URI", state)
            .env("COLUMNS", "160")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .with_context(|| format!("running flujo {label}"))?;
        let elapsed = started.elapsed();
        let code = status.code().unwrap_or(-1);
        if code != 0 && code != 1 {
            bail!("flujo {label} failed with exit code {code}");
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
    // peak memory from one more process, started by a small launcher: a process started by
    // this one (vfork, then exec) inherits this process's peak as its own ru_maxrss
    let peak = Command::new(std::env::current_exe()?)
        .args(["peak-rss", "--"])
        .arg(flujo)
        .args(argv)
        .env("FLUJO_STATE_URI", state)
        .env("COLUMNS", "160")
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("measuring flujo {label}"))?;
    let peak = String::from_utf8_lossy(&peak.stdout);
    let peak_kib = peak
        .split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .with_context(|| format!("peak-rss printed {peak:?}"))?;
    Ok(Timed {
        median: times[times.len() / 2],
        min: times[0],
        max: times[times.len() - 1],
        first,
        peak_kib,
    })
}

#[derive(clap::Args)]
pub(crate) struct PeakRssArgs {
    /// The program and its arguments.
    #[arg(trailing_var_arg = true, required = true)]
    command: Vec<String>,
}

/// `xtask peak-rss -- PROGRAM ARGS...`: runs it (output discarded) and prints `CODE KIB`, its
/// exit code and peak resident set. Being a small process, its child's peak is the child's own.
pub(crate) fn peak_rss(args: &PeakRssArgs) -> Result<()> {
    let child = Command::new(&args.command[0])
        .args(&args.command[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("running {}", args.command[0]))?;
    let (code, kib) = wait_with_peak(child)?;
    println!("{code} {kib}");
    Ok(())
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
