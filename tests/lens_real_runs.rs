//! Snapshots of `flujo lens trace` and `flujo lens diff` over databases written by the real
//! runner and the real `SqliteLayer`: a run with a retried step, overlapping parallel branches
//! and a 10,000-item map (folded), at 120 and 60 columns; a run whose process was killed
//! (crashed); and diffs of equal runs, of runs whose output differs deep in a nested pipeline,
//! and of runs where one has a step the other lacks.
//!
//! The pipelines run for real. Then, in the finished database, run and step ids are replaced by
//! fixed ones (execution order and the tree kept as recorded), and every step's start, end and
//! duration is laid out again from the recorded tree with fixed durations per step name:
//! children of a pipeline, loop or branch one after another, parallel branches together, map
//! items on as many lanes as the map's concurrency. So the bars are the same on every run of the
//! suite, and still show what ran beside what. Statuses, attempts, inputs, outputs, errors,
//! usage and nesting are what the layer wrote.
//!
//! The crashed run is written by this test binary run again as a child process, killed while
//! its second step waits forever.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flujo::{
    loop_until, map_over, parallel, step, Backoff, Flujo, Pipeline, SqliteLayer, StepContext,
    StepError, Usage,
};
use serde::{Deserialize, Serialize};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

/// The map's concurrency in the scoring pipeline, and the lanes its items are laid out on.
const MAP_CONCURRENCY: usize = 100;
/// Items the scoring pipeline maps over.
const ITEMS: u32 = 10_000;

/// The lens's clock in these tests.
const NOW: time::OffsetDateTime = time::macros::datetime!(2026-01-05 15:00:00 UTC);
/// Where the `n`-th run of a database starts (n from 1), ten minutes apart.
const FIRST_START: time::OffsetDateTime = time::macros::datetime!(2026-01-05 10:00:00 UTC);
/// Where a run left `running` (the crashed one) starts: five minutes before now.
const RUNNING_START: time::OffsetDateTime = time::macros::datetime!(2026-01-05 14:55:00 UTC);

/// How long each step that ran no steps of its own lasts, in ms, after the layout.
fn leaf_ms(name: &str, index: i64) -> i64 {
    match name {
        "fetch" => 240, // three attempts
        "geo" => 180,
        "history" => 310,
        "score_item" => 3 + index % 5,
        "publish" => 40,
        "route" => 15,
        "retrieve" => 120,
        "call_model" => 850,
        "parse" => 5,
        "format" => 10,
        "draft" => 400,
        "revise" => 300,
        "extract" => 120,
        _ => 20,
    }
}

// ---------------------------------------------------------------------------------------------
// the pipelines

/// `fetch` fails twice then succeeds; `enrich` runs `geo` and `history` in parallel; `score`
/// maps over 10,000 items, 100 at a time; `publish` sums up.
fn scoring() -> Pipeline<u32, u64> {
    let fetch = step("fetch", |n: u32, cx: StepContext<()>| async move {
        if cx.attempt() < 3 {
            return Err(StepError::new(format!(
                "feed answered 503 (attempt {})",
                cx.attempt()
            )));
        }
        Ok(n)
    })
    .max_retries(2)
    .backoff(Backoff::none());
    let geo = step("geo", |n: u32, _: StepContext<()>| async move { Ok(n) });
    let history = step("history", |n: u32, _: StepContext<()>| async move { Ok(n) });
    let enrich = parallel("enrich")
        .branch(geo)
        .branch(history)
        .combine(|found: Vec<u32>| (0..found[0]).collect::<Vec<u32>>());
    let score_item = step("score_item", |item: u32, _: StepContext<()>| async move {
        Ok(item % 7)
    });
    let score = map_over("score", score_item, MAP_CONCURRENCY);
    let publish = step(
        "publish",
        |scores: Vec<u32>, _: StepContext<()>| async move {
            Ok(scores.iter().map(|&s| u64::from(s)).sum::<u64>())
        },
    );
    Pipeline::new(fetch).then(enrich).then(score).then(publish)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Reply {
    reply: String,
}

/// `route`, then `respond` [pipeline] holding `retrieve` and `generate` [pipeline], which holds
/// `call_model` and `parse`; then `format`. The model answers the n-th call with `replies[n]`.
fn chat(replies: &'static [&'static str]) -> Pipeline<String, String> {
    let calls = Arc::new(AtomicUsize::new(0));
    let route = step("route", |q: String, _: StepContext<()>| async move {
        Ok(q.trim().to_lowercase())
    });
    let retrieve = step("retrieve", |q: String, _: StepContext<()>| async move {
        Ok(format!("{q} [kb: refunds take 5 days]"))
    });
    let call_model = step("call_model", move |prompt: String, cx: StepContext<()>| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            cx.add_usage(Usage {
                tokens: 120 + prompt.len() as u64,
                cost_usd: 0.0012,
            });
            Ok(Reply {
                reply: replies[n].to_owned(),
            })
        }
    });
    let parse = step("parse", |r: Reply, _: StepContext<()>| async move {
        Ok(Reply {
            reply: r.reply.trim().to_owned(),
        })
    });
    let generate = Pipeline::new(call_model).then(parse).into_step("generate");
    let respond = Pipeline::new(retrieve).then(generate).into_step("respond");
    let format = step("format", |r: Reply, _: StepContext<()>| async move {
        Ok(format!("> {}", r.reply))
    });
    Pipeline::new(route).then(respond).then(format)
}

