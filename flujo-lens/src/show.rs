//! `flujo lens show RUN`: a run's summary (with its input and final output), its final context,
//! and its steps in execution order, nested steps indented under their parent, a step whose
//! fallback was taken marked `fallback taken`. Steps are read and written one at a time.

use std::collections::HashMap;
use std::io::Write;

use flujo_trace_core::{could_be_short_id, id_tail};
use flujo_trace_postgres::PostgresReader;
use flujo_trace_sqlite::{truncated, RunReader, RunRecord, SqliteReader, StepRecord, CRASHED};

use crate::config::{Config, Format, RunSelector, ShowConfig, Store, ValueLength};
use crate::error::LensError;
use crate::json::{self, RunJson, RunShape, StepJson};
use crate::render::{self, Cell, Tone};
use crate::text::{self, Fit, TimePrecision};

/// Lines a cut value may take in a table cell.
const CUT_VALUE_LINES: usize = 4;
/// Lines the final context may take when cut.
const CUT_CONTEXT_LINES: usize = 20;
/// Candidates listed for an ambiguous prefix.
const MAX_CANDIDATES: usize = 10;
/// Columns of indentation per nesting level.
const INDENT: usize = 2;

pub(crate) fn run(
    config: &Config,
    show: &ShowConfig,
    out: &mut dyn Write,
) -> Result<(), LensError> {
    match &config.store {
        Store::Sqlite(state) => show_from(&SqliteReader::open(&state.path)?, config, show, out),
        Store::Postgres { uri, .. } => show_from(&PostgresReader::open(uri)?, config, show, out),
    }
}

