//! `flujo lens search TEXT` (and `flujo lens list --grep TEXT`): runs whose recorded errors,
//! inputs, outputs or final contexts contain TEXT, newest first, each with the first matching
//! step and a snippet around the match.
//!
//! The one matcher is here: the store's reader only proposes candidates (its index's matches,
//! or every payload of a window), and each is checked on the text `flujo lens show` prints:
//! case folded for every script (`char::to_lowercase` on both sides, a final sigma as any), JSON payloads decoded to their
//! keys and string, number and boolean values (so an escape such as `\"` or `\n` matches the
//! character it stands for, and JSON punctuation never matches).

use std::collections::HashMap;
use std::io::Write;
use std::ops::ControlFlow;

use flujo_trace_core::{truncated, Candidate, IndexState, SearchField};
use flujo_trace_postgres::PostgresReader;
use flujo_trace_sqlite::{RunFilter, RunReader, RunRecord, SqliteReader};
use serde::Serialize;

use crate::config::{Config, Format, Store};
use crate::error::LensError;
use crate::json;
use crate::list::short_ids;
use crate::render::{self, Align, Cell, Column, Tone};
use crate::text::{self, TimePrecision};

/// Characters of context shown before and after a match.
const BEFORE: usize = 20;
const AFTER: usize = 50;
/// The fewest characters an index of trigrams finds.
const TRIGRAM: usize = 3;

#[derive(Debug, Clone)]
pub(crate) struct SearchConfig {
    pub(crate) text: String,
    /// Where to look, in this order.
    pub(crate) fields: Vec<SearchField>,
    /// The window and pipeline of errors (as given).
    pub(crate) filter: RunFilter,
    /// The window of payloads: `--since` as given, else the last 24 hours.
    pub(crate) payload_filter: RunFilter,
    /// Whether `payload_filter.since` is the default.
    pub(crate) payload_since_default: bool,
    pub(crate) limit: usize,
}

pub(crate) fn run(
    config: &Config,
    search: &SearchConfig,
    out: &mut dyn Write,
) -> Result<(), LensError> {
    match &config.store {
        Store::Sqlite(state) => search_from(&SqliteReader::open(&state.path)?, config, search, out),
        Store::Postgres { uri, .. } => {
            search_from(&PostgresReader::open(uri)?, config, search, out)
        }
    }
}

/// How the needle and the text searched are folded, character by character: lower case, and a
/// final sigma as any sigma (a whole string's `to_lowercase` writes `ς` at a word's end, which
/// the same word in the middle of a text does not have).
fn fold(c: char) -> impl Iterator<Item = char> {
    c.to_lowercase().map(|c| if c == 'ς' { 'σ' } else { c })
}

/// A whole text folded as [`fold`] folds each character, at the speed of `str::to_lowercase`
/// (its one rule that looks at neighbours is the final sigma, which `fold` undoes).
fn fold_str(text: &str) -> String {
    let lower = text.to_lowercase();
    if lower.contains('ς') {
        lower.replace('ς', "σ")
    } else {
        lower
    }
}

/// The needle, folded.
#[derive(Debug, Clone)]
pub(crate) struct Needle {
    folded: String,
}

impl Needle {
    pub(crate) fn new(text: &str) -> Needle {
        Needle {
            folded: fold_str(text),
        }
    }

    /// Where the needle first occurs in `haystack`, case folded: the byte range of `haystack`.
    fn find_in(&self, haystack: &str) -> Option<(usize, usize)> {
        if self.folded.is_empty() {
            return None;
        }
        let mut folded = String::with_capacity(haystack.len());
        // for each byte of `folded`, where the character it came from starts in `haystack`
        let mut origin: Vec<usize> = Vec::with_capacity(haystack.len());
        for (at, c) in haystack.char_indices() {
            let before = folded.len();
            folded.extend(fold(c));
            origin.extend(std::iter::repeat_n(at, folded.len() - before));
        }
        let start = folded.find(&self.folded)?;
        let last = origin[start + self.folded.len() - 1];
        let end = last + haystack[last..].chars().next().map_or(0, char::len_utf8);
        Some((origin[start], end))
    }

