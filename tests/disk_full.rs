//! A really full disk: the database lives on a 3 MiB tmpfs, mounted in a private mount
//! namespace (`unshare -m`) so a failing test leaks no mount, and the runs' outputs fill it.
//! Every run still returns its result; the loss is reported on stderr while the process runs
//! (before the run that lost rows returns, not only at exit); once space is freed, recording
//! resumes by itself. Both for the zero-setup default subscriber and for a `SqliteLayer` the user
//! installs with `.init()`.
//!
//! The children run this test binary again (`--ignored --exact`) inside `unshare -m sh -c ..`;
//! the shell copies the database out of the tmpfs before the namespace (and its mount) goes.

use std::path::Path;
use std::process::Command;

use flujo::{step, Flujo, Pipeline, RunStatus, StepContext, StepError};

/// What a child prints on stderr after its runs returned, so the parent can tell that a warning
/// came before it.
const MARK: &str = "disk-full-child:";

/// One step whose output is `kib` KiB of text (recorded twice: the step's and the run's output).
fn producer(kib: usize) -> Flujo<u64, String> {
    Flujo::new(
        "fill-the-disk",
        Pipeline::new(step(
            "produce",
            move |i: u64, _: StepContext<()>| async move {
                Ok::<_, StepError>(format!("{i:08}").repeat(kib * 128))
            },
        )),
    )
}

/// Runs `child` of this binary in a private mount namespace with a 3 MiB tmpfs at `mnt`; the
/// database files are copied to `out` afterwards. Returns (success, stdout, stderr).
fn run_in_tmpfs(child: &str, mnt: &Path, out: &Path) -> (bool, String, String) {
    let script = r#"
        mount -t tmpfs -o size=3m flujo-test "$1" || { echo "could not mount a tmpfs on $1" >&2; exit 97; }
        "$3" --ignored --exact "$4" --nocapture --test-threads=1
        status=$?
        cp "$1"/flujo_ops.db* "$2"/ 2>/dev/null
        exit $status
    "#;
    // root may make a mount namespace; anyone else needs a user namespace too
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(2) == Some("0"));
    let mut command = Command::new("unshare");
    command.args(if root { &["-m"][..] } else { &["-r", "-m"][..] });
    command
        .args(["--", "sh", "-c", script, "sh"])
        .arg(mnt)
        .arg(out)
        .arg(std::env::current_exe().unwrap())
        .arg(child)
        .env("FLUJO_STATE_URI", mnt.join("flujo_ops.db"))
        .env("FLUJO_TEST_MNT", mnt);
    let output = command.output().unwrap_or_else(|e| {
        panic!("this test needs `unshare` (util-linux) to mount a small tmpfs: {e}")
    });
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_ne!(
        output.status.code(),
        Some(97),
        "the test could not fill a real disk: mounting a tmpfs in a private mount namespace \
         failed (run as root, or allow unprivileged user namespaces):\n{stderr}"
    );
    if stderr.contains("unshare: ") {
        panic!(
            "the test could not fill a real disk: `unshare -m` failed (run as root, or allow \
             unprivileged user namespaces):\n{stderr}"
        );
    }
    (output.status.success(), stdout, stderr)
}

/// The position of the first line of `stderr` that starts with `prefix`.
fn line_of(stderr: &str, prefix: &str) -> Option<usize> {
    stderr.lines().position(|line| line.starts_with(prefix))
}

fn integrity(db: &Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

#[test]
fn a_full_disk_at_the_end_of_a_process_is_reported_before_it_exits() {
    let mnt = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) =
        run_in_tmpfs("child_fills_the_disk_to_the_end", mnt.path(), out.path());
    assert!(ok, "{stdout}\n{stderr}");
    let db = mnt.path().join("flujo_ops.db");
    let warning = format!(
        "flujo: warning: could not record to {}: database or disk is full (the disk holding it is full",
        db.display()
    );
    let warned = line_of(&stderr, &warning).unwrap_or_else(|| panic!("no warning in:\n{stderr}"));
    let done = line_of(&stderr, &format!("{MARK} all runs returned"))
        .unwrap_or_else(|| panic!("the child did not finish:\n{stderr}"));
    // the last batches were the ones refused: the warning still came while the process ran
    assert!(
        warned < done,
        "the warning came after the runs returned:\n{stderr}"
    );
    let line = stderr.lines().nth(warned).unwrap();
    assert!(
        line.contains(" rows not recorded so far"),
        "the warning gives the count: {line}"
    );

    // what was recorded is consistent, whole runs or runs left `running`
    let copy = out.path().join("flujo_ops.db");
    assert_eq!(integrity(&copy), "ok");
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let recorded: i64 = conn
        .query_row("SELECT count(*) FROM runs", [], |row| row.get(0))
        .unwrap();
    assert!(recorded < 40, "a 3 MiB disk cannot hold 40 runs of 400 KiB");
}

