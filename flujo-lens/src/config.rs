//! The validated configuration of one lens command: raw arguments plus environment, checked once.

use flujo_trace_core::{
    resolve_state_in, PostgresUri, StateSetting, StateSource, STATE_URI_ENV, STATE_URI_OFF,
};
use flujo_trace_sqlite::{PruneFilter, RunFilter, StatePath, CRASHED};

use flujo_trace_core::SearchField;

use crate::args::{
    ByArg, Cli, CliCommand, CopyArgs, FieldArg, FormatArg, LensCommand, ListArgs, PruneArgs,
    SearchArgs, ShowArgs, StatsArgs,
};
use crate::error::LensError;
use crate::search::SearchConfig;
use crate::stats::{By, StatsConfig};
use crate::timespec::parse_when;
use crate::Environment;

/// Width used when output is not a terminal and `COLUMNS` is unset.
const DEFAULT_WIDTH: usize = 120;
/// Rows of a terminal whose height is unknown.
const DEFAULT_ROWS: usize = 24;
/// Narrower than this, tables cannot hold their columns: render at this width anyway.
const MIN_WIDTH: usize = 40;

/// The statuses `--status` accepts.
pub(crate) const STATUSES: [&str; 5] = ["running", "completed", "failed", "cancelled", CRASHED];

/// Everything a command needs, validated.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The store and where its setting came from.
    pub(crate) store: Store,
    pub(crate) format: Format,
    /// Width of table output, in terminal columns.
    pub(crate) width: usize,
    /// Whether table output may use colour.
    pub(crate) color: bool,
    pub(crate) now: time::OffsetDateTime,
    /// The terminal's height when standard output is a terminal (`--follow` and `--watch`
    /// redraw in place only then), else `None`.
    pub(crate) terminal_rows: Option<usize>,
    pub(crate) command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Table,
    Json,
    Jsonl,
}

#[derive(Debug, Clone)]
pub(crate) enum Command {
    List(ListConfig),
    Show(ShowConfig),
    Trace(TraceConfig),
    Diff(DiffConfig),
    Prune(PruneConfig),
    Copy(CopyConfig),
    Stats(StatsConfig),
    Search(SearchConfig),
}

#[derive(Debug, Clone)]
pub(crate) struct CopyConfig {
    /// The PostgreSQL store to copy into.
    pub(crate) to: PostgresUri,
}

#[derive(Debug, Clone)]
pub(crate) struct ListConfig {
    /// The filter, `limit` always set.
    pub(crate) filter: RunFilter,
    pub(crate) limit: usize,
    /// `--watch`: refresh until interrupted.
    pub(crate) watch: bool,
    /// `--grep TEXT`: only runs that recorded it (the search of `flujo lens search`).
    pub(crate) grep: Option<SearchConfig>,
}

#[derive(Debug, Clone)]
pub(crate) struct ShowConfig {
    pub(crate) run: RunSelector,
    pub(crate) values: ValueLength,
    /// `--follow`: steps as they are recorded, until the run ends.
    pub(crate) follow: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct TraceConfig {
    pub(crate) run: RunSelector,
    /// Steps nested deeper than this are left out (0: the run's own steps only).
    pub(crate) depth: Option<usize>,
    /// Every child shown, none folded.
    pub(crate) expand: bool,
    /// `--follow`: redrawn as steps are recorded, until the run ends.
    pub(crate) follow: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct DiffConfig {
    pub(crate) a: RunSelector,
    pub(crate) b: RunSelector,
    /// Equal steps listed too.
    pub(crate) all: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct PruneConfig {
    pub(crate) filter: PruneFilter,
    /// `--older-than` as the user wrote it, for messages.
    pub(crate) older_than: String,
    pub(crate) mode: PruneMode,
}

/// Whether `prune` deletes, and whether it asks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PruneMode {
    /// `--dry-run`: count only, read-only.
    DryRun,
    /// Ask on the terminal; refuse when there is none.
    Ask,
    /// `--yes`: delete without asking.
    Yes,
}

/// Which run `show` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RunSelector {
    /// The run that started last.
    Latest,
    /// A full run id or a prefix of one.
    Id(String),
}

/// The store a command reads: a SQLite file or a PostgreSQL database.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    /// A SQLite database file.
    Sqlite(StatePath),
    /// A PostgreSQL database.
    Postgres {
        /// Its URI (printed without its password).
        uri: PostgresUri,
        /// Where the setting came from.
        #[allow(dead_code)]
        source: StateSource,
    },
}

impl Store {
    /// The store as messages name it: the file, or the URI without its password.
    pub(crate) fn name(&self) -> String {
        match self {
            Store::Sqlite(state) => state.path.display().to_string(),
            Store::Postgres { uri, .. } => uri.redacted(),
        }
    }
}

/// Whether long values are cut to fit the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueLength {
    Cut,
    Full,
}