    /// Whether `haystack` can contain the needle: a cheap test before decoding.
    fn may_be_in(&self, haystack: &str) -> bool {
        fold_str(haystack).contains(&self.folded)
            // an escape in the JSON may stand for what the needle holds
            || haystack.contains('\\')
    }
}

/// Where a match is: the text around it and the match's place in that text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snippet {
    pub(crate) text: String,
    /// Character offsets of the match in `text`.
    pub(crate) start: usize,
    pub(crate) end: usize,
}

fn snippet(haystack: &str, (start, end): (usize, usize)) -> Snippet {
    let before: Vec<char> = haystack[..start].chars().collect();
    let after: Vec<char> = haystack[end..].chars().collect();
    let matched = &haystack[start..end];
    let mut text = String::new();
    let lead = before.len().saturating_sub(BEFORE);
    if lead > 0 {
        text.push('…');
    }
    text.extend(&before[lead..]);
    let match_start = text.chars().count();
    text.push_str(matched);
    let match_end = match_start + matched.chars().count();
    text.extend(after.iter().take(AFTER));
    if after.len() > AFTER {
        text.push('…');
    }
    Snippet {
        text,
        start: match_start,
        end: match_end,
    }
}

/// The first match of the needle in a stored text of `field`: an error's text as it is; a JSON
/// payload's keys and scalar values one by one (a payload cut at the store's cap, or not JSON,
/// as its text).
fn find_match(needle: &Needle, field: SearchField, stored: &str) -> Option<Snippet> {
    if field == SearchField::Error {
        return needle.find_in(stored).map(|at| snippet(stored, at));
    }
    if !needle.may_be_in(stored) {
        return None;
    }
    let text = truncated(stored).map_or(stored, |cut| cut.head);
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(value) => first_in_value(needle, &value),
        Err(_) => needle.find_in(text).map(|at| snippet(text, at)),
    }
}

fn first_in_value(needle: &Needle, value: &serde_json::Value) -> Option<Snippet> {
    use serde_json::Value;
    let in_text = |text: &str| needle.find_in(text).map(|at| snippet(text, at));
    match value {
        Value::Null => in_text("null"),
        Value::Bool(b) => in_text(if *b { "true" } else { "false" }),
        Value::Number(n) => in_text(&n.to_string()),
        Value::String(s) => in_text(s),
        Value::Array(items) => items.iter().find_map(|item| first_in_value(needle, item)),
        Value::Object(map) => map
            .iter()
            .find_map(|(key, item)| in_text(key).or_else(|| first_in_value(needle, item))),
    }
}

/// One run found.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub(crate) run: RunRecord,
    pub(crate) field: SearchField,
    pub(crate) step_name: Option<String>,
    pub(crate) step_run_id: Option<String>,
    pub(crate) snippet: Snippet,
}

/// What a search found, and what it could not do.
#[derive(Debug, Default)]
pub(crate) struct Found {
    /// Newest first, at most the limit.
    pub(crate) hits: Vec<Hit>,
    /// Whether more runs match than the limit let through.
    pub(crate) more: bool,
    /// What the reader should know about how it searched.
    pub(crate) notes: Vec<String>,
}

