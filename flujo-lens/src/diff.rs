//! `flujo lens diff A B`: two runs compared step by step. Steps are aligned by their path in the
//! tree: the names from the run down to the step, each with its occurrence among same-named
//! siblings (`review/revise#1` is the second `revise` under `review`), so a step inserted or
//! removed elsewhere does not shift the rest. Per step: status, attempts, tokens, cost and
//! fallback changes, the duration delta, and a structural diff of its input, output and error
//! (changed keys only, with paths like `output.reply` or `input.items[2]`); the run's own
//! status, totals, input, output, error and final context likewise. Durations always differ, so
//! they are shown but do not make a step different. Exit codes follow diff(1): 0 equal, 1
//! different, 2 trouble (an unknown RUN included).

use std::collections::HashMap;
use std::io::Write;

use serde::Serialize;
use serde_json::Value;

use flujo_trace_postgres::PostgresReader;
use flujo_trace_sqlite::{RunReader, RunRecord, SqliteReader, StepRecord};

use crate::config::{Config, DiffConfig, Format, Store};
use crate::error::LensError;
use crate::{render, show, text};

/// At most this many changed paths are printed per step or run in a table (JSON has all).
const SHOWN_CHANGES: usize = 20;

pub(crate) fn run(
    config: &Config,
    diff: &DiffConfig,
    out: &mut dyn Write,
) -> Result<(), LensError> {
    match &config.store {
        Store::Sqlite(state) => diff_from(&SqliteReader::open(&state.path)?, config, diff, out),
        Store::Postgres { uri, .. } => diff_from(&PostgresReader::open(uri)?, config, diff, out),
    }
}

fn diff_from<R: RunReader>(
    backend: &R,
    config: &Config,
    diff: &DiffConfig,
    out: &mut dyn Write,
) -> Result<(), LensError>
where
    LensError: From<R::Error>,
{
    // diff(1): a run that cannot be found is trouble (2), not a difference (1)
    let find = |selector| match show::find(config, backend, selector) {
        Err(LensError::NothingFound(message)) => Err(LensError::Usage(message)),
        other => other,
    };
    let (a, b) = (find(&diff.a)?, find(&diff.b)?);
    let steps_of = |run: &RunRecord| -> Result<Vec<StepRecord>, LensError> {
        let mut steps = Vec::new();
        backend.for_each_run_step(&run.run_id, |step| -> Result<(), LensError> {
            steps.push(step);
            Ok(())
        })?;
        Ok(steps)
    };
    let (steps_a, steps_b) = (steps_of(&a)?, steps_of(&b)?);
    let report = compare(&a, &b, &steps_a, &steps_b);
    match config.format {
        Format::Table => out.write_all(render_text(&report, diff.all, config).as_bytes())?,
        Format::Json => crate::json::write(out, &report.json(diff.all))?,
        Format::Jsonl => crate::json::write_line(out, &report.json(diff.all))?,
    }
    if report.equal() {
        Ok(())
    } else {
        out.flush()?;
        Err(LensError::Different)
    }
}

/// A value of A and of B (either may be missing).
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Pair<T> {
    a: Option<T>,
    b: Option<T>,
}

impl<T: PartialEq> Pair<T> {
    fn differs(&self) -> bool {
        self.a != self.b
    }
}

/// A duration, a count or a cost of A and B with B - A.
#[derive(Debug, Clone, Serialize)]
struct Delta<T> {
    a: Option<T>,
    b: Option<T>,
    delta: Option<T>,
}

fn delta<T: Copy + std::ops::Sub<Output = T>>(a: Option<T>, b: Option<T>) -> Delta<T> {
    Delta {
        a,
        b,
        delta: a.zip(b).map(|(a, b)| b - a),
    }
}

/// Costs compare equal when they print the same at twelve decimals (float sums differ in the
/// last bits).
fn same_cost(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 5e-13,
        (a, b) => a.is_none() && b.is_none(),
    }
}

/// One changed path of a payload: its value in A and in B (JSON where the payload is JSON).
#[derive(Debug, Clone, Serialize)]
struct Change {
    path: String,
    a: Option<Value>,
    b: Option<Value>,
}

/// Where a step was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Side {
    Both,
    A,
    B,
}

