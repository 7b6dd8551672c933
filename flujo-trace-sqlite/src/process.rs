//! The writing process's identity (host, pid, pid start time) and the liveness check readers use
//! to tell a run that is still running from one whose process died (`crashed`).
//!
//! A run is `crashed` only when that is certain: its writer ran on this host and its pid is gone,
//! is a zombie, or now belongs to a process started at another time (a reused pid). A run written
//! on another host, or by a writer that recorded no identity (schema v1), stays `running`.

use std::sync::{Mutex, OnceLock};

use crate::backend::WriterProcess;

/// The identity of this process, recorded on every run it writes. `None` when the host name
/// cannot be read (the run is then never judged crashed).
pub(crate) fn current_writer() -> Option<WriterProcess> {
    static CURRENT: OnceLock<Option<WriterProcess>> = OnceLock::new();
    CURRENT
        .get_or_init(|| {
            let pid = std::process::id();
            Some(WriterProcess {
                host: host_name()?,
                pid: i64::from(pid),
                // 0: start time unknown (no /proc), the pid alone is compared
                pid_start: process_start_ticks(pid).map_or(0, |stat| stat.start_ticks),
            })
        })
        .clone()
}

/// True when the process that wrote a run certainly no longer runs. A writer found gone is
/// remembered (a listing may hold many runs of one dead process); a live one is checked again
/// each time.
pub(crate) fn writer_is_gone(writer: &WriterProcess) -> bool {
    static GONE: Mutex<Vec<(String, i64, i64)>> = Mutex::new(Vec::new());
    // with a start time a dead writer stays dead; without one the pid could come back
    let key = (writer.host.clone(), writer.pid, writer.pid_start);
    let cacheable = writer.pid_start != 0;
    if cacheable && GONE.lock().is_ok_and(|gone| gone.contains(&key)) {
        return true;
    }
    let gone = check_writer_is_gone(writer);
    if gone && cacheable {
        if let Ok(mut cache) = GONE.lock() {
            if cache.len() < 4096 {
                cache.push(key);
            }
        }
    }
    gone
}

fn check_writer_is_gone(writer: &WriterProcess) -> bool {
    let Some(current) = current_writer() else {
        return false;
    };
    if writer.host != current.host {
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
        assert!(!writer_is_gone(&me));
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(me.pid_start > 0);
            let reused = WriterProcess {
                pid_start: me.pid_start + 1,
                ..me.clone()
            };
            assert!(writer_is_gone(&reused));
        }
        let other_host = WriterProcess {
            host: format!("{}-elsewhere", me.host),
            pid: i64::from(i32::MAX),
            ..me
        };
        assert!(!writer_is_gone(&other_host));
    }
}