/// Runs matching `search`, newest first, each accepted by `accept` (`list --grep`'s statuses).
pub(crate) fn find<R: RunReader>(
    backend: &R,
    search: &SearchConfig,
    mut accept: impl FnMut(&RunRecord) -> bool,
) -> Result<Found, LensError>
where
    LensError: From<R::Error>,
{
    let needle = Needle::new(&search.text);
    let mut found = Found::default();
    // the runs looked up so far (`None`: not accepted), and the first hit of each
    let mut runs: HashMap<String, Option<RunRecord>> = HashMap::new();
    let mut hits: Vec<Hit> = Vec::new();
    let want = search.limit + 1;
    for &field in &search.fields {
        if field == SearchField::Error {
            if let Some(note) = error_note(backend.error_index()?, &search.text) {
                found.notes.push(note);
            }
        }
        // Candidates are judged after each pass over the store (a reader streaming a query
        // cannot be asked for a run meanwhile): a pass collects up to `batch` matching runs not
        // judged yet; when `accept` turns some down, the next pass looks for twice as many.
        let mut accepted = 0usize;
        let mut batch = want;
        loop {
            let mut pending: Vec<(Candidate, Snippet)> = Vec::new();
            let mut stopped = false;
            let mut consider = |candidate: Candidate| -> Result<ControlFlow<()>, LensError> {
                if runs.contains_key(&candidate.run_id)
                    || pending.iter().any(|(p, _)| p.run_id == candidate.run_id)
                {
                    return Ok(ControlFlow::Continue(()));
                }
                let Some(snippet) = find_match(&needle, field, &candidate.text) else {
                    return Ok(ControlFlow::Continue(()));
                };
                pending.push((candidate, snippet));
                if pending.len() >= batch {
                    stopped = true;
                    return Ok(ControlFlow::Break(()));
                }
                Ok(ControlFlow::Continue(()))
            };
            if field == SearchField::Error {
                backend.search_errors(&search.text, &search.filter, &mut consider)?;
            } else {
                backend.scan_payloads(field, &search.payload_filter, &mut consider)?;
            }
            for (candidate, snippet) in pending {
                let run = backend
                    .find_run(&candidate.run_id)?
                    .filter(|run| accept(run));
                runs.insert(candidate.run_id.clone(), run.clone());
                let Some(run) = run else { continue };
                if hits.iter().any(|hit| hit.run.run_id == run.run_id) {
                    continue;
                }
                accepted += 1;
                hits.push(Hit {
                    run,
                    field,
                    step_name: candidate.step_name,
                    step_run_id: candidate.step_run_id,
                    snippet,
                });
            }
            if !stopped || accepted >= want {
                break;
            }
            batch *= 2;
        }
        if accepted >= want {
            found.more = true;
        }
    }
    let payloads = search.fields.iter().any(|f| *f != SearchField::Error);
    if payloads {
        let since = search
            .payload_filter
            .since
            .as_deref()
            .map(|since| text::time(Some(since), TimePrecision::Seconds))
            .unwrap_or_default();
        if search.payload_since_default {
            found.notes.push(format!(
                "inputs, outputs and contexts were read for runs since {since} (the last 24 \
                 hours): give --since to look further back"
            ));
        }
    }
    // newest first over every field
    hits.sort_by(|a, b| {
        b.run
            .start_time
            .cmp(&a.run.start_time)
            .then_with(|| b.run.run_id.cmp(&a.run.run_id))
    });
    if hits.len() > search.limit {
        hits.truncate(search.limit);
        found.more = true;
    }
    found.hits = hits;
    Ok(found)
}

/// What to say about how errors were searched, given the store's index.
fn error_note(index: IndexState, text_searched: &str) -> Option<String> {
    match index {
        IndexState::Ready if text_searched.chars().count() < TRIGRAM => Some(format!(
            "{:?} is shorter than the error index's {TRIGRAM} characters: every error in the \
             window was read",
            text::escape(text_searched)
        )),
        IndexState::Ready => None,
        IndexState::Filling(done) => Some(format!(
            "the store's error index is still being built by its writer ({:.0}% done): errors \
             were searched by reading every step in the window",
            done * 100.0
        )),
        IndexState::Missing => Some(
            "this store has no index of errors (written by an older flujo, or a PostgreSQL \
             server without pg_trgm): errors were searched by reading the steps in the window; \
             a pipeline of this flujo recording into the store upgrades it (on PostgreSQL, \
             where pg_trgm can be created)"
                .to_owned(),
        ),
    }
}

