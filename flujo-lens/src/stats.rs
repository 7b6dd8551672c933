//! `flujo lens stats`: counts, rates, exact duration percentiles, tokens and cost of the runs in
//! a window, by pipeline, version, step, hour or day (UTC), as a table (with a chart of runs and
//! failures over time for hours and days), JSON or CSV.
//!
//! Every figure is computed here from the rows the store's reader streams
//! (`RunReader::for_each_run_stat`, `for_each_step_stat`): percentiles are exact (nearest rank
//! over the durations recorded), nothing is sampled or pre-aggregated.

use std::collections::BTreeMap;
use std::io::Write;

use flujo_trace_core::{IndexState, RunStat, StepStat, CRASHED};
use flujo_trace_postgres::PostgresReader;
use flujo_trace_sqlite::{RunFilter, RunReader, SqliteReader};
use serde::Serialize;
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::config::{Config, Format, Store};
use crate::error::LensError;
use crate::json;
use crate::render::{self, Align, Cell, Column, Tone};
use crate::text::{self, TimePrecision};

/// More buckets than this are refused (ask for days, or a narrower window).
const MAX_BUCKETS: usize = 20_000;

/// How `stats` groups runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum By {
    Pipeline,
    Version,
    Step,
    Hour,
    Day,
}

impl By {
    fn is_time(self) -> bool {
        matches!(self, By::Hour | By::Day)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StatsConfig {
    /// The window and pipeline (`statuses` and `limit` unused).
    pub(crate) filter: RunFilter,
    pub(crate) by: By,
    /// `-o csv`.
    pub(crate) csv: bool,
}

pub(crate) fn run(
    config: &Config,
    stats: &StatsConfig,
    out: &mut dyn Write,
) -> Result<(), LensError> {
    match &config.store {
        Store::Sqlite(state) => stats_from(&SqliteReader::open(&state.path)?, config, stats, out),
        Store::Postgres { uri, .. } => stats_from(&PostgresReader::open(uri)?, config, stats, out),
    }
}

/// Runs, outcomes, durations and usage of one group.
#[derive(Debug, Clone, Default)]
struct Tally {
    /// Runs (for steps: runs that executed the step).
    runs: u64,
    /// Step executions (steps only).
    executions: u64,
    completed: u64,
    failed: u64,
    crashed: u64,
    cancelled: u64,
    running: u64,
    /// Steps only: attempts beyond the first, summed.
    retries: u64,
    /// Steps only: executions whose fallback produced the output.
    fallbacks: u64,
    durations: Vec<i64>,
    tokens: i64,
    cost: f64,
    /// Steps only: the last run counted, to count runs once.
    last_run: Option<String>,
}

impl Tally {
    fn count_status(&mut self, status: &str) {
        match status {
            "completed" => self.completed += 1,
            "failed" => self.failed += 1,
            CRASHED => self.crashed += 1,
            "cancelled" => self.cancelled += 1,
            _ => self.running += 1,
        }
    }

    fn add_run(&mut self, run: &RunStat) {
        self.runs += 1;
        self.count_status(&run.status);
        if let Some(duration) = run.duration_ms {
            self.durations.push(duration);
        }
        self.tokens += run.total_tokens.unwrap_or(0);
        self.cost += run.total_cost.unwrap_or(0.0);
    }

    fn add_step(&mut self, step: &StepStat) {
        self.executions += 1;
        if self.last_run.as_deref() != Some(step.run_id.as_str()) {
            self.runs += 1;
            self.last_run = Some(step.run_id.clone());
        }
        self.count_status(&step.status);
        if let Some(duration) = step.duration_ms {
            self.durations.push(duration);
        }
        self.retries += u64::try_from(step.attempts.unwrap_or(1).saturating_sub(1)).unwrap_or(0);
        self.fallbacks += u64::from(step.fallback_taken == Some(true));
        self.tokens += step.tokens.unwrap_or(0);
        self.cost += step.cost.unwrap_or(0.0);
    }

    /// The figures, durations sorted.
    fn figures(mut self) -> Figures {
        self.durations.sort_unstable();
        let of = |count: u64, total: u64| {
            if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            }
        };
        // rates are of what was counted: runs, or for steps their executions
        let total = if self.executions > 0 {
            self.executions
        } else {
            self.runs
        };
        Figures {
            runs: self.runs,
            executions: (self.executions > 0).then_some(self.executions),
            completed: self.completed,
            failed: self.failed,
            crashed: self.crashed,
            cancelled: self.cancelled,
            running: self.running,
            rates: Rates {
                completed: of(self.completed, total),
                failed: of(self.failed, total),
                crashed: of(self.crashed, total),
                cancelled: of(self.cancelled, total),
            },
            retries: (self.executions > 0).then_some(self.retries),
            fallbacks: (self.executions > 0).then_some(self.fallbacks),
            duration_ms: Percentiles::of(&self.durations),
            tokens: Usage {
                total: self.tokens as f64,
                per_run: of(self.tokens.max(0) as u64, self.runs),
            },
            cost_usd: Usage {
                total: self.cost,
                per_run: if self.runs == 0 {
                    0.0
                } else {
                    self.cost / self.runs as f64
                },
            },
        }
    }
}

/// The nearest-rank percentile `p` (0 < p <= 1) of sorted values: the smallest value with at
/// least `p` of all at or below it. Exact: no interpolation, no sketch.
fn nearest_rank(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[derive(Debug, Clone, Serialize)]
struct Percentiles {
    /// How many durations they are of (runs or executions that recorded one).
    of: usize,
    p50: Option<i64>,
    p95: Option<i64>,
    p99: Option<i64>,
    max: Option<i64>,
}

impl Percentiles {
    fn of(sorted: &[i64]) -> Percentiles {
        Percentiles {
            of: sorted.len(),
            p50: nearest_rank(sorted, 0.50),
            p95: nearest_rank(sorted, 0.95),
            p99: nearest_rank(sorted, 0.99),
            max: sorted.last().copied(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct Rates {
    completed: f64,
    failed: f64,
    crashed: f64,
    cancelled: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Usage {
    total: f64,
    per_run: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Figures {
    runs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    executions: Option<u64>,
    completed: u64,
    failed: u64,
    crashed: u64,
    cancelled: u64,
    running: u64,
    rates: Rates,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fallbacks: Option<u64>,
    duration_ms: Percentiles,
    tokens: Usage,
    cost_usd: Usage,
}

/// What a group is: its key's parts, by `By`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
struct Key {
    #[serde(skip_serializing_if = "Option::is_none")]
    bucket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pipeline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<String>,
}

#[derive(Debug, Serialize)]
struct Group {
    #[serde(flatten)]
    key: Key,
    #[serde(flatten)]
    figures: Figures,
}

#[derive(Debug, Serialize)]
struct StatsJson<'a> {
    by: By,
    since: Option<&'a str>,
    until: Option<&'a str>,
    pipeline: Option<&'a str>,
    /// How the percentiles are computed.
    percentiles: &'static str,
    /// `ready`, `filling` or `missing`: whether the store's stats table served the query.
    index: &'static str,
    groups: &'a [Group],
    total: &'a Figures,
}

const PERCENTILES: &str = "exact: nearest rank over every recorded duration";

/// A stored time's bucket: `2026-12-01T14` (hour) or `2026-12-01` (day), UTC.
fn bucket_of(stored: &str, by: By) -> Option<String> {
    let len = if by == By::Hour { 13 } else { 10 };
    // the writer's own format is UTC already: its prefix is the bucket
    if let Some(bucket) = writer_bucket(stored, by) {
        return Some(bucket.to_owned());
    }
    let utc = flujo_trace_core::parse_timestamp(stored)?.to_offset(UtcOffset::UTC);
    Some(flujo_trace_core::format_timestamp(utc)[..len].to_owned())
}

/// The start of a bucket as a time.
fn bucket_start(bucket: &str) -> Option<OffsetDateTime> {
    let full = if bucket.len() == 13 {
        format!("{bucket}:00:00Z")
    } else {
        format!("{bucket}T00:00:00Z")
    };
    flujo_trace_core::parse_timestamp(&full)
}

/// Every bucket from `first` to `last`, the empty ones too.
fn every_bucket(first: &str, last: &str, by: By) -> Result<Vec<String>, LensError> {
    let (Some(mut at), Some(end)) = (bucket_start(first), bucket_start(last)) else {
        return Ok(vec![first.to_owned(), last.to_owned()]);
    };
    let step = if by == By::Hour {
        Duration::hours(1)
    } else {
        Duration::days(1)
    };
    let mut buckets = Vec::new();
    while at <= end {
        if buckets.len() >= MAX_BUCKETS {
            return Err(LensError::Usage(format!(
                "more than {} {}s to show: use --by day, or narrow the window with --since and \
                 --until",
                text::thousands(MAX_BUCKETS as u64),
                if by == By::Hour { "hour" } else { "day" }
            )));
        }
        buckets.push(bucket_of(&flujo_trace_core::format_timestamp(at), by).unwrap_or_default());
        at += step;
    }
    Ok(buckets)
}

/// How many of the groups met last `stats` compares a run with before it looks its key up.
const RECENT_GROUPS: usize = 8;

/// Whether `run` belongs to the group of `key` (false when unsure: its key is then built and
/// looked up).
fn key_matches(key: &Key, run: &RunStat, by: By) -> bool {
    match by {
        By::Pipeline => key.pipeline.as_deref() == Some(run.pipeline_name.as_str()),
        By::Version => {
            key.pipeline.as_deref() == Some(run.pipeline_name.as_str())
                && key.version.as_deref() == Some(run.pipeline_version.as_str())
        }
        By::Hour | By::Day => writer_bucket(&run.start_time, by)
            .is_some_and(|bucket| key.bucket.as_deref() == Some(bucket)),
        By::Step => false,
    }
}

/// The bucket of a time in the writer's own format (UTC, ending in `Z`): its prefix; `None` for
/// another form.
fn writer_bucket(stored: &str, by: By) -> Option<&str> {
    let len = if by == By::Hour { 13 } else { 10 };
    if stored.len() > 19 && stored.ends_with('Z') && stored.as_bytes()[10] == b'T' {
        // `get`: a stored text that only looks like it is not cut inside a character
        stored.get(..len)
    } else {
        None
    }
}

fn key_of_run(run: &RunStat, by: By) -> Key {
    let mut key = Key {
        bucket: None,
        pipeline: None,
        version: None,
        step: None,
        kind: None,
    };
    match by {
        By::Pipeline => key.pipeline = Some(run.pipeline_name.clone()),
        By::Version => {
            key.pipeline = Some(run.pipeline_name.clone());
            key.version = Some(run.pipeline_version.clone());
        }
        By::Hour | By::Day => key.bucket = bucket_of(&run.start_time, by),
        By::Step => {}
    }
    key
}

fn stats_from<R: RunReader>(
    backend: &R,
    config: &Config,
    stats: &StatsConfig,
    out: &mut dyn Write,
) -> Result<(), LensError>
where
    LensError: From<R::Error>,
{
    let index = backend.stats_index()?;
    let mut groups: BTreeMap<Key, Tally> = BTreeMap::new();
    let mut total = Tally::default();
    if stats.by == By::Step {
        // steps arrive run by run: a run counts once per step name
        backend.for_each_step_stat(&stats.filter, |step: StepStat| -> Result<(), LensError> {
            let key = Key {
                bucket: None,
                pipeline: Some(step.pipeline_name.clone()),
                version: None,
                step: Some(step.step_name.clone()),
                kind: step.step_kind.clone(),
            };
            groups.entry(key).or_default().add_step(&step);
            total.add_step(&step);
            Ok(())
        })?;
    } else {
        // runs come in start-time order, a few groups interleaved: the groups met last are
        // compared first, without building a key
        let mut tallies: Vec<Tally> = Vec::new();
        let mut index: BTreeMap<Key, usize> = BTreeMap::new();
        let mut recent: Vec<(Key, usize)> = Vec::with_capacity(RECENT_GROUPS);
        backend.for_each_run_stat(&stats.filter, |run: &RunStat| -> Result<(), LensError> {
            let found = recent
                .iter()
                .find(|(key, _)| key_matches(key, run, stats.by))
                .map(|&(_, at)| at);
            let at = found.unwrap_or_else(|| {
                let key = key_of_run(run, stats.by);
                let at = *index.entry(key.clone()).or_insert_with(|| {
                    tallies.push(Tally::default());
                    tallies.len() - 1
                });
                if recent.len() == RECENT_GROUPS {
                    recent.remove(0);
                }
                recent.push((key, at));
                at
            });
            tallies[at].add_run(run);
            total.add_run(run);
            Ok(())
        })?;
        groups = index
            .into_iter()
            .map(|(key, at)| (key, std::mem::take(&mut tallies[at])))
            .collect();
    }
    if stats.by.is_time() && !groups.is_empty() {
        let first = stats
            .filter
            .since
            .as_deref()
            .and_then(|since| bucket_of(since, stats.by))
            .or_else(|| groups.keys().next().and_then(|key| key.bucket.clone()));
        let last = groups.keys().next_back().and_then(|key| key.bucket.clone());
        let until = stats.filter.until.as_deref().and_then(|until| {
            // the bucket of the last instant before --until
            let end = flujo_trace_core::parse_timestamp(until)? - Duration::microseconds(1);
            bucket_of(&flujo_trace_core::format_timestamp(end), stats.by)
        });
        let now = bucket_of(&flujo_trace_core::format_timestamp(config.now), stats.by);
        let last = [last, until.or(now)].into_iter().flatten().max();
        if let (Some(first), Some(last)) = (first, last) {
            for bucket in every_bucket(&first, &last, stats.by)? {
                let key = Key {
                    bucket: Some(bucket),
                    pipeline: None,
                    version: None,
                    step: None,
                    kind: None,
                };
                groups.entry(key).or_default();
            }
        }
    }
    let empty = total.runs == 0;
    let groups: Vec<Group> = groups
        .into_iter()
        .map(|(key, tally)| Group {
            key,
            figures: tally.figures(),
        })
        .collect();
    let total = total.figures();
    if stats.csv {
        write_csv(out, stats.by, &groups)?;
    } else {
        match config.format {
            Format::Json | Format::Jsonl => {
                let document = StatsJson {
                    by: stats.by,
                    since: stats.filter.since.as_deref(),
                    until: stats.filter.until.as_deref(),
                    pipeline: stats.filter.pipeline_name.as_deref(),
                    percentiles: PERCENTILES,
                    index: match index {
                        IndexState::Ready => "ready",
                        IndexState::Filling(_) => "filling",
                        IndexState::Missing => "missing",
                    },
                    groups: &groups,
                    total: &total,
                };
                json::write_line(out, &document)?;
            }
            Format::Table if !empty => {
                let mut rendered = String::new();
                if stats.by.is_time() {
                    rendered.push_str(&chart(&groups, stats.by, config.width, config.color));
                    rendered.push('\n');
                }
                rendered.push_str(&table(
                    &groups,
                    &total,
                    stats.by,
                    config.width,
                    config.color,
                ));
                rendered.push_str(&footer(stats, index));
                out.write_all(rendered.as_bytes())?;
            }
            Format::Table => {}
        }
    }
    if empty {
        return Err(nothing_found(config, stats));
    }
    Ok(())
}

/// What the footer says: the window, the percentiles' method, and the index used.
fn footer(stats: &StatsConfig, index: IndexState) -> String {
    let window = window_text(&stats.filter);
    let mut footer = format!(
        "{window}; times UTC; percentiles exact (nearest rank over every recorded duration)\n"
    );
    match index {
        IndexState::Ready => {}
        IndexState::Filling(done) => footer.push_str(&format!(
            "note: the store's stats table is still being filled by its writer ({:.0}% done): \
             these figures come from a scan of the runs, the same but slower\n",
            done * 100.0
        )),
        IndexState::Missing => footer.push_str(
            "note: this store has no stats table (a database written by an older flujo): these \
             figures come from a scan of the runs, the same but slower; the next time a pipeline \
             of this flujo records into it, it is upgraded and the table filled in the \
             background\n",
        ),
    }
    footer
}

fn window_text(filter: &RunFilter) -> String {
    let at = |when: &Option<String>| {
        when.as_deref()
            .map(|when| text::time(Some(when), TimePrecision::Seconds))
    };
    let mut window = match (at(&filter.since), at(&filter.until)) {
        (Some(since), Some(until)) => format!("runs started {since} to {until}"),
        (Some(since), None) => format!("runs started since {since}"),
        (None, Some(until)) => format!("runs started before {until}"),
        (None, None) => "all runs".to_owned(),
    };
    if let Some(pipeline) = &filter.pipeline_name {
        window.push_str(&format!(" of {}", text::escape(pipeline)));
    }
    window
}

fn nothing_found(config: &Config, stats: &StatsConfig) -> LensError {
    let store = text::escape(&config.store.name());
    let window = window_text(&stats.filter);
    let what = if stats.by == By::Step {
        "steps of runs"
    } else {
        "runs"
    };
    LensError::NothingFound(if window == "all runs" {
        format!("no {what} recorded in {store} yet: run a pipeline, then try again")
    } else {
        format!(
            "no {what}{} in {store}: widen --since or --until, or drop --pipeline",
            window.trim_start_matches("runs")
        )
    })
}

fn column(header: &'static str, align: Align, drop_order: Option<u8>) -> Column {
    Column {
        header,
        align,
        shrink: align == Align::Left,
        drop_order,
    }
}

fn percent(rate: f64) -> String {
    if rate == 0.0 {
        "0%".to_owned()
    } else {
        format!("{:.1}%", rate * 100.0)
    }
}

/// The table: one row per group, then a total row when there are several.
fn table(groups: &[Group], total: &Figures, by: By, width: usize, color: bool) -> String {
    let mut columns: Vec<Column> = Vec::new();
    match by {
        By::Pipeline => columns.push(column("pipeline", Align::Left, None)),
        By::Version => {
            columns.push(column("pipeline", Align::Left, None));
            columns.push(column("version", Align::Left, None));
        }
        By::Step => {
            columns.push(column("pipeline", Align::Left, Some(9)));
            columns.push(column("step", Align::Left, None));
            columns.push(column("kind", Align::Left, Some(3)));
        }
        By::Hour => columns.push(column("hour (UTC)", Align::Left, None)),
        By::Day => columns.push(column("day (UTC)", Align::Left, None)),
    }
    let steps = by == By::Step;
    columns.push(column("runs", Align::Right, None));
    if steps {
        columns.push(column("executions", Align::Right, Some(6)));
    }
    columns.push(column("ok", Align::Right, Some(5)));
    columns.push(column("failed", Align::Right, None));
    columns.push(column("crashed", Align::Right, Some(4)));
    columns.push(column("cancelled", Align::Right, Some(4)));
    columns.push(column("fail %", Align::Right, None));
    if steps {
        columns.push(column("retries", Align::Right, Some(7)));
        columns.push(column("fallbacks", Align::Right, Some(7)));
    }
    columns.push(column("p50", Align::Right, None));
    columns.push(column("p95", Align::Right, None));
    if !steps {
        columns.push(column("p99", Align::Right, Some(2)));
    }
    columns.push(column("max", Align::Right, Some(2)));
    if !steps {
        columns.push(column("tokens/run", Align::Right, Some(1)));
        columns.push(column("cost", Align::Right, Some(1)));
        columns.push(column("cost/run", Align::Right, Some(8)));
    }
    let mut figures: Vec<(&Key, &Figures)> = groups
        .iter()
        .map(|group| (&group.key, &group.figures))
        .collect();
    let total_key = Key {
        bucket: Some("total".to_owned()),
        pipeline: Some("total".to_owned()),
        version: Some(String::new()),
        step: Some("total".to_owned()),
        kind: Some(String::new()),
    };
    if groups.len() > 1 && !steps {
        figures.push((&total_key, total));
    }
    let decimals = text::cost_decimals(
        figures
            .iter()
            .flat_map(|(_, f)| [Some(f.cost_usd.total), Some(f.cost_usd.per_run)]),
    );
    let rows: Vec<Vec<Cell>> = figures
        .iter()
        .map(|(key, f)| {
            let is_total = std::ptr::eq(*key, &total_key);
            let label = |part: &Option<String>| {
                let text = text::escape(part.as_deref().unwrap_or("-"));
                if is_total {
                    Cell::toned(text, Tone::Quiet)
                } else {
                    Cell::plain(text)
                }
            };
            let mut row = Vec::new();
            match by {
                By::Pipeline => row.push(label(&key.pipeline)),
                By::Version => {
                    row.push(label(&key.pipeline));
                    row.push(label(&key.version));
                }
                By::Step => {
                    row.push(label(&key.pipeline));
                    row.push(label(&key.step));
                    row.push(label(&key.kind));
                }
                By::Hour | By::Day => row.push(label(&key.bucket.as_ref().map(|bucket| {
                    if bucket.len() == 13 {
                        format!("{} {}:00", &bucket[..10], &bucket[11..])
                    } else {
                        bucket.clone()
                    }
                }))),
            }
            let n = |value: u64| Cell::plain(text::thousands(value));
            let bad = |value: u64| {
                if value > 0 {
                    Cell::toned(text::thousands(value), Tone::Bad)
                } else {
                    Cell::plain("0")
                }
            };
            row.push(n(f.runs));
            if steps {
                row.push(n(f.executions.unwrap_or(0)));
            }
            row.push(n(f.completed));
            row.push(bad(f.failed));
            row.push(bad(f.crashed));
            row.push(n(f.cancelled));
            let fail = f.rates.failed + f.rates.crashed;
            row.push(if fail > 0.0 {
                Cell::toned(percent(fail), Tone::Bad)
            } else {
                Cell::plain(percent(fail))
            });
            if steps {
                row.push(n(f.retries.unwrap_or(0)));
                let fallbacks = f.fallbacks.unwrap_or(0);
                row.push(if fallbacks > 0 {
                    Cell::toned(text::thousands(fallbacks), Tone::Warn)
                } else {
                    Cell::plain("0")
                });
            }
            let d = &f.duration_ms;
            row.push(Cell::plain(text::duration(d.p50)));
            row.push(Cell::plain(text::duration(d.p95)));
            if !steps {
                row.push(Cell::plain(text::duration(d.p99)));
            }
            row.push(Cell::plain(text::duration(d.max)));
            if !steps {
                row.push(Cell::plain(if f.runs == 0 {
                    "-".to_owned()
                } else {
                    text::thousands(f.tokens.per_run.round() as u64)
                }));
                row.push(Cell::plain(text::cost_with(
                    Some(f.cost_usd.total),
                    decimals,
                )));
                row.push(Cell::plain(text::cost_with(
                    Some(f.cost_usd.per_run),
                    decimals,
                )));
            }
            row
        })
        .collect();
    let mut rendered = render::grid(&columns, &rows, width, color);
    rendered.push('\n');
    rendered
}

/// Eight heights of a sparkline.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One character per bucket (several buckets per character when there are more than fit),
/// its height the bucket's share of the largest; ` ` for none.
fn sparkline(values: &[u64], max: u64) -> String {
    values
        .iter()
        .map(|&value| {
            if value == 0 || max == 0 {
                ' '
            } else {
                let level = ((value as f64 / max as f64) * 7.0).round() as usize;
                BARS[level.min(7)]
            }
        })
        .collect()
}

/// The chart of runs and failures over time: a sparkline each, on one time axis.
fn chart(groups: &[Group], by: By, width: usize, color: bool) -> String {
    let label_width = 9;
    let room = width.saturating_sub(label_width + 20).max(10);
    let per_char = groups.len().div_ceil(room).max(1);
    // few buckets: each is drawn several characters wide (at most 4)
    let repeat = (room / groups.len().max(1)).clamp(1, 4);
    let mut runs = Vec::new();
    let mut failed = Vec::new();
    for chunk in groups.chunks(per_char) {
        runs.push(chunk.iter().map(|g| g.figures.runs).sum::<u64>());
        failed.push(
            chunk
                .iter()
                .map(|g| g.figures.failed + g.figures.crashed)
                .sum::<u64>(),
        );
    }
    let unit = match (by, per_char) {
        (By::Hour, 1) => "an hour".to_owned(),
        (By::Day, 1) => "a day".to_owned(),
        (By::Hour, n) => format!("per {n} hours"),
        (_, n) => format!("per {n} days"),
    };
    let max_runs = runs.iter().copied().max().unwrap_or(0);
    let max_failed = failed.iter().copied().max().unwrap_or(0);
    let first = groups
        .first()
        .and_then(|g| g.key.bucket.clone())
        .unwrap_or_default();
    let last = groups
        .last()
        .and_then(|g| g.key.bucket.clone())
        .unwrap_or_default();
    let widen = |line: String| -> String {
        line.chars()
            .flat_map(|c| std::iter::repeat_n(c, repeat))
            .collect()
    };
    let axis_width = runs.len() * repeat;
    let show = |bucket: &str| {
        if bucket.len() == 13 {
            format!("{} {}h", &bucket[..10], &bucket[11..])
        } else {
            bucket.to_owned()
        }
    };
    let first_label = show(&first);
    // the last bucket without what it shares with the first (the day of hours, the year of days)
    let last_label = if last.len() == 13 && last[..10] == first[..10] {
        format!("{}h", &last[11..])
    } else if last.len() == 10 && last[..4] == first[..4] {
        last[5..].to_owned()
    } else {
        show(&last)
    };
    let gap = axis_width
        .saturating_sub(first_label.len() + last_label.len())
        .max(2);
    let axis = if first == last {
        first_label
    } else {
        format!("{first_label}{}{last_label}", " ".repeat(gap))
    };
    format!(
        "{:<label_width$}{}  max {} {unit}\n{:<label_width$}{}  max {} {unit}\n{:<label_width$}{axis}\n",
        "runs",
        render::paint(&widen(sparkline(&runs, max_runs)), Tone::Good, color),
        text::thousands(max_runs),
        "failed",
        render::paint(&widen(sparkline(&failed, max_failed)), Tone::Bad, color),
        text::thousands(max_failed),
        "",
    )
}

/// A CSV field, quoted when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

/// The groups as CSV: a header line, then one line per group.
fn write_csv(out: &mut dyn Write, by: By, groups: &[Group]) -> std::io::Result<()> {
    let keys: &[&str] = match by {
        By::Pipeline => &["pipeline"],
        By::Version => &["pipeline", "version"],
        By::Step => &["pipeline", "step", "kind"],
        By::Hour => &["hour"],
        By::Day => &["day"],
    };
    let steps = by == By::Step;
    let mut header: Vec<&str> = keys.to_vec();
    header.push("runs");
    if steps {
        header.push("executions");
    }
    header.extend([
        "completed",
        "failed",
        "crashed",
        "cancelled",
        "running",
        "failure_rate",
    ]);
    if steps {
        header.extend(["retries", "fallbacks"]);
    }
    header.extend([
        "duration_ms_p50",
        "duration_ms_p95",
        "duration_ms_p99",
        "duration_ms_max",
        "tokens",
        "tokens_per_run",
        "cost_usd",
        "cost_usd_per_run",
    ]);
    writeln!(out, "{}", header.join(","))?;
    let opt = |value: Option<i64>| value.map_or(String::new(), |v| v.to_string());
    for group in groups {
        let key = &group.key;
        let f = &group.figures;
        let mut fields: Vec<String> = match by {
            By::Pipeline => vec![key.pipeline.clone()],
            By::Version => vec![key.pipeline.clone(), key.version.clone()],
            By::Step => vec![key.pipeline.clone(), key.step.clone(), key.kind.clone()],
            By::Hour => vec![key.bucket.as_ref().map(|b| format!("{b}:00:00Z"))],
            By::Day => vec![key.bucket.clone()],
        }
        .into_iter()
        .map(|part| csv_field(&part.unwrap_or_default()))
        .collect();
        fields.push(f.runs.to_string());
        if steps {
            fields.push(f.executions.unwrap_or(0).to_string());
        }
        fields.extend([
            f.completed.to_string(),
            f.failed.to_string(),
            f.crashed.to_string(),
            f.cancelled.to_string(),
            f.running.to_string(),
            // as the table's fail %: failed and crashed over all
            format!("{:.6}", f.rates.failed + f.rates.crashed),
        ]);
        if steps {
            fields.push(f.retries.unwrap_or(0).to_string());
            fields.push(f.fallbacks.unwrap_or(0).to_string());
        }
        let d = &f.duration_ms;
        fields.extend([
            opt(d.p50),
            opt(d.p95),
            opt(d.p99),
            opt(d.max),
            format!("{}", f.tokens.total),
            format!("{:.3}", f.tokens.per_run),
            usd(f.cost_usd.total),
            usd(f.cost_usd.per_run),
        ]);
        writeln!(out, "{}", fields.join(","))?;
    }
    Ok(())
}

/// A sum of dollars for CSV: to the nano-dollar, without the float's noise or trailing zeros
/// (`0.093`, not `0.09300000000000004`).
fn usd(value: f64) -> String {
    let fixed = format!("{value:.9}");
    let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
    if trimmed == "-0" {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_is_exact() {
        let values: Vec<i64> = (1..=100).collect();
        assert_eq!(nearest_rank(&values, 0.50), Some(50));
        assert_eq!(nearest_rank(&values, 0.95), Some(95));
        assert_eq!(nearest_rank(&values, 0.99), Some(99));
        assert_eq!(nearest_rank(&[7], 0.5), Some(7));
        assert_eq!(nearest_rank(&[1, 2], 0.5), Some(1));
        assert_eq!(nearest_rank(&[1, 2, 3], 0.5), Some(2));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }

    #[test]
    fn buckets_are_utc_and_every_one_is_listed() {
        assert_eq!(
            bucket_of("2026-12-01T14:35:37.123456Z", By::Hour).as_deref(),
            Some("2026-12-01T14")
        );
        assert_eq!(
            bucket_of("2026-12-01T01:30:00+02:00", By::Day).as_deref(),
            Some("2026-11-30")
        );
        assert_eq!(
            every_bucket("2026-11-30", "2026-12-02", By::Day).unwrap(),
            ["2026-11-30", "2026-12-01", "2026-12-02"]
        );
        assert_eq!(
            every_bucket("2026-12-01T22", "2026-12-02T01", By::Hour).unwrap(),
            [
                "2026-12-01T22",
                "2026-12-01T23",
                "2026-12-02T00",
                "2026-12-02T01"
            ]
        );
        assert!(every_bucket("2020-01-01T00", "2026-01-01T00", By::Hour).is_err());
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\"\n"), "\"say \"\"hi\"\"\n\"");
    }

    #[test]
    fn sparklines_scale_to_the_largest() {
        assert_eq!(sparkline(&[0, 1, 4, 8], 8), " ▂▅█");
    }
}