/// `show` over any store's reader.
fn show_from<R: RunReader>(
    backend: &R,
    config: &Config,
    show: &ShowConfig,
    out: &mut dyn Write,
) -> Result<(), LensError>
where
    LensError: From<R::Error>,
{
    let run = find(config, backend, &show.run)?;
    let short = crate::list::short_ids(backend, std::slice::from_ref(&run))?.remove(0);
    if show.follow {
        return crate::follow::show(backend, config, run, &short, out);
    }
    let running_steps = if run.status == CRASHED {
        backend.running_steps(&run.run_id)?
    } else {
        Vec::new()
    };
    match config.format {
        Format::Table => {
            let layout = Layout {
                width: config.width,
                color: config.color,
                values: show.values,
            };
            let summary = render_summary(&run, &short, &running_steps, config.now, layout);
            out.write_all(summary.as_bytes())?;
            let mut tree = StepTree::default();
            let mut n_steps = 0;
            backend.for_each_run_step(&run.run_id, |step| -> Result<(), LensError> {
                if n_steps == 0 {
                    out.write_all(b"\nsteps\n")?;
                }
                n_steps += 1;
                let section = render_step(&step, shown_status(&run, &step), &mut tree, layout);
                out.write_all(section.as_bytes())?;
                Ok(())
            })?;
            if n_steps == 0 {
                out.write_all(b"\nsteps: none recorded\n")?;
            }
        }
        Format::Json => {
            out.write_all(b"{\"run\":")?;
            json::write(
                out,
                &RunJson::new(&run, RunShape::Detail, None).with_short_id(&short),
            )?;
            out.write_all(b",\"steps\":[")?;
            let mut first = true;
            backend.for_each_run_step(&run.run_id, |step| -> Result<(), LensError> {
                if !first {
                    out.write_all(b",")?;
                }
                first = false;
                json::write(out, &StepJson::new(&step, shown_status(&run, &step), None))?;
                Ok(())
            })?;
            out.write_all(b"]}\n")?;
        }
        Format::Jsonl => {
            let line = RunJson::new(&run, RunShape::Detail, Some("run")).with_short_id(&short);
            json::write_line(out, &line)?;
            backend.for_each_run_step(&run.run_id, |step| -> Result<(), LensError> {
                let status = shown_status(&run, &step);
                json::write_line(out, &StepJson::new(&step, status, Some("step")))?;
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// A step still stored as `running` in a crashed run was interrupted: it shows as `crashed`.
pub(crate) fn shown_status<'a>(run: &RunRecord, step: &'a StepRecord) -> &'a str {
    if run.status == CRASHED && step.status == "running" {
        CRASHED
    } else {
        &step.status
    }
}

/// Resolves RUN: `latest`, a full id, a short id (the end of an id, 8 to 12 hexadecimal digits,
/// as `list` shows it), or a unique prefix (tried as given, then lowercase), in this order: a
/// string that is both a run's short id and another's prefix means the short id.
pub(crate) fn find<R: RunReader>(
    config: &Config,
    backend: &R,
    selector: &RunSelector,
) -> Result<RunRecord, LensError>
where
    LensError: From<R::Error>,
{
    let path = text::escape(&config.store.name());
    let query = match selector {
        RunSelector::Latest => {
            return backend.latest_run()?.ok_or_else(|| {
                LensError::NothingFound(format!(
                    "no runs recorded in {path} yet: run a pipeline, then try again"
                ))
            });
        }
        RunSelector::Id(query) => query,
    };
    if let Some(run) = backend.find_run(query)? {
        return Ok(run);
    }
    // a short id (the end of an id, as `list` shows it) wins over a prefix
    if could_be_short_id(query) {
        let short = query.to_ascii_lowercase();
        let mut ids: Vec<String> = backend
            .run_ids_by_tail(&[id_tail(&short)])?
            .into_iter()
            .filter(|id| id.ends_with(&short))
            .collect();
        ids.sort();
        match ids.len() {
            0 => {}
            1 => {
                return backend.find_run(&ids[0])?.ok_or_else(|| {
                    LensError::NothingFound(format!(
                        "run {} disappeared while reading {path}",
                        text::escape(&ids[0])
                    ))
                })
            }
            n => {
                let mut message = format!(
                    "{} is the end of {n} run ids: give more of the run id (from its end, up to 12 \
                     characters, or from its start)",
                    text::escape(query)
                );
                for id in ids.iter().take(MAX_CANDIDATES) {
                    message.push_str(&format!("\n  {}", text::escape(id)));
                }
                if n > MAX_CANDIDATES {
                    message.push_str("\n  ...");
                }
                return Err(LensError::NothingFound(message));
            }
        }
    }
    let mut candidates = backend.find_runs_by_prefix(query, MAX_CANDIDATES + 1)?;
    let lowercase = query.to_lowercase();
    if candidates.is_empty() && lowercase != *query {
        candidates = backend.find_runs_by_prefix(&lowercase, MAX_CANDIDATES + 1)?;
    }
    let shown_query = text::escape(query);
    match candidates.len() {
        0 => Err(LensError::NothingFound(format!(
            "no run {shown_query} in {path}: `flujo lens list` shows the run ids"
        ))),
        1 => {
            let run_id = &candidates[0].run_id;
            backend.find_run(run_id)?.ok_or_else(|| {
                LensError::NothingFound(format!(
                    "run {} disappeared while reading {path}",
                    text::escape(run_id)
                ))
            })
        }
        n => {
            let mut message = format!(
                "{shown_query} is the start of {} runs: give more of the run id",
                if n > MAX_CANDIDATES {
                    format!("more than {MAX_CANDIDATES}")
                } else {
                    n.to_string()
                }
            );
            for run in candidates.iter().take(MAX_CANDIDATES) {
                message.push_str(&format!(
                    "\n  {}  {}  {:<9}  {}",
                    text::escape(&run.run_id),
                    text::time(Some(&run.start_time), TimePrecision::Seconds),
                    text::escape(&run.status),
                    text::escape(&run.pipeline_name),
                ));
            }
            if n > MAX_CANDIDATES {
                message.push_str("\n  ...");
            }
            Err(LensError::NothingFound(message))
        }
    }
}

/// How values are laid out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    pub(crate) width: usize,
    pub(crate) color: bool,
    pub(crate) values: ValueLength,
}

impl Layout {
    fn fit(self, width: usize, max_lines: usize, keep_newlines: bool) -> Fit {
        Fit {
            width,
            max_lines: (self.values == ValueLength::Cut).then_some(max_lines),
            keep_newlines,
        }
    }
}

/// The summary record and the final context: everything `show` prints before the steps.
pub(crate) fn render_summary(
    run: &RunRecord,
    short_id: &str,
    running_steps: &[StepRecord],
    now: time::OffsetDateTime,
    layout: Layout,
) -> String {
    let mut rows: Vec<(&str, Cell)> = vec![
        ("run id", Cell::plain(text::escape(&run.run_id))),
        ("short id", Cell::plain(text::escape(short_id))),
        ("pipeline", Cell::plain(text::escape(&run.pipeline_name))),
        ("version", Cell::plain(text::escape(&run.pipeline_version))),
        (
            "status",
            Cell::toned(text::escape(&run.status), Tone::of_status(&run.status)),
        ),
    ];
    if run.status == CRASHED {
        let running = if running_steps.is_empty() {
            "no step was running".to_owned()
        } else {
            running_steps
                .iter()
                .map(|step| text::escape(&step.step_name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        rows.push(("crashed in", Cell::toned(running, Tone::Bad)));
    }
    if run.status == "running" || run.status == CRASHED {
        if let Some(writer) = &run.writer {
            let state = if run.status == CRASHED {
                "gone"
            } else {
                "running"
            };
            rows.push((
                "process",
                Cell::plain(format!(
                    "pid {} on {} ({state})",
                    writer.pid,
                    text::escape(&writer.host)
                )),
            ));
        }
    }
    rows.push((
        "started",
        Cell::plain(text::time(Some(&run.start_time), TimePrecision::Micros)),
    ));
    rows.push((
        "ended",
        Cell::plain(text::time(run.end_time.as_deref(), TimePrecision::Micros)),
    ));
    let duration = match (run.duration_ms, run.status.as_str()) {
        (None, "running") => running_for(&run.start_time, now)
            .map(|ms| format!("{} so far", text::duration(Some(ms))))
            .unwrap_or_else(|| "-".to_owned()),
        (ms, _) => text::duration(ms),
    };
    rows.push(("duration", Cell::plain(duration)));
    rows.push(("steps", Cell::plain(text::count(run.n_steps))));
    rows.push(("cost", Cell::plain(text::cost(run.total_cost))));
    rows.push(("tokens", Cell::plain(text::count(run.total_tokens))));
    if let Some(trace_id) = &run.trace_id {
        // the link to the run's trace in a tracing backend (Jaeger, Tempo, ...)
        rows.push(("trace id", Cell::plain(text::escape(trace_id))));
    }
    let key_width = rows
        .iter()
        .map(|(key, _)| key.len())
        .max()
        .unwrap_or(0)
        .max("output".len());
    let value_width = render::record_value_width(layout.width, key_width);
    if let Some(input) = &run.input_blob {
        let fitted = payload(input, layout.fit(value_width, CUT_VALUE_LINES, false));
        rows.push(("input", Cell::plain(fitted)));
    }
    if let Some(output) = &run.output_blob {
        let fitted = payload(output, layout.fit(value_width, CUT_VALUE_LINES, false));
        rows.push(("output", Cell::plain(fitted)));
    }
    if let Some(error) = &run.error_blob {
        let fitted = payload(error, layout.fit(value_width, CUT_VALUE_LINES, true));
        rows.push(("error", Cell::toned(fitted, Tone::Bad)));
    }
    let mut rendered = render::record(&rows, layout.width, layout.color);
    rendered.push('\n');
    match &run.final_context_blob {
        Some(context) => {
            rendered.push_str("\nfinal context\n");
            let fit = layout.fit(layout.width, CUT_CONTEXT_LINES, true);
            let shown = match truncated(context) {
                Some(_) => payload(context, fit),
                None => text::fit(&pretty_json(context), fit),
            };
            rendered.push_str(&shown);
            rendered.push('\n');
        }
        None => rendered.push_str("\nfinal context: none recorded\n"),
    }
    rendered
}

fn running_for(start: &str, now: time::OffsetDateTime) -> Option<i64> {
    let start = flujo_trace_core::parse_timestamp(start)?;
    i64::try_from((now - start).whole_milliseconds())
        .ok()
        .filter(|ms| *ms >= 0)
}

/// A stored payload laid out by `fit`. A payload the layer stored cut (over its payload cap) shows
/// the part that was kept, then a line saying how much of it was recorded.
fn payload(stored: &str, fit: Fit) -> String {
    match truncated(stored) {
        Some(cut) => {
            let note = format!(
                "[recorded cut: kept {} of {} bytes]",
                text::thousands(cut.head.len() as u64),
                text::thousands(cut.original_bytes),
            );
            let whole = Fit {
                max_lines: None,
                ..fit
            };
            format!("{}\n{}", text::fit(cut.head, fit), text::fit(&note, whole))
        }
        None => text::fit(stored, fit),
    }
}

/// Stored JSON pretty-printed; anything else as it is.
fn pretty_json(stored: &str) -> String {
    serde_json::from_str::<serde_json::Value>(stored)
        .ok()
        .and_then(|value| serde_json::to_string_pretty(&value).ok())
        .unwrap_or_else(|| stored.to_owned())
}

/// The position of every step seen so far, to indent children under their parent. Holds ids
/// and short paths only, never payloads.
#[derive(Debug, Default)]
pub(crate) struct StepTree {
    placed: HashMap<String, (usize, String)>,
}

impl StepTree {
    /// Depth and display path (`2.0.1`) of `step`, which must come after its parent.
    fn place(&mut self, step: &StepRecord) -> (usize, String) {
        let (depth, path) = match step
            .parent_step_run_id
            .as_deref()
            .and_then(|parent| self.placed.get(parent))
        {
            Some((depth, path)) => (depth + 1, format!("{path}.{}", step.step_index)),
            None if step.parent_step_run_id.is_some() => (1, format!("?.{}", step.step_index)),
            None => (0, step.step_index.to_string()),
        };
        self.placed
            .insert(step.step_run_id.clone(), (depth, path.clone()));
        (depth, path)
    }
}

/// The step's title (escaped, wrapped) followed by its facts separated by ` · `, wrapped
/// between facts; continuation lines are indented by two spaces.
fn header_lines(title: &str, facts: &[(String, Tone)], width: usize, color: bool) -> Vec<String> {
    let fitted = text::fit(
        title,
        Fit {
            width,
            max_lines: None,
            keep_newlines: false,
        },
    );
    let mut lines: Vec<String> = fitted.lines().map(str::to_owned).collect();
    let mut line_width = lines.last().map_or(0, |line| render::text_width(line));
    for (fact, tone) in facts {
        let fact_width = render::text_width(fact);
        let last = lines.last_mut().expect("a title line");
        if line_width + 3 + fact_width <= width {
            last.push_str(" · ");
            line_width += 3 + fact_width;
        } else {
            lines.push("  ".to_owned());
            line_width = 2 + fact_width;
        }
        let last = lines.last_mut().expect("a line");
        last.push_str(&render::paint(fact, *tone, color));
    }
    lines
}

/// One step's section: a header line (`#2.0 name [kind] · status · fallback taken · attempts ·
/// duration · cost · tokens`, `fallback taken` only when the step's fallback produced its output)
/// and a record of its input, output and error, indented by its depth.
pub(crate) fn render_step(
    step: &StepRecord,
    status: &str,
    tree: &mut StepTree,
    layout: Layout,
) -> String {
    let (depth, path) = tree.place(step);
    let indent = " ".repeat(depth * INDENT);
    let width = layout.width.saturating_sub(depth * INDENT).max(30);

    let mut title = format!("#{path} {}", step.step_name);
    if let Some(kind) = step.step_kind.as_deref().filter(|kind| *kind != "step") {
        title.push_str(&format!(" [{kind}]"));
    }
    let mut facts = vec![(text::escape(status), Tone::of_status(status))];
    if step.fallback_taken == Some(true) {
        facts.push(("fallback taken".to_owned(), Tone::Warn));
    }
    if let Some(attempts) = step.attempts {
        let plural = if attempts == 1 { "" } else { "s" };
        facts.push((format!("{attempts} attempt{plural}"), Tone::Plain));
    }
    if step.duration_ms.is_some() {
        facts.push((text::duration(step.duration_ms), Tone::Plain));
    }
    if step.cost.is_some() {
        facts.push((text::cost(step.cost), Tone::Plain));
    }
    if let Some(tokens) = step.tokens {
        facts.push((format!("{} tokens", text::count(Some(tokens))), Tone::Plain));
    }
    let mut section = String::new();
    for line in header_lines(&title, &facts, width, layout.color) {
        section.push_str(&indent);
        section.push_str(&line);
        section.push('\n');
    }

    let value_width = render::record_value_width(width, "output".len());
    let mut rows = Vec::new();
    if let Some(input) = &step.input_blob {
        let fitted = payload(input, layout.fit(value_width, CUT_VALUE_LINES, false));
        rows.push(("input", Cell::plain(fitted)));
    }
    if let Some(output) = &step.output_blob {
        let fitted = payload(output, layout.fit(value_width, CUT_VALUE_LINES, false));
        rows.push(("output", Cell::plain(fitted)));
    }
    if let Some(error) = &step.error_blob {
        let fitted = payload(error, layout.fit(value_width, CUT_VALUE_LINES, true));
        rows.push(("error", Cell::toned(fitted, Tone::Bad)));
    }
    if !rows.is_empty() {
        for line in render::record(&rows, width, layout.color).lines() {
            section.push_str(&indent);
            section.push_str(line);
            section.push('\n');
        }
    }
    section
}