const COLUMNS: [Column; 7] = [
    Column {
        header: "id",
        align: Align::Left,
        shrink: false,
        drop_order: None,
    },
    Column {
        header: "started (UTC)",
        align: Align::Left,
        shrink: false,
        drop_order: Some(3),
    },
    Column {
        header: "pipeline",
        align: Align::Left,
        shrink: true,
        drop_order: Some(2),
    },
    Column {
        header: "status",
        align: Align::Left,
        shrink: false,
        drop_order: Some(4),
    },
    Column {
        header: "in",
        align: Align::Left,
        shrink: false,
        drop_order: Some(1),
    },
    Column {
        header: "step",
        align: Align::Left,
        shrink: true,
        drop_order: None,
    },
    Column {
        header: "match",
        align: Align::Left,
        shrink: true,
        drop_order: None,
    },
];

#[derive(Serialize)]
struct MatchJson<'a> {
    run_id: &'a str,
    short_id: &'a str,
    pipeline_name: &'a str,
    pipeline_version: &'a str,
    status: &'a str,
    start_time: &'a str,
    field: SearchField,
    step_name: Option<&'a str>,
    step_run_id: Option<&'a str>,
    snippet: &'a str,
    match_start: usize,
    match_end: usize,
}

#[derive(Serialize)]
struct SearchJson<'a> {
    text: &'a str,
    fields: &'a [SearchField],
    since: Option<&'a str>,
    until: Option<&'a str>,
    matches: Vec<MatchJson<'a>>,
    limit: usize,
    more: bool,
    notes: &'a [String],
}