impl Config {
    pub(crate) fn from_args(args: Cli, env: &Environment) -> Result<Config, LensError> {
        let CliCommand::Lens(lens) = args.command;
        let store = match resolve_state_in(
            lens.state_uri.as_deref(),
            env.state_uri.as_deref(),
            &env.cwd,
        )
        .map_err(|error| LensError::Usage(error.message))?
        {
            StateSetting::Store(state) => Store::Sqlite(state),
            StateSetting::Postgres { uri, source } => Store::Postgres { uri, source },
            StateSetting::Off { source } => {
                return Err(LensError::Usage(format!(
                    "recording is off ({source} is {STATE_URI_OFF:?}), so there is no database \
                     to read: point --state-uri or {STATE_URI_ENV} at the flujo_ops.db your \
                     pipelines write"
                )))
            }
        };
        let csv = lens.format == FormatArg::Csv;
        if csv && !matches!(lens.command, LensCommand::Stats(_)) {
            return Err(LensError::Usage(
                "-o csv is for `flujo lens stats`: use -o json or -o jsonl here".to_owned(),
            ));
        }
        let format = match lens.format {
            FormatArg::Table | FormatArg::Csv => Format::Table,
            FormatArg::Json => Format::Json,
            FormatArg::Jsonl => Format::Jsonl,
        };
        let command = match lens.command {
            LensCommand::List(list) => Command::List(list_config(list, env)?),
            LensCommand::Show(show) => Command::Show(show_config(show)?),
            LensCommand::Trace(trace) => Command::Trace(TraceConfig {
                run: run_selector(&trace.run)?,
                depth: trace.depth,
                expand: trace.expand,
                follow: trace.follow,
            }),
            LensCommand::Diff(diff) => Command::Diff(DiffConfig {
                a: run_selector(&diff.a)?,
                b: run_selector(&diff.b)?,
                all: diff.all,
            }),
            LensCommand::Prune(prune) => Command::Prune(prune_config(prune, env)?),
            LensCommand::Copy(copy) => Command::Copy(copy_config(copy)?),
            LensCommand::Stats(stats) => Command::Stats(stats_config(stats, csv, env)?),
            LensCommand::Search(search) => Command::Search(search_config(search, env)?),
        };
        let live = match &command {
            Command::List(list) => list.watch.then_some("list --watch"),
            Command::Show(show) => show.follow.then_some("show --follow"),
            Command::Trace(trace) => trace.follow.then_some("trace --follow"),
            _ => None,
        };
        if let (Some(live), Format::Json) = (live, format) {
            return Err(LensError::Usage(format!(
                "{live} writes as it goes, one JSON object per line: use -o jsonl instead of \
                 -o json"
            )));
        }
        Ok(Config {
            store,
            format,
            width: output_width(env),
            color: env.stdout_is_terminal && !env.no_color,
            now: env.now,
            terminal_rows: env
                .stdout_is_terminal
                .then_some(env.terminal_height.unwrap_or(DEFAULT_ROWS)),
            command,
        })
    }
}

/// `COLUMNS` when it is a number, else the terminal's width, else [`DEFAULT_WIDTH`].
pub(crate) fn output_width(env: &Environment) -> usize {
    let columns = env
        .columns
        .as_deref()
        .and_then(|columns| columns.trim().parse::<usize>().ok())
        .filter(|&columns| columns > 0);
    columns
        .or(env.terminal_width)
        .unwrap_or(DEFAULT_WIDTH)
        .max(MIN_WIDTH)
}

/// `--status` values: known, lowercase, each once.
fn statuses(values: &[String]) -> Result<Vec<String>, LensError> {
    let mut statuses = Vec::new();
    for status in values {
        let status = status.trim().to_ascii_lowercase();
        if status.is_empty() {
            continue;
        }
        if !STATUSES.contains(&status.as_str()) {
            return Err(LensError::Usage(format!(
                "unknown status {status:?} for --status: use one or more of {}",
                STATUSES.join(", ")
            )));
        }
        if !statuses.contains(&status) {
            statuses.push(status);
        }
    }
    Ok(statuses)
}

/// `--since` and `--until` parsed, the first before the second.
fn window(
    since: Option<&str>,
    until: Option<&str>,
    env: &Environment,
) -> Result<(Option<String>, Option<String>), LensError> {
    let since = since
        .map(|when| parse_when("--since", when, env.now))
        .transpose()?;
    let until = until
        .map(|when| parse_when("--until", when, env.now))
        .transpose()?;
    if let (Some(since), Some(until)) = (&since, &until) {
        if since >= until {
            return Err(LensError::Usage(format!(
                "--since ({since}) is not before --until ({until}): swap them or widen the window"
            )));
        }
    }
    Ok((since, until))
}

fn positive_limit(limit: usize) -> Result<usize, LensError> {
    if limit == 0 {
        return Err(LensError::Usage(
            "--limit must be at least 1: give the number of runs to show".to_owned(),
        ));
    }
    Ok(limit)
}

