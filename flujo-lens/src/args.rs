//! The raw command line, as clap parses it; `config.rs` validates it into a `Config`.

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0    success; diff: the two runs are equal; --follow: the run completed; list --watch:
       stopped with Ctrl-C
  1    nothing found: no run matches, or RUN names no run or several; stats: no run in the
       window; search: no run recorded TEXT; prune: also when the question is not answered
       yes (nothing is deleted then); diff: the two runs differ
  2    bad arguments, unusable configuration, or a database that is missing, not a flujo
       database, corrupt, or from a newer flujo; prune: also without --yes when there is no
       terminal to ask on; diff: also a RUN that names no run or several (as diff(1) does)
  3    --follow: the run failed
  4    --follow: the run was cancelled
  5    --follow: the run crashed (its process died before it ended)
  130  --follow: stopped with Ctrl-C (or SIGTERM) before the run ended";

const DATABASE: &str = "\
Database: --state-uri, else FLUJO_STATE_URI, else state_uri in the nearest flujo.toml (this
directory, then its parents), else ./flujo_ops.db. Accepted: a path, sqlite:///relative.db,
sqlite:////absolute.db, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (a password left out of
the URI is taken from PGPASSWORD). The database is opened read-only and never changed, except
by `prune`, the one command that writes (SQLite only), and `copy`, which writes only to the
PostgreSQL store it is given.";

const RUN_FORMS: &str = "\
RUN: `latest` (the run that started last), a run id, its short id (the end of the id, 8 to 12
characters, as `flujo lens list` shows it; any case), or a unique prefix of a run id, tried in
this order: a string that is one run's short id and the start of another's id means the short
id.";

const TOP_AFTER_HELP: &str = "\
Examples:
  flujo lens list                     the 50 newest runs
  flujo lens show latest              the last run, step by step
  flujo lens trace latest             where the last run's time went
  flujo lens diff A latest            what changed since run A
  flujo lens stats --since 24h        how every pipeline did today
  flujo lens search 'rate limit'      which runs said so";

const LENS_AFTER_HELP: &str = "\
Examples:
  flujo lens list
  flujo lens list --status failed --since 2h
  flujo lens list --watch
  flujo lens show latest
  flujo lens show 4fd3bdf2 --full
  flujo lens show latest --follow && deploy
  flujo lens trace latest
  flujo lens diff 4fd3bdf2 latest
  flujo lens stats --since 24h --by step
  flujo lens search 'rate limit' --in error
  flujo lens prune --older-than 30d --dry-run
  flujo lens --state-uri sqlite:////var/lib/app/flujo_ops.db list -o json

";

const LIST_AFTER_HELP: &str = "\
Examples:
  flujo lens list                               the 50 newest runs
  flujo lens list --status failed,crashed       failed or crashed runs
  flujo lens list --pipeline etl --since 7d     runs of `etl` in the last 7 days
  flujo lens list -s failed --since 1h30m       failed runs of the last 90 minutes
  flujo lens list --since 2026-01-05 --until '2026-01-06 12:00'
  flujo lens list --limit 500 -o jsonl          for scripts: one run object per line
  flujo lens list --watch                       kept up to date as runs start and end
  flujo lens list --watch -o jsonl | jq -c 'select(.status == \"failed\")'

Statuses: running, completed, failed, cancelled, crashed (a run left running by a process on
this host that no longer exists).

The id column is each run's short id: the end of its run id, 8 to 12 characters, long enough
that no other run's id in the store ends with it. Every command that takes RUN accepts it.

Times are UTC. --since includes its instant, --until excludes it; WHEN is a duration back from
now (45s, 30m, 1h30m, 90min, '2 days', 2w), a date (2026-01-05), a date and time
(2026-01-05 14:30[:00]), or RFC 3339 (2026-01-05T14:30:00+01:00).

