//! `flujo lens list`: one page of runs, newest first, with a footer when more match.

use std::io::Write;

use flujo_trace_core::{id_tail, short_id};
use flujo_trace_postgres::PostgresReader;
use flujo_trace_sqlite::{RunPage, RunReader, RunRecord, SqliteReader};

use crate::config::{Config, Format, ListConfig, Store};
use crate::error::LensError;
use crate::json::{self, ListJson, MatchingJson, RunJson, RunShape};
use crate::render::{self, Align, Cell, Column, Tone};
use crate::text::{self, TimePrecision};

/// Counting matching runs stops here: beyond it the footer says "more than 10,000".
pub(crate) const COUNT_BOUND: u64 = 10_000;

const COLUMNS: [Column; 8] = [
    Column {
        header: "id",
        align: Align::Left,
        shrink: false,
        drop_order: None,
    },
    Column {
        header: "pipeline",
        align: Align::Left,
        shrink: true,
        drop_order: None,
    },
    Column {
        header: "version",
        align: Align::Left,
        shrink: true,
        drop_order: Some(1),
    },
    Column {
        header: "status",
        align: Align::Left,
        shrink: false,
        drop_order: None,
    },
    Column {
        header: "started (UTC)",
        align: Align::Left,
        shrink: false,
        drop_order: None,
    },
    Column {
        header: "duration",
        align: Align::Right,
        shrink: false,
        drop_order: Some(3),
    },
    Column {
        header: "steps",
        align: Align::Right,
        shrink: false,
        drop_order: Some(2),
    },
    Column {
        header: "cost",
        align: Align::Right,
        shrink: false,
        drop_order: Some(4),
    },
];

pub(crate) fn run(
    config: &Config,
    list: &ListConfig,
    out: &mut dyn Write,
) -> Result<(), LensError> {
    match &config.store {
        Store::Sqlite(state) => list_from(&SqliteReader::open(&state.path)?, config, list, out),
        Store::Postgres { uri, .. } => list_from(&PostgresReader::open(uri)?, config, list, out),
    }
}

/// `list` over any store's reader.
fn list_from<R: RunReader>(
    backend: &R,
    config: &Config,
    list: &ListConfig,
    out: &mut dyn Write,
) -> Result<(), LensError>
where
    LensError: From<R::Error>,
{
    if list.watch {
        return crate::follow::list(backend, config, list, out);
    }
    // what --grep's search says of how it searched (the window of payloads read, an index
    // missing): after the table, or with the message when nothing matched
    let (page, notes) = match &list.grep {
        Some(search) => grep_page(backend, list, search)?,
        None => (
            backend.list_runs_page(&list.filter, COUNT_BOUND)?,
            Vec::new(),
        ),
    };
    let nothing_found = |config: &Config, list: &ListConfig, page: &RunPage| match nothing_found(
        config, list, page,
    ) {
        LensError::NothingFound(mut message) => {
            for note in &notes {
                message.push_str(&format!("\nnote: {note}"));
            }
            LensError::NothingFound(message)
        }
        other => other,
    };
    let short = short_ids(backend, &page.runs)?;
    match config.format {
        Format::Table => {
            if page.runs.is_empty() {
                return Err(nothing_found(config, list, &page));
            }
            let mut table = render_table(&page, &short, list.limit, config.width, config.color);
            for note in &notes {
                table.push_str(&format!("note: {note}\n"));
            }
            out.write_all(table.as_bytes())?;
        }
        Format::Json => {
            let document = ListJson {
                runs: page
                    .runs
                    .iter()
                    .zip(&short)
                    .map(|(run, short)| {
                        RunJson::new(run, RunShape::Summary, None).with_short_id(short)
                    })
                    .collect(),
                matching: MatchingJson::of(&page),
                limit: list.limit,
            };
            json::write_line(out, &document)?;
            if page.runs.is_empty() {
                return Err(nothing_found(config, list, &page));
            }
        }
        Format::Jsonl => {
            for (run, short) in page.runs.iter().zip(&short) {
                let line = RunJson::new(run, RunShape::Summary, None).with_short_id(short);
                json::write_line(out, &line)?;
            }
            if page.runs.is_empty() {
                return Err(nothing_found(config, list, &page));
            }
        }
    }
    Ok(())
}

