//! `cargo xtask seed`: fills a database through the real runner and `SqliteLayer`.
//!
//! The mix: four pipelines of about five steps each (plain steps, a parallel fan-out, a map over
//! chunks, a retrying step, a review loop), about one run in twenty failing, and payloads from a
//! few hundred bytes to a few KB. With `--spread`, the runs' recorded times (and so their ids)
//! are spread evenly over that much of the past, through the runner's clock
//! (`Flujo::with_clock`): the database then looks like months of history.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use flujo::{
    loop_until, map_over, parallel, step, Backoff, BareFlujo, OffsetClock, Pipeline, SqliteLayer,
    StepContext, StepError, Usage,
};
use serde::Serialize;
use time::OffsetDateTime;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

#[derive(clap::Args, Clone)]
pub(crate) struct SeedArgs {
    /// Number of runs to add.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) runs: u64,
    /// Database to fill (created when missing; runs are added to an existing one).
    #[arg(long)]
    pub(crate) db: PathBuf,
    /// Runs in flight at once.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// Spread the runs evenly over this much of the past, ending now (`90d`, `36h`, `2 weeks`):
    /// each run's times and ids come from a clock set back to its place in that span. Without
    /// it, runs are stamped with the real time, so a big seed spans a few minutes.
    #[arg(long, value_parser = parse_spread, value_name = "DURATION")]
    pub(crate) spread: Option<Duration>,
}

/// `--spread`'s value, as `humantime` reads durations.
fn parse_spread(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(spread) if !spread.is_zero() => Ok(spread),
        Ok(_) => Err("a spread of zero: give a duration such as 90d or 12h".to_owned()),
        Err(error) => Err(format!(
            "{error}: give a duration such as 90d, 12h or 2weeks"
        )),
    }
}

impl SeedArgs {
    pub(crate) fn new(runs: u64, db: PathBuf) -> SeedArgs {
        SeedArgs {
            runs,
            db,
            concurrency: 64,
            spread: None,
        }
    }

    /// The same, spread over `spread` of the past.
    pub(crate) fn spread(self, spread: Duration) -> SeedArgs {
        SeedArgs {
            spread: Some(spread),
            ..self
        }
    }
}

/// Where run `i` of `total` starts when spread over `spread` ending at `end`: evenly, oldest
/// first, the last one just before `end`.
fn spread_start(end: OffsetDateTime, spread: Duration, i: u64, total: u64) -> OffsetDateTime {
    let spread_nanos = spread.as_nanos();
    let back = spread_nanos - spread_nanos * u128::from(i) / u128::from(total.max(1));
    end - time::Duration::nanoseconds(i64::try_from(back).unwrap_or(i64::MAX))
}

/// The runner to run run `i` with: `runner` itself, or with `--spread` a copy whose clock is set
/// back to the run's place in the span (a clock of its own per run: the steps of runs in flight
/// at once keep their own run's time).
fn runner_for<In, Out, C>(
    runner: &BareFlujo<In, Out, C>,
    spread: Option<(OffsetDateTime, Duration)>,
    i: u64,
    total: u64,
) -> BareFlujo<In, Out, C> {
    match spread {
        None => runner.clone(),
        Some((end, spread)) => {
            let start = spread_start(end, spread, i, total);
            let offset = start - OffsetDateTime::now_utc();
            runner
                .clone()
                .with_clock(Arc::new(OffsetClock::new(offset)))
        }
    }
}