#[derive(Debug, Serialize)]
struct StepDiff {
    path: String,
    step_name: String,
    #[serde(rename = "in")]
    side: Side,
    equal: bool,
    status: Pair<String>,
    attempts: Pair<i64>,
    fallback_taken: Pair<bool>,
    duration_ms: Delta<i64>,
    tokens: Delta<i64>,
    cost: Delta<f64>,
    changes: Vec<Change>,
}

#[derive(Debug, Serialize)]
struct RunDiff {
    equal: bool,
    status: Pair<String>,
    duration_ms: Delta<i64>,
    total_tokens: Delta<i64>,
    total_cost: Delta<f64>,
    changes: Vec<Change>,
}

#[derive(Debug, Serialize)]
struct RunHead {
    run_id: String,
    pipeline_name: String,
    pipeline_version: String,
    status: String,
}

impl RunHead {
    fn of(run: &RunRecord) -> RunHead {
        RunHead {
            run_id: run.run_id.clone(),
            pipeline_name: run.pipeline_name.clone(),
            pipeline_version: run.pipeline_version.clone(),
            status: run.status.clone(),
        }
    }
}

struct Report {
    a: RunHead,
    b: RunHead,
    run: RunDiff,
    steps: Vec<StepDiff>,
}

#[derive(Serialize)]
struct ReportJson<'a> {
    a: &'a RunHead,
    b: &'a RunHead,
    same_pipeline: bool,
    equal: bool,
    run: &'a RunDiff,
    /// Steps that differ (every step with --all), A's order, then those only in B.
    steps: Vec<&'a StepDiff>,
    steps_compared: usize,
    steps_different: usize,
}

impl Report {
    fn same_pipeline(&self) -> bool {
        self.a.pipeline_name == self.b.pipeline_name
            && self.a.pipeline_version == self.b.pipeline_version
    }

    fn different_steps(&self) -> usize {
        self.steps.iter().filter(|step| !step.equal).count()
    }

    fn equal(&self) -> bool {
        self.run.equal && self.different_steps() == 0
    }

    fn json(&self, all: bool) -> ReportJson<'_> {
        ReportJson {
            a: &self.a,
            b: &self.b,
            same_pipeline: self.same_pipeline(),
            equal: self.equal(),
            run: &self.run,
            steps: self.steps.iter().filter(|s| all || !s.equal).collect(),
            steps_compared: self.steps.len(),
            steps_different: self.different_steps(),
        }
    }
}

/// Each step's path in the tree, in the order given: names from the run down, each with `#n`
/// when it is the n-th (from 0) same-named sibling, n > 0.
fn paths(steps: &[StepRecord]) -> Vec<String> {
    let mut by_id: HashMap<&str, String> = HashMap::new();
    let mut seen: HashMap<(String, &str), usize> = HashMap::new();
    let mut paths = Vec::with_capacity(steps.len());
    for step in steps {
        let parent = step
            .parent_step_run_id
            .as_deref()
            .and_then(|id| by_id.get(id))
            .cloned()
            .unwrap_or_default();
        let nth = seen.entry((parent.clone(), &step.step_name)).or_insert(0);
        let name = if *nth == 0 {
            step.step_name.clone()
        } else {
            format!("{}#{nth}", step.step_name)
        };
        *nth += 1;
        let path = if parent.is_empty() {
            name
        } else {
            format!("{parent}/{name}")
        };
        by_id.insert(&step.step_run_id, path.clone());
        paths.push(path);
    }
    paths
}

