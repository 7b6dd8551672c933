//! Following live: a child process records a run step by step, each step waiting for the test's
//! word, while `flujo lens show RUN --follow` reads; every step start and end appears, in order,
//! before the next step is let go, and the follower's exit code is the run's status (0
//! completed, 3 failed, 4 cancelled, 5 crashed: the writer killed mid-run). `trace --follow`
//! prints the final waterfall and exits the same way, `list --watch` prints a line per change
//! and exits 0 on SIGINT, a follower whose reader closed the pipe exits 0 at its next line, and a
//! follower never holds back a writer's checkpoint. On SQLite and on a real PostgreSQL server.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use flujo::{step, Flujo, Pipeline, StepContext, StepError};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

/// How long any one expected line may take: generous, it is a bound on a hang, not a timing.
const PATIENCE: Duration = Duration::from_secs(30);

/// The word each step waits for on standard input, one line per step.
async fn wait_for_word() -> String {
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).unwrap();
        line.trim().to_owned()
    })
    .await
    .unwrap()
}

/// Runs in the writer process only: steps `one`, `two`, `three`, each ending when the parent
/// writes a line: `go` completes it, `fail` fails it, `cancel` drops the run (cancelled).
#[test]
#[ignore = "child process of the tests in lens_follow.rs, which run it with --ignored --exact"]
fn writer_process_entry() {
    let store = std::env::var("FLUJO_TEST_FOLLOW_STORE").expect("set by the parent test");
    let cancel = std::sync::Arc::new(tokio::sync::Notify::new());
    let make = |name: &'static str| {
        let cancel = cancel.clone();
        step(name, move |x: u32, _: StepContext<()>| {
            let cancel = cancel.clone();
            async move {
                match wait_for_word().await.as_str() {
                    "go" => Ok(x + 1),
                    "cancel" => {
                        cancel.notify_one();
                        std::future::pending().await
                    }
                    word => Err(StepError::new(format!("told to {word}"))),
                }
            }
        })
    };
    let flujo = Flujo::new(
        "followed",
        Pipeline::new(make("one"))
            .then(make("two"))
            .then(make("three")),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    if store.starts_with("postgres") {
        let layer = flujo::PostgresLayer::open(&store).unwrap();
        let handle = layer.handle();
        let subscriber = tracing_subscriber::registry().with(layer);
        runtime.block_on(async {
            tokio::select! {
                _ = flujo.run(1).with_subscriber(subscriber) => {}
                () = cancel.notified() => {}
            }
        });
        runtime.block_on(handle.flush());
    } else {
        let layer = flujo::SqliteLayer::open(&store).unwrap();
        let handle = layer.handle();
        let subscriber = tracing_subscriber::registry().with(layer);
        runtime.block_on(async {
            tokio::select! {
                _ = flujo.run(1).with_subscriber(subscriber) => {}
                () = cancel.notified() => {}
            }
        });
        runtime.block_on(handle.flush());
    }
}

fn lens_command(store: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flujo"));
    command
        .args(["lens", "--state-uri", store])
        .args(args)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120")
        .env_remove("FLUJO_STATE_URI");
    command
}

/// A process whose standard output is read line by line on a thread.
struct Reading {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Reading {
    fn spawn(mut command: Command) -> Reading {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Reading {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line, failing the test (with everything seen so far) if none comes.
    fn next(&mut self) -> String {
        match self.lines.recv_timeout(PATIENCE) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(_) => panic!(
                "no line within {PATIENCE:?}; seen:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Reads lines until one whose second and third words are `word` and `name` (a `show
    /// --follow` step line: `TIME WORD NAME ...`); every step line before it must be listed in
    /// `expected` order, so a line out of order fails.
    fn expect_step(&mut self, word: &str, name: &str) {
        let line = self.next();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            (words.get(1).copied(), words.get(2).copied()),
            (Some(word), Some(name)),
            "expected `{word} {name}` next; seen:\n{}",
            self.seen.join("\n")
        );
    }

    /// Waits for the process to end: its exit code, the rest of its output and its stderr.
    fn finish(mut self) -> (i32, Vec<String>, String) {
        let status = wait_bounded(&mut self.child);
        let rest: Vec<String> = self.lines.iter().collect();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut self.child.stderr.take().unwrap(), &mut stderr).unwrap();
        (status.code().unwrap_or(-1), rest, stderr)
    }
}

fn wait_bounded(child: &mut Child) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("the process did not end within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The writer process and its standard input.
struct Writer {
    child: Child,
    stdin: ChildStdin,
}

impl Writer {
    fn spawn(store: &str) -> Writer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "writer_process_entry",
                "--exact",
                "--ignored",
                "--nocapture",
            ])
            .env("FLUJO_TEST_FOLLOW_STORE", store)
            .env_remove("FLUJO_STATE_URI")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        Writer { child, stdin }
    }

