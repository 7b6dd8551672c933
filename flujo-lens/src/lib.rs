//! flujo-lens: the `flujo lens` CLI, reading recorded runs back from `flujo_ops.db`.
//!
//! ```text
//! flujo lens list [--status S[,S...]] [--pipeline NAME] [--since WHEN] [--until WHEN] [--limit N] [--watch] [--grep TEXT]
//! flujo lens show RUN [--full] [--follow]  RUN: `latest`, a run id, a short id, or a unique prefix
//! flujo lens trace RUN [--depth N] [--expand] [--follow]
//! flujo lens diff A B [--all]
//! flujo lens stats [--since WHEN] [--until WHEN] [--pipeline NAME] [--by pipeline|version|step|hour|day]
//! flujo lens search TEXT [--in error,input,output,context] [--since WHEN] [--until WHEN] [--pipeline NAME] [--limit N]
//! flujo lens prune --older-than WHEN [--status S[,S...]] [--pipeline NAME] [--dry-run] [--yes]
//! flujo lens copy --to postgres://USER@HOST/DATABASE
//! global: --state-uri URI, -o/--format table|json|jsonl|csv (csv: stats only)
//! ```
//!
//! The database is found by the shared resolver (`--state-uri`, `FLUJO_STATE_URI`, `state_uri` in
//! the nearest `flujo.toml`, `./flujo_ops.db`) and opened read-only: the lens never creates,
//! migrates, moves or rewrites it. The one exception is `prune`, which deletes old runs with
//! their steps (asking first on a terminal, else only with `--yes`) in short transactions that
//! pipelines writing meanwhile wait out, and gives the freed space back to the file system
//! (`PRAGMA incremental_vacuum`) when the database was created by flujo. Without `--status`,
//! `prune` keeps runs still running and crashed runs.
//!
//! # Exit codes
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success (also when the reader of the output goes away, as in `flujo lens list \| head -1`); `diff`: the runs are equal; `--follow`: the run completed; `list --watch`: stopped by Ctrl-C |
//! | 1 | nothing found: no run matches the filters (or none is recorded yet), or RUN names no run or several (an ambiguous prefix lists the candidates); `stats`: no run in the window; `search`: no run recorded the text; `prune`: no run matches, or the question was not answered yes (nothing deleted); `diff`: the runs differ |
//! | 2 | the command could not run: bad arguments, an unusable configuration (`flujo.toml`, `FLUJO_STATE_URI`), or a database that is missing, not a flujo database, corrupt, or from a newer flujo; `prune` without `--yes` when there is no terminal to ask on; `diff`: also a RUN that names no run or several (as `diff(1)` says trouble with 2) |
//! | 3 | `--follow`: the run failed |
//! | 4 | `--follow`: the run was cancelled |
//! | 5 | `--follow`: the run crashed (its process died before it ended) |
//! | 130 | `--follow`: stopped by Ctrl-C (SIGINT) or SIGTERM before the run ended (`list --watch` exits 0 then) |
//!
//! # JSON output
//!
//! `-o json` prints one JSON document, `-o jsonl` one JSON object per line. Values are whole
//! (never cut), times are RFC 3339 UTC strings, durations are milliseconds, costs US dollars;
//! a missing value is `null`. Payloads stored as JSON (`input`, `output`, `final_context`) are
//! embedded as JSON; anything else as a string. A payload the layer stored cut (over its payload
//! cap) is a string ending with `…[flujo: truncated, kept K of N bytes]`.
//!
//! RUN is tried as `latest`, a full run id, a short id (the end of a run id, 8 to 12 hexadecimal
//! digits, any case, as `list` shows it: the shortest end no other run's id in the store ends
//! with), then a unique prefix; a string that is one run's short id and another run's prefix
//! means the short id.
//!
//! A run object: `run_id`, `short_id` (`list` and `show`), `pipeline_name`, `pipeline_version`, `status` (`running`, `completed`,
//! `failed`, `cancelled`, or `crashed`: a run stored as `running` whose process on this host is
//! gone), `start_time`, `end_time`, `duration_ms`, `total_cost`, `total_tokens`, `n_steps`,
//! `writer` (`{host, pid, pid_start, pid_ns}` or `null`; `pid_ns`, the PID namespace, is `null`
//! for runs recorded before schema 3), `trace_id` (the run's OpenTelemetry trace id when it was
//! exported, else `null`); `show` adds `input`, `output` (the run's final
//! output, only for a completed run), `final_context`, `error`.
//!
//! A step object: `step_run_id`, `parent_step_run_id`, `step_name`, `step_index`, `step_kind`,
//! `status`, `attempts`, `fallback_taken` (`true` when the step's fallback produced its output;
//! `null` for a step that did not finish), `start_time`, `end_time`, `duration_ms`, `cost`,
//! `tokens`, `input`, `output`, `error`.
//!
//! - `list -o json`: `{"runs": [run, ...], "matching": {"count": N, "exact": bool}, "limit": N}`;
//!   `exact: false` means more than `count` runs match. Asking for only one of `running` and
//!   `crashed` checks each candidate's process: that search stops after the page and one more
//!   run, or after the newest 1,000 candidates, when `matching` adds `"stopped_after": N` and
//!   `count` is the runs found among those N (older ones may match too).
//! - `list -o jsonl`: one run object per line.
//! - `show -o json`: `{"run": run, "steps": [step, ...]}`, steps in execution order.
//! - `show -o jsonl`: the run object, then one step object per line; each carries
//!   `"record": "run"` or `"record": "step"`. With `--follow`: the run object (running) first,
//!   a step object each time a step starts or ends, and the run object again once it ended.
//! - `list --watch -o jsonl`: a run object (with `short_id`) for each run, oldest first, then
//!   one each time a run starts or changes status.
//! - `stats -o json`: `{"by", "since", "until", "pipeline", "percentiles", "index", "groups":
//!   [group, ...], "total": figures}`; a group is its key (`pipeline`; `version`; `step` and
//!   `kind`; or `bucket`: `2026-12-01T14` for an hour, `2026-12-01` for a day, UTC) and its
//!   figures: `runs`, `executions` (steps), `completed`, `failed`, `crashed`, `cancelled`,
//!   `running`, `rates` (`completed`, `failed`, `crashed`, `cancelled`, of all counted),
//!   `retries` and `fallbacks` (steps), `duration_ms` (`of`, `p50`, `p95`, `p99`, `max`: exact,
//!   nearest rank), `tokens` and `cost_usd` (`total`, `per_run`). `index` is `ready`, `filling` or
//!   `missing`: whether the store's stats table served the query (else a scan, same figures).
//!   `-o csv`: a header line and a line per group, the same figures flattened.
//! - `search -o json`: `{"text", "fields", "since", "until", "matches": [match, ...], "limit",
//!   "more", "notes"}`; a match: `run_id`, `short_id`, `pipeline_name`, `pipeline_version`,
//!   `status`, `start_time`, `field` (`error`, `input`, `output`, `context`), `step_name`,
//!   `step_run_id` (`null` for a context), `snippet` (unescaped), `match_start` and `match_end`
//!   (character offsets in `snippet`); `-o jsonl`: one match per line.
//! - `prune -o json` (and `-o jsonl`, the same line): `{"runs_deleted": N, "steps_deleted": N,
//!   "bytes_before": N, "bytes_after": N, "reusable_bytes": N, "dry_run": bool}`; bytes count the
//!   database file and its `-wal` file, `reusable_bytes` is freed space kept inside a file
//!   without auto-vacuum. With `--dry-run` the counts are what would be deleted and
//!   `bytes_after`, `reusable_bytes` are `null`.
#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

