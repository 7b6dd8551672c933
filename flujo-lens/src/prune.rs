//! `flujo lens prune`: the one lens command that writes. Counts the matching runs read-only,
//! asks (or needs `--yes`), deletes them with their steps and says how much space came back.

use std::io::{BufRead, Write};
use std::path::Path;

use flujo_trace_sqlite::{PruneCounts, PruneProgress, PruneReport, SqlitePruner, SqliteReader};
use serde::Serialize;

use crate::config::{Config, Format, PruneConfig, PruneMode, Store};
use crate::error::LensError;
use crate::json;
use crate::text::{self, human_bytes, thousands};
use crate::Environment;

/// Where `prune` asks its question and shows its progress.
pub(crate) struct Terminal<'a> {
    pub(crate) env: &'a Environment,
    pub(crate) stdin: &'a mut dyn BufRead,
    pub(crate) stderr: &'a mut dyn Write,
}

/// `-o json`: what was (or, with `--dry-run`, would be) deleted.
#[derive(Debug, Serialize)]
struct PruneJson {
    runs_deleted: u64,
    steps_deleted: u64,
    bytes_before: u64,
    bytes_after: Option<u64>,
    reusable_bytes: Option<u64>,
    dry_run: bool,
}

pub(crate) fn run(
    config: &Config,
    prune: &PruneConfig,
    terminal: &mut Terminal<'_>,
    out: &mut dyn Write,
) -> Result<(), LensError> {
    let path = match &config.store {
        Store::Sqlite(state) => state.path.as_path(),
        Store::Postgres { uri, .. } => {
            return Err(LensError::Usage(format!(
                "flujo lens prune deletes runs from SQLite stores only; {uri} is PostgreSQL: \
                 delete old runs there with SQL (their steps go with them), e.g. \
                 DELETE FROM runs WHERE start_time < '2026-01-01' AND status <> 'running'"
            )))
        }
    };
    // counted on a read-only connection, closed before anything is written
    let counts = SqliteReader::open(path)?.prune_count(&prune.filter)?;
    let dry_run = prune.mode == PruneMode::DryRun;
    if counts.runs == 0 {
        if config.format != Format::Table {
            let nothing = PruneJson {
                runs_deleted: 0,
                steps_deleted: 0,
                bytes_before: counts.bytes_on_disk,
                bytes_after: (!dry_run).then_some(counts.bytes_on_disk),
                reusable_bytes: None,
                dry_run,
            };
            json::write_line(out, &nothing)?;
        }
        return Err(LensError::NothingFound(format!(
            "no {} in {} match: nothing deleted",
            runs_matching(prune),
            path.display()
        )));
    }
    match prune.mode {
        PruneMode::DryRun => return dry_run_output(config, prune, &counts, out),
        PruneMode::Ask => confirm(prune, path, &counts, terminal)?,
        PruneMode::Yes => {}
    }
    let mut backend = SqlitePruner::open(path)?;
    let show_progress = terminal.env.stderr_is_terminal;
    let stderr = &mut *terminal.stderr;
    let report = backend.prune(&prune.filter, |step| {
        if show_progress {
            progress(stderr, counts.runs, step);
        }
    });
    if show_progress {
        // clear the progress line, whatever happened
        let _ = write!(stderr, "\r{:60}\r", "");
        let _ = stderr.flush();
    }
    let report = report?;
    drop(backend);
    match config.format {
        Format::Table => out.write_all(summary(path, &report).as_bytes())?,
        Format::Json | Format::Jsonl => json::write_line(
            out,
            &PruneJson {
                runs_deleted: report.runs,
                steps_deleted: report.steps,
                bytes_before: report.bytes_before,
                bytes_after: Some(report.bytes_after),
                reusable_bytes: Some(report.reusable_bytes),
                dry_run: false,
            },
        )?,
    }
    Ok(())
}

/// `runs older than 30d with status failed or cancelled of pipeline etl`.
fn runs_matching(prune: &PruneConfig) -> String {
    let mut what = format!("runs older than {}", text::escape(&prune.older_than));
    if !prune.filter.statuses.is_empty() {
        what.push_str(&format!(
            " with status {}",
            prune.filter.statuses.join(" or ")
        ));
    }
    if let Some(pipeline) = &prune.filter.pipeline_name {
        what.push_str(&format!(" of pipeline {}", text::escape(pipeline)));
    }
    what
}

/// `1,234 runs and 6,170 steps`, `1 run and 1 step`.
fn runs_and_steps(runs: u64, steps: u64) -> String {
    format!(
        "{} {} and {} {}",
        thousands(runs),
        if runs == 1 { "run" } else { "runs" },
        thousands(steps),
        if steps == 1 { "step" } else { "steps" }
    )
}