fn compare(a: &RunRecord, b: &RunRecord, steps_a: &[StepRecord], steps_b: &[StepRecord]) -> Report {
    let mut changes = Vec::new();
    json_changes(
        "input",
        a.input_blob.as_deref(),
        b.input_blob.as_deref(),
        &mut changes,
    );
    json_changes(
        "output",
        a.output_blob.as_deref(),
        b.output_blob.as_deref(),
        &mut changes,
    );
    text_change(
        "error",
        a.error_blob.as_deref(),
        b.error_blob.as_deref(),
        &mut changes,
    );
    json_changes(
        "final_context",
        a.final_context_blob.as_deref(),
        b.final_context_blob.as_deref(),
        &mut changes,
    );
    let status = Pair {
        a: Some(a.status.clone()),
        b: Some(b.status.clone()),
    };
    let run = RunDiff {
        equal: !status.differs()
            && a.total_tokens == b.total_tokens
            && same_cost(a.total_cost, b.total_cost)
            && changes.is_empty(),
        status,
        duration_ms: delta(a.duration_ms, b.duration_ms),
        total_tokens: delta(a.total_tokens, b.total_tokens),
        total_cost: delta(a.total_cost, b.total_cost),
        changes,
    };

    let (paths_a, paths_b) = (paths(steps_a), paths(steps_b));
    let in_b: HashMap<&str, usize> = paths_b
        .iter()
        .enumerate()
        .map(|(i, path)| (path.as_str(), i))
        .collect();
    let mut steps = Vec::new();
    let mut matched = vec![false; steps_b.len()];
    for (step, path) in steps_a.iter().zip(&paths_a) {
        let other = in_b.get(path.as_str()).map(|&i| {
            matched[i] = true;
            &steps_b[i]
        });
        steps.push(step_diff(path, Some((a, step)), other.map(|s| (b, s))));
    }
    for ((step, path), matched) in steps_b.iter().zip(&paths_b).zip(matched) {
        if !matched {
            steps.push(step_diff(path, None, Some((b, step))));
        }
    }
    Report {
        a: RunHead::of(a),
        b: RunHead::of(b),
        run,
        steps,
    }
}

fn step_diff(
    path: &str,
    a: Option<(&RunRecord, &StepRecord)>,
    b: Option<(&RunRecord, &StepRecord)>,
) -> StepDiff {
    let side = match (a, b) {
        (Some(_), Some(_)) => Side::Both,
        (Some(_), None) => Side::A,
        _ => Side::B,
    };
    let (sa, sb) = (a.map(|(_, s)| s), b.map(|(_, s)| s));
    let name = sa.or(sb).map(|s| s.step_name.clone()).unwrap_or_default();
    let status = Pair {
        a: a.map(|(run, step)| show::shown_status(run, step).to_owned()),
        b: b.map(|(run, step)| show::shown_status(run, step).to_owned()),
    };
    let attempts = Pair {
        a: sa.and_then(|s| s.attempts),
        b: sb.and_then(|s| s.attempts),
    };
    let fallback_taken = Pair {
        a: sa.and_then(|s| s.fallback_taken),
        b: sb.and_then(|s| s.fallback_taken),
    };
    let tokens = delta(sa.and_then(|s| s.tokens), sb.and_then(|s| s.tokens));
    let cost = delta(sa.and_then(|s| s.cost), sb.and_then(|s| s.cost));
    let mut changes = Vec::new();
    if side == Side::Both {
        json_changes(
            "input",
            sa.and_then(|s| s.input_blob.as_deref()),
            sb.and_then(|s| s.input_blob.as_deref()),
            &mut changes,
        );
        json_changes(
            "output",
            sa.and_then(|s| s.output_blob.as_deref()),
            sb.and_then(|s| s.output_blob.as_deref()),
            &mut changes,
        );
        text_change(
            "error",
            sa.and_then(|s| s.error_blob.as_deref()),
            sb.and_then(|s| s.error_blob.as_deref()),
            &mut changes,
        );
    }
    let equal = side == Side::Both
        && !status.differs()
        && !attempts.differs()
        && !fallback_taken.differs()
        && tokens.a == tokens.b
        && same_cost(cost.a, cost.b)
        && changes.is_empty();
    StepDiff {
        path: path.to_owned(),
        step_name: name,
        side,
        equal,
        status,
        attempts,
        fallback_taken,
        duration_ms: delta(
            sa.and_then(|s| s.duration_ms),
            sb.and_then(|s| s.duration_ms),
        ),
        tokens,
        cost,
        changes,
    }
}

/// The changed paths between two payloads: structurally where both are JSON, else whole.
fn json_changes(prefix: &str, a: Option<&str>, b: Option<&str>, out: &mut Vec<Change>) {
    if a == b {
        return;
    }
    fn parse(text: Option<&str>) -> Option<Result<Value, ()>> {
        text.map(|t| serde_json::from_str::<Value>(t).map_err(|_| ()))
    }
    match (parse(a), parse(b)) {
        (Some(Err(_)), _) | (_, Some(Err(_))) => text_change(prefix, a, b, out),
        (a, b) => value_changes(
            prefix.to_owned(),
            a.and_then(Result::ok).as_ref(),
            b.and_then(Result::ok).as_ref(),
            out,
        ),
    }
}