mod args;
mod config;
mod copy;
mod diff;
mod error;
mod follow;
mod json;
mod list;
mod prune;
mod render;
mod search;
mod show;
mod stats;
mod text;
mod timespec;
mod trace;

use std::io::{BufRead, IsTerminal as _, Write};
use std::path::PathBuf;
use std::process::ExitCode;

pub use error::{
    EXIT_INTERRUPTED, EXIT_NOTHING_FOUND, EXIT_RUN_CANCELLED, EXIT_RUN_CRASHED, EXIT_RUN_FAILED,
    EXIT_SUCCESS, EXIT_USAGE,
};

use crate::config::{Command, Config};
use crate::error::LensError;

/// What the lens reads from its surroundings, gathered in one place so tests can set it.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The current directory: relative state paths and the `flujo.toml` search start here.
    pub cwd: PathBuf,
    /// The value of `FLUJO_STATE_URI`.
    pub state_uri: Option<String>,
    /// The value of `COLUMNS`: the table width, when it is a number.
    pub columns: Option<String>,
    /// Whether `NO_COLOR` is set to a non-empty value.
    pub no_color: bool,
    /// Whether standard output is a terminal (colour and terminal width only then).
    pub stdout_is_terminal: bool,
    /// Whether standard input is a terminal: only then does `prune` ask before deleting
    /// (otherwise it needs `--yes`).
    pub stdin_is_terminal: bool,
    /// Whether standard error is a terminal: only then does `prune` show its progress.
    pub stderr_is_terminal: bool,
    /// The width of the terminal standard output is, when known.
    pub terminal_width: Option<usize>,
    /// The height of the terminal standard output is, when known (`--follow` and `--watch`
    /// keep what they redraw within it).
    pub terminal_height: Option<usize>,
    /// Now, for relative `--since`/`--until` and the age of running runs.
    pub now: time::OffsetDateTime,
}