#[derive(Debug, Default, Serialize)]
struct Ctx {
    seed: u64,
    notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Doc {
    seed: u64,
    title: String,
    body: String,
}

/// A deterministic pseudo-random number from a seed (splitmix64).
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const WORDS: [&str; 16] = [
    "invoice", "refund", "latency", "customer", "summary", "report", "pipeline", "model", "ticket",
    "priority", "review", "draft", "account", "export", "sync", "quota",
];

/// Text of a realistic size: mostly a few hundred bytes, one in twenty a few KB.
fn text(seed: u64) -> String {
    let r = mix(seed);
    let len = if r.is_multiple_of(20) {
        2_000 + r % 3_000
    } else {
        150 + r % 450
    } as usize;
    let mut out = String::with_capacity(len + 16);
    let mut x = r;
    while out.len() < len {
        x = mix(x);
        out.push_str(WORDS[(x % 16) as usize]);
        out.push(' ');
    }
    out
}

fn usage(cx: &StepContext<Ctx>, tokens: u64) {
    cx.add_usage(Usage {
        tokens,
        cost_usd: tokens as f64 * 1.5e-6,
    });
}

fn fails(seed: u64, salt: u64, one_in: u64) -> bool {
    mix(seed ^ salt).is_multiple_of(one_in)
}

fn support_triage() -> Pipeline<Doc, Doc, Ctx> {
    let classify = step("classify", |d: Doc, cx: StepContext<Ctx>| async move {
        usage(&cx, 120 + d.body.len() as u64 / 4);
        if cx.attempt() == 1 && fails(d.seed, 1, 10) {
            return Err(StepError::new("model endpoint answered 503 (overloaded)"));
        }
        Ok(Doc {
            title: format!("[billing] {}", d.title),
            ..d
        })
    })
    .max_retries(2)
    // seeding fills a database as fast as it can: the retry does not wait
    .backoff(Backoff::none());
    let kb = step("search_kb", |d: Doc, _: StepContext<Ctx>| async move {
        Ok(text(d.seed ^ 7))
    });
    let crm = step(
        "customer_history",
        |d: Doc, _: StepContext<Ctx>| async move {
            if fails(d.seed, 2, 25) {
                return Err(StepError::new(format!(
                    "no customer record for cust-{} in the CRM",
                    d.seed % 1000
                )));
            }
            Ok(text(d.seed ^ 9))
        },
    );
    let retrieve = parallel("retrieve")
        .branch(kb)
        .branch(crm)
        .combine(|found: Vec<String>| found.join("\n"));
    let draft = step(
        "draft",
        |evidence: String, cx: StepContext<Ctx>| async move {
            usage(&cx, 300 + evidence.len() as u64 / 4);
            let seed = cx.read(|c| c.seed)?;
            Ok(Doc {
                seed,
                title: "reply".into(),
                body: text(seed ^ 11),
            })
        },
    );
    let review = step("review", |d: Doc, cx: StepContext<Ctx>| async move {
        usage(&cx, 80);
        cx.update(|c| c.notes.push("approved".into()))?;
        Ok(d)
    });
    Pipeline::new(classify)
        .then(retrieve)
        .then(draft)
        .then(review)
}

fn doc_summarise() -> Pipeline<Doc, String, Ctx> {
    let split = step("split", |d: Doc, _: StepContext<Ctx>| async move {
        Ok((0..3)
            .map(|i| text(d.seed.wrapping_add(i)))
            .collect::<Vec<_>>())
    });
    let summarise_chunk = step(
        "summarise_chunk",
        |chunk: String, cx: StepContext<Ctx>| async move {
            usage(&cx, chunk.len() as u64 / 3);
            Ok(chunk.chars().take(120).collect::<String>())
        },
    );
    let join = step(
        "join",
        |parts: Vec<String>, cx: StepContext<Ctx>| async move {
            let seed = cx.read(|c| c.seed)?;
            if fails(seed, 3, 30) {
                return Err(StepError::new(
                    "summary exceeds the 4,096-token context window",
                ));
            }
            Ok(parts.join(" "))
        },
    );
    Pipeline::new(split)
        .then(map_over("summarise", summarise_chunk, 3))
        .then(join)
}

fn lead_scoring() -> Pipeline<Doc, u64, Ctx> {
    let enrich = step("enrich", |d: Doc, _: StepContext<Ctx>| async move {
        Ok(Doc {
            body: format!("{} {}", d.body, text(d.seed ^ 5)),
            ..d
        })
    })
    .timeout(Duration::from_secs(5));
    let score = step("score", |d: Doc, cx: StepContext<Ctx>| async move {
        usage(&cx, 60);
        Ok(mix(d.seed) % 100)
    });
    let refine = step("refine", |s: u64, cx: StepContext<Ctx>| async move {
        usage(&cx, 20);
        cx.update(|c| c.notes.push(format!("score {s}")))?;
        Ok(s + 7)
    });
    let route = step("route", |s: u64, cx: StepContext<Ctx>| async move {
        let seed = cx.read(|c| c.seed)?;
        if fails(seed, 4, 12) {
            return Err(StepError::new(
                "CRM API rejected the update: 422 missing owner",
            ));
        }
        Ok(s)
    });
    Pipeline::new(enrich)
        .then(score)
        .then(
            loop_until("refine_loop", refine, |s: &u64, _: &Ctx| *s >= 100)
                .max_iterations(5)
                .fallback(step(
                    "cap_score",
                    |_: u64, _: StepContext<Ctx>| async move { Ok(100) },
                )),
        )
        .then(route)
}

/// Runs `args.runs` runs into `args.db`; returns how many were recorded.
pub(crate) fn run(args: &SeedArgs) -> Result<u64> {
    let layer = SqliteLayer::builder()
        .with_queue_capacity(65_536)
        .open(&args.db)
        .with_context(|| format!("opening {}", args.db.display()))?;
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let triage =
        Arc::new(BareFlujo::new("support-triage", support_triage()).with_pipeline_version("3.2"));
    let summarise =
        Arc::new(BareFlujo::new("doc-summarise", doc_summarise()).with_pipeline_version("1.0"));
    let scoring =
        Arc::new(BareFlujo::new("lead-scoring", lead_scoring()).with_pipeline_version("0.9"));
    let started = Instant::now();
    let total = args.runs;
    let concurrency = args.concurrency.max(1) as u64;
    let base = mix(started.elapsed().as_nanos() as u64 ^ std::process::id() as u64);
    let spread = args
        .spread
        .map(|spread| (OffsetDateTime::now_utc(), spread));
    runtime.block_on(async {
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut workers = Vec::new();
        for _ in 0..concurrency {
            let (next, triage, summarise, scoring) = (
                next.clone(),
                triage.clone(),
                summarise.clone(),
                scoring.clone(),
            );
            let work = async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let seed = base.wrapping_add(i);
                    let doc = Doc {
                        seed,
                        title: format!("item {i}"),
                        body: text(seed),
                    };
                    let ctx = Ctx {
                        seed,
                        notes: Vec::new(),
                    };
                    match i % 4 {
                        0 | 1 => drop(
                            runner_for(&triage, spread, i, total)
                                .run_with_context(doc, ctx)
                                .await,
                        ),
                        2 => drop(
                            runner_for(&summarise, spread, i, total)
                                .run_with_context(doc, ctx)
                                .await,
                        ),
                        _ => drop(
                            runner_for(&scoring, spread, i, total)
                                .run_with_context(doc, ctx)
                                .await,
                        ),
                    }
                    if i > 0 && i % 50_000 == 0 {
                        eprintln!(
                            "seed: {i} / {total} runs ({:.0} s)",
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
            }
            .with_subscriber(dispatch.clone());
            workers.push(tokio::spawn(work));
        }
        for worker in workers {
            worker.await.expect("seed worker panicked");
        }
    });
    handle.flush_blocking();
    let not_recorded = handle.rows_not_recorded();
    drop(dispatch);
    anyhow::ensure!(not_recorded == 0, "{not_recorded} rows were not recorded");
    let over = match args.spread {
        Some(spread) => format!(
            ", spread over the past {}",
            humantime::format_duration(spread)
        ),
        None => String::new(),
    };
    eprintln!(
        "seed: {total} runs into {} in {:.1} s{over}",
        args.db.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(total)
}

/// Runs in a database, read without writing.
pub(crate) fn count_runs(db: &Path) -> Result<u64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(conn.query_row("SELECT count(*) FROM runs", [], |row| row.get::<_, i64>(0))? as u64)
}

/// The run id and pipeline of a run in the middle of the database.
pub(crate) fn sample_run(db: &Path) -> Result<(String, String)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let n: i64 = conn.query_row("SELECT count(*) FROM runs", [], |row| row.get(0))?;
    Ok(conn.query_row(
        "SELECT run_id, pipeline_name FROM runs ORDER BY run_id LIMIT 1 OFFSET ?1",
        [n / 2],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn spread_starts_are_even_and_end_before_now() {
        let end = datetime!(2026-12-01 00:00 UTC);
        let day = Duration::from_secs(86_400);
        let spread = day * 90;
        assert_eq!(
            spread_start(end, spread, 0, 1000),
            datetime!(2026-09-02 00:00 UTC)
        );
        assert_eq!(
            spread_start(end, spread, 500, 1000),
            datetime!(2026-10-17 00:00 UTC)
        );
        let last = spread_start(end, spread, 999, 1000);
        assert!(
            last < end && end - last <= time::Duration::hours(3),
            "{last}"
        );
        assert_eq!(parse_spread("90d"), Ok(spread));
        assert_eq!(parse_spread("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_spread("0s").unwrap_err().contains("zero"));
        assert!(parse_spread("soon").unwrap_err().contains("90d"));
    }
}