fn search_from<R: RunReader>(
    backend: &R,
    config: &Config,
    search: &SearchConfig,
    out: &mut dyn Write,
) -> Result<(), LensError>
where
    LensError: From<R::Error>,
{
    let found = find(backend, search, |_| true)?;
    let runs: Vec<RunRecord> = found.hits.iter().map(|hit| hit.run.clone()).collect();
    let short = short_ids(backend, &runs)?;
    let matches: Vec<MatchJson<'_>> = found
        .hits
        .iter()
        .zip(&short)
        .map(|(hit, short)| MatchJson {
            run_id: &hit.run.run_id,
            short_id: short,
            pipeline_name: &hit.run.pipeline_name,
            pipeline_version: &hit.run.pipeline_version,
            status: &hit.run.status,
            start_time: &hit.run.start_time,
            field: hit.field,
            step_name: hit.step_name.as_deref(),
            step_run_id: hit.step_run_id.as_deref(),
            snippet: &hit.snippet.text,
            match_start: hit.snippet.start,
            match_end: hit.snippet.end,
        })
        .collect();
    let empty = matches.is_empty();
    match config.format {
        Format::Json => {
            let document = SearchJson {
                text: &search.text,
                fields: &search.fields,
                since: search.filter.since.as_deref(),
                until: search.filter.until.as_deref(),
                matches,
                limit: search.limit,
                more: found.more,
                notes: &found.notes,
            };
            json::write_line(out, &document)?;
        }
        Format::Jsonl => {
            for line in &matches {
                json::write_line(out, line)?;
            }
        }
        Format::Table if !empty => {
            let rows: Vec<Vec<Cell>> = found
                .hits
                .iter()
                .zip(&short)
                .map(|(hit, short)| {
                    vec![
                        Cell::plain(text::escape(short)),
                        Cell::plain(text::time(
                            Some(&hit.run.start_time),
                            TimePrecision::Seconds,
                        )),
                        Cell::plain(text::escape(&hit.run.pipeline_name)),
                        Cell::toned(
                            text::escape(&hit.run.status),
                            Tone::of_status(&hit.run.status),
                        ),
                        Cell::plain(hit.field.as_str()),
                        Cell::plain(text::escape(hit.step_name.as_deref().unwrap_or("(run)"))),
                        Cell::plain(text::escape(&hit.snippet.text)),
                    ]
                })
                .collect();
            let mut rendered = render::grid(&COLUMNS, &rows, config.width, config.color);
            rendered.push('\n');
            if found.more {
                rendered.push_str(&format!(
                    "showing the {} newest matching runs; more match: raise --limit (now {}) or \
                     narrow with --in, --pipeline, --since or --until\n",
                    text::thousands(found.hits.len() as u64),
                    search.limit
                ));
            }
            for note in &found.notes {
                rendered.push_str(&format!("note: {note}\n"));
            }
            out.write_all(rendered.as_bytes())?;
        }
        Format::Table => {}
    }
    if empty {
        let mut message = format!(
            "no run recorded {:?} in its {} in {}",
            text::escape(&search.text),
            search
                .fields
                .iter()
                .map(|f| match f {
                    SearchField::Error => "errors",
                    SearchField::Input => "inputs",
                    SearchField::Output => "outputs",
                    SearchField::Context => "final contexts",
                })
                .collect::<Vec<_>>()
                .join(", "),
            text::escape(&config.store.name())
        );
        for note in &found.notes {
            message.push_str(&format!("\nnote: {note}"));
        }
        return Err(LensError::NothingFound(message));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(needle: &str, field: SearchField, stored: &str) -> Option<String> {
        find_match(&Needle::new(needle), field, stored).map(|s| {
            let chars: Vec<char> = s.text.chars().collect();
            chars[s.start..s.end].iter().collect()
        })
    }

    #[test]
    fn matching_folds_case_for_every_script() {
        assert_eq!(
            found("NÚMERO", SearchField::Error, "el número 7").as_deref(),
            Some("número")
        );
        assert_eq!(
            found("rate limit", SearchField::Error, "429: Rate Limit hit").as_deref(),
            Some("Rate Limit")
        );
        assert_eq!(
            found("ΣΊΣΥΦΟΣ", SearchField::Error, "ο σίσυφος").as_deref(),
            Some("σίσυφος")
        );
        // a word ending in a capital sigma finds itself, in any case, wherever it stands
        for stored in ["ΟΔΟΣ ΚΛΕΙΣΤΗ", "η οδος κλειστη", "ΟΔΟΣΗΜΑΝΣΗ"]
        {
            assert!(
                found("ΟΔΟΣ", SearchField::Error, stored).is_some(),
                "{stored}"
            );
            assert!(
                found("οδος", SearchField::Error, stored).is_some(),
                "{stored}"
            );
        }
        assert_eq!(found("nope", SearchField::Error, "nothing here"), None);
        for text in ["ΟΔΟΣ ΚΛΕΙΣΤΗ", "Straße İstanbul ΣΊΣΥΦΟΣ", "plain ascii"] {
            assert_eq!(
                fold_str(text),
                text.chars().flat_map(fold).collect::<String>()
            );
        }
    }

    #[test]
    fn json_payloads_match_on_decoded_text_not_escapes() {
        let stored = r#"{"reply":"say \"hi\"\nthen go","n":429}"#;
        assert_eq!(
            found("say \"hi\"", SearchField::Output, stored).as_deref(),
            Some("say \"hi\"")
        );
        assert_eq!(found("\\n", SearchField::Output, stored), None);
        assert_eq!(
            found("429", SearchField::Output, stored).as_deref(),
            Some("429")
        );
        assert_eq!(
            found("reply", SearchField::Output, stored).as_deref(),
            Some("reply")
        );
        // JSON punctuation is not text
        assert_eq!(found("\":", SearchField::Output, stored), None);
    }

    #[test]
    fn snippets_show_context_and_place_the_match() {
        let long = format!("{}needle{}", "a".repeat(100), "b".repeat(100));
        let s = find_match(&Needle::new("NEEDLE"), SearchField::Error, &long).unwrap();
        assert!(
            s.text.starts_with('…') && s.text.ends_with('…'),
            "{}",
            s.text
        );
        assert_eq!(s.start, BEFORE + 1);
        assert_eq!(s.end - s.start, 6);
    }
}