impl Environment {
    /// The environment of this process.
    pub fn from_process() -> Environment {
        let stdout = std::io::stdout();
        let stdout_is_terminal = stdout.is_terminal();
        let size = stdout_is_terminal
            .then(|| terminal_size::terminal_size_of(&stdout))
            .flatten();
        Environment {
            cwd: std::env::current_dir().unwrap_or_default(),
            state_uri: std::env::var(flujo_trace_sqlite::STATE_URI_ENV).ok(),
            columns: std::env::var("COLUMNS").ok(),
            no_color: std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty()),
            stdout_is_terminal,
            stdin_is_terminal: std::io::stdin().is_terminal(),
            stderr_is_terminal: std::io::stderr().is_terminal(),
            terminal_width: size.map(|(width, _)| usize::from(width.0)),
            terminal_height: size.map(|(_, height)| usize::from(height.0)),
            now: time::OffsetDateTime::now_utc(),
        }
    }
}

/// Runs the `flujo` command line: parses `args` (the first is the program name), runs the
/// command, writes its output to `stdout` and messages to `stderr`, and returns the exit code
/// (see the crate documentation). The answer to `prune`'s question is read from this process's
/// standard input.
pub fn run<I, T>(args: I, env: &Environment, stdout: &mut dyn Write, stderr: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let stdin = std::io::stdin();
    run_with_input(args, env, &mut stdin.lock(), stdout, stderr)
}

/// [`run`], reading the answer to `prune`'s question (asked only when
/// [`Environment::stdin_is_terminal`]) from `stdin`.
pub fn run_with_input<I, T>(
    args: I,
    env: &Environment,
    stdin: &mut dyn BufRead,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    // help is wrapped to the same width as tables, so it does not depend on who runs the tests
    let command =
        <args::Cli as clap::CommandFactory>::command().term_width(config::output_width(env));
    let parsed = command
        .try_get_matches_from(args)
        .and_then(|matches| <args::Cli as clap::FromArgMatches>::from_arg_matches(&matches));
    let args = match parsed {
        Ok(args) => args,
        Err(error) => {
            let rendered = if env.stdout_is_terminal && !env.no_color {
                error.render().ansi().to_string()
            } else {
                error.render().to_string()
            };
            let target: &mut dyn Write = if error.use_stderr() { stderr } else { stdout };
            let written = target
                .write_all(rendered.as_bytes())
                .and_then(|()| target.flush());
            return match written {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => EXIT_USAGE,
                _ => u8::try_from(error.exit_code()).unwrap_or(EXIT_USAGE),
            };
        }
    };
    let outcome = Config::from_args(args, env).and_then(|config| {
        let result = match &config.command {
            Command::List(list) => list::run(&config, list, stdout),
            Command::Show(show) => show::run(&config, show, stdout),
            Command::Trace(trace) => trace::run(&config, trace, stdout),
            Command::Diff(diff) => diff::run(&config, diff, stdout),
            Command::Prune(prune) => {
                let mut terminal = prune::Terminal {
                    env,
                    stdin: &mut *stdin,
                    stderr: &mut *stderr,
                };
                prune::run(&config, prune, &mut terminal, stdout)
            }
            Command::Copy(copy) => copy::run(&config, copy, env, stderr, stdout),
            Command::Stats(stats) => stats::run(&config, stats, stdout),
            Command::Search(search) => search::run(&config, search, stdout),
        };
        result.and_then(|()| stdout.flush().map_err(LensError::from))
    });
    match outcome {
        Ok(()) => EXIT_SUCCESS,
        Err(error) => error.report(stderr),
    }
}

/// The `flujo` binary's `main`: [`run`] on the process's arguments, standard streams and
/// environment.
pub fn main() -> ExitCode {
    let env = Environment::from_process();
    let stdout = std::io::stdout();
    let mut stdout = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut stderr = std::io::stderr();
    let code = run(std::env::args_os(), &env, &mut stdout, &mut stderr);
    // anything left in the buffer was flushed by `run`, or the reader went away
    ExitCode::from(code)
}
