//! `--follow` and `--watch`: commands that keep reading while runs are recorded. One loop polls
//! the store's change token (SQLite's `PRAGMA data_version`, PostgreSQL's next transaction id)
//! every [`POLL`] and queries again only when it moved, or when [`RECHECK`] has passed (a killed
//! writer commits nothing, so a crash is only seen by reading liveness again). Nothing holds a
//! transaction between polls, so writers and their checkpoints never wait on a follower. Ctrl-C
//! (SIGINT) and SIGTERM stop the loop at its next poll. On a terminal the output is redrawn in
//! place ([`Screen`]); anywhere else it is one line per change, so it can be piped.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use flujo_trace_sqlite::{RunReader, RunRecord, StepRecord, CRASHED};

use crate::config::{Config, Format, ListConfig, TraceConfig};
use crate::error::{LensError, EXIT_RUN_CANCELLED, EXIT_RUN_CRASHED, EXIT_RUN_FAILED};
use crate::json::{self, RunJson, RunShape, StepJson};
use crate::render::{self, Tone};
use crate::text::{self, TimePrecision};
use crate::{list, show, trace};

/// How often the change token is read: a commit reaches the screen within about this (plus one
/// query), and an idle follower does little else.
pub(crate) const POLL: Duration = Duration::from_millis(30);
/// Read again after this even when nothing was committed: a writer that died commits nothing,
/// and a running run turns `crashed` only when its process is looked up again.
pub(crate) const RECHECK: Duration = Duration::from_millis(500);

/// Set by SIGINT or SIGTERM once a follower started; the loop stops at its next poll.
fn stop_flag() -> &'static AtomicBool {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // if the handler cannot be installed, the signal's default action still stops us
            let _ = signal_hook::flag::register(signal, Arc::clone(&flag));
        }
        flag
    })
}

/// Waits for the store to change.
struct Poller {
    token: Option<u64>,
    read_at: Option<Instant>,
    stop: &'static AtomicBool,
}

impl Poller {
    fn new() -> Poller {
        Poller {
            token: None,
            read_at: None,
            stop: stop_flag(),
        }
    }

    /// Returns once the store may have changed since the last return (at once the first time:
    /// [`Wake::Changed`]) or [`RECHECK`] passed without a commit ([`Wake::Recheck`]), or
    /// [`LensError::Interrupted`] on a signal.
    fn wait<R: RunReader>(&mut self, backend: &R) -> Result<Wake, LensError>
    where
        LensError: From<R::Error>,
    {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Err(LensError::Interrupted);
            }
            let token = backend.change_token()?;
            let wake = if self.token != Some(token) {
                Wake::Changed
            } else if self.read_at.is_none_or(|at| at.elapsed() >= RECHECK) {
                Wake::Recheck
            } else {
                std::thread::sleep(POLL);
                continue;
            };
            self.token = Some(token);
            self.read_at = Some(Instant::now());
            return Ok(wake);
        }
    }
}

/// Why [`Poller::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// Something was committed.
    Changed,
    /// Nothing was committed for [`RECHECK`]: only what is derived when reading (a crash) or
    /// from the clock can have changed.
    Recheck,
}

/// What a terminal shows, redrawn in place: the cursor goes back to the first line drawn and
/// everything below is cleared before the new text; text taller than the terminal is cut.
struct Screen {
    rows: usize,
    drawn: usize,
}

impl Screen {
    fn new(rows: usize) -> Screen {
        Screen { rows, drawn: 0 }
    }

    fn draw(&mut self, out: &mut dyn Write, text: &str) -> std::io::Result<()> {
        let mut lines: Vec<&str> = text.lines().collect();
        let room = self.rows.saturating_sub(1).max(3);
        let mut more = None;
        if lines.len() > room {
            more = Some(lines.len() - (room - 1));
            lines.truncate(room - 1);
        }
        let mut frame = String::new();
        if self.drawn > 0 {
            frame.push_str(&format!("\x1b[{}F", self.drawn));
        }
        frame.push_str("\x1b[J");
        for line in &lines {
            frame.push_str(line);
            frame.push('\n');
        }
        if let Some(more) = more {
            frame.push_str(&format!(
                "… {} more lines (a taller terminal shows them)\n",
                text::thousands(more as u64)
            ));
        }
        self.drawn = lines.len() + usize::from(more.is_some());
        out.write_all(frame.as_bytes())?;
        out.flush()
    }
}