fn dry_run_output(
    config: &Config,
    prune: &PruneConfig,
    counts: &PruneCounts,
    out: &mut dyn Write,
) -> Result<(), LensError> {
    match config.format {
        Format::Table => {
            let conditions = runs_matching(prune);
            let conditions = conditions.trim_start_matches("runs ");
            writeln!(
                out,
                "would delete {} {conditions} from {} ({} on disk); dry run: nothing was deleted",
                runs_and_steps(counts.runs, counts.steps),
                config.store.name(),
                human_bytes(bytes(counts.bytes_on_disk)),
            )?;
        }
        Format::Json | Format::Jsonl => json::write_line(
            out,
            &PruneJson {
                runs_deleted: counts.runs,
                steps_deleted: counts.steps,
                bytes_before: counts.bytes_on_disk,
                bytes_after: None,
                reusable_bytes: None,
                dry_run: true,
            },
        )?,
    }
    Ok(())
}

/// Asks on the terminal; without one, refuses (exit 2). Anything but `y` or `yes` aborts (exit 1).
fn confirm(
    prune: &PruneConfig,
    path: &Path,
    counts: &PruneCounts,
    terminal: &mut Terminal<'_>,
) -> Result<(), LensError> {
    let what = runs_and_steps(counts.runs, counts.steps);
    if !terminal.env.stdin_is_terminal {
        return Err(LensError::Usage(format!(
            "refusing to delete {what} without confirmation: pass --yes (or --dry-run to see what \
             would go)"
        )));
    }
    let conditions = runs_matching(prune);
    let conditions = conditions.trim_start_matches("runs ");
    write!(
        terminal.stderr,
        "delete {what} {conditions} from {}? [y/N] ",
        path.display()
    )?;
    terminal.stderr.flush()?;
    let mut answer = String::new();
    let read = terminal.stdin.read_line(&mut answer);
    let answer = answer.trim().to_ascii_lowercase();
    if matches!(read, Ok(n) if n > 0) && (answer == "y" || answer == "yes") {
        return Ok(());
    }
    if !matches!(read, Ok(n) if n > 0) {
        // no line came (end of input): the prompt still needs its line break
        let _ = writeln!(terminal.stderr);
    }
    Err(LensError::NothingFound(
        "aborted: nothing deleted".to_owned(),
    ))
}

/// One progress line on the terminal, rewritten in place.
fn progress(stderr: &mut dyn Write, total_runs: u64, step: PruneProgress) {
    let line = match step {
        PruneProgress::Deleting { runs, .. } => format!(
            "deleting: {} of {} runs",
            thousands(runs),
            thousands(total_runs.max(runs))
        ),
        PruneProgress::Vacuuming { pages_left } => format!(
            "giving space back to the file system: {} pages left",
            thousands(pages_left)
        ),
    };
    let _ = write!(stderr, "\r{line:60}");
    let _ = stderr.flush();
}

/// What `prune` prints when it deleted runs.
pub(crate) fn summary(path: &Path, report: &PruneReport) -> String {
    let deleted = format!(
        "deleted {} from {}",
        runs_and_steps(report.runs, report.steps),
        path.display()
    );
    if report.gives_space_back {
        format!(
            "{deleted}; freed {} ({} -> {})\n",
            human_bytes(bytes(
                report.bytes_before.saturating_sub(report.bytes_after)
            )),
            human_bytes(bytes(report.bytes_before)),
            human_bytes(bytes(report.bytes_after)),
        )
    } else {
        format!(
            "{deleted}; {} freed inside the file, where new runs reuse it ({} on disk)\n\
             the file keeps its size: it was created without incremental auto-vacuum; to \
             give the space back to the file system, run \
             `sqlite3 {} 'VACUUM'` while no pipeline writes to it\n",
            human_bytes(bytes(report.reusable_bytes)),
            human_bytes(bytes(report.bytes_after)),
            shell_quote(&path.display().to_string()),
        )
    }
}

fn bytes(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// `path` as one shell word: unchanged when it is plain, else in single quotes.
fn shell_quote(path: &str) -> String {
    let plain = !path.is_empty()
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:,@%=".contains(c));
    if plain {
        path.to_owned()
    } else {
        format!("'{}'", path.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(gives_space_back: bool) -> PruneReport {
        PruneReport {
            runs: 1_234,
            steps: 6_170,
            bytes_before: 47_815_065,
            bytes_after: 34_917_171,
            reusable_bytes: if gives_space_back { 0 } else { 12_897_894 },
            gives_space_back,
        }
    }

    #[test]
    fn summaries() {
        let path = Path::new("/srv/app/flujo_ops.db");
        assert_eq!(
            summary(path, &report(true)),
            "deleted 1,234 runs and 6,170 steps from /srv/app/flujo_ops.db; freed 12.3 MiB \
             (45.6 MiB -> 33.3 MiB)\n"
        );
        let kept = summary(Path::new("/srv/my app/it's.db"), &report(false));
        assert!(
            kept.starts_with(
                "deleted 1,234 runs and 6,170 steps from /srv/my app/it's.db; 12.3 MiB freed \
                 inside the file"
            ),
            "{kept}"
        );
        assert!(
            kept.contains(r"`sqlite3 '/srv/my app/it'\''s.db' 'VACUUM'`"),
            "{kept}"
        );
        let one = PruneReport {
            runs: 1,
            steps: 1,
            ..report(true)
        };
        assert!(summary(path, &one).starts_with("deleted 1 run and 1 step from"));
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("./flujo_ops.db"), "./flujo_ops.db");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("$(rm -rf ~)"), "'$(rm -rf ~)'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
