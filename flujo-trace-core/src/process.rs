//! The writing process's identity (shared by every store) (host, PID namespace, pid, pid start time) and the liveness
//! check readers use to tell a run that is still running from one whose process died (`crashed`).
//!
//! A run is `crashed` only when that is certain: its writer ran on this host, in this reader's PID
//! namespace, and its pid is gone, is a zombie, or now belongs to a process started at another
//! time (a reused pid). A run written on another host, or in another PID namespace (another
//! container with the same host name on a shared volume: its pids are not ours to look up), or by
//! a writer that recorded no identity (schema v1), stays `running`. A writer that recorded no
//! namespace (schema v2) is judged by host and pid alone.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::rows::WriterProcess;

/// The status readers give a `running` run whose writing process died.
pub const CRASHED: &str = "crashed";

/// The identity of this process, recorded on every run it writes. `None` when the host name
/// cannot be read (the run is then never judged crashed).
pub fn current_writer() -> Option<WriterProcess> {
    static CURRENT: OnceLock<Option<WriterProcess>> = OnceLock::new();
    CURRENT
        .get_or_init(|| {
            let pid = std::process::id();
            Some(WriterProcess {
                host: host_name()?,
                pid: i64::from(pid),
                // 0: start time unknown (no /proc), the pid alone is compared
                pid_start: process_start_ticks(pid).map_or(0, |stat| stat.start_ticks),
                pid_ns: pid_namespace(),
            })
        })
        .clone()
}

/// The PID namespace of this process: the inode of `/proc/self/ns/pid` (the number in its link
/// target `pid:[4026531836]`), `None` without `/proc`.
fn pid_namespace() -> Option<i64> {
    use std::os::unix::fs::MetadataExt as _;
    let namespace = std::fs::metadata("/proc/self/ns/pid").ok()?;
    i64::try_from(namespace.ino()).ok()
}

/// Which writers are gone, checked once per distinct writer: a listing over many runs of one
/// process looks it up once. One value per query (a listing, a prune); it does not outlive it.
#[derive(Debug, Default)]
pub struct Liveness {
    gone: HashMap<WriterProcess, bool>,
}

thread_local! {
    /// How many writers this thread looked up, for tests that a listing looks each writer up
    /// once (each test runs on its own thread).
    static LOOKUPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many writer processes this thread has looked up so far (for tests: a query over many runs
/// of one writer looks it up once).
#[doc(hidden)]
pub fn writer_lookups_on_this_thread() -> u64 {
    LOOKUPS.with(std::cell::Cell::get)
}

impl Liveness {
    /// True when the process that wrote a run certainly no longer runs.
    pub fn writer_is_gone(&mut self, writer: &WriterProcess) -> bool {
        if let Some(&gone) = self.gone.get(writer) {
            return gone;
        }
        LOOKUPS.with(|lookups| lookups.set(lookups.get() + 1));
        let gone = check_writer_is_gone(writer);
        self.gone.insert(writer.clone(), gone);
        gone
    }

    /// The status a reader shows for a run stored with `status`: `crashed` for a `running` run
    /// whose writer is certainly gone, else the stored status.
    pub fn derived_status<'a>(
        &mut self,
        status: &'a str,
        writer: Option<&WriterProcess>,
    ) -> &'a str {
        if status == "running" && writer.is_some_and(|writer| self.writer_is_gone(writer)) {
            CRASHED
        } else {
            status
        }
    }
}

fn check_writer_is_gone(writer: &WriterProcess) -> bool {
    let Some(current) = current_writer() else {
        return false;
    };
    if writer.host != current.host {
        return false;
    }
    // another namespace's pids (another container with our host name) are not ours to look up;
    // a writer that recorded none (schema v2) is judged by host and pid, as before
    if writer.pid_ns.is_some() && writer.pid_ns != current.pid_ns {
        return false;
    }
    let Ok(pid) = u32::try_from(writer.pid) else {
        return false;
    };
    if pid == 0 {
        return false;
    }
    if std::path::Path::new("/proc/self/stat").exists() {
        return match process_start_ticks(pid) {
            None => true,
            Some(stat) if stat.state == 'Z' || stat.state == 'X' => true,
            Some(stat) => writer.pid_start != 0 && stat.start_ticks != writer.pid_start,
        };
    }
    pid_is_gone_by_signal(pid)
}