/// The exit code for a run that ended with `status`: `Ok` for completed.
fn ended(status: &str) -> Result<(), LensError> {
    match status {
        "completed" => Ok(()),
        "cancelled" => Err(LensError::RunEnded(EXIT_RUN_CANCELLED)),
        CRASHED => Err(LensError::RunEnded(EXIT_RUN_CRASHED)),
        _ => Err(LensError::RunEnded(EXIT_RUN_FAILED)),
    }
}

fn reread<R: RunReader>(backend: &R, config: &Config, run_id: &str) -> Result<RunRecord, LensError>
where
    LensError: From<R::Error>,
{
    backend.find_run(run_id)?.ok_or_else(|| {
        LensError::NothingFound(format!(
            "run {} is no longer in {} (pruned while followed?)",
            text::escape(run_id),
            text::escape(&config.store.name())
        ))
    })
}

/// `show RUN --follow`: a line when a step starts and when it ends, in the order they happened,
/// then the run's end; the exit code tells its status.
pub(crate) fn show<R: RunReader>(
    backend: &R,
    config: &Config,
    run: RunRecord,
    short_id: &str,
    out: &mut dyn Write,
) -> Result<(), LensError>
where
    LensError: From<R::Error>,
{
    let run_id = run.run_id.clone();
    if config.format == Format::Table {
        out.write_all(header(&run, short_id, config).as_bytes())?;
    } else {
        let line = RunJson::new(&run, RunShape::Summary, Some("run")).with_short_id(short_id);
        json::write_line(out, &line)?;
    }
    out.flush()?;
    let mut poller = Poller::new();
    // what was printed of each step: its status
    let mut printed: HashMap<String, String> = HashMap::new();
    let mut depth: HashMap<String, usize> = HashMap::new();
    loop {
        let wake = poller.wait(backend)?;
        let run = reread(backend, config, &run_id)?;
        if wake == Wake::Recheck && run.status == "running" {
            // nothing committed and its process is alive: no step can have changed
            continue;
        }
        let mut events: Vec<Event> = Vec::new();
        let mut seq = 0usize;
        backend.for_each_run_step(&run_id, |step| -> Result<(), LensError> {
            seq += 1;
            let status = show::shown_status(&run, &step).to_owned();
            if printed.get(&step.step_run_id) == Some(&status) {
                return Ok(());
            }
            let level = match depth.get(&step.step_run_id) {
                Some(level) => *level,
                None => {
                    let level = step
                        .parent_step_run_id
                        .as_ref()
                        .and_then(|parent| depth.get(parent))
                        .map_or(0, |parent| parent + 1);
                    depth.insert(step.step_run_id.clone(), level);
                    level
                }
            };
            if status == "running" || !printed.contains_key(&step.step_run_id) {
                if status == "running" {
                    events.push(Event::new(&step, &status, level, seq, false));
                } else if config.format != Format::Table {
                    events.push(Event::new(&step, &status, level, seq, true));
                } else {
                    // started and ended between two polls: its start line, then its end line
                    events.push(Event::new(&step, "running", level, seq, false));
                    events.push(Event::new(&step, &status, level, seq, true));
                }
            } else {
                events.push(Event::new(&step, &status, level, seq, true));
            }
            printed.insert(step.step_run_id.clone(), status);
            Ok(())
        })?;
        events.sort_by(|a, b| a.key().cmp(&b.key()));
        for event in &events {
            match config.format {
                Format::Table => {
                    out.write_all(event.line(config).as_bytes())?;
                }
                _ => {
                    let step = StepJson::new(&event.step, &event.status, Some("step"));
                    json::write_line(out, &step)?;
                }
            }
        }
        if run.status != "running" {
            if config.format == Format::Table {
                let running = if run.status == CRASHED {
                    backend.running_steps(&run_id)?
                } else {
                    Vec::new()
                };
                out.write_all(footer(&run, &running, config).as_bytes())?;
            } else {
                let line =
                    RunJson::new(&run, RunShape::Summary, Some("run")).with_short_id(short_id);
                json::write_line(out, &line)?;
            }
            out.flush()?;
            return ended(&run.status);
        }
        out.flush()?;
    }
}

/// A step starting or ending, as `show --follow` prints it.
struct Event {
    step: StepRecord,
    status: String,
    depth: usize,
    seq: usize,
    end: bool,
}

impl Event {
    fn new(step: &StepRecord, status: &str, depth: usize, seq: usize, end: bool) -> Event {
        Event {
            step: step.clone(),
            status: status.to_owned(),
            depth,
            seq,
            end,
        }
    }

