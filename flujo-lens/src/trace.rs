//! `flujo lens trace RUN`: where a run's time went. One line per step in execution order,
//! indented by nesting, with a bar on one time axis scaled to the output width, its duration,
//! status and attempts, so parallel branches visibly overlap; the slowest steps are marked, and
//! the children of a step beyond [`FOLD_AFTER`] are folded into one line (count, p50 and max
//! duration) unless `--expand`. `-o json` gives the whole tree with offsets.

use std::collections::HashMap;
use std::io::Write;

use flujo_trace_postgres::PostgresReader;
use flujo_trace_sqlite::{RunReader, RunRecord, SqliteReader};
use serde::Serialize;

use crate::config::{Config, Format, Store, TraceConfig};
use crate::error::LensError;
use crate::json;
use crate::render::{self, Tone};
use crate::show;
use crate::text;

/// Children of one step shown before the rest are folded into one line.
pub(crate) const FOLD_AFTER: usize = 10;
/// How many of the slowest steps (those that ran no steps of their own) are marked.
const SLOWEST_MARKED: usize = 3;
/// Columns of indentation per nesting level.
const INDENT: usize = 2;
/// After the slowest step's facts (the next slowest get only the arrow).
const SLOWEST: &str = "  ◀ slowest";
/// The name column never takes more than this share of the width (in percent).
const NAME_SHARE: usize = 40;
/// The bar is never narrower than this.
const MIN_BAR: usize = 10;

pub(crate) fn run(
    config: &Config,
    trace: &TraceConfig,
    out: &mut dyn Write,
) -> Result<(), LensError> {
    match &config.store {
        Store::Sqlite(state) => trace_from(&SqliteReader::open(&state.path)?, config, trace, out),
        Store::Postgres { uri, .. } => trace_from(&PostgresReader::open(uri)?, config, trace, out),
    }
}

/// A step as the waterfall needs it: no payloads, times as offsets from the run's start.
#[derive(Debug, Clone)]
struct Span {
    id: String,
    parent: Option<String>,
    name: String,
    kind: Option<String>,
    status: String,
    attempts: Option<i64>,
    /// Microseconds from the run's start (0 when the start does not parse).
    offset_us: i64,
    /// Microseconds; a step still running lasts until the run's end (or now).
    duration_us: i64,
    /// Whether the duration is known (the step ended).
    ended: bool,
}

fn trace_from<R: RunReader>(
    backend: &R,
    config: &Config,
    trace: &TraceConfig,
    out: &mut dyn Write,
) -> Result<(), LensError>
where
    LensError: From<R::Error>,
{
    let run = show::find(config, backend, &trace.run)?;
    if trace.follow {
        return crate::follow::trace(backend, config, trace, run, out);
    }
    out.write_all(render(backend, &run, config, trace)?.as_bytes())?;
    Ok(())
}

/// The waterfall of `run` (or its JSON line), as `trace` prints it.
pub(crate) fn render<R: RunReader>(
    backend: &R,
    run: &RunRecord,
    config: &Config,
    trace: &TraceConfig,
) -> Result<String, LensError>
where
    LensError: From<R::Error>,
{
    let run_start = flujo_trace_core::parse_timestamp(&run.start_time);
    let mut spans = Vec::new();
    backend.for_each_run_step(&run.run_id, |step| -> Result<(), LensError> {
        let offset_us = match (
            run_start,
            flujo_trace_core::parse_timestamp(&step.start_time),
        ) {
            (Some(run), Some(start)) => micros(start - run),
            _ => 0,
        };
        let end = step
            .end_time
            .as_deref()
            .and_then(flujo_trace_core::parse_timestamp);
        let duration_us = match (step.duration_ms, end, run_start) {
            (Some(ms), _, _) => ms.saturating_mul(1_000),
            (None, Some(end), Some(run)) => micros(end - run) - offset_us,
            _ => -1,
        };
        let status = show::shown_status(run, &step).to_owned();
        spans.push(Span {
            id: step.step_run_id,
            parent: step.parent_step_run_id,
            name: step.step_name,
            kind: step.step_kind,
            status,
            attempts: step.attempts,
            offset_us,
            duration_us,
            ended: duration_us >= 0,
        });
        Ok(())
    })?;
    // the time axis: the run's duration, or as far as anything reached (a running run: now)
    let mut total_us = run.duration_ms.map_or(0, |ms| ms.saturating_mul(1_000));
    if run.end_time.is_none() {
        if let Some(start) = run_start {
            total_us = total_us.max(micros(config.now - start));
        }
    }
    for span in &mut spans {
        if !span.ended {
            span.duration_us = (total_us - span.offset_us).max(0);
        }
        total_us = total_us.max(span.offset_us + span.duration_us);
    }
    let tree = Tree::new(&spans);
    match config.format {
        Format::Table => {
            let lines = tree.lines(trace, &spans);
            Ok(render_waterfall(run, &spans, &lines, total_us, config))
        }
        Format::Json | Format::Jsonl => {
            let document = TraceJson {
                run_id: &run.run_id,
                pipeline_name: &run.pipeline_name,
                pipeline_version: &run.pipeline_version,
                status: &run.status,
                start_time: &run.start_time,
                duration_ms: total_us / 1_000,
                steps: tree.json(&spans, tree.roots(), trace.depth, 0),
            };
            let mut line = Vec::new();
            json::write_line(&mut line, &document)?;
            Ok(String::from_utf8_lossy(&line).into_owned())
        }
    }
}

