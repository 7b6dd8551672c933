//! Test support: a throwaway PostgreSQL server that a test binary starts by itself.
//!
//! [`TestServer::get`] starts one real server per process, on first use: `initdb` in a fresh
//! temporary directory, then `pg_ctl start` on a free TCP port of 127.0.0.1 (local socket
//! in that directory, `fsync=off`). Tests never depend on a server someone else runs, nor on
//! `PATH`: the binaries are looked up under `/usr/lib/postgresql/<version>/bin` (15 first), and
//! when there are none, `get` panics saying which package to install, so a test never skips
//! silently.
//!
//! Test binaries never drop statics, so the server is stopped and its directory removed by an
//! `atexit` hook. A process that dies without running it (SIGKILL, Ctrl-C) is covered by a
//! watchdog: a small shell process, in a process group of its own, that waits for the end of
//! a pipe only this process holds, then does the same cleanup.
//!
//! Each process has its own directory and port, so test binaries running at the same time
//! (nextest) do not meet. Tests of one binary share its server: a test that stops or restarts
//! it ([`TestServer::restart`], [`TestServer::stop`]) should live in a test binary of its own
//! or keep the other tests of its binary from running at the same time.
//!
//! When the process runs as root (as in CI containers), `initdb` refuses to run; the server
//! commands then run as the `postgres` system user through `runuser`, and the temporary
//! directory belongs to that user.

use std::collections::hash_map::RandomState;
use std::ffi::CString;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The host the server listens on, and the only one.
const HOST: &str = "127.0.0.1";
/// The superuser `initdb` creates.
const SUPERUSER: &str = "postgres";
/// The database `initdb` creates, where statements about other databases and roles run.
const MAINTENANCE_DATABASE: &str = "postgres";
/// Where Debian and Ubuntu install each PostgreSQL version's binaries.
const PG_LIB: &str = "/usr/lib/postgresql";
/// The version asked for; another one is used only when it is missing.
const PREFERRED_VERSION: &str = "15";
/// How many free ports are tried before giving up: another process may take the port between
/// our probe and the server's bind.
const START_ATTEMPTS: usize = 3;
/// Seconds `pg_ctl` waits for the server to start or stop.
const PG_CTL_TIMEOUT: &str = "30";
/// The longest path of the socket directory: a Unix socket path has room for 107 bytes, and the
/// server adds `/.s.PGSQL.<port>.lock` to it.
const MAX_SOCKET_DIR: usize = 80;
/// How much of the server log a panic message quotes.
const LOG_TAIL_LINES: usize = 40;
/// The watchdog (`sh -c`, arguments: the directory, then the stop command). `cat` returns once
/// the test process is gone; the loop is there because a `pg_ctl` the process had started (a
/// restart, say) outlives it and may still create files in the directory while it is removed.
/// After a normal exit the directory is gone already and the loop does nothing.
const WATCHDOG_SCRIPT: &str = r#"cat >/dev/null
dir=$1; shift; cd /
tries=0
while [ -e "$dir" ] && [ "$tries" -lt 10 ]; do
  "$@"
  rm -rf "$dir"
  tries=$((tries + 1))
  [ -e "$dir" ] && sleep 1
done"#;

/// The process's server, or why it could not start (kept so every test gets the same message
/// instead of each trying again).
static SERVER: OnceLock<Result<TestServer, String>> = OnceLock::new();

/// A PostgreSQL server started by this process for its tests; see the crate documentation.
pub struct TestServer {
    /// The TCP port on [`HOST`], the same for the server's whole life.
    port: u16,
    /// The superuser's password (TCP connections need one; the local socket does not).
    password: String,
    /// The temporary directory: `data/`, the server log, the local socket.
    dir: PathBuf,
    /// The server's data directory, inside `dir`.
    data_dir: PathBuf,
    /// The directory of `initdb`, `pg_ctl` and `postgres`.
    bin_dir: PathBuf,
    /// The `psql` binary.
    psql: PathBuf,
    /// `runuser` when we run as root, so the server commands run as `postgres`.
    runuser: Option<PathBuf>,
    /// Serialises stop, start and restart, and the exit hook with them.
    control: Mutex<()>,
    /// Makes the names of [`TestServer::create_database`] unique.
    databases: AtomicU64,
    /// The write end of the watchdog's pipe: held until the process ends, never written (but
    /// by a persistent server's drop, to say it stopped the server itself).
    _watchdog: Option<ChildStdin>,
    /// Started by [`TestServer::start_persistent`]: stopped when dropped, its directory kept.
    persistent: bool,
}