#[derive(Debug, Default, Serialize)]
struct Review {
    rounds: u32,
}

/// `draft`, then `review` [loop] of `revise` until the reviewer approves, after as many rounds
/// as `approve_after` says when the round ends (the reviewer is outside the pipeline).
fn review(approve_after: Arc<AtomicU32>) -> Pipeline<String, String, Review> {
    let draft = step(
        "draft",
        |topic: String, _: StepContext<Review>| async move { Ok(format!("draft on {topic}")) },
    );
    let revise = step(
        "revise",
        |text: String, cx: StepContext<Review>| async move {
            let round = cx.update(|c| {
                c.rounds += 1;
                c.rounds
            })?;
            Ok(format!(
                "{} (rev {round})",
                text.split(" (rev").next().unwrap()
            ))
        },
    );
    let until = loop_until("review", revise, move |_: &String, c: &Review| {
        c.rounds >= approve_after.load(Ordering::SeqCst)
    })
    .max_iterations(5);
    Pipeline::new(draft).then(until)
}

/// A subscriber recording into `db` with the real layer.
fn recording_into(db: &Path) -> tracing::Dispatch {
    tracing::Dispatch::new(tracing_subscriber::registry().with(SqliteLayer::open(db).unwrap()))
}

// ---------------------------------------------------------------------------------------------
// ids and times fixed after the run

/// A step as recorded, for the layout.
struct Recorded {
    id: String,
    parent: Option<String>,
    name: String,
    index: i64,
    kind: String,
    running: bool,
}

/// Lays out the steps of one run from their tree: `(start offset, duration)` in ms per step
/// (no duration for a step still stored running), and where the last top-level step ended.
fn layout(steps: &[Recorded]) -> (Vec<(i64, Option<i64>)>, i64) {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), i))
        .collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        match s.parent.as_deref().and_then(|p| index.get(p)) {
            Some(&parent) => children.entry(parent).or_default().push(i),
            None => roots.push(i),
        }
    }
    fn place(
        i: usize,
        start: i64,
        steps: &[Recorded],
        children: &HashMap<usize, Vec<usize>>,
        out: &mut [(i64, Option<i64>)],
    ) -> i64 {
        let kids = children.get(&i).map_or(&[][..], Vec::as_slice);
        let end = if kids.is_empty() {
            start + leaf_ms(&steps[i].name, steps[i].index)
        } else {
            // a step that runs others ends a ms after the last of them
            (match steps[i].kind.as_str() {
                // branches start together (a ms apart, as the runner spawns them)
                "parallel" => kids
                    .iter()
                    .enumerate()
                    .map(|(k, &c)| place(c, start + 1 + k as i64, steps, children, out))
                    .max()
                    .unwrap(),
                // each item on the lane that frees first
                "map" => {
                    let mut lanes = vec![start + 1; MAP_CONCURRENCY];
                    for &c in kids {
                        let lane = (0..lanes.len()).min_by_key(|&l| lanes[l]).unwrap();
                        lanes[lane] = place(c, lanes[lane], steps, children, out);
                    }
                    lanes.into_iter().max().unwrap()
                }
                // pipeline, loop, branch: one child after another
                _ => {
                    let mut cursor = start + 1;
                    for &c in kids {
                        cursor = place(c, cursor, steps, children, out) + 1;
                    }
                    cursor
                }
            }) + 1
        };
        out[i] = (start, (!steps[i].running).then_some(end - start));
        end
    }
    let mut out = vec![(0, None); steps.len()];
    let mut cursor = 0;
    for &root in &roots {
        cursor = place(root, cursor, steps, &children, &mut out) + 2;
    }
    (out, cursor)
}