/// `--grep`: the runs `flujo lens search` finds, of the listed statuses, as a page.
fn grep_page<R: RunReader>(
    backend: &R,
    list: &ListConfig,
    search: &crate::search::SearchConfig,
) -> Result<(RunPage, Vec<String>), LensError>
where
    LensError: From<R::Error>,
{
    let statuses = &list.filter.statuses;
    let found = crate::search::find(backend, search, |run| {
        statuses.is_empty() || statuses.contains(&run.status)
    })?;
    let runs: Vec<RunRecord> = found.hits.into_iter().map(|hit| hit.run).collect();
    let count = runs.len() as u64;
    let page = RunPage {
        runs,
        matching: flujo_trace_sqlite::RunCount {
            count,
            exact: !found.more,
        },
        stopped_after: None,
    };
    Ok((page, found.notes))
}

/// The short id of each run (its shortest end no other run's id in the store ends with), found
/// with one index lookup per run.
pub(crate) fn short_ids<R: RunReader>(
    backend: &R,
    runs: &[RunRecord],
) -> Result<Vec<String>, R::Error> {
    let tails: Vec<&str> = runs.iter().map(|run| id_tail(&run.run_id)).collect();
    let sharing = backend.run_ids_by_tail(&tails)?;
    Ok(runs
        .iter()
        .map(|run| {
            let tail = id_tail(&run.run_id);
            let others: Vec<String> = sharing
                .iter()
                .filter(|id| id_tail(id) == tail)
                .cloned()
                .collect();
            short_id(&run.run_id, &others).to_string()
        })
        .collect())
}

/// The table and its footer: the text `flujo lens list` prints.
pub(crate) fn render_table(
    page: &RunPage,
    short_ids: &[String],
    limit: usize,
    width: usize,
    color: bool,
) -> String {
    let decimals = text::cost_decimals(page.runs.iter().map(|run| run.total_cost));
    let rows: Vec<Vec<Cell>> = page
        .runs
        .iter()
        .zip(short_ids)
        .map(|(run, short)| row(run, short, decimals))
        .collect();
    let mut rendered = render::grid(&COLUMNS, &rows, width, color);
    rendered.push('\n');
    let shown = page.runs.len() as u64;
    if let Some(examined) = page.stopped_after {
        rendered.push_str(&format!(
            "showing the {} matching runs among the newest {} looked at (telling running from \
             crashed checks each run's process, so the search stops there): narrow with --since \
             or --until\n",
            text::thousands(shown),
            text::thousands(examined),
        ));
    } else if shown < page.matching.count || !page.matching.exact {
        let total = if page.matching.exact {
            text::thousands(page.matching.count)
        } else {
            format!("more than {}", text::thousands(page.matching.count))
        };
        rendered.push_str(&format!(
            "showing the {} newest of {total} matching runs: raise --limit (now {}) or narrow with \
             --status, --pipeline, --since or --until\n",
            text::thousands(shown),
            text::thousands(limit as u64),
        ));
    }
    rendered
}

fn row(run: &RunRecord, short_id: &str, cost_decimals: usize) -> Vec<Cell> {
    vec![
        Cell::plain(text::escape(short_id)),
        Cell::plain(text::escape(&run.pipeline_name)),
        Cell::plain(text::escape(&run.pipeline_version)),
        Cell::toned(text::escape(&run.status), Tone::of_status(&run.status)),
        Cell::plain(text::time(Some(&run.start_time), TimePrecision::Seconds)),
        Cell::plain(text::duration(run.duration_ms)),
        Cell::plain(text::count(run.n_steps)),
        Cell::plain(text::cost_with(run.total_cost, cost_decimals)),
    ]
}

fn nothing_found(config: &Config, list: &ListConfig, page: &RunPage) -> LensError {
    let filter = &list.filter;
    let mut conditions = Vec::new();
    if !filter.statuses.is_empty() {
        conditions.push(format!("status {}", filter.statuses.join(" or ")));
    }
    if let Some(pipeline) = &filter.pipeline_name {
        conditions.push(format!("pipeline {}", text::escape(pipeline)));
    }
    if let Some(since) = &filter.since {
        conditions.push(format!(
            "started since {}",
            text::time(Some(since), TimePrecision::Seconds)
        ));
    }
    if let Some(until) = &filter.until {
        conditions.push(format!(
            "started before {}",
            text::time(Some(until), TimePrecision::Seconds)
        ));
    }
    let path = text::escape(&config.store.name());
    if let Some(examined) = page.stopped_after {
        LensError::NothingFound(format!(
            "no runs match {} among the newest {} looked at in {path} (telling running from \
             crashed checks each run's process, so the search stops there): narrow with --since \
             or --until",
            conditions.join(", "),
            text::thousands(examined),
        ))
    } else if conditions.is_empty() {
        LensError::NothingFound(format!(
            "no runs recorded in {path} yet: run a pipeline, then try again"
        ))
    } else {
        LensError::NothingFound(format!(
            "no runs match {} in {path}: widen or drop a filter",
            conditions.join(", ")
        ))
    }
}