    /// When it happened; at one instant starts come first (outer steps first), then ends
    /// (inner steps first).
    fn key(&self) -> (&str, bool, isize) {
        let at = if self.end {
            self.step
                .end_time
                .as_deref()
                .unwrap_or(&self.step.start_time)
        } else {
            &self.step.start_time
        };
        let seq = self.seq as isize;
        (at, self.end, if self.end { -seq } else { seq })
    }

    fn line(&self, config: &Config) -> String {
        let step = &self.step;
        let (at, word) = if self.end {
            (step.end_time.as_deref(), self.status.as_str())
        } else {
            (Some(step.start_time.as_str()), "started")
        };
        let at = text::time(at.or(Some(&step.start_time)), TimePrecision::ClockMillis);
        let kind = match step.step_kind.as_deref() {
            None | Some("step") => String::new(),
            Some(kind) => format!(" [{}]", text::escape(kind)),
        };
        let mut plain = format!(
            "{}{}{kind}",
            " ".repeat(self.depth * 2),
            text::escape(&step.step_name)
        );
        if self.end {
            let mut facts = Vec::new();
            if let Some(ms) = step.duration_ms {
                facts.push(text::duration(Some(ms)));
            }
            if let Some(attempts) = step.attempts.filter(|&n| n > 1) {
                facts.push(format!("{attempts} attempts"));
            }
            if step.fallback_taken == Some(true) {
                facts.push("fallback taken".to_owned());
            }
            if !facts.is_empty() {
                plain.push_str("  ");
                plain.push_str(&facts.join(", "));
            }
            if let Some(error) = step.error_blob.as_deref().filter(|_| word != "completed") {
                let first = error.lines().next().unwrap_or_default();
                plain.push_str(&format!(": {}", text::escape(first)));
            }
        }
        let status_width = 9;
        let used = at.len() + 2 + status_width + 2;
        let room = config.width.saturating_sub(used).max(10);
        let plain = if render::text_width(&plain) > room {
            render::cut_to(&plain, room)
        } else {
            plain
        };
        let tone = if self.end {
            Tone::of_status(word)
        } else {
            Tone::Busy
        };
        let word = render::paint(&format!("{word:<status_width$}"), tone, config.color);
        format!("{at}  {word}  {plain}\n")
    }
}

fn header(run: &RunRecord, short_id: &str, config: &Config) -> String {
    format!(
        "following run {} ({}) of {} {}, started {} UTC{}\n",
        text::escape(&run.run_id),
        text::escape(short_id),
        text::escape(&run.pipeline_name),
        text::escape(&run.pipeline_version),
        text::time(Some(&run.start_time), TimePrecision::Seconds),
        if config.terminal_rows.is_some() {
            " (Ctrl-C stops)"
        } else {
            ""
        }
    )
}

fn footer(run: &RunRecord, running: &[StepRecord], config: &Config) -> String {
    let status = render::paint(&run.status, Tone::of_status(&run.status), config.color);
    let mut facts = vec![format!("{} steps", text::count(run.n_steps))];
    if let Some(cost) = run.total_cost.filter(|&cost| cost > 0.0) {
        facts.push(text::cost(Some(cost)));
    }
    if let Some(tokens) = run.total_tokens.filter(|&tokens| tokens > 0) {
        facts.push(format!("{} tokens", text::thousands(tokens as u64)));
    }
    let mut line = match run.status.as_str() {
        "completed" => format!(
            "run {status} in {}: {}",
            text::duration(run.duration_ms),
            facts.join(", ")
        ),
        CRASHED => {
            let process = run.writer.as_ref().map_or(String::new(), |writer| {
                format!(" (pid {} on {})", writer.pid, text::escape(&writer.host))
            });
            let steps: Vec<String> = running
                .iter()
                .map(|step| text::escape(&step.step_name))
                .collect();
            format!(
                "run {status}: its process{process} is gone{}",
                if steps.is_empty() {
                    String::new()
                } else {
                    format!(" while running {}", steps.join(", "))
                }
            )
        }
        _ => {
            let mut line = format!(
                "run {status} after {}: {}",
                text::duration(run.duration_ms),
                facts.join(", ")
            );
            if let Some(error) = run.error_blob.as_deref() {
                let first = error.lines().next().unwrap_or_default();
                line.push_str(&format!("\nerror: {}", text::escape(first)));
            }
            line
        }
    };
    line.push('\n');
    line
}