fn list_config(args: ListArgs, env: &Environment) -> Result<ListConfig, LensError> {
    let statuses = statuses(&args.status)?;
    let limit = positive_limit(args.limit)?;
    let (since, until) = window(args.since.as_deref(), args.until.as_deref(), env)?;
    let filter = RunFilter {
        statuses,
        pipeline_name: args.pipeline,
        since,
        until,
        limit: Some(limit),
    };
    let grep = args
        .grep
        .map(|text| search_of(text, &SearchField::ALL, &filter, limit, env))
        .transpose()?;
    Ok(ListConfig {
        filter,
        limit,
        watch: args.watch,
        grep,
    })
}

fn stats_config(args: StatsArgs, csv: bool, env: &Environment) -> Result<StatsConfig, LensError> {
    let (since, until) = window(args.since.as_deref(), args.until.as_deref(), env)?;
    Ok(StatsConfig {
        filter: RunFilter {
            statuses: Vec::new(),
            pipeline_name: args.pipeline,
            since,
            until,
            limit: None,
        },
        by: match args.by {
            ByArg::Pipeline => By::Pipeline,
            ByArg::Version => By::Version,
            ByArg::Step => By::Step,
            ByArg::Hour => By::Hour,
            ByArg::Day => By::Day,
        },
        csv,
    })
}

/// A search for `text` in `fields` within `filter`'s window and pipeline: payloads within the
/// last 24 hours unless `--since` was given.
fn search_of(
    text: String,
    fields: &[SearchField],
    filter: &RunFilter,
    limit: usize,
    env: &Environment,
) -> Result<SearchConfig, LensError> {
    if text.is_empty() {
        return Err(LensError::Usage(
            "the text to search for is empty: give at least one character".to_owned(),
        ));
    }
    let filter = RunFilter {
        statuses: Vec::new(),
        limit: None,
        ..filter.clone()
    };
    let payload_since_default = filter.since.is_none();
    let mut payload_filter = filter.clone();
    if payload_since_default {
        let day_ago = env.now - time::Duration::hours(24);
        payload_filter.since = Some(flujo_trace_core::format_timestamp(day_ago));
        if let Some(until) = &payload_filter.until {
            if payload_filter.since.as_ref() >= Some(until) {
                payload_filter.since = None;
            }
        }
    }
    let mut unique = Vec::new();
    for field in fields {
        if !unique.contains(field) {
            unique.push(*field);
        }
    }
    Ok(SearchConfig {
        text,
        fields: unique,
        filter,
        payload_filter,
        payload_since_default,
        limit,
    })
}

fn search_config(args: SearchArgs, env: &Environment) -> Result<SearchConfig, LensError> {
    let limit = positive_limit(args.limit)?;
    let (since, until) = window(args.since.as_deref(), args.until.as_deref(), env)?;
    let filter = RunFilter {
        statuses: Vec::new(),
        pipeline_name: args.pipeline,
        since,
        until,
        limit: None,
    };
    let fields: Vec<SearchField> = if args.fields.is_empty() {
        SearchField::ALL.to_vec()
    } else {
        args.fields
            .iter()
            .map(|field| match field {
                FieldArg::Error => SearchField::Error,
                FieldArg::Input => SearchField::Input,
                FieldArg::Output => SearchField::Output,
                FieldArg::Context => SearchField::Context,
            })
            .collect()
    };
    search_of(args.text, &fields, &filter, limit, env)
}

fn copy_config(args: CopyArgs) -> Result<CopyConfig, LensError> {
    let to = PostgresUri::parse(&args.to).ok_or_else(|| {
        LensError::Usage(
            "--to takes a PostgreSQL URI: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
                .to_owned(),
        )
    })?;
    Ok(CopyConfig { to })
}

/// RUN: `latest`, or a run id or prefix of one.
fn run_selector(run: &str) -> Result<RunSelector, LensError> {
    let run = run.trim();
    if run.is_empty() {
        return Err(LensError::Usage(
            "RUN is empty: give a run id, a prefix of one, or `latest`".to_owned(),
        ));
    }
    Ok(if run == "latest" {
        RunSelector::Latest
    } else {
        RunSelector::Id(run.to_owned())
    })
}

fn show_config(args: ShowArgs) -> Result<ShowConfig, LensError> {
    Ok(ShowConfig {
        run: run_selector(&args.run)?,
        values: if args.full {
            ValueLength::Full
        } else {
            ValueLength::Cut
        },
        follow: args.follow,
    })
}

fn prune_config(args: PruneArgs, env: &Environment) -> Result<PruneConfig, LensError> {
    let started_before = parse_when("--older-than", &args.older_than, env.now)?;
    let mode = if args.dry_run {
        PruneMode::DryRun
    } else if args.yes {
        PruneMode::Yes
    } else {
        PruneMode::Ask
    };
    Ok(PruneConfig {
        filter: PruneFilter {
            started_before,
            statuses: statuses(&args.status)?,
            pipeline_name: args.pipeline,
        },
        older_than: args.older_than.trim().to_owned(),
        mode,
    })
}
