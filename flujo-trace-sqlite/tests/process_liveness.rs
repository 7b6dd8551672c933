//! A run stored as `running` reads as `crashed` once its writer process is gone (killed, even
//! before it is reaped), and as `running` while it lives, when it ran on another host, or in
//! another PID namespace (another container with the same host name).

use flujo_trace_sqlite::{RunFilter, RunReader, SqliteReader, CRASHED};
use rusqlite::params;

const V1: &str = include_str!("../src/schema/v1.sql");
const V1_TO_V2: &str = include_str!("../src/schema/v1_to_v2.sql");
const V2_TO_V3: &str = include_str!("../src/schema/v2_to_v3.sql");

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

/// Field 22 of /proc/PID/stat, counted after the command name.
fn start_ticks(pid: u32) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 1..];
    after_name
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap()
}

/// The PID namespace of this process: the inode of `/proc/self/ns/pid`.
fn pid_namespace() -> i64 {
    use std::os::unix::fs::MetadataExt as _;
    let inode = std::fs::metadata("/proc/self/ns/pid").unwrap().ino();
    i64::try_from(inode).unwrap()
}

/// A schema v2 database (no namespace recorded) with run `r1` stored as `running`.
fn database_with_running_run(path: &std::path::Path, host: &str, pid: i64, pid_start: i64) {
    database_with_running_run_in(path, host, pid, pid_start, None);
}

/// Run `r1` stored as `running`, by a writer in PID namespace `pid_ns` (schema v3), or with no
/// namespace recorded (`None`: schema v2).
fn database_with_running_run_in(
    path: &std::path::Path,
    host: &str,
    pid: i64,
    pid_start: i64,
    pid_ns: Option<i64>,
) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(V1).unwrap();
    conn.execute_batch(V1_TO_V2).unwrap();
    conn.pragma_update(None, "user_version", 2).unwrap();
    conn.execute(
        "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time, \
         writer_host, writer_pid, writer_pid_start) \
         VALUES ('r1', 'p', 'v', 'running', '2026-01-05T10:00:00.000000Z', ?1, ?2, ?3)",
        params![host, pid, pid_start],
    )
    .unwrap();
    if let Some(pid_ns) = pid_ns {
        conn.execute_batch(V2_TO_V3).unwrap();
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute("UPDATE runs SET writer_pid_ns = ?1", [pid_ns])
            .unwrap();
    }
    conn.execute(
        "INSERT INTO steps (step_run_id, run_id, step_name, step_index, status, start_time) \
         VALUES ('s1', 'r1', 'slow_step', 0, 'running', '2026-01-05T10:00:01.000000Z')",
        [],
    )
    .unwrap();
}

fn status(path: &std::path::Path) -> String {
    let reader = SqliteReader::open(path).unwrap();
    let by_id = reader.find_run("r1").unwrap().unwrap().status;
    let listed = reader
        .list_runs_page(
            &RunFilter {
                limit: Some(5),
                ..RunFilter::default()
            },
            10,
        )
        .unwrap()
        .runs[0]
        .status
        .clone();
    assert_eq!(by_id, listed);
    by_id
}

#[test]
fn killed_writer_makes_its_running_run_crashed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let pid = child.id();
    database_with_running_run(&path, &host_name(), i64::from(pid), start_ticks(pid));
    let before = std::fs::read(&path).unwrap();
    assert_eq!(status(&path), "running");

    child.kill().unwrap();
    // wait until it has exited, leaving it unreaped: a zombie is as dead as a writer gets
    let exited = rustix::process::waitid(
        rustix::process::WaitId::Pid(rustix::process::Pid::from_child(&child)),
        rustix::process::WaitIdOptions::EXITED | rustix::process::WaitIdOptions::NOWAIT,
    )
    .unwrap();
    assert!(exited.is_some(), "waitid without NOHANG returns a status");
    assert_eq!(status(&path), CRASHED);
    child.wait().unwrap();
    assert_eq!(status(&path), CRASHED);

    let reader = SqliteReader::open(&path).unwrap();
    let running = reader.running_steps("r1").unwrap();
    assert_eq!(
        running
            .iter()
            .map(|s| s.step_name.as_str())
            .collect::<Vec<_>>(),
        ["slow_step"]
    );
    let crashed = RunFilter {
        statuses: vec![CRASHED.into()],
        limit: Some(5),
        ..RunFilter::default()
    };
    assert_eq!(reader.list_runs_page(&crashed, 10).unwrap().runs.len(), 1);
    let running_filter = RunFilter {
        statuses: vec!["running".into()],
        limit: Some(5),
        ..RunFilter::default()
    };
    assert!(reader
        .list_runs_page(&running_filter, 10)
        .unwrap()
        .runs
        .is_empty());
    drop(reader);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "derived at read time, never stored"
    );
}

#[test]
fn reused_pid_is_not_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let me = std::process::id();
    database_with_running_run(&path, &host_name(), i64::from(me), start_ticks(me) + 1);
    assert_eq!(status(&path), CRASHED);
}

#[test]
fn live_writer_and_other_hosts_stay_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let me = std::process::id();
    database_with_running_run(&path, &host_name(), i64::from(me), start_ticks(me));
    assert_eq!(status(&path), "running");

    let other = tempfile::tempdir().unwrap();
    let path = other.path().join("flujo_ops.db");
    database_with_running_run(&path, "some-other-host.example", 1, 1);
    assert_eq!(
        status(&path),
        "running",
        "cannot judge a process on another host"
    );
}

#[test]
fn a_writer_in_another_pid_namespace_is_not_judged() {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = i64::from(child.id());
    child.wait().unwrap();

    // same host and the pid of a process gone here, but written in another container
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    database_with_running_run_in(&path, &host_name(), dead, 1, Some(pid_namespace() + 1));
    assert_eq!(status(&path), "running", "its pids are not ours to look up");

    // the same run written in this reader's namespace is judged
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    database_with_running_run_in(&path, &host_name(), dead, 1, Some(pid_namespace()));
    assert_eq!(status(&path), CRASHED);
}