/// `trace RUN --follow`: on a terminal the waterfall is redrawn as steps are recorded; anywhere
/// else it is printed once the run has ended. The exit code tells the run's status.
pub(crate) fn trace<R: RunReader>(
    backend: &R,
    config: &Config,
    trace: &TraceConfig,
    run: RunRecord,
    out: &mut dyn Write,
) -> Result<(), LensError>
where
    LensError: From<R::Error>,
{
    let mut screen = match (config.terminal_rows, config.format) {
        (Some(rows), Format::Table) => Some(Screen::new(rows)),
        _ => None,
    };
    let mut poller = Poller::new();
    loop {
        let wake = poller.wait(backend)?;
        let run = reread(backend, config, &run.run_id)?;
        let done = run.status != "running";
        if wake == Wake::Recheck && !done && screen.is_none() {
            continue;
        }
        let now = Config {
            now: time::OffsetDateTime::now_utc(),
            ..config.clone()
        };
        if let Some(screen) = &mut screen {
            screen.draw(out, &trace::render(backend, &run, &now, trace)?)?;
        } else if done {
            out.write_all(trace::render(backend, &run, &now, trace)?.as_bytes())?;
        }
        if done {
            out.flush()?;
            return ended(&run.status);
        }
    }
}

/// `list --watch`: on a terminal the table is redrawn whenever a run starts or ends; anywhere
/// else the runs are printed one line each (oldest first), then a line for each run that starts
/// or changes status. Runs until Ctrl-C, which exits 0.
pub(crate) fn list<R: RunReader>(
    backend: &R,
    config: &Config,
    watch: &ListConfig,
    out: &mut dyn Write,
) -> Result<(), LensError>
where
    LensError: From<R::Error>,
{
    let mut screen = match (config.terminal_rows, config.format) {
        (Some(rows), Format::Table) => Some(Screen::new(rows)),
        _ => None,
    };
    let mut poller = Poller::new();
    let mut shown: HashMap<String, String> = HashMap::new();
    loop {
        let wake = match poller.wait(backend) {
            Err(LensError::Interrupted) => return Ok(()),
            other => other?,
        };
        if wake == Wake::Recheck && !shown.values().any(|status| status == "running") {
            // nothing committed and nothing shown running that could have crashed
            continue;
        }
        let page = backend.list_runs_page(&watch.filter, list::COUNT_BOUND)?;
        let short = list::short_ids(backend, &page.runs)?;
        if let Some(screen) = &mut screen {
            shown = page
                .runs
                .iter()
                .map(|run| (run.run_id.clone(), run.status.clone()))
                .collect();
            let mut text = if page.runs.is_empty() {
                "no runs match yet\n".to_owned()
            } else {
                list::render_table(&page, &short, watch.limit, config.width, config.color)
            };
            text.push_str(&format!(
                "watching {}, updated {} UTC (Ctrl-C stops)\n",
                text::escape(&config.store.name()),
                text::time(
                    Some(&flujo_trace_core::now_timestamp()),
                    TimePrecision::Seconds
                )
            ));
            screen.draw(out, &text)?;
            continue;
        }
        for (run, short) in page.runs.iter().zip(&short).rev() {
            if shown.get(&run.run_id) == Some(&run.status) {
                continue;
            }
            shown.insert(run.run_id.clone(), run.status.clone());
            if config.format == Format::Table {
                out.write_all(run_line(run, short, config).as_bytes())?;
            } else {
                let line = RunJson::new(run, RunShape::Summary, None).with_short_id(short);
                json::write_line(out, &line)?;
            }
        }
        out.flush()?;
    }
}

/// One run as `list --watch` prints a change off a terminal.
fn run_line(run: &RunRecord, short_id: &str, config: &Config) -> String {
    let at = run.end_time.as_deref().unwrap_or(&run.start_time);
    let status = render::paint(
        &format!("{:<9}", text::escape(&run.status)),
        Tone::of_status(&run.status),
        config.color,
    );
    let mut line = format!(
        "{}  {status}  {}  {} {}",
        text::time(Some(at), TimePrecision::Seconds),
        text::escape(short_id),
        text::escape(&run.pipeline_name),
        text::escape(&run.pipeline_version),
    );
    if run.status != "running" {
        line.push_str(&format!(
            "  {}  {} steps",
            text::duration(run.duration_ms),
            text::count(run.n_steps)
        ));
        if let Some(cost) = run.total_cost {
            line.push_str(&format!("  {}", text::cost(Some(cost))));
        }
    }
    line.push('\n');
    line
}