    fn say(&mut self, word: &str) {
        writeln!(self.stdin, "{word}").unwrap();
        self.stdin.flush().unwrap();
    }
}

/// The id of the writer's run, once `show latest` finds it running (it starts waiting in
/// step `one`).
fn running_run(store: &str) -> String {
    let started = Instant::now();
    loop {
        let out = lens_command(store, &["show", "latest", "-o", "json"])
            .output()
            .unwrap();
        if out.status.success() {
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if json["run"]["pipeline_name"] == "followed" && json["run"]["status"] == "running" {
                return json["run"]["run_id"].as_str().unwrap().to_owned();
            }
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the writer's run never appeared: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How the writer's run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Completed,
    Failed,
    Cancelled,
    Crashed,
}

/// One followed run: the writer goes step by step, each only once the follower showed the one
/// before, and the follower's exit code is the run's status.
fn follow_one(store: &str, end: End) {
    let mut writer = Writer::spawn(store);
    let run = running_run(store);
    let mut follower = Reading::spawn(lens_command(store, &["show", &run, "--follow"]));
    let header = follower.next();
    assert!(
        header.starts_with(&format!("following run {run} (")),
        "{header}"
    );
    assert!(header.contains("of followed"), "{header}");
    follower.expect_step("started", "one");
    writer.say("go");
    follower.expect_step("completed", "one");
    follower.expect_step("started", "two");
    let (expected_code, last_word, footer) = match end {
        End::Completed => {
            writer.say("go");
            follower.expect_step("completed", "two");
            follower.expect_step("started", "three");
            writer.say("go");
            follower.expect_step("completed", "three");
            (0, None, "run completed in ")
        }
        End::Failed => {
            writer.say("go");
            follower.expect_step("completed", "two");
            follower.expect_step("started", "three");
            writer.say("fail");
            (3, Some(("failed", "three")), "run failed after ")
        }
        End::Cancelled => {
            writer.say("cancel");
            (4, Some(("cancelled", "two")), "run cancelled after ")
        }
        End::Crashed => {
            writer.child.kill().unwrap();
            (
                5,
                Some(("crashed", "two")),
                "run crashed: its process (pid ",
            )
        }
    };
    if let Some((word, name)) = last_word {
        follower.expect_step(word, name);
    }
    let footer_line = follower.next();
    assert!(
        footer_line.starts_with(footer),
        "{footer_line}\nseen:\n{}",
        follower.seen.join("\n")
    );
    if end == End::Failed {
        assert_eq!(
            follower.next(),
            "error: step 'three' failed: told to fail",
            "{}",
            follower.seen.join("\n")
        );
    }
    let (code, rest, stderr) = follower.finish();
    assert_eq!(code, expected_code, "{end:?}: stderr {stderr}");
    assert!(rest.is_empty(), "{rest:?}");
    let _ = wait_bounded(&mut writer.child);
}

fn sqlite_store() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("flujo_ops.db").display().to_string();
    (dir, store)
}

#[test]
fn show_follow_prints_every_step_in_order_and_exits_with_the_status_on_sqlite() {
    let (_dir, store) = sqlite_store();
    for end in [End::Completed, End::Failed, End::Cancelled, End::Crashed] {
        follow_one(&store, end);
    }
}

#[test]
fn show_follow_prints_every_step_in_order_and_exits_with_the_status_on_postgres() {
    let server = flujo_test_postgres::TestServer::get();
    let store = server.create_database("follow");
    for end in [End::Completed, End::Failed, End::Cancelled] {
        follow_one(&store, end);
    }
    // a killed writer is seen by its heartbeat on PostgreSQL, or at once on this host
    follow_one(&store, End::Crashed);
}

#[test]
fn trace_follow_and_list_watch_follow_the_same_run() {
    let (dir, store) = sqlite_store();
    let mut writer = Writer::spawn(&store);
    let run = running_run(&store);
    let mut watch = Reading::spawn(lens_command(&store, &["list", "--watch"]));
    let first = watch.next();
    assert!(
        first.contains("  running    ") && first.contains("followed"),
        "{first}"
    );
    let trace = Reading::spawn(lens_command(&store, &["trace", &run, "--follow"]));
    let mut jsonl = Reading::spawn(lens_command(&store, &["show", &run, "-f", "-o", "jsonl"]));
    // the jsonl follower has read the run while it runs before the writer goes on
    let first_record: serde_json::Value = serde_json::from_str(&jsonl.next()).unwrap();

    // a follower holds no transaction: a writer's checkpoint goes through while they read
    let conn = rusqlite::Connection::open(dir.path().join("flujo_ops.db")).unwrap();
    writer.say("go");
    writer.say("go");
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
        .unwrap();
    assert_eq!(busy, 0, "a follower blocked the checkpoint");
    writer.say("go");

    let done = watch.next();
    assert!(
        done.contains("  completed  ") && done.contains(&run[28..]),
        "{done}\nfirst: {first}"
    );
    // SIGINT stops the watcher, which exits 0
    let pid = watch.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let (code, _, stderr) = watch.finish();
    assert_eq!(code, 0, "{stderr}");

    let (code, waterfall, stderr) = trace.finish();
    assert_eq!(code, 0, "{stderr}");
    let waterfall = waterfall.join("\n");
    for name in ["one", "two", "three"] {
        assert!(waterfall.contains(name), "{waterfall}");
    }
    assert!(waterfall.contains("completed"), "{waterfall}");

    let (code, lines, stderr) = jsonl.finish();
    assert_eq!(code, 0, "{stderr}");
    let records: Vec<serde_json::Value> = std::iter::once(first_record)
        .chain(lines.iter().map(|line| serde_json::from_str(line).unwrap()))
        .collect();
    let first = &records[0];
    assert_eq!(
        (first["record"].as_str(), first["status"].as_str()),
        (Some("run"), Some("running"))
    );
    let last = records.last().unwrap();
    assert_eq!(
        (last["record"].as_str(), last["status"].as_str()),
        (Some("run"), Some("completed"))
    );
    let steps: Vec<(String, String)> = records[1..records.len() - 1]
        .iter()
        .map(|r| {
            assert_eq!(r["record"], "step");
            (
                r["step_name"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // each step once ended; one seen running first may also be there, never out of order
    let ended: Vec<&str> = steps
        .iter()
        .filter(|(_, status)| status == "completed")
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(ended, ["one", "two", "three"], "{steps:?}");
    let _ = wait_bounded(&mut writer.child);
}

#[test]
fn a_follower_whose_reader_went_away_exits_cleanly_while_the_run_goes_on() {
    let (_dir, store) = sqlite_store();
    let mut writer = Writer::spawn(&store);
    let run = running_run(&store);
    let mut follower = lens_command(&store, &["show", &run, "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // as `flujo lens show RUN -f | head -1`: the reader takes the header and closes the pipe
    let mut header = String::new();
    BufReader::new(follower.stdout.take().unwrap())
        .read_line(&mut header)
        .unwrap();
    assert!(header.starts_with("following run "), "{header}");
    // the next step line meets the closed pipe
    writer.say("go");
    let status = wait_bounded(&mut follower);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut follower.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {stderr}");
    assert_eq!(stderr, "", "a closed pipe is no error to report");
    // it left while the run was still going on, which then ends as usual
    let out = lens_command(&store, &["show", &run, "-o", "json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["run"]["status"], "running");
    writer.say("go");
    writer.say("go");
    assert!(wait_bounded(&mut writer.child).success());
}

#[test]
fn json_is_refused_with_follow_in_favour_of_jsonl() {
    let (_dir, store) = sqlite_store();
    let out = lens_command(&store, &["show", "latest", "--follow", "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("use -o jsonl"), "{stderr}");
}