/// A plain-text field (an error, or a payload that is not JSON) that changed, as one change.
fn text_change(path: &str, a: Option<&str>, b: Option<&str>, out: &mut Vec<Change>) {
    if a != b {
        out.push(Change {
            path: path.to_owned(),
            a: a.map(|t| Value::String(t.to_owned())),
            b: b.map(|t| Value::String(t.to_owned())),
        });
    }
}

fn value_changes(path: String, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<Change>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            for (key, value) in a {
                value_changes(key_path(&path, key), Some(value), b.get(key), out);
            }
            for (key, value) in b {
                if !a.contains_key(key) {
                    value_changes(key_path(&path, key), None, Some(value), out);
                }
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                value_changes(format!("{path}[{i}]"), a.get(i), b.get(i), out);
            }
        }
        (a, b) => out.push(Change {
            path,
            a: a.cloned(),
            b: b.cloned(),
        }),
    }
}

/// `path.key` for a key that reads as a name, `path["a key"]` for any other.
fn key_path(path: &str, key: &str) -> String {
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_owned()))
    }
}

fn render_text(report: &Report, all: bool, config: &Config) -> String {
    let width = config.width.max(40);
    let color = config.color;
    let mut out = String::new();
    for (label, head) in [("A", &report.a), ("B", &report.b)] {
        out.push_str(&format!(
            "{label}  {}  {} {}  {}\n",
            text::escape(&head.run_id),
            text::escape(&head.pipeline_name),
            text::escape(&head.pipeline_version),
            render::paint(
                &text::escape(&head.status),
                render::Tone::of_status(&head.status),
                color
            ),
        ));
    }
    if !report.same_pipeline() {
        out.push_str(&format!(
            "note: different pipelines: A is {} {}, B is {} {}; steps are compared by name\n",
            text::escape(&report.a.pipeline_name),
            text::escape(&report.a.pipeline_version),
            text::escape(&report.b.pipeline_name),
            text::escape(&report.b.pipeline_version),
        ));
    }
    out.push('\n');

    let run = &report.run;
    let mut facts = vec![format!(
        "duration {}",
        delta_text(&run.duration_ms, |ms| text::duration(Some(ms)))
    )];
    if run.status.differs() {
        facts.insert(0, pair_text(&run.status));
    }
    if run.total_tokens.a != run.total_tokens.b {
        facts.push(format!(
            "tokens {}",
            delta_text(&run.total_tokens, |n| text::count(Some(n)))
        ));
    }
    if !same_cost(run.total_cost.a, run.total_cost.b) {
        facts.push(format!("cost {}", cost_text(&run.total_cost)));
    }
    let verdict = if run.equal { "equal" } else { "differs" };
    out.push_str(&format!("run  {verdict}  {}\n", facts.join(" · ")));
    push_changes(&mut out, &run.changes, width);

    let different = report.different_steps();
    out.push_str(&format!(
        "\nsteps: {different} of {} differ{}\n",
        report.steps.len(),
        if all || different == report.steps.len() {
            ""
        } else {
            " (--all shows the equal ones too)"
        }
    ));
    for step in report.steps.iter().filter(|s| all || !s.equal) {
        let mut facts = Vec::new();
        match step.side {
            Side::A => facts.push("only in A".to_owned()),
            Side::B => facts.push("only in B".to_owned()),
            Side::Both => {
                facts.push(if step.status.differs() {
                    pair_text(&step.status)
                } else {
                    step.status.a.clone().unwrap_or_default()
                });
                facts.push(delta_text(&step.duration_ms, |ms| text::duration(Some(ms))));
                if step.attempts.differs() {
                    facts.push(format!("attempts {}", pair_text(&step.attempts)));
                }
                if step.fallback_taken.differs() {
                    facts.push(format!(
                        "fallback taken {}",
                        pair_text(&step.fallback_taken)
                    ));
                }
                if step.tokens.a != step.tokens.b {
                    facts.push(format!(
                        "tokens {}",
                        delta_text(&step.tokens, |n| text::count(Some(n)))
                    ));
                }
                if !same_cost(step.cost.a, step.cost.b) {
                    facts.push(format!("cost {}", cost_text(&step.cost)));
                }
            }
        }
        let mark = if step.equal { "=" } else { "≠" };
        out.push_str(&format!(
            "  {mark} {}  {}\n",
            text::escape(&step.path),
            text::escape(&facts.join(" · "))
        ));
        push_changes(&mut out, &step.changes, width);
    }
    out
}