fn micros(duration: time::Duration) -> i64 {
    i64::try_from(duration.whole_microseconds()).unwrap_or(i64::MAX)
}

/// Who ran whom: each step's children in execution order.
struct Tree {
    children: HashMap<usize, Vec<usize>>,
    roots: Vec<usize>,
}

/// One line of the waterfall.
enum Line {
    Step {
        span: usize,
        depth: usize,
    },
    /// Children of a step past [`FOLD_AFTER`], in one line.
    Folded {
        depth: usize,
        count: usize,
        offset_us: i64,
        end_us: i64,
        p50_us: i64,
        max_us: i64,
    },
}

impl Tree {
    fn new(spans: &[Span]) -> Tree {
        let index: HashMap<&str, usize> = spans
            .iter()
            .enumerate()
            .map(|(i, span)| (span.id.as_str(), i))
            .collect();
        let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut roots = Vec::new();
        for (i, span) in spans.iter().enumerate() {
            match span.parent.as_deref().and_then(|p| index.get(p)) {
                Some(&parent) => children.entry(parent).or_default().push(i),
                // a step whose parent was not recorded is shown at the top
                None => roots.push(i),
            }
        }
        Tree { children, roots }
    }

    fn roots(&self) -> &[usize] {
        &self.roots
    }

    fn children(&self, span: usize) -> &[usize] {
        self.children.get(&span).map_or(&[], Vec::as_slice)
    }

    /// The lines of the waterfall, depth first in execution order.
    fn lines(&self, trace: &TraceConfig, spans: &[Span]) -> Vec<Line> {
        let mut lines = Vec::new();
        self.push_lines(self.roots(), 0, trace, spans, &mut lines);
        lines
    }

    fn push_lines(
        &self,
        siblings: &[usize],
        depth: usize,
        trace: &TraceConfig,
        spans: &[Span],
        lines: &mut Vec<Line>,
    ) {
        let shown = if trace.expand || siblings.len() <= FOLD_AFTER + 1 {
            siblings.len()
        } else {
            FOLD_AFTER
        };
        for &span in &siblings[..shown] {
            lines.push(Line::Step { span, depth });
            if trace.depth.is_none_or(|max| depth < max) {
                self.push_lines(self.children(span), depth + 1, trace, spans, lines);
            }
        }
        let folded = &siblings[shown..];
        if !folded.is_empty() {
            let mut durations: Vec<i64> = folded.iter().map(|&s| spans[s].duration_us).collect();
            durations.sort_unstable();
            lines.push(Line::Folded {
                depth,
                count: folded.len(),
                offset_us: folded
                    .iter()
                    .map(|&s| spans[s].offset_us)
                    .min()
                    .unwrap_or(0),
                end_us: folded
                    .iter()
                    .map(|&s| spans[s].offset_us + spans[s].duration_us)
                    .max()
                    .unwrap_or(0),
                p50_us: durations[(durations.len() - 1) / 2],
                max_us: durations[durations.len() - 1],
            });
        }
    }