#[test]
#[ignore = "child process of a_full_disk_at_the_end_of_a_process_is_reported_before_it_exits"]
fn child_fills_the_disk_to_the_end() {
    // zero setup: the default subscriber records to FLUJO_STATE_URI on the tmpfs
    let flujo = producer(200);
    for i in 0..40 {
        let result = flujo.run_blocking(i);
        assert_eq!(
            result.status,
            RunStatus::Completed,
            "recording never fails a run"
        );
        assert_eq!(result.output.map(|s| s.len()), Some(200 * 1024));
    }
    eprintln!("{MARK} all runs returned");
}

#[test]
fn a_full_disk_is_reported_while_running_and_recording_resumes_once_space_is_freed() {
    let mnt = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) =
        run_in_tmpfs("child_fills_the_disk_then_frees_it", mnt.path(), out.path());
    assert!(ok, "{stdout}\n{stderr}");
    let db = mnt.path().join("flujo_ops.db");
    let warned = line_of(
        &stderr,
        &format!(
            "flujo: warning: could not record to {}: database or disk is full",
            db.display()
        ),
    )
    .unwrap_or_else(|| panic!("no warning in:\n{stderr}"));
    let lost = line_of(&stderr, &format!("{MARK} rows lost"))
        .unwrap_or_else(|| panic!("the disk never filled:\n{stderr}"));
    assert!(warned < lost, "the warning came late:\n{stderr}");
    let resumed = line_of(
        &stderr,
        &format!("flujo: recording to {} works again", db.display()),
    )
    .unwrap_or_else(|| panic!("no word that recording resumed:\n{stderr}"));
    assert!(lost < resumed);
    assert!(
        stderr.contains(&format!("{MARK} resumed runs recorded")),
        "{stdout}\n{stderr}"
    );
    assert_eq!(integrity(&out.path().join("flujo_ops.db")), "ok");
}

#[test]
#[ignore = "child process of a_full_disk_is_reported_while_running_and_recording_resumes_once_space_is_freed"]
fn child_fills_the_disk_then_frees_it() {
    use tracing_subscriber::prelude::*;

    let mnt = std::path::PathBuf::from(std::env::var_os("FLUJO_TEST_MNT").unwrap());
    let db = mnt.join("flujo_ops.db");
    // room to free later
    let ballast = mnt.join("ballast");
    std::fs::write(&ballast, vec![7u8; 1024 * 1024]).unwrap();
    // the user's own subscriber, installed with `.init()`: the layer is never dropped
    let layer = flujo::SqliteLayer::open(&db).unwrap();
    let handle = layer.handle();
    tracing_subscriber::registry().with(layer).init();

    let flujo = producer(200);
    let mut filled = false;
    for i in 0..40 {
        let result = flujo.run_blocking(i);
        assert_eq!(result.status, RunStatus::Completed);
        if handle.rows_not_recorded() > 0 {
            filled = true;
            break;
        }
    }
    assert!(filled, "40 runs of 400 KiB did not fill a 3 MiB disk");
    // the barrier says what happened
    let flushed = handle.flush_blocking();
    assert!(!flushed.all_recorded());
    assert_eq!(flushed.rows_not_recorded, handle.rows_not_recorded());
    eprintln!("{MARK} rows lost: {}", flushed.rows_not_recorded);

    std::fs::remove_file(&ballast).unwrap();
    let small = producer(1);
    let ids: Vec<String> = (0..3).map(|i| small.run_blocking(100 + i).run_id).collect();
    let reader =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    for id in &ids {
        let (status, steps): (String, i64) = reader
            .query_row(
                "SELECT status, (SELECT count(*) FROM steps WHERE steps.run_id = runs.run_id \
                 AND steps.status = 'completed') FROM runs WHERE run_id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap_or_else(|e| panic!("run {id} was not recorded after space was freed: {e}"));
        assert_eq!((status.as_str(), steps), ("completed", 1));
    }
    assert_eq!(
        handle.flush_blocking().rows_not_recorded,
        flushed.rows_not_recorded
    );
    eprintln!("{MARK} resumed runs recorded");
}