/// Replaces the ids and times of every run in `db` by fixed ones: run `n` (in the order the
/// runs were written) is `0190c0de-000n-7000-8000-00000000000n`, its `k`-th step (execution
/// order) `0190c0de-000n-7000-9000-00000000000k`. A finished run starts at 10:00 + 10(n-1) min
/// and its writer becomes `build-host`; a run stored running starts at 14:55 (now is 15:00) and
/// keeps its writer, so the lens can tell its process is gone.
fn normalise(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.pragma_update(None, "foreign_keys", false).unwrap();
    let runs: Vec<(String, String)> = conn
        .prepare("SELECT run_id, status FROM runs ORDER BY rowid")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let tx = conn.unchecked_transaction().unwrap();
    tx.execute_batch(
        "CREATE TEMP TABLE ids (old TEXT PRIMARY KEY, new TEXT NOT NULL, start_time TEXT NOT NULL,
                                end_time TEXT, duration_ms INTEGER)",
    )
    .unwrap();
    for (n, (run_id, status)) in runs.iter().enumerate() {
        let n = n + 1;
        let running = status == "running";
        let run_start = if running {
            RUNNING_START
        } else {
            FIRST_START + time::Duration::minutes(10 * (n as i64 - 1))
        };
        let steps: Vec<Recorded> = tx
            .prepare(
                "SELECT step_run_id, parent_step_run_id, step_name, step_index, step_kind, status
                 FROM steps WHERE run_id = ?1 ORDER BY rowid",
            )
            .unwrap()
            .query_map([run_id], |r| {
                Ok(Recorded {
                    id: r.get(0)?,
                    parent: r.get(1)?,
                    name: r.get(2)?,
                    index: r.get(3)?,
                    kind: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    running: r.get::<_, String>(5)? == "running",
                })
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let (times, end) = layout(&steps);
        let new_run = format!("0190c0de-{n:04x}-7000-8000-{n:012x}");
        {
            let mut insert = tx
                .prepare("INSERT INTO ids VALUES (?1, ?2, ?3, ?4, ?5)")
                .unwrap();
            for (k, (s, (offset, duration))) in steps.iter().zip(&times).enumerate() {
                insert
                    .execute(rusqlite::params![
                        s.id,
                        format!("0190c0de-{n:04x}-7000-9000-{:012x}", k + 1),
                        ts(run_start, *offset),
                        duration.map(|d| ts(run_start, offset + d)),
                        duration,
                    ])
                    .unwrap();
            }
        }
        tx.execute_batch(
            "UPDATE steps SET parent_step_run_id = (SELECT new FROM ids WHERE old = parent_step_run_id)
                 WHERE parent_step_run_id IN (SELECT old FROM ids);
             UPDATE runs SET output_step_run_id = (SELECT new FROM ids WHERE old = output_step_run_id)
                 WHERE output_step_run_id IN (SELECT old FROM ids);",
        )
        .unwrap();
        tx.execute(
            "UPDATE steps SET step_run_id = ids.new, run_id = ?1, start_time = ids.start_time,
                    end_time = ids.end_time, duration_ms = ids.duration_ms
             FROM ids WHERE steps.step_run_id = ids.old",
            [&new_run],
        )
        .unwrap();
        tx.execute("DELETE FROM ids", []).unwrap();
        if running {
            tx.execute(
                "UPDATE runs SET run_id = ?1, start_time = ?2 WHERE run_id = ?3",
                rusqlite::params![new_run, ts(run_start, 0), run_id],
            )
            .unwrap();
        } else {
            tx.execute(
                "UPDATE runs SET run_id = ?1, start_time = ?2, end_time = ?3, duration_ms = ?4,
                        writer_host = 'build-host', writer_pid = 4242, writer_pid_start = 1,
                        writer_pid_ns = 4026531836
                 WHERE run_id = ?5",
                rusqlite::params![
                    new_run,
                    ts(run_start, 0),
                    ts(run_start, end + 3),
                    end + 3,
                    run_id
                ],
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// RFC 3339 with six fractional digits, `millis` after `start`, as the layer writes it.
fn ts(start: time::OffsetDateTime, millis: i64) -> String {
    flujo::format_timestamp(start + time::Duration::milliseconds(millis))
}

fn run_id(n: usize) -> String {
    format!("0190c0de-{n:04x}-7000-8000-{n:012x}")
}

// ---------------------------------------------------------------------------------------------
// the lens, in process

struct Outcome {
    code: u8,
    stdout: String,
    stderr: String,
    transcript: String,
}

/// `flujo lens ARGS` over `db` at `columns` columns, not a terminal, at [`NOW`].
fn lens(db: &Path, columns: &str, args: &[&str]) -> Outcome {
    let env = flujo_lens::Environment {
        cwd: db.parent().unwrap().to_path_buf(),
        state_uri: Some(db.to_str().unwrap().to_owned()),
        columns: Some(columns.to_owned()),
        no_color: true,
        stdout_is_terminal: false,
        stdin_is_terminal: false,
        stderr_is_terminal: false,
        terminal_width: None,
        now: NOW,
        // any other field (terminal height, ...) as for this process: not a terminal under test
        ..flujo_lens::Environment::from_process()
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let argv = ["flujo", "lens"].into_iter().chain(args.iter().copied());
    let code = flujo_lens::run(argv, &env, &mut stdout, &mut stderr);
    let (stdout, stderr) = (
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    );
    let transcript = format!(
        "$ COLUMNS={columns} flujo lens {}\nexit code: {code}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        args.join(" ")
    );
    Outcome {
        code,
        stdout,
        stderr,
        transcript,
    }
}

/// The host name as the writer records it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

/// `text` with regex metacharacters escaped, for insta filters.
fn regex_escape(text: &str) -> String {
    let mut escaped = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Snapshots `text` under `name` in the top-level `snapshots/`, the temporary directory, host
/// and pid made stable.
fn snapshot(name: &str, dir: &Path, text: &str) {
    let host = regex_escape(&host_name());
    let filters = [
        (regex_escape(dir.to_str().unwrap()), "[TMP]".to_owned()),
        (
            format!(r"pid \d+ on {host}"),
            "pid [PID] on [HOST]".to_owned(),
        ),
        (
            format!(r#""host":"{host}","pid":\d+"#),
            r#""host":"[HOST]","pid":[PID]"#.to_owned(),
        ),
    ];
    let filters: Vec<(&str, &str)> = filters
        .iter()
        .map(|(from, to)| (from.as_str(), to.as_str()))
        .collect();
    insta::with_settings!({
        snapshot_path => "../snapshots",
        prepend_module_to_snapshot => false,
        omit_expression => true,
        filters => filters,
    }, {
        insta::assert_snapshot!(name, text);
    });
}

/// The first line whose text (after the indentation) starts with `name`.
fn line<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.trim_start().starts_with(name))
        .unwrap_or_else(|| panic!("no {name} line in\n{out}"))
}

/// The columns a line's bar covers.
fn bar(line: &str) -> (usize, usize) {
    let chars: Vec<char> = line.chars().collect();
    let start = chars.iter().position(|&c| c == '█').unwrap();
    let len = chars[start..].iter().take_while(|&&c| c == '█').count();
    (start, start + len)
}

// ---------------------------------------------------------------------------------------------
// trace

#[tokio::test]
async fn trace_of_a_real_run_with_a_retried_step_parallel_branches_and_a_large_map() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    let result = Flujo::new("scoring", scoring())
        .with_pipeline_version("3")
        .run(ITEMS)
        .with_subscriber(recording_into(&db))
        .await;
    let expected_sum: u64 = (0..ITEMS).map(|i| u64::from(i % 7)).sum();
    assert_eq!(result.output, Some(expected_sum));
    normalise(&db);

    // what the layer wrote: the retried step's attempts and errors, every item
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (attempts, error): (i64, String) = conn
        .query_row(
            "SELECT attempts, error_blob FROM steps WHERE step_name = 'fetch'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(attempts, 3);
    assert!(error.contains("feed answered 503 (attempt 2)"), "{error}");
    let steps: i64 = conn
        .query_row("SELECT count(*) FROM steps", [], |r| r.get(0))
        .unwrap();
    assert_eq!(steps, 4 + 2 + i64::from(ITEMS));
    drop(conn);

    let id = run_id(1);
    let wide = lens(&db, "120", &["trace", &id]);
    snapshot("real_trace", dir.path(), &wide.transcript);
    assert_eq!(wide.code, 0, "{}", wide.stderr);
    let out = &wide.stdout;
    assert!(
        out.starts_with(&format!("run {id} · scoring 3 · completed · ")),
        "{out}"
    );
    assert!(
        out.lines().next().unwrap().ends_with(" · 10,006 steps"),
        "{out}"
    );
    assert!(line(out, "fetch").contains("3 attempts"), "{out}");
    // the branches overlap on the time axis, and both lie within enrich's bar
    let (enrich, geo, history) = (
        bar(line(out, "enrich")),
        bar(line(out, "geo")),
        bar(line(out, "history")),
    );
    assert!(geo.0 < history.1 && history.0 < geo.1, "{out}");
    assert!(
        enrich.0 <= geo.0.min(history.0) && geo.1.max(history.1) <= enrich.1,
        "{out}"
    );
    // 10,000 items: 10 shown, the other 9,990 folded into one line
    assert_eq!(out.lines().filter(|l| l.contains("score_item")).count(), 10);
    let folded = line(out, "… ");
    assert!(folded.contains("… 9,990 more"), "{folded}");
    assert!(folded.contains("p50 5 ms, max 7 ms"), "{folded}");
    assert!(line(out, "publish").contains("completed"));

    let narrow = lens(&db, "60", &["trace", &id]);
    snapshot("real_trace_narrow", dir.path(), &narrow.transcript);
    assert_eq!(narrow.code, 0, "{}", narrow.stderr);
    assert!(narrow.stdout.contains("… 9,990 more"));
    assert!(line(&narrow.stdout, "fetch").contains("3 attempts"));

    // --expand shows every item (too big for a snapshot); JSON folds nothing
    let expanded = lens(&db, "120", &["trace", &id, "--expand"]);
    assert_eq!(expanded.code, 0);
    assert_eq!(
        expanded
            .stdout
            .lines()
            .filter(|l| l.contains("score_item"))
            .count(),
        ITEMS as usize
    );
    assert!(!expanded.stdout.contains(" more "));
    let json = lens(&db, "120", &["-o", "json", "trace", &id]);
    assert_eq!(json.code, 0);
    let tree: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(tree["steps"][0]["attempts"], 3);
    assert_eq!(
        tree["steps"][2]["children"].as_array().unwrap().len(),
        ITEMS as usize
    );
}

/// The environment variable naming the child's database.
const CHILD_DB: &str = "FLUJO_TEST_LENS_REAL_RUNS_CRASH_DB";

/// Runs in the child process only: `extract`, then `load`, which never ends.
#[test]
#[ignore = "child process of trace_of_a_real_run_whose_process_was_killed, which runs it with --exact --ignored"]
fn crashing_child_process_entry() {
    let db = std::env::var_os(CHILD_DB).expect("the database path is set by the parent test");
    let extract = step("extract", |n: u32, _: StepContext<()>| async move {
        Ok(vec![n; 3])
    });
    let load = step("load", |_rows: Vec<u32>, _: StepContext<()>| async move {
        std::future::pending::<()>().await;
        Ok(0u32)
    });
    let flujo = Flujo::new("ingest", Pipeline::new(extract).then(load)).with_pipeline_version("1");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(flujo.run(7).with_subscriber(recording_into(Path::new(&db))));
    unreachable!("the child is killed before its run ends");
}

#[test]
fn trace_of_a_real_run_whose_process_was_killed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "crashing_child_process_entry",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DB, &db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // poll until the blocked step's row is committed
    let started = Instant::now();
    loop {
        let seen =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .and_then(|conn| {
                    conn.query_row(
                "SELECT count(*) FROM steps WHERE step_name = 'load' AND status = 'running'",
                [],
                |r| r.get::<_, i64>(0),
            )
                })
                .unwrap_or(0);
        if seen == 1 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child ended before its step started: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the running step never reached the database"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "{status}"
    );
    normalise(&db);

    let id = run_id(1);
    let crashed = lens(&db, "120", &["trace", &id]);
    snapshot("real_trace_crashed", dir.path(), &crashed.transcript);
    assert_eq!(crashed.code, 0, "{}", crashed.stderr);
    let out = &crashed.stdout;
    assert!(
        out.starts_with(&format!(
            "run {id} · ingest 1 · crashed · >5m 00s · 2 steps\n"
        )),
        "{out}"
    );
    assert!(line(out, "extract").contains("completed"), "{out}");
    let load = line(out, "load");
    assert!(load.contains("crashed"), "{load}");
    // the interrupted step runs to the end of the axis (now)
    assert!(bar(load).1 > bar(line(out, "extract")).1, "{out}");
}

// ---------------------------------------------------------------------------------------------
// diff

/// Runs 1 to 3: `chat` with the model answering "a", "a", then "b" (1 and 2 equal, 2 and 3
/// differ deep in `respond/generate/call_model`); runs 4 and 5: `review`, approved after 2 and
/// after 3 rounds (5 has a third `revise`).
async fn record_diff_runs(db: &Path) {
    let subscriber = recording_into(db);
    let chat = Flujo::new(
        "chat",
        chat(&[
            "Your refund is on its way.",
            "Your refund is on its way.",
            "Your refund was declined.",
        ]),
    )
    .with_pipeline_version("2");
    for _ in 0..3 {
        let result = chat
            .run("  Where is my REFUND?".to_owned())
            .with_subscriber(subscriber.clone())
            .await;
        assert!(result.output.is_some(), "{:?}", result.error);
    }
    let approve_after = Arc::new(AtomicU32::new(2));
    let reviewing = Flujo::new("review", review(approve_after.clone())).with_pipeline_version("1");
    for rounds in [2, 3] {
        approve_after.store(rounds, Ordering::SeqCst);
        let result = reviewing
            .run("refunds".to_owned())
            .with_subscriber(subscriber.clone())
            .await;
        assert_eq!(result.final_context.rounds, rounds);
    }
    normalise(db);
}

#[tokio::test]
async fn diff_of_real_runs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    record_diff_runs(&db).await;

    // the same pipeline on the same input, the same answers: equal, whatever the ids
    let equal = lens(&db, "120", &["diff", &run_id(1), &run_id(2)]);
    snapshot("real_diff_equal", dir.path(), &equal.transcript);
    assert_eq!(equal.code, 0, "{}{}", equal.stdout, equal.stderr);
    assert!(equal.stdout.contains("run  equal"), "{}", equal.stdout);
    assert!(
        equal.stdout.contains("steps: 0 of 7 differ"),
        "{}",
        equal.stdout
    );

    // another answer deep in a nested pipeline
    let changed = lens(&db, "120", &["diff", &run_id(2), &run_id(3)]);
    snapshot("real_diff_changed_deep", dir.path(), &changed.transcript);
    assert_eq!(changed.code, 1, "{}{}", changed.stdout, changed.stderr);
    assert_eq!(changed.stderr, "");
    let out = &changed.stdout;
    for expected in [
        "run  differs",
        "≠ respond/generate/call_model",
        "output.reply: \"Your refund is on its way.\" → \"Your refund was declined.\"",
    ] {
        assert!(out.contains(expected), "{expected:?} not in\n{out}");
    }
    assert!(!out.contains("≠ route"), "equal steps are left out: {out}");
    assert!(!out.contains("retrieve"), "equal steps are left out: {out}");

    let json = lens(&db, "120", &["diff", &run_id(2), &run_id(3), "-o", "json"]);
    snapshot("real_diff_changed_json", dir.path(), &json.transcript);
    assert_eq!(json.code, 1);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["equal"], false);
    assert_eq!(value["same_pipeline"], true);
    assert_eq!(value["steps_compared"], 7);
    let steps = value["steps"].as_array().unwrap();
    let model = steps
        .iter()
        .find(|s| s["path"] == "respond/generate/call_model")
        .unwrap_or_else(|| panic!("{}", json.stdout));
    assert_eq!(
        model["changes"],
        serde_json::json!([{
            "path": "output.reply",
            "a": "Your refund is on its way.",
            "b": "Your refund was declined."
        }])
    );

    // a loop that went round once more: a step in one run only
    let one_sided = lens(&db, "120", &["diff", &run_id(4), &run_id(5)]);
    snapshot(
        "real_diff_step_in_one_run_only",
        dir.path(),
        &one_sided.transcript,
    );
    assert_eq!(
        one_sided.code, 1,
        "{}{}",
        one_sided.stdout, one_sided.stderr
    );
    let out = &one_sided.stdout;
    for expected in [
        "≠ review/revise#2  only in B",
        "final_context.rounds: 2 → 3",
    ] {
        assert!(out.contains(expected), "{expected:?} not in\n{out}");
    }
    assert!(!out.contains("only in A"), "{out}");
}