    fn json<'a>(
        &self,
        spans: &'a [Span],
        siblings: &[usize],
        max_depth: Option<usize>,
        depth: usize,
    ) -> Vec<StepJson<'a>> {
        siblings
            .iter()
            .map(|&i| {
                let span = &spans[i];
                StepJson {
                    step_run_id: &span.id,
                    step_name: &span.name,
                    step_kind: span.kind.as_deref(),
                    status: &span.status,
                    attempts: span.attempts,
                    offset_ms: span.offset_us as f64 / 1_000.0,
                    duration_ms: span.duration_us as f64 / 1_000.0,
                    ended: span.ended,
                    children: if max_depth.is_none_or(|max| depth < max) {
                        self.json(spans, self.children(i), max_depth, depth + 1)
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect()
    }
}

#[derive(Serialize)]
struct TraceJson<'a> {
    run_id: &'a str,
    pipeline_name: &'a str,
    pipeline_version: &'a str,
    status: &'a str,
    start_time: &'a str,
    /// The time axis: the run's duration, or as far as its steps reached.
    duration_ms: i64,
    steps: Vec<StepJson<'a>>,
}

#[derive(Serialize)]
struct StepJson<'a> {
    step_run_id: &'a str,
    step_name: &'a str,
    step_kind: Option<&'a str>,
    status: &'a str,
    attempts: Option<i64>,
    /// From the run's start.
    offset_ms: f64,
    duration_ms: f64,
    /// False for a step that never ended (running, or interrupted by a crash): its duration
    /// runs to the end of the time axis.
    ended: bool,
    children: Vec<StepJson<'a>>,
}

/// The waterfall as text: a header, the time axis, one line per step.
fn render_waterfall(
    run: &RunRecord,
    spans: &[Span],
    lines: &[Line],
    total_us: i64,
    config: &Config,
) -> String {
    let slowest = slowest(spans, lines);
    let labels: Vec<String> = lines
        .iter()
        .map(|line| match line {
            Line::Step { span, depth } => {
                let span = &spans[*span];
                let kind = match span.kind.as_deref() {
                    None | Some("step") => String::new(),
                    Some(kind) => format!(" [{}]", text::escape(kind)),
                };
                format!(
                    "{}{}{kind}",
                    " ".repeat(depth * INDENT),
                    text::escape(&span.name)
                )
            }
            Line::Folded { depth, count, .. } => format!(
                "{}… {} more",
                " ".repeat(depth * INDENT),
                text::thousands(*count as u64)
            ),
        })
        .collect();
    let facts: Vec<String> = lines
        .iter()
        .map(|line| match line {
            Line::Step { span, .. } => {
                let span = &spans[*span];
                let mut facts = format!("{:>9}", duration_us(span.duration_us, span.ended));
                facts.push_str(&format!("  {:<9}", text::escape(&span.status)));
                if let Some(attempts) = span.attempts.filter(|a| *a > 1) {
                    facts.push_str(&format!("  {attempts} attempts"));
                }
                facts
            }
            Line::Folded { p50_us, max_us, .. } => format!(
                "{:>9}  p50 {}, max {}",
                "",
                duration_us(*p50_us, true),
                duration_us(*max_us, true)
            ),
        })
        .collect();
    let width = config.width;
    let label_width = labels
        .iter()
        .map(|label| render::text_width(label))
        .max()
        .unwrap_or(0)
        .clamp(8, (width * NAME_SHARE / 100).max(8));
    // name, bar, facts, mark: the bar takes what the others leave (on a narrow terminal the
    // facts run past the width rather than squeeze the bar below MIN_BAR)
    let facts_width = facts
        .iter()
        .map(|facts| render::text_width(facts.trim_end()))
        .max()
        .unwrap_or(0);
    let mark_width = if slowest.is_empty() { 0 } else { SLOWEST.len() };
    let bar_width = width
        .saturating_sub(label_width + 2 + 2 + facts_width + mark_width)
        .max(MIN_BAR);

    let mut rendered = format!(
        "run {} · {} {} · {} · {} · {} steps\n",
        text::escape(&run.run_id),
        text::escape(&run.pipeline_name),
        text::escape(&run.pipeline_version),
        render::paint(
            &text::escape(&run.status),
            Tone::of_status(&run.status),
            config.color
        ),
        duration_us(total_us, run.end_time.is_some()),
        text::thousands(spans.len() as u64),
    );
    if lines.is_empty() {
        rendered.push_str("steps: none recorded\n");
        return rendered;
    }
    let axis_end = text::duration(Some(total_us / 1_000));
    rendered.push_str(&format!(
        "{:label_width$}  0{:>pad$}\n",
        "",
        axis_end,
        pad = bar_width.saturating_sub(1)
    ));
    for (i, line) in lines.iter().enumerate() {
        let (offset, length, tone) = match line {
            Line::Step { span, .. } => {
                let span = &spans[*span];
                (
                    span.offset_us,
                    span.duration_us,
                    Tone::of_status(&span.status),
                )
            }
            Line::Folded {
                offset_us, end_us, ..
            } => (*offset_us, end_us - offset_us, Tone::Quiet),
        };
        let bar = bar(offset, length, total_us, bar_width);
        let label = if render::text_width(&labels[i]) > label_width {
            render::cut_to(&labels[i], label_width)
        } else {
            labels[i].clone()
        };
        let pad = label_width.saturating_sub(render::text_width(&label));
        let facts = facts[i].trim_end();
        let mark = match slowest.iter().position(|&line| line == i) {
            Some(0) => SLOWEST,
            Some(_) => "  ◀",
            None => "",
        };
        let facts_pad = if mark.is_empty() {
            0
        } else {
            facts_width - render::text_width(facts)
        };
        rendered.push_str(&format!(
            "{label}{:pad$}  {}  {facts}{:facts_pad$}{mark}\n",
            "",
            render::paint(&bar, tone, config.color),
            "",
        ));
    }
    rendered
}