fn push_changes(out: &mut String, changes: &[Change], width: usize) {
    for change in changes.iter().take(SHOWN_CHANGES) {
        let path = text::escape(&change.path);
        // each value gets half of what is left of the line
        let room = width.saturating_sub(render::text_width(&path) + 10) / 2;
        let value = |v: &Option<Value>| match v {
            None => "(none)".to_owned(),
            Some(v) => {
                let shown = text::escape(&v.to_string());
                if render::text_width(&shown) > room.max(12) {
                    render::cut_to(&shown, room.max(12))
                } else {
                    shown
                }
            }
        };
        out.push_str(&format!(
            "      {path}: {} → {}\n",
            value(&change.a),
            value(&change.b)
        ));
    }
    if changes.len() > SHOWN_CHANGES {
        out.push_str(&format!(
            "      … {} more changed paths (-o json has every one)\n",
            changes.len() - SHOWN_CHANGES
        ));
    }
}

fn pair_text<T: std::fmt::Display>(pair: &Pair<T>) -> String {
    let side = |v: &Option<T>| v.as_ref().map_or("-".to_owned(), |v| v.to_string());
    format!("{} → {}", side(&pair.a), side(&pair.b))
}

fn delta_text(delta: &Delta<i64>, show: impl Fn(i64) -> String) -> String {
    let side = |v: Option<i64>| v.map_or("-".to_owned(), &show);
    match delta.delta {
        Some(0) | None => format!("{} → {}", side(delta.a), side(delta.b)),
        Some(d) => {
            let sign = if d > 0 { "+" } else { "-" };
            format!(
                "{} → {} ({sign}{})",
                side(delta.a),
                side(delta.b),
                show(d.abs())
            )
        }
    }
}

fn cost_text(delta: &Delta<f64>) -> String {
    let decimals = text::cost_decimals([delta.a, delta.b, delta.delta.map(f64::abs)]);
    let side = |v: Option<f64>| text::cost_with(v, decimals);
    match delta.delta {
        Some(d) if d != 0.0 => {
            let sign = if d > 0.0 { "+" } else { "-" };
            format!(
                "{} → {} ({sign}{})",
                side(delta.a),
                side(delta.b),
                text::cost_with(Some(d.abs()), decimals)
            )
        }
        _ => format!("{} → {}", side(delta.a), side(delta.b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_differ_by_path_and_only_where_they_changed() {
        let mut changes = Vec::new();
        json_changes(
            "output",
            Some(r#"{"reply":"hi","items":[1,2,3],"same":true,"a key":1}"#),
            Some(r#"{"reply":"hello","items":[1,5],"same":true,"new":null,"a key":2}"#),
            &mut changes,
        );
        let shown: Vec<String> = changes
            .iter()
            .map(|c| format!("{} {:?} {:?}", c.path, c.a, c.b))
            .collect();
        assert_eq!(
            shown,
            [
                r#"output.reply Some(String("hi")) Some(String("hello"))"#,
                r#"output.items[1] Some(Number(2)) Some(Number(5))"#,
                r#"output.items[2] Some(Number(3)) None"#,
                r#"output["a key"] Some(Number(1)) Some(Number(2))"#,
                r#"output.new None Some(Null)"#,
            ]
        );
        let mut changes = Vec::new();
        json_changes("output", Some("not json"), Some("{}"), &mut changes);
        assert_eq!(changes.len(), 1, "text compared whole");
        assert_eq!(changes[0].path, "output");
    }

    #[test]
    fn paths_name_the_nth_same_named_sibling() {
        let step = |id: &str, parent: Option<&str>, name: &str| StepRecord {
            step_run_id: id.into(),
            run_id: "r".into(),
            parent_step_run_id: parent.map(Into::into),
            step_name: name.into(),
            step_index: 0,
            step_kind: None,
            status: "completed".into(),
            attempts: None,
            start_time: String::new(),
            end_time: None,
            duration_ms: None,
            cost: None,
            tokens: None,
            input_blob: None,
            output_blob: None,
            error_blob: None,
            fallback_taken: None,
        };
        let steps = [
            step("1", None, "review"),
            step("2", Some("1"), "revise"),
            step("3", Some("1"), "revise"),
            step("4", None, "publish"),
        ];
        assert_eq!(
            paths(&steps),
            ["review", "review/revise", "review/revise#1", "publish"]
        );
    }
}