/// The fields of `/proc/PID/stat` we use.
struct ProcStat {
    state: char,
    start_ticks: i64,
}

/// Reads state (field 3) and start time (field 22, clock ticks since boot) of a process. The
/// command name (field 2) may hold spaces and parentheses, so fields are counted after the last
/// `)`.
fn process_start_ticks(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat(&stat)
}

fn parse_proc_stat(stat: &str) -> Option<ProcStat> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // fields after the name start at field 3 (state); field 22 is 19 further on
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

#[cfg(unix)]
fn pid_is_gone_by_signal(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 performs only the existence and permission checks, it sends nothing
    let result = unsafe { libc::kill(pid, 0) };
    result == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn pid_is_gone_by_signal(_pid: u32) -> bool {
    false
}

fn host_name() -> Option<String> {
    if let Ok(name) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let name = name.trim();
        if !name.is_empty() {
            return Some(name.to_owned());
        }
    }
    host_name_from_libc()
}

#[cfg(unix)]
fn host_name_from_libc() -> Option<String> {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length, and one byte is kept for the NUL
    let result =
        unsafe { libc::gethostname(buffer.as_mut_ptr().cast::<libc::c_char>(), buffer.len() - 1) };
    if result != 0 {
        return None;
    }
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    let name = String::from_utf8_lossy(&buffer[..end]).trim().to_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(not(unix))]
fn host_name_from_libc() -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_parentheses_and_spaces_in_the_name() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 \
                    987654 1000 100 18446744073709551615";
        let parsed = parse_proc_stat(stat).unwrap();
        assert_eq!(parsed.state, 'S');
        assert_eq!(parsed.start_ticks, 987654);
    }

    #[test]
    fn truncated_stat_is_none() {
        assert!(parse_proc_stat("4242 (x) S 1 2").is_none());
        assert!(parse_proc_stat("no paren").is_none());
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = current_writer().expect("host name readable in tests");
        assert_eq!(me.pid, i64::from(std::process::id()));
        let mut liveness = Liveness::default();
        assert!(!liveness.writer_is_gone(&me));
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(me.pid_start > 0);
            assert!(
                me.pid_ns.is_some(),
                "/proc/self/ns/pid is readable with /proc"
            );
            let reused = WriterProcess {
                pid_start: me.pid_start + 1,
                ..me.clone()
            };
            assert!(liveness.writer_is_gone(&reused));
        }
        let other_host = WriterProcess {
            host: format!("{}-elsewhere", me.host),
            pid: i64::from(i32::MAX),
            ..me
        };
        assert!(!liveness.writer_is_gone(&other_host));
    }

    #[test]
    fn a_writer_in_another_pid_namespace_is_never_judged() {
        let me = current_writer().expect("host name readable in tests");
        let my_namespace = me.pid_ns.expect("/proc/self/ns/pid is readable in tests");
        // no pid above the kernel's PID_MAX_LIMIT (2^22) ever exists in this namespace
        let gone_here = WriterProcess {
            pid: 5_000_000,
            ..me.clone()
        };
        let mut liveness = Liveness::default();
        assert!(liveness.writer_is_gone(&gone_here));
        let other_namespace = WriterProcess {
            pid_ns: Some(my_namespace + 1),
            ..gone_here.clone()
        };
        assert!(
            !liveness.writer_is_gone(&other_namespace),
            "same host and pid, another container: its process is not ours to see"
        );
        let no_namespace = WriterProcess {
            pid_ns: None,
            ..gone_here
        };
        assert!(
            liveness.writer_is_gone(&no_namespace),
            "a writer of schema v2 is judged by host and pid"
        );
    }

    #[test]
    fn each_writer_is_looked_up_once() {
        let me = current_writer().expect("host name readable in tests");
        let dead = WriterProcess {
            pid: 5_000_001,
            ..me.clone()
        };
        let mut liveness = Liveness::default();
        let before = writer_lookups_on_this_thread();
        for _ in 0..100 {
            assert_eq!(liveness.derived_status("running", Some(&dead)), "crashed");
            assert_eq!(liveness.derived_status("running", Some(&me)), "running");
            assert_eq!(liveness.derived_status("failed", Some(&dead)), "failed");
            assert_eq!(liveness.derived_status("running", None), "running");
        }
        assert_eq!(writer_lookups_on_this_thread() - before, 2);
    }
}