JSON (-o json): {\"runs\": [RUN...], \"matching\": {\"count\": N, \"exact\": BOOL}, \"limit\": N}
where exact=false means more than count runs match (with \"stopped_after\": N, that only the
newest N were checked for running or crashed). RUN: run_id, short_id, pipeline_name,
pipeline_version, status, start_time, end_time, duration_ms, total_cost, total_tokens, n_steps,
writer, trace_id. -o jsonl: one RUN per line. Values are never cut; missing values are null.

--watch keeps going until Ctrl-C (exit 0): on a terminal the table is redrawn in place when a
run starts or ends (and twice a second, so a crashed run shows); off a terminal it prints one
line per run (oldest first), then a line each time one starts or changes status: time, status,
short id, pipeline, version (and duration, steps, cost once ended); -o jsonl: a RUN per change.";

const SHOW_AFTER_HELP: &str = "\
Examples:
  flujo lens show latest                        the run that started last
  flujo lens show 4f2a9c81                      a short id, as `flujo lens list` shows it
  flujo lens show 0190a1b2-3c4d-7e5f            a unique prefix of a run id is enough
  flujo lens show latest --full                 every value whole, however long
  flujo lens show latest --follow               steps as they are recorded, until the run ends
  flujo lens show latest -f && deploy           go on only if the run completes (exit 0)
  flujo lens show latest -o json | jq '.steps[] | select(.status == \"failed\")'

Steps are listed in execution order, nested steps indented under the step that ran them.
Long values are cut to fit the terminal with a marker giving their full size; --full (or
-o json) prints them whole.

A step whose fallback produced its output says `fallback taken` after its status.

JSON (-o json): {\"run\": RUN, \"steps\": [STEP...]}. RUN as in `flujo lens list --help` plus
input, output (the run's final output), final_context, error. STEP: step_run_id,
parent_step_run_id, step_name, step_index, step_kind, status, attempts, fallback_taken,
start_time, end_time, duration_ms, cost, tokens, input, output, error. Payloads stored as JSON
are embedded as JSON. -o jsonl: the RUN, then one STEP per line, each with \"record\": \"run\"
or \"step\".

--follow prints a line when a step starts and when it ends (time, status, the step indented
under its parent, duration, attempts, error), in the order they happened, then one line for the
run's end, and exits with a code for the run's status (below). A step that started and ended
between two reads gets both lines. A run whose process dies is shown crashed (its process is
looked up twice a second). The store is checked for commits every 30 ms, cheaply (SQLite's
data_version), and no transaction is held between checks, so writers never wait. -o jsonl --follow: the RUN
(running) first, a STEP each time one starts or ends, the RUN again at the end.";

const TRACE_AFTER_HELP: &str = "\
Examples:
  flujo lens trace latest                       where the last run's time went
  flujo lens trace 0190a1b2-3c4d --depth 1      the run's steps and their children only
  flujo lens trace latest --expand              every item of a large map, none folded
  flujo lens trace latest --follow              the waterfall redrawn as the run goes on
  flujo lens trace latest -o json | jq '.steps[] | {step_name, offset_ms, duration_ms}'

One line per step in execution order, indented under the step that ran it, with a bar on the
run's time axis (scaled to the terminal width), its duration, status and attempts: parallel
branches overlap, and the three slowest steps that ran no steps of their own are marked with ◀.
A step with more than 11 children shows the first 10 and folds the rest into one line with
their count and p50 and max duration. A step that never ended (running, or interrupted by a
crash) shows `>` before its duration. Colour on a terminal only, never with NO_COLOR.

JSON (-o json): {\"run_id\", \"pipeline_name\", \"pipeline_version\", \"status\", \"start_time\",
\"duration_ms\", \"steps\": [STEP...]}, STEP: step_run_id, step_name, step_kind, status, attempts,
offset_ms (from the run's start), duration_ms, ended, children: [STEP...]. Nothing is folded
in JSON; --depth applies.

--follow redraws the waterfall in place on a terminal as steps are recorded (cut to the
terminal's height); off a terminal (or with -o json|jsonl) it prints the waterfall once the
run has ended. Either way it exits with a code for the run's status (below).";

const DIFF_AFTER_HELP: &str = "\
Examples:
  flujo lens diff 0190a1b2-3c4d 0190a1b2-9f00   what changed between two runs
  flujo lens diff 0190a1b2-3c4d latest --all    every step, the equal ones too
  flujo lens diff A B -o json | jq '.steps[] | {path, status, changes}'
  flujo lens diff A B >/dev/null && echo same   the exit code says whether they differ

Steps are aligned by their path in the tree: the step names from the run down, with #N for
the N-th step of the same name under one parent (review/revise#1 is the second revise under
review). For the run and each step present in both: status, attempts, fallback, tokens and
cost changes and the duration delta; then the changed paths of its input, output and error
(and the run's final context), e.g. output.reply or input.items[2], each with its value in A
and in B; JSON payloads are compared by structure, anything else as text. Durations always
differ and do not make a step different. Runs of different pipelines or versions are compared
too, with a note at the top.

JSON (-o json): {\"a\": RUN, \"b\": RUN, \"same_pipeline\", \"equal\", \"run\": {\"equal\",
\"status\", \"duration_ms\", \"total_tokens\", \"total_cost\", \"changes\": [CHANGE...]},
\"steps\": [STEP...], \"steps_compared\", \"steps_different\"}; RUN: run_id, pipeline_name,
pipeline_version, status; STEP: path, step_name, in (both, a or b), equal, status, attempts,
fallback_taken ({\"a\", \"b\"}), duration_ms, tokens, cost ({\"a\", \"b\", \"delta\"}),
changes: [CHANGE...]; CHANGE: path, a, b (JSON values, null when absent). Only steps that differ
are listed unless --all.";

const STATS_AFTER_HELP: &str = "\
Examples:
  flujo lens stats --since 24h                  every pipeline of the last day
  flujo lens stats --by step --since 24h -p etl where etl's time and failures go
  flujo lens stats --by day --since 90d         runs and failures a day, with a chart
  flujo lens stats --by hour --since 24h -o csv > last-day.csv
  flujo lens stats --by version -p etl          did the new version fail more?
  flujo lens stats -o json | jq '.groups[] | {pipeline, p95: .duration_ms.p95}'

Counts are of runs started in the window: completed (ok), failed, crashed (its process died
before it ended), cancelled and still running; fail % is failed and crashed over all. Durations
are of the runs (or, by step, the executions) that recorded one; p50, p95 and p99 are exact: the
nearest-rank percentile over every such duration, nothing sampled. Tokens and cost are the
runs' totals. --by step: a row per step name of each pipeline (nested steps included); runs is
how many runs executed it, executions how many times, retries the attempts beyond the first,
fallbacks how often its fallback produced the output. Hours and days are UTC, like every time
the lens prints; --by hour and --by day draw a sparkline of runs and of failures over the
window (every hour or day of it, the empty ones too) above the table: coloured on a terminal,
plain text otherwise. An empty window says so and exits 1.

JSON (-o json): {\"by\", \"since\", \"until\", \"pipeline\", \"percentiles\", \"index\",
\"groups\": [GROUP...], \"total\": FIGURES}; GROUP: its key (pipeline, version, step and kind,
or bucket: 2026-12-01T14 for an hour, 2026-12-01 for a day) and FIGURES: runs, executions
(steps), completed, failed, crashed, cancelled, running, rates {completed, failed, crashed,
cancelled}, retries, fallbacks (steps), duration_ms {of, p50, p95, p99, max}, tokens {total,
per_run}, cost_usd {total, per_run}. -o csv: a header line and one line per group, the same
figures flattened (duration_ms_p50, ..., cost_usd_per_run).

From schema version 7 a SQLite store keeps a table of its ended runs by start time for stats
(filled in the background by the writer after an upgrade); without it the runs are scanned, with
the same figures, and a note says so.";

const SEARCH_AFTER_HELP: &str = "\
Examples:
  flujo lens search 'rate limit'                runs whose errors (or recent payloads) say so
  flujo lens search 429 --in error              every error mentioning 429, however old
  flujo lens search número --in output --since 7d
  flujo lens search cust-4411 --in input,context -p support-triage
  flujo lens list --grep timeout --status failed
  flujo lens search 'rate limit' -o json | jq -r '.matches[].run_id'

Finds runs whose recorded text contains TEXT, newest first, one line per run with the first
matching step and a snippet around the match. Matching is case-insensitive for every script
(número finds NÚMERO) and on the text as `flujo lens show` prints it: JSON payloads are matched on
their decoded strings, keys and values, not on their escapes (say \"hi\" is found as say \"hi\").
Redacted values cannot be found: they were never stored.

Errors are indexed (SQLite: an FTS5 trigram index, schema version 7; PostgreSQL: pg_trgm where
the extension could be created, else an index of the steps that have an error), so --in error
searches every run however many there are. The index needs 3 characters: TEXT of 1 or 2
characters reads every error instead (errors only, still bounded by how many there are).
Inputs, outputs and contexts are not indexed (they are large): they are read run by run, newest
first, within --since (the last 24 hours when not given) and --until, stopping once --limit
runs are found.

JSON (-o json): {\"text\", \"fields\", \"since\", \"until\", \"matches\": [MATCH...],
\"limit\", \"more\", \"notes\"}; MATCH: run_id, short_id, pipeline_name, pipeline_version,
status, start_time, field, step_name, step_run_id, snippet (whole, unescaped), match_start and
match_end (character offsets of the match in snippet). more=true when --limit stopped the search.
-o jsonl: one MATCH per line.";

const COPY_AFTER_HELP: &str = "\
Examples:
  flujo lens copy --to postgres://flujo@db.internal/ops
  PGPASSWORD=... flujo lens --state-uri /srv/app/flujo_ops.db copy --to postgres://flujo@db/ops

Copies every run of the local SQLite database (read-only) into a PostgreSQL store, with its
steps, oldest first, creating or upgrading the flujo tables there. Copying again writes
nothing twice, so an interrupted copy is finished by running it again. A run still running
(or crashed) is copied as it is stored now; copying again once it has ended brings it up to
date. A run already finished in PostgreSQL is never changed. Progress is shown on a terminal.

JSON (-o json, -o jsonl): {\"runs_copied\": N, \"steps_copied\": N, \"unfinished\": N}";

const PRUNE_AFTER_HELP: &str = "\
Examples:
  flujo lens prune --older-than 30d --dry-run   how many runs and steps would go
  flujo lens prune --older-than 30d             asks, then deletes runs started over 30 days ago
  flujo lens prune --older-than 7d --status failed,cancelled --yes
  flujo lens prune --older-than 2026-01-01 --pipeline etl --yes -o json

prune is the one lens command that writes. It deletes each matching run with all its steps, in
short transactions, so pipelines writing to the same database meanwhile lose nothing. Runs
still running and crashed runs are kept unless --status running or --status crashed names
them: they are what you look at when something went wrong.

Before deleting it asks on the terminal (answer y or yes); with no terminal to ask on, it
refuses unless --yes is given. --dry-run only counts, and opens the database read-only.

Space: a database created by flujo gives the pages it no longer needs back to the file system,
so the file shrinks. A database created without incremental auto-vacuum (by an older flujo or
another program) keeps them inside the file, where new runs reuse them; to shrink it, run
`sqlite3 PATH 'VACUUM'` while no pipeline writes to it.

WHEN is a duration back from now (12h, 30d, 2w), a date (2026-01-05), a date and time in UTC
(2026-01-05 14:30) or RFC 3339. Statuses: completed, failed, cancelled, running, crashed.

JSON (-o json, -o jsonl): {\"runs_deleted\": N, \"steps_deleted\": N, \"bytes_before\": N,
\"bytes_after\": N, \"reusable_bytes\": N, \"dry_run\": BOOL}. Bytes count the database file
and its -wal file; reusable_bytes is space freed but kept inside the file. With --dry-run,
runs_deleted and steps_deleted are what would be deleted and bytes_after, reusable_bytes are
null.";

/// `flujo`: pipelines of async steps, every run recorded.
#[derive(Debug, Parser)]
#[command(
    name = "flujo",
    version,
    about = "Inspect the runs flujo pipelines record",
    after_help = format!("{TOP_AFTER_HELP}\n\n{EXIT_CODES}"),
    propagate_version = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: CliCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CliCommand {
    /// List and inspect recorded runs
    Lens(LensArgs),
}

/// `flujo lens`.
#[derive(Debug, Args)]
#[command(
    about = "List and inspect recorded runs",
    after_help = format!("{LENS_AFTER_HELP}{DATABASE}\n\n{EXIT_CODES}"),
    subcommand_required = true,
    arg_required_else_help = true
)]
pub(crate) struct LensArgs {
    /// The database to read: a path, a sqlite:/// or a postgres:// URI [default:
    /// FLUJO_STATE_URI, flujo.toml, ./flujo_ops.db]
    #[arg(long, global = true, value_name = "URI")]
    pub(crate) state_uri: Option<String>,

    /// Output format
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = FormatArg::Table)]
    pub(crate) format: FormatArg,

    #[command(subcommand)]
    pub(crate) command: LensCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FormatArg {
    /// A table sized to the terminal
    Table,
    /// One JSON document
    Json,
    /// One JSON object per line
    Jsonl,
    /// Comma-separated values with a header line (stats only)
    Csv,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LensCommand {
    /// List runs, newest first
    #[command(after_help = format!("{LIST_AFTER_HELP}\n\n{EXIT_CODES}"))]
    List(ListArgs),
    /// Show one run: summary, final context and every step
    #[command(after_help = format!("{SHOW_AFTER_HELP}\n\n{RUN_FORMS}\n\n{EXIT_CODES}"))]
    Show(ShowArgs),
    /// Where a run's time went: its steps as a waterfall on one time axis
    #[command(after_help = format!("{TRACE_AFTER_HELP}\n\n{RUN_FORMS}\n\n{EXIT_CODES}"))]
    Trace(TraceArgs),
    /// Compare two runs step by step: status, timing, usage and changed values
    #[command(after_help = format!("{DIFF_AFTER_HELP}\n\n{RUN_FORMS}\n\n{EXIT_CODES}"))]
    Diff(DiffArgs),
    /// Delete old runs with their steps and give the space back (the one command that writes)
    #[command(after_help = format!("{PRUNE_AFTER_HELP}\n\n{EXIT_CODES}"))]
    Prune(PruneArgs),
    /// Runs, failures, duration percentiles, tokens and cost over a window, by pipeline,
    /// version, step, hour or day
    #[command(after_help = format!("{STATS_AFTER_HELP}\n\n{EXIT_CODES}"))]
    Stats(StatsArgs),
    /// Find runs by what they recorded: errors, inputs, outputs or final contexts
    #[command(after_help = format!("{SEARCH_AFTER_HELP}\n\n{EXIT_CODES}"))]
    Search(SearchArgs),
    /// Copy a local database's runs into a PostgreSQL store (idempotent)
    #[command(after_help = format!("{COPY_AFTER_HELP}\n\n{EXIT_CODES}"))]
    Copy(CopyArgs),
}

#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The first run: `latest`, a run id, a short id or a unique prefix
    #[arg(value_name = "A")]
    pub(crate) a: String,

    /// The second run, the same way
    #[arg(value_name = "B")]
    pub(crate) b: String,

    /// List every step, the equal ones too
    #[arg(long)]
    pub(crate) all: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ByArg {
    /// One row per pipeline
    Pipeline,
    /// One row per pipeline and version
    Version,
    /// One row per step of each pipeline: executions, failures, retries, fallbacks
    Step,
    /// One row per hour (UTC), with a chart of runs and failures
    Hour,
    /// One row per day (UTC), with a chart of runs and failures
    Day,
}

#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Only runs started at or after WHEN (24h, 7d, '2 days', 2026-01-05, RFC 3339) [default:
    /// all runs]
    #[arg(long, value_name = "WHEN")]
    pub(crate) since: Option<String>,

    /// Only runs started before WHEN (same forms as --since)
    #[arg(long, value_name = "WHEN")]
    pub(crate) until: Option<String>,

    /// Only runs of this pipeline (exact name)
    #[arg(short, long, value_name = "NAME")]
    pub(crate) pipeline: Option<String>,

    /// How to group the runs
    #[arg(long, value_enum, default_value_t = ByArg::Pipeline)]
    pub(crate) by: ByArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum FieldArg {
    /// Step errors (indexed)
    Error,
    /// Step inputs
    Input,
    /// Step outputs
    Output,
    /// Runs' final contexts
    Context,
}

#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// The text to find: any substring, any case, any script
    #[arg(value_name = "TEXT")]
    pub(crate) text: String,

    /// Look only in these; repeat or separate with commas [default: all four]
    #[arg(long = "in", value_enum, value_name = "FIELD", value_delimiter = ',')]
    pub(crate) fields: Vec<FieldArg>,

    /// Only runs started at or after WHEN (1d, 12h, 2026-01-05, RFC 3339) [default: errors: all
    /// runs; inputs, outputs, contexts: the last 24 hours]
    #[arg(long, value_name = "WHEN")]
    pub(crate) since: Option<String>,

    /// Only runs started before WHEN (same forms as --since)
    #[arg(long, value_name = "WHEN")]
    pub(crate) until: Option<String>,

    /// Only runs of this pipeline (exact name)
    #[arg(short, long, value_name = "NAME")]
    pub(crate) pipeline: Option<String>,

    /// Show at most N runs
    #[arg(short = 'n', long, value_name = "N", default_value_t = 20)]
    pub(crate) limit: usize,
}

#[derive(Debug, Args)]
pub(crate) struct CopyArgs {
    /// The PostgreSQL store to copy into: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE
    #[arg(long, value_name = "URI", required = true)]
    pub(crate) to: String,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only runs with this status; repeat or separate with commas for several
    #[arg(short, long, value_name = "STATUS", value_delimiter = ',')]
    pub(crate) status: Vec<String>,

    /// Only runs of this pipeline (exact name)
    #[arg(short, long, value_name = "NAME")]
    pub(crate) pipeline: Option<String>,

    /// Only runs started at or after WHEN (30m, 1h30m, '2 days', 2026-01-05, '2026-01-05 14:30',
    /// RFC 3339)
    #[arg(long, value_name = "WHEN")]
    pub(crate) since: Option<String>,

    /// Only runs started before WHEN (same forms as --since)
    #[arg(long, value_name = "WHEN")]
    pub(crate) until: Option<String>,

    /// Show at most N runs
    #[arg(short = 'n', long, value_name = "N", default_value_t = 50)]
    pub(crate) limit: usize,

    /// Keep the list up to date as runs start and end (a terminal: redrawn in place; else one
    /// line per change); Ctrl-C stops
    #[arg(short, long)]
    pub(crate) watch: bool,

    /// Only runs that recorded TEXT in an error, input, output or final context (as `flujo lens
    /// search TEXT`; without --since, inputs, outputs and contexts of the last 24 hours)
    #[arg(long, value_name = "TEXT", conflicts_with = "watch")]
    pub(crate) grep: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// `latest`, a run id, a short id (as `list` shows it) or a unique prefix
    #[arg(value_name = "RUN")]
    pub(crate) run: String,

    /// Print every value whole instead of cutting long ones to fit
    #[arg(long)]
    pub(crate) full: bool,

    /// Print steps as they start and end until the run ends, then exit with a code for its
    /// status (0 completed, 3 failed, 4 cancelled, 5 crashed)
    #[arg(short, long)]
    pub(crate) follow: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TraceArgs {
    /// `latest`, a run id, a short id (as `list` shows it) or a unique prefix
    #[arg(value_name = "RUN")]
    pub(crate) run: String,

    /// Show steps nested at most N deep (0: the run's own steps only)
    #[arg(long, value_name = "N")]
    pub(crate) depth: Option<usize>,

    /// Show every step of a large map or loop instead of folding all but the first 10 into one line
    #[arg(long)]
    pub(crate) expand: bool,

    /// Redraw the waterfall as steps are recorded until the run ends (off a terminal: print it
    /// once it has ended), then exit with a code for its status (0 completed, 3 failed,
    /// 4 cancelled, 5 crashed)
    #[arg(short, long)]
    pub(crate) follow: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// Delete runs started before WHEN (30d, 12h, '2 weeks', 2026-01-05, '2026-01-05 14:30',
    /// RFC 3339)
    #[arg(long, value_name = "WHEN", required = true)]
    pub(crate) older_than: String,

    /// Only runs with this status; repeat or separate with commas for several [default: every
    /// status but running and crashed]
    #[arg(short, long, value_name = "STATUS", value_delimiter = ',')]
    pub(crate) status: Vec<String>,

    /// Only runs of this pipeline (exact name)
    #[arg(short, long, value_name = "NAME")]
    pub(crate) pipeline: Option<String>,

    /// Count what would be deleted and change nothing (even with --yes)
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// Delete without asking
    #[arg(short, long)]
    pub(crate) yes: bool,
}