/// The lines of the [`SLOWEST_MARKED`] longest steps that ran no steps of their own, longest
/// first (a parent's time is its children's, so marking it says nothing new).
fn slowest(spans: &[Span], lines: &[Line]) -> Vec<usize> {
    let parents: std::collections::HashSet<&str> =
        spans.iter().filter_map(|s| s.parent.as_deref()).collect();
    let mut leaves: Vec<(i64, usize)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, line)| match line {
            Line::Step { span, .. } if !parents.contains(spans[*span].id.as_str()) => {
                Some((spans[*span].duration_us, i))
            }
            _ => None,
        })
        .filter(|(duration, _)| *duration > 0)
        .collect();
    leaves.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    leaves
        .into_iter()
        .take(SLOWEST_MARKED)
        .map(|(_, i)| i)
        .collect()
}

/// `width` columns: spaces, then `█` from the step's start to its end on the axis (at least one
/// column, so the shortest step still shows where it ran).
fn bar(offset_us: i64, length_us: i64, total_us: i64, width: usize) -> String {
    let total = total_us.max(1) as f64;
    let columns = width as f64;
    let start = ((offset_us.max(0) as f64 / total) * columns).floor() as usize;
    let start = start.min(width.saturating_sub(1));
    let end = (((offset_us + length_us.max(0)) as f64 / total) * columns).ceil() as usize;
    let end = end.clamp(start + 1, width);
    let mut bar = " ".repeat(start);
    bar.push_str(&"█".repeat(end - start));
    bar.push_str(&" ".repeat(width - end));
    bar
}

/// A duration for the waterfall; a step that never ended shows `>` before what it reached.
fn duration_us(us: i64, ended: bool) -> String {
    let shown = text::duration(Some(us / 1_000));
    if ended {
        shown
    } else {
        format!(">{shown}")
    }
}

#[cfg(test)]
mod tests {
    use super::bar;

    #[test]
    fn bars_sit_on_one_axis() {
        assert_eq!(bar(0, 50, 100, 10), "█████     ");
        assert_eq!(bar(50, 50, 100, 10), "     █████");
        // the shortest step still shows
        assert_eq!(bar(30, 0, 100, 10), "   █      ");
        // past the axis (clock skew): clamped
        assert_eq!(bar(120, 10, 100, 10), "         █");
        assert_eq!(bar(0, 0, 0, 4), "█   ");
    }
}