impl TestServer {
    /// The process's server, started on the first call (a second or two) and shared by every
    /// later one. Panics with the reason, the same for every call, when it cannot start: the
    /// PostgreSQL binaries are missing (install the `postgresql` package), `initdb` or the
    /// server failed (the message quotes their output and the server log).
    pub fn get() -> &'static TestServer {
        match SERVER.get_or_init(start_server) {
            Ok(server) => server,
            Err(reason) => panic!("flujo-test-postgres: {reason}"),
        }
    }

    /// A server of this process's own whose data directory is kept in `dir/data`, for
    /// benchmarks that seed a large database once and reuse it: the cluster found there is
    /// started again, else `initdb` creates one (the superuser's password is kept beside it in
    /// `dir/password`, mode 0600). Unlike [`TestServer::get`]'s it runs with PostgreSQL's
    /// default durability (`fsync` and `synchronous_commit` on), so what is measured is what a
    /// real server costs; it listens on a free port of 127.0.0.1 only (no local socket).
    ///
    /// Dropping the value stops the server (`pg_ctl stop -m fast`) and keeps the directory; a
    /// process that dies without dropping it (SIGKILL, Ctrl-C) is covered by a watchdog that
    /// stops the server the same way. One process at a time per directory: a server still
    /// running there (left by a process the watchdog could not clean up after) is stopped
    /// first. As root, `dir` is given to the `postgres` user. Panics with the reason (quoting
    /// the server log) when the server cannot start.
    pub fn start_persistent(dir: &Path) -> TestServer {
        start_persistent_server(dir)
            .unwrap_or_else(|reason| panic!("flujo-test-postgres: {reason}"))
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's URI for `database`:
    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/DATABASE`.
    pub fn superuser_uri(&self, database: &str) -> String {
        self.uri_for(SUPERUSER, &self.password, database)
    }

    /// Creates an empty database with a name of its own, `prefix` (lowercased, characters
    /// other than letters, digits and `_` replaced by `_`) then a counter and the process id,
    /// and returns its superuser URI. Tests that each create their own never see each other's
    /// tables.
    pub fn create_database(&self, prefix: &str) -> String {
        let number = self.databases.fetch_add(1, Ordering::Relaxed);
        let name = database_name(prefix, number, std::process::id());
        self.psql(
            MAINTENANCE_DATABASE,
            &format!("CREATE DATABASE {}", quote_identifier(&name)),
        );
        self.superuser_uri(&name)
    }

    /// Runs `sql` with `psql` as the superuser in `database`, over TCP, and returns what it
    /// printed, trimmed: tuples only, unaligned, columns separated by `|`. Panics with psql's
    /// error output when a statement fails.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let mut command = self.psql_command(sql);
        command
            .args(["-h", HOST, "-p", &self.port.to_string(), "-U", SUPERUSER])
            .arg("-d")
            .arg(database)
            .env("PGPASSWORD", &self.password);
        run_psql(command, sql, database)
            .unwrap_or_else(|reason| panic!("flujo-test-postgres: {reason}"))
    }

    /// Creates a role that can log in with `password` (`CREATE ROLE name LOGIN PASSWORD ...`);
    /// connect as it with [`TestServer::uri_for`].
    pub fn create_role(&self, name: &str, password: &str) {
        self.psql(
            MAINTENANCE_DATABASE,
            &format!(
                "CREATE ROLE {} LOGIN PASSWORD {}",
                quote_identifier(name),
                quote_literal(password)
            ),
        );
    }

    /// The URI to connect to `database` as `user` with `password` (each percent-encoded).
    pub fn uri_for(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "postgres://{}:{}@{HOST}:{}/{}",
            percent_encode(user),
            percent_encode(password),
            self.port,
            percent_encode(database)
        )
    }

    /// Restarts the server (`pg_ctl restart -m fast`, waiting until it accepts connections
    /// again), same port and data: for tests of what a client does when its server goes away.
    /// Open connections are closed by the server.
    pub fn restart(&self) {
        let _control = self.lock_control();
        let output = self
            .pg_ctl()
            .args(["-m", "fast", "restart"])
            .output()
            .map_err(|error| format!("cannot run pg_ctl restart: {error}"));
        if let Err(reason) = check(output, "pg_ctl restart") {
            panic!("flujo-test-postgres: {reason}{}", self.log_tail());
        }
    }

    /// Stops the server (`pg_ctl stop -m fast`, waiting until it is gone); [`TestServer::start`]
    /// starts it again. Panics when it does not stop.
    pub fn stop(&self) {
        let _control = self.lock_control();
        let output = self
            .pg_ctl()
            .args(["-m", "fast", "stop"])
            .output()
            .map_err(|error| format!("cannot run pg_ctl stop: {error}"));
        if let Err(reason) = check(output, "pg_ctl stop") {
            panic!("flujo-test-postgres: {reason}{}", self.log_tail());
        }
    }

    /// Starts the server again after [`TestServer::stop`], same data directory and port,
    /// waiting until it accepts connections. Panics when it does not start (say, the port was
    /// taken meanwhile).
    pub fn start(&self) {
        let _control = self.lock_control();
        if let Err(reason) = self.pg_ctl_start() {
            panic!("flujo-test-postgres: {reason}{}", self.log_tail());
        }
    }

    /// A `pg_ctl` command for this data directory, with the log file (so the server never
    /// writes into our pipes) and the wait.
    fn pg_ctl(&self) -> Command {
        let mut command = server_command(&self.bin_dir.join("pg_ctl"), self.runuser.as_deref());
        command
            .current_dir(&self.dir)
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(log_path(&self.dir))
            .args(["-w", "-t", PG_CTL_TIMEOUT]);
        command
    }

    /// Starts the server on its port; `Err` is pg_ctl's output.
    fn pg_ctl_start(&self) -> Result<(), String> {
        // the port is the one setting given on the command line, so a restart (which reuses
        // the last command line) keeps it
        let output = self
            .pg_ctl()
            .args(["-o", &format!("-p {}", self.port), "start"])
            .output()
            .map_err(|error| format!("cannot run pg_ctl start: {error}"));
        check(output, "pg_ctl start").map(drop)
    }

    /// Stops the server at once, whatever it is doing; errors are ignored (it may be stopped).
    fn stop_immediately(&self) {
        let _ = self
            .pg_ctl()
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// A psql command with the options every call uses, before the connection options.
    fn psql_command(&self, sql: &str) -> Command {
        let mut command = Command::new(&self.psql);
        clear_pg_environment(&mut command);
        command
            .stdin(Stdio::null())
            // -X: no ~/.psqlrc; -w: never prompt for a password
            .args([
                "-X",
                "-w",
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGCONNECT_TIMEOUT", "10");
        command
    }

    /// Runs `sql` with psql connecting to `uri` (which carries the user and password).
    #[cfg(test)]
    fn psql_uri(&self, uri: &str, sql: &str) -> Result<String, String> {
        let mut command = self.psql_command(sql);
        command.arg("-d").arg(uri);
        run_psql(command, sql, uri)
    }

    /// The control lock; a test that panicked holding it left nothing half done that matters.
    fn lock_control(&self) -> std::sync::MutexGuard<'_, ()> {
        self.control
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The end of the server log, to append to a panic message.
    fn log_tail(&self) -> String {
        log_tail(&self.dir)
    }

    /// Stops the server and removes its directory: at process exit, or when it failed to start.
    fn shut_down(&self) {
        self.stop_immediately();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A persistent server is stopped when dropped; [`TestServer::get`]'s is a static, never
/// dropped (the exit hook stops it), so this does nothing for it.
impl Drop for TestServer {
    fn drop(&mut self) {
        if !self.persistent {
            return;
        }
        let stopped = self
            .pg_ctl()
            .args(["-m", "fast", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if stopped {
            // the watchdog stops the server only when nothing was written: it must not stop a
            // server another process starts in the same directory right after
            if let Some(watchdog) = self._watchdog.as_mut() {
                let _ = watchdog.write_all(b"stopped\n");
            }
        }
    }
}

/// The persistent server's watchdog (`sh -c`, arguments: the stop command): it stops the server
/// once this process is gone, unless the process said it stopped it already.
const PERSISTENT_WATCHDOG_SCRIPT: &str = r#"said=$(cat)
cd /
[ -z "$said" ] && "$@""#;

/// Builds what [`TestServer::start_persistent`] returns.
fn start_persistent_server(dir: &Path) -> Result<TestServer, String> {
    let bin_dir = find_bin_dir()?;
    let psql = find_psql(&bin_dir)?;
    // SAFETY: geteuid has no preconditions and cannot fail
    let root = unsafe { libc::geteuid() } == 0;
    let (runuser, owner) = if root {
        let owner = postgres_user()?;
        (Some(find_runuser()?), Some(owner))
    } else {
        (None, None)
    };
    std::fs::create_dir_all(dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .map_err(|error| format!("cannot resolve {}: {error}", dir.display()))?;
    if let Some((uid, gid)) = owner {
        chown(&dir, uid, gid)?;
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|error| format!("cannot chmod {}: {error}", dir.display()))?;
    let data_dir = dir.join("data");
    let password_file = dir.join("password");
    let initialized = data_dir.join("PG_VERSION").is_file();
    let password = if initialized {
        std::fs::read_to_string(&password_file)
            .map(|password| password.trim().to_owned())
            .map_err(|error| {
                format!(
                    "{} holds a cluster but {} cannot be read ({error}): remove {} to start \
                     afresh",
                    data_dir.display(),
                    password_file.display(),
                    dir.display()
                )
            })?
    } else {
        random_password()
    };
    let watchdog = spawn_persistent_watchdog(&data_dir, &bin_dir, runuser.as_deref());
    let mut server = TestServer {
        port: 0,
        password,
        dir,
        data_dir,
        bin_dir,
        psql,
        runuser,
        control: Mutex::new(()),
        databases: AtomicU64::new(0),
        _watchdog: watchdog,
        persistent: true,
    };
    if initialized {
        let running = server
            .pg_ctl()
            .arg("status")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if running {
            let output = server
                .pg_ctl()
                .args(["-m", "fast", "stop"])
                .output()
                .map_err(|error| format!("cannot run pg_ctl stop: {error}"));
            check(output, "pg_ctl stop (of a server left running)")?;
        }
    } else {
        if server.data_dir.exists() {
            // an initdb that did not finish
            std::fs::remove_dir_all(&server.data_dir)
                .map_err(|error| format!("cannot remove {}: {error}", server.data_dir.display()))?;
        }
        // written first, so a cluster never exists without its password
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&password_file)
            .and_then(|mut file| file.write_all(format!("{}\n", server.password).as_bytes()))
            .map_err(|error| format!("cannot write {}: {error}", password_file.display()))?;
        run_initdb(&server, owner)?;
        append_persistent_settings(&server)?;
    }
    let mut failures = Vec::new();
    for _ in 0..START_ATTEMPTS {
        server.port = free_port()?;
        match server.pg_ctl_start() {
            Ok(()) => return Ok(server),
            Err(reason) => {
                // a server that did not become ready in time may still be running
                server.stop_immediately();
                failures.push(format!("port {}: {reason}", server.port));
            }
        }
    }
    Err(format!(
        "the server did not start ({START_ATTEMPTS} attempts):\n{}{}",
        failures.join("\n"),
        server.log_tail()
    ))
}

/// The persistent server's settings, appended to `postgresql.conf` once, after `initdb`:
/// PostgreSQL's defaults but for where it listens.
fn append_persistent_settings(server: &TestServer) -> Result<(), String> {
    let conf = server.data_dir.join("postgresql.conf");
    let settings = "\n# flujo-test-postgres: a server kept for benchmarks, default durability\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = ''\n\
         max_connections = 200\n";
    std::fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .and_then(|mut file| file.write_all(settings.as_bytes()))
        .map_err(|error| format!("cannot write {}: {error}", conf.display()))
}

/// Starts the persistent server's watchdog ([`PERSISTENT_WATCHDOG_SCRIPT`]), as
/// [`spawn_watchdog`] does the throwaway one's; `None` when it cannot start.
fn spawn_persistent_watchdog(
    data_dir: &Path,
    bin_dir: &Path,
    runuser: Option<&Path>,
) -> Option<ChildStdin> {
    let mut stop = Vec::new();
    if let Some(runuser) = runuser {
        stop.push(runuser.as_os_str().to_owned());
        stop.extend(["-u", SUPERUSER, "--"].map(Into::into));
    }
    stop.push(bin_dir.join("pg_ctl").into_os_string());
    stop.extend(["-D".into(), data_dir.as_os_str().to_owned()]);
    stop.extend(["-m", "fast", "-w", "-t", PG_CTL_TIMEOUT, "stop"].map(Into::into));
    let mut command = Command::new("/bin/sh");
    clear_pg_environment(&mut command);
    command
        .args([
            "-c",
            PERSISTENT_WATCHDOG_SCRIPT,
            "flujo-test-postgres-watchdog",
        ])
        .args(stop)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    command
        .spawn()
        .ok()
        .and_then(|mut child| child.stdin.take())
}

/// Runs at process exit (registered with `atexit` once the server started): stops the server
/// and removes its directory. A panic must not unwind into libc.
extern "C" fn at_exit() {
    let _ = std::panic::catch_unwind(|| {
        if let Some(Ok(server)) = SERVER.get() {
            // a test thread still inside stop/start/restart would be stopped by exit anyway:
            // never wait for it
            let _control = server.control.try_lock();
            server.shut_down();
        }
    });
}

/// Builds the process's server: everything `TestServer::get` does the first time.
fn start_server() -> Result<TestServer, String> {
    let bin_dir = find_bin_dir()?;
    let psql = find_psql(&bin_dir)?;
    // SAFETY: geteuid has no preconditions and cannot fail
    let root = unsafe { libc::geteuid() } == 0;
    let (runuser, owner) = if root {
        let owner = postgres_user()?;
        (Some(find_runuser()?), Some(owner))
    } else {
        (None, None)
    };

    let dir = make_temp_dir(owner)?;
    // spawned before anything else lives in the directory, so even a crash during startup
    // leaves nothing behind
    let watchdog = spawn_watchdog(&dir, &bin_dir, runuser.as_deref());
    let mut server = TestServer {
        port: 0,
        password: random_password(),
        data_dir: dir.join("data"),
        dir,
        bin_dir,
        psql,
        runuser,
        control: Mutex::new(()),
        databases: AtomicU64::new(0),
        _watchdog: watchdog,
        persistent: false,
    };
    match init_and_start(&mut server, owner) {
        Ok(()) => {
            // SAFETY: at_exit is an `extern "C" fn()` that never unwinds; atexit only stores it
            unsafe {
                libc::atexit(at_exit);
            }
            Ok(server)
        }
        Err(reason) => {
            let reason = format!("{reason}{}", server.log_tail());
            server.shut_down();
            Err(reason)
        }
    }
}

/// Runs initdb, writes our settings and starts the server, trying another port when the
/// chosen one was taken meanwhile.
fn init_and_start(server: &mut TestServer, owner: Option<(u32, u32)>) -> Result<(), String> {
    run_initdb(server, owner)?;
    append_settings(server)?;
    let mut failures = Vec::new();
    for _ in 0..START_ATTEMPTS {
        server.port = free_port()?;
        match server.pg_ctl_start() {
            Ok(()) => return Ok(()),
            Err(reason) => {
                // a server that did not become ready in time may still be running
                server.stop_immediately();
                failures.push(format!("port {}: {reason}", server.port));
            }
        }
    }
    Err(format!(
        "the server did not start ({START_ATTEMPTS} attempts):\n{}",
        failures.join("\n")
    ))
}

/// `initdb`: trust on the local socket, SCRAM passwords over TCP, superuser `postgres` with the
/// server's password.
fn run_initdb(server: &TestServer, owner: Option<(u32, u32)>) -> Result<(), String> {
    let pwfile = server.dir.join("superuser-password");
    std::fs::write(&pwfile, format!("{}\n", server.password))
        .map_err(|error| format!("cannot write {}: {error}", pwfile.display()))?;
    if let Some((uid, gid)) = owner {
        chown(&pwfile, uid, gid)?;
    }
    let mut command = server_command(&server.bin_dir.join("initdb"), server.runuser.as_deref());
    command
        .current_dir(&server.dir)
        .arg("-D")
        .arg(&server.data_dir)
        .args(["-U", SUPERUSER, "-A", "trust", "--auth-host=scram-sha-256"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .args(["-E", "UTF8", "--locale=C", "--no-sync"]);
    let output = command
        .output()
        .map_err(|error| format!("cannot run initdb: {error}"));
    let result = check(output, "initdb");
    let _ = std::fs::remove_file(&pwfile);
    result.map(drop)
}

/// Appends our settings to `postgresql.conf` (later lines win over initdb's). Durability is off
/// (a crash loses a throwaway cluster), and the write-ahead log is recycled after ~96 MB instead
/// of PostgreSQL's default 1 GB, so tests that bulk-load hundreds of thousands of rows do not
/// fill a small CI disk.
fn append_settings(server: &TestServer) -> Result<(), String> {
    let conf = server.data_dir.join("postgresql.conf");
    let settings = format!(
        "\n# flujo-test-postgres: a throwaway server for tests\n\
         listen_addresses = '{HOST}'\n\
         unix_socket_directories = '{}'\n\
         fsync = off\n\
         full_page_writes = off\n\
         max_wal_size = 96MB\n\
         min_wal_size = 32MB\n\
         max_connections = 200\n",
        server.dir.display()
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .and_then(|mut file| file.write_all(settings.as_bytes()))
        .map_err(|error| format!("cannot write {}: {error}", conf.display()))
}

/// The directory of the PostgreSQL binaries: version 15's, else the newest installed; on a
/// machine without them, running as root with apt-get, the packages are installed first, so
/// `cargo test --workspace` sets up what it needs on a fresh machine.
fn find_bin_dir() -> Result<PathBuf, String> {
    match installed_bin_dir() {
        Ok(bin) => Ok(bin),
        Err(missing) => {
            install_packages()
                .map_err(|why| format!("{missing}\n(installing them failed: {why})"))?;
            installed_bin_dir()
        }
    }
}

/// Installs the `postgresql` packages with apt-get when running as root; test binaries running
/// at once take turns on a lock file, and the later ones find the packages installed.
fn install_packages() -> Result<(), String> {
    let apt_get = Path::new("/usr/bin/apt-get");
    // SAFETY: geteuid has no preconditions and cannot fail
    if unsafe { libc::geteuid() } != 0 || !apt_get.is_file() {
        return Err("not root, or no apt-get: install them yourself".to_owned());
    }
    let lock = std::fs::File::create("/tmp/flujo-test-postgres-install.lock")
        .map_err(|error| format!("cannot create the install lock: {error}"))?;
    // SAFETY: the descriptor is open for the lifetime of `lock`; flock only takes the lock
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
        return Err("cannot take the install lock".to_owned());
    }
    if installed_bin_dir().is_ok() {
        return Ok(());
    }
    eprintln!("flujo-test-postgres: installing the postgresql packages (apt-get)");
    let status = |command: &mut Command| {
        command
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|error| format!("cannot run apt-get: {error}"))
            .and_then(|status| {
                if status.success() {
                    Ok(())
                } else {
                    Err(format!("apt-get failed ({status})"))
                }
            })
    };
    status(Command::new(apt_get).arg("update"))?;
    status(Command::new(apt_get).args(["install", "-y", "postgresql", "postgresql-client"]))
}

/// The directory of the installed PostgreSQL binaries: version 15's, else the newest.
fn installed_bin_dir() -> Result<PathBuf, String> {
    let usable = |bin: &Path| bin.join("initdb").is_file() && bin.join("pg_ctl").is_file();
    let preferred = Path::new(PG_LIB).join(PREFERRED_VERSION).join("bin");
    if usable(&preferred) {
        return Ok(preferred);
    }
    let newest = std::fs::read_dir(PG_LIB)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            // versions are numbers ("15", or "9.6" before 10); compare them as numbers
            let name = entry.file_name().to_string_lossy().into_owned();
            let mut parts = name.split('.').map(|part| part.parse::<u32>());
            let major = parts.next()?.ok()?;
            let minor = parts.next().map_or(Some(0), Result::ok)?;
            Some(((major, minor), entry.path().join("bin")))
        })
        .filter(|(_, bin)| usable(bin))
        .max_by_key(|(version, _)| *version);
    match newest {
        Some((_, bin)) => Ok(bin),
        None => Err(format!(
            "no PostgreSQL server binaries (initdb, pg_ctl) under {PG_LIB}/*/bin; the tests \
             start a server of their own and need them: install the `postgresql` package \
             (`apt-get install -y postgresql`, as root)"
        )),
    }
}

/// `psql`: the one next to the server binaries, else the wrapper of postgresql-client-common.
fn find_psql(bin_dir: &Path) -> Result<PathBuf, String> {
    [bin_dir.join("psql"), PathBuf::from("/usr/bin/psql")]
        .into_iter()
        .find(|path| path.is_file())
        .ok_or_else(|| {
            format!(
                "no psql in {} or /usr/bin: install the `postgresql-client` package \
                 (`apt-get install -y postgresql`, as root, brings it)",
                bin_dir.display()
            )
        })
}

/// `runuser`, to run the server commands as `postgres` when we are root.
fn find_runuser() -> Result<PathBuf, String> {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .ok_or_else(|| {
            "running as root, where initdb refuses to run, and there is no runuser to run it as \
             the `postgres` user: install util-linux, or run the tests as another user"
                .to_owned()
        })
}

/// The uid and gid of the `postgres` system user (the `postgresql` package creates it).
fn postgres_user() -> Result<(u32, u32), String> {
    let name = CString::new(SUPERUSER).expect("no NUL in the user name");
    // SAFETY: passwd is plain data; getpwnam_r writes it and its strings into `buffer`, which
    // outlives every use of `found`
    let mut passwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let status = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut passwd,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() {
        return Err(
            "running as root, where initdb refuses to run, and there is no `postgres` user to \
             run it as: install the `postgresql` package (`apt-get install -y postgresql`), \
             which creates it, or run the tests as another user"
                .to_owned(),
        );
    }
    Ok((passwd.pw_uid, passwd.pw_gid))
}

/// Creates the server's temporary directory, mode 0700, owned by `owner` when given.
fn make_temp_dir(owner: Option<(u32, u32)>) -> Result<PathBuf, String> {
    let base = temp_base(owner);
    let dir = tempfile::Builder::new()
        .prefix("flujo-pg-")
        .tempdir_in(&base)
        .map_err(|error| format!("cannot create a directory in {}: {error}", base.display()))?
        // removed by the exit hook or the watchdog: statics are never dropped
        .keep();
    let result = (|| {
        if let Some((uid, gid)) = owner {
            chown(&dir, uid, gid)?;
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|error| format!("cannot chmod {}: {error}", dir.display()))
    })();
    match result {
        Ok(()) => Ok(dir),
        Err(reason) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(reason)
        }
    }
}

/// The directory to create ours in: the usual temporary directory, unless the server could not
/// use it, then `/tmp`. The socket lives there, so its path must be short and must not need
/// quoting in `postgresql.conf`; as root, the `postgres` user must be able to reach it (a
/// `TMPDIR` under `/root` is not).
fn temp_base(owner: Option<(u32, u32)>) -> PathBuf {
    let base = std::env::temp_dir();
    let base = base.canonicalize().unwrap_or(base);
    let simple = base
        .as_os_str()
        .as_bytes()
        .iter()
        .all(|byte| byte.is_ascii_alphanumeric() || b"/._-+".contains(byte));
    // our directory's name adds 16 bytes
    let short = base.as_os_str().len() + 16 <= MAX_SOCKET_DIR;
    let reachable = owner.is_none_or(|(uid, _)| {
        base.ancestors().all(|dir| {
            std::fs::metadata(dir).is_ok_and(|meta| {
                meta.mode() & 0o001 != 0 || (meta.uid() == uid && meta.mode() & 0o100 != 0)
            })
        })
    });
    if simple && short && reachable {
        base
    } else {
        PathBuf::from("/tmp")
    }
}

/// Starts the watchdog: a shell in a process group of its own (so Ctrl-C in a terminal does
/// not reach it) that reads its stdin until this process is gone, then stops the server and
/// removes `dir` ([`WATCHDOG_SCRIPT`]). `None` when it cannot start: the exit hook still cleans
/// up after a normal exit.
fn spawn_watchdog(dir: &Path, bin_dir: &Path, runuser: Option<&Path>) -> Option<ChildStdin> {
    let mut stop = Vec::new();
    if let Some(runuser) = runuser {
        stop.push(runuser.as_os_str().to_owned());
        stop.extend(["-u", SUPERUSER, "--"].map(Into::into));
    }
    stop.push(bin_dir.join("pg_ctl").into_os_string());
    stop.extend(["-D".into(), dir.join("data").into_os_string()]);
    stop.extend(["-m", "immediate", "-w", "-t", "10", "stop"].map(Into::into));
    let mut command = Command::new("/bin/sh");
    clear_pg_environment(&mut command);
    command
        .args(["-c", WATCHDOG_SCRIPT, "flujo-test-postgres-watchdog"])
        .arg(dir)
        .args(stop)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // the pipe's write end is close-on-exec, so no other child of ours keeps it open
    command
        .spawn()
        .ok()
        .and_then(|mut child| child.stdin.take())
}

/// A command that runs `program` as the server's user: through `runuser` when we are root.
fn server_command(program: &Path, runuser: Option<&Path>) -> Command {
    let mut command = match runuser {
        Some(runuser) => {
            let mut command = Command::new(runuser);
            command.args(["-u", SUPERUSER, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    };
    clear_pg_environment(&mut command);
    command.stdin(Stdio::null());
    command
}

/// Removes the `PG*` variables (`PGHOST`, `PGDATA`, `PGPORT`, ...) a developer may have set,
/// which would point our commands at another server or directory.
fn clear_pg_environment(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.as_bytes().starts_with(b"PG") {
            command.env_remove(name);
        }
    }
}

/// `Ok(output)` when the command ran and succeeded, else an error quoting what it printed.
fn check(output: Result<Output, String>, what: &str) -> Result<Output, String> {
    let output = output?;
    if output.status.success() {
        return Ok(output);
    }
    Err(format!(
        "{what} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// Runs a psql command: its trimmed output, or an error quoting what psql said.
fn run_psql(mut command: Command, sql: &str, target: &str) -> Result<String, String> {
    let output = command
        .output()
        .map_err(|error| format!("cannot run psql: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "psql failed ({}) on {target}, running:\n{sql}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The server log's path in the server's directory.
fn log_path(dir: &Path) -> PathBuf {
    dir.join("server.log")
}

/// The last lines of the server log, as a paragraph to append to an error message.
fn log_tail(dir: &Path) -> String {
    let path = log_path(dir);
    match std::fs::read(&path) {
        Ok(log) => {
            let log = String::from_utf8_lossy(&log);
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            format!("\nserver log ({}):\n{tail}", path.display())
        }
        Err(_) => String::new(),
    }
}

/// A port of 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, String> {
    TcpListener::bind((HOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("cannot find a free port on {HOST}: {error}"))
}

/// `chown path uid gid`.
fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), String> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("a NUL in {}", path.display()))?;
    // SAFETY: c_path is a valid NUL-terminated string for the duration of the call
    if unsafe { libc::chown(c_path.as_ptr(), uid, gid) } != 0 {
        return Err(format!(
            "cannot chown {} to the postgres user: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// A password nobody guesses: 32 hex digits from the process's random hash keys, the time and
/// the pid (it only has to keep other local users off a test server).
fn random_password() -> String {
    let keys = RandomState::new();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let half = |salt: u64| {
        let mut hasher = keys.build_hasher();
        hasher.write_u64(salt);
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        hasher.finish()
    };
    format!("{:016x}{:016x}", half(1), half(2))
}

/// `prefix_number_pid`, the prefix made a plain lowercase identifier and cut so the name fits
/// PostgreSQL's 63 bytes.
fn database_name(prefix: &str, number: u64, pid: u32) -> String {
    let suffix = format!("_{number}_{pid}");
    let mut name: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(63 - suffix.len())
        .collect();
    if name.is_empty() {
        name.push_str("test");
    }
    name + &suffix
}

/// `name` as an SQL identifier in double quotes.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `text` as an SQL string literal.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `text` with everything but unreserved URI characters percent-encoded.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    // One test drives the server from start to restart: tests of one binary run at the same
    // time, and a restart would break the queries of another.
    #[test]
    fn a_real_server_starts_answers_and_survives_restarts() {
        let started = Instant::now();
        let server = TestServer::get();
        eprintln!(
            "flujo-test-postgres: TestServer::get() took {:?} (port {})",
            started.elapsed(),
            server.port()
        );
        assert!(
            std::ptr::eq(server, TestServer::get()),
            "one server per process"
        );

        let uri = server.create_database("Lifecycle-Test");
        let database = uri.rsplit('/').next().unwrap().to_owned();
        assert!(database.starts_with("lifecycle_test_0_"), "{database}");
        assert_eq!(uri, server.superuser_uri(&database));
        assert_eq!(server.psql(&database, "SELECT 1"), "1");
        assert_eq!(
            server.psql_uri(&uri, "SELECT current_database()").unwrap(),
            database
        );

        // several tests create their databases at the same time
        let names: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| server.create_database("parallel")))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 4, "{names:?}");

        server.create_role("app user", "p@ss:w/o'rd");
        let as_role = server.uri_for("app user", "p@ss:w/o'rd", &database);
        assert_eq!(
            server.psql_uri(&as_role, "SELECT current_user").unwrap(),
            "app user"
        );
        // TCP asks for the password: a wrong one is refused
        let wrong = server.uri_for("app user", "wrong", &database);
        let refused = server.psql_uri(&wrong, "SELECT 1").unwrap_err();
        assert!(
            refused.contains("password authentication failed"),
            "{refused}"
        );

        server.psql(
            &database,
            "CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)",
        );
        server.restart();
        assert_eq!(server.psql(&database, "SELECT n FROM kept"), "7");

        server.stop();
        let down = server.psql_uri(&uri, "SELECT 1").unwrap_err();
        assert!(down.contains("Connection refused"), "{down}");
        server.start();
        assert_eq!(server.psql(&database, "SELECT n FROM kept"), "7");

        let failed = server.psql_uri(&uri, "SELECT nope").unwrap_err();
        assert!(
            failed.contains("column \"nope\" does not exist"),
            "{failed}"
        );

        let settings = server.psql(
            &database,
            "SELECT current_setting('fsync') || ' ' || current_setting('max_connections') \
             || ' ' || current_setting('listen_addresses')",
        );
        assert_eq!(settings, "off 200 127.0.0.1");
    }

    #[test]
    fn names_and_uris_are_made_safe() {
        assert_eq!(database_name("My-Store", 3, 42), "my_store_3_42");
        assert_eq!(database_name("", 0, 1), "test_0_1");
        assert_eq!(database_name(&"x".repeat(100), 12, 123_456).len(), 63);
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(percent_encode("a b@c:d/é"), "a%20b%40c%3Ad%2F%C3%A9");
        let password = random_password();
        assert_eq!(password.len(), 32);
        assert_ne!(password, random_password());
    }
}
