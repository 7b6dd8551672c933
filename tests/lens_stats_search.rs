//! `flujo lens stats` and `flujo lens search` (and `list --grep`), the real binary over a
//! database written by the real runner and `SqliteLayer`, and over a real PostgreSQL server
//! holding the same runs (copied there with `flujo lens copy`).
//!
//! 48 runs of two pipelines are recorded through a clock per run (`Flujo::with_clock`) that
//! places them over 2026-01-05 and 2026-01-06 UTC; then every run's and step's duration is set
//! to a fixed value, so the figures and snapshots are the same on every run of the suite.
//! Statuses, attempts, fallbacks, tokens, costs, inputs, outputs, errors and contexts are what
//! the layer wrote. The stats are checked against figures computed here from the rows, by SQL
//! of this test's own (not only by snapshot), on both stores.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use flujo::{step, Flujo, OffsetClock, Pipeline, SqliteLayer, StepContext, StepError, Usage};
use serde::Serialize;
use serde_json::Value;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

const RUNS: u32 = 48;
/// Where run 0 starts; run `i` starts `i` times 55 minutes later.
const FIRST: time::OffsetDateTime = time::macros::datetime!(2026-01-05 00:10:00 UTC);

#[derive(Debug, Default, Serialize)]
struct Notes {
    tier: String,
}

#[derive(Debug, Clone, Serialize)]
struct Ticket {
    id: u32,
    text: String,
}

/// `classify` fails for one run in six with an error of its own words (one of them hostile);
/// `lookup` fails its first attempt for one run in four (retried) and for one in twelve every
/// time, its fallback then answering; `reply` writes what the customer will read.
fn triage() -> Pipeline<Ticket, String, Notes> {
    let classify = step("classify", |t: Ticket, cx: StepContext<Notes>| async move {
        cx.add_usage(Usage {
            tokens: 100 + u64::from(t.id),
            cost_usd: 0.001 * f64::from(t.id % 5 + 1),
        });
        if t.id % 6 == 4 {
            return Err(StepError::new(if t.id == 10 {
                "model said \u{1b}[31mRATE LIMIT\u{1b}[0m\nretry \u{202e}later".to_owned()
            } else {
                format!("rate limit exceeded (429) for cliente número {}", t.id)
            }));
        }
        cx.update(|n| {
            n.tier = if t.id.is_multiple_of(2) {
                "gold"
            } else {
                "basic"
            }
            .into()
        })?;
        Ok(t)
    });
    let lookup = step("lookup", |t: Ticket, cx: StepContext<Notes>| async move {
        if (t.id % 4 == 1 && cx.attempt() == 1) || t.id % 12 == 7 {
            return Err(StepError::new("CRM timeout"));
        }
        Ok(t)
    })
    .max_retries(1)
    .backoff(flujo::Backoff::none())
    .fallback(step(
        "cached_lookup",
        |t: Ticket, _: StepContext<Notes>| async move { Ok(t) },
    ));
    let reply = step("reply", |t: Ticket, cx: StepContext<Notes>| async move {
        cx.add_usage(Usage {
            tokens: 50,
            cost_usd: 0.0005,
        });
        Ok(format!("Hola: su número de caso es {} — \"gracias\"", t.id))
    });
    Pipeline::new(classify).then(lookup).then(reply)
}

fn nightly() -> Pipeline<Ticket, u32, Notes> {
    let extract = step("extract", |t: Ticket, _: StepContext<Notes>| async move {
        Ok(t.id * 10)
    });
    let load = step("load", |rows: u32, _: StepContext<Notes>| async move {
        if rows.is_multiple_of(70) {
            return Err(StepError::new(format!(
                "warehouse refused batch {rows}: disk quota"
            )));
        }
        Ok(rows)
    });
    Pipeline::new(extract).then(load)
}

/// Records the runs, then fixes every duration: run `i` takes 100 + (i * 37) % 400 ms, each
/// step 10 + (its rowid * 13) % 90 ms.
async fn record(db: &Path) {
    let subscriber =
        tracing::Dispatch::new(tracing_subscriber::registry().with(SqliteLayer::open(db).unwrap()));
    for i in 0..RUNS {
        let start = FIRST + time::Duration::minutes(55 * i64::from(i));
        let clock = Arc::new(OffsetClock::new(start - time::OffsetDateTime::now_utc()));
        let ticket = Ticket {
            id: i,
            text: format!("Ticket {i}: the invoice was charged twice"),
        };
        if i % 3 == 2 {
            Flujo::new("nightly-etl", nightly())
                .with_pipeline_version("1.0")
                .with_clock(clock)
                .run_with_context(ticket, Notes::default())
                .with_subscriber(subscriber.clone())
                .await;
        } else {
            Flujo::new("support-triage", triage())
                .with_pipeline_version(if i < 24 { "2.0" } else { "2.1" })
                .with_clock(clock)
                .run_with_context(ticket, Notes::default())
                .with_subscriber(subscriber.clone())
                .await;
        }
    }
    drop(subscriber);
    let conn = rusqlite::Connection::open(db).unwrap();
    // fixed ids and start times (order kept): the same short ids and times on every run
    conn.pragma_update(None, "foreign_keys", false).unwrap();
    let runs: Vec<String> = conn
        .prepare("SELECT run_id FROM runs ORDER BY start_time")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let tx = conn.unchecked_transaction().unwrap();
    for (i, old) in runs.iter().enumerate() {
        let tail = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a) & 0xffff_ffff_ffff;
        let new = format!("0190c0de-{:04x}-7000-8000-{tail:012x}", i + 1);
        let start = FIRST + time::Duration::minutes(55 * i as i64);
        tx.execute(
            "UPDATE steps SET run_id = ?1, step_run_id = ?1 || '-' || step_index || '-' || rowid \
             WHERE run_id = ?2",
            [&new, old],
        )
        .unwrap();
        tx.execute(
            "UPDATE runs SET run_id = ?1, start_time = ?2, output_step_run_id = NULL WHERE run_id = ?3",
            [&new, &flujo::format_timestamp(start), old],
        )
        .unwrap();
    }
    tx.execute_batch(
        "UPDATE steps SET parent_step_run_id = NULL; \
         UPDATE steps SET start_time = (SELECT start_time FROM runs r WHERE r.run_id = steps.run_id)",
    )
    .unwrap();
    tx.commit().unwrap();
    conn.execute_batch(
        "UPDATE runs SET duration_ms = 100 + ((CAST(substr(start_time, 12, 2) AS INTEGER) * 60 \
         + CAST(substr(start_time, 15, 2) AS INTEGER)) * 37) % 400; \
         UPDATE steps SET duration_ms = 10 + (rowid * 13) % 90;",
    )
    .unwrap();
    // the writer indexed the runs as recorded: after changing them by hand, the stats index is
    // emptied (as a tool that rewrites ended runs must), and readers read every run directly
    conn.execute_batch(
        "DELETE FROM run_stats; DELETE FROM run_stats_pending; \
         UPDATE flujo_backfill SET after = '0' WHERE name = 'run_stats';",
    )
    .unwrap();
}

fn lens(store: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flujo"))
        .arg("lens")
        .args(args)
        .env("FLUJO_STATE_URI", store)
        .env("COLUMNS", "120")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn transcript(db: &Path, args: &[&str]) -> String {
    let (code, stdout, stderr) = lens(db.to_str().unwrap(), args);
    let shown = format!(
        "$ flujo lens {}\nexit: {code}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        args.join(" ")
    );
    shown.replace(db.parent().unwrap().to_str().unwrap(), "[dir]")
}

fn json(store: &str, args: &[&str]) -> Value {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = lens(store, &all);
    assert!(code == 0 || code == 1, "{args:?}: {code} {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

/// The nearest-rank percentile of `values` (sorted here), as this test computes it.
fn nearest_rank(mut values: Vec<i64>, p: f64) -> i64 {
    values.sort_unstable();
    let rank = (p * values.len() as f64).ceil() as usize;
    values[rank.max(1) - 1]
}

/// Figures per pipeline from the rows, by this test's own SQL.
fn expected_by_pipeline(conn: &rusqlite::Connection, since: &str, until: &str) -> Vec<Value> {
    let mut stmt = conn
        .prepare(
            "SELECT pipeline_name, count(*), sum(status = 'completed'), sum(status = 'failed'), \
             sum(total_tokens), sum(total_cost) FROM runs \
             WHERE start_time >= ?1 AND start_time < ?2 GROUP BY pipeline_name ORDER BY 1",
        )
        .unwrap();
    let rows: Vec<(String, i64, i64, i64, i64, f64)> = stmt
        .query_map([since, until], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.into_iter()
        .map(|(pipeline, runs, completed, failed, tokens, cost)| {
            let durations: Vec<i64> = conn
                .prepare(
                    "SELECT duration_ms FROM runs WHERE pipeline_name = ?1 \
                     AND start_time >= ?2 AND start_time < ?3",
                )
                .unwrap()
                .query_map([&pipeline, since, until], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            serde_json::json!({
                "pipeline": pipeline,
                "runs": runs,
                "completed": completed,
                "failed": failed,
                "p50": nearest_rank(durations.clone(), 0.5),
                "p95": nearest_rank(durations.clone(), 0.95),
                "p99": nearest_rank(durations.clone(), 0.99),
                "max": durations.iter().max().copied(),
                "tokens": tokens,
                "cost": (cost * 1e9).round() / 1e9,
            })
        })
        .collect()
}

fn actual_by_pipeline(stats: &Value) -> Vec<Value> {
    stats["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            serde_json::json!({
                "pipeline": g["pipeline"],
                "runs": g["runs"],
                "completed": g["completed"],
                "failed": g["failed"],
                "p50": g["duration_ms"]["p50"],
                "p95": g["duration_ms"]["p95"],
                "p99": g["duration_ms"]["p99"],
                "max": g["duration_ms"]["max"],
                "tokens": g["tokens"]["total"].as_f64().unwrap() as i64,
                "cost": (g["cost_usd"]["total"].as_f64().unwrap() * 1e9).round() / 1e9,
            })
        })
        .collect()
}

/// Figures per step name from the rows.
fn expected_by_step(conn: &rusqlite::Connection) -> Vec<Value> {
    let mut stmt = conn
        .prepare(
            "SELECT r.pipeline_name, s.step_name, count(DISTINCT s.run_id), count(*), \
             sum(s.status = 'failed'), sum(max(coalesce(s.attempts, 1) - 1, 0)), \
             sum(coalesce(s.fallback_taken, 0)), coalesce(sum(s.tokens), 0), \
             coalesce(sum(s.cost), 0.0) FROM steps s JOIN runs r ON r.run_id = s.run_id \
             GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .unwrap();
    let rows: Vec<Value> = stmt
        .query_map([], |r| {
            Ok(serde_json::json!({
                "pipeline": r.get::<_, String>(0)?,
                "step": r.get::<_, String>(1)?,
                "runs": r.get::<_, i64>(2)?,
                "executions": r.get::<_, i64>(3)?,
                "failed": r.get::<_, i64>(4)?,
                "retries": r.get::<_, i64>(5)?,
                "fallbacks": r.get::<_, i64>(6)?,
                "tokens": r.get::<_, i64>(7)?,
                "cost": (r.get::<_, f64>(8)? * 1e9).round() / 1e9,
            }))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.into_iter()
        .map(|mut row| {
            let durations: Vec<i64> = conn
                .prepare(
                    "SELECT s.duration_ms FROM steps s JOIN runs r ON r.run_id = s.run_id \
                     WHERE r.pipeline_name = ?1 AND s.step_name = ?2",
                )
                .unwrap()
                .query_map(
                    [
                        row["pipeline"].as_str().unwrap(),
                        row["step"].as_str().unwrap(),
                    ],
                    |r| r.get(0),
                )
                .unwrap()
                .map(Result::unwrap)
                .collect();
            row["p50"] = nearest_rank(durations.clone(), 0.5).into();
            row["p95"] = nearest_rank(durations, 0.95).into();
            row
        })
        .collect()
}

fn actual_by_step(stats: &Value) -> Vec<Value> {
    let mut rows: Vec<Value> = stats["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            serde_json::json!({
                "pipeline": g["pipeline"],
                "step": g["step"],
                "runs": g["runs"],
                "executions": g["executions"],
                "failed": g["failed"],
                "retries": g["retries"],
                "fallbacks": g["fallbacks"],
                "tokens": g["tokens"]["total"].as_f64().unwrap() as i64,
                "cost": (g["cost_usd"]["total"].as_f64().unwrap() * 1e9).round() / 1e9,
                "p50": g["duration_ms"]["p50"],
                "p95": g["duration_ms"]["p95"],
            })
        })
        .collect();
    rows.sort_by_key(|r| (r["pipeline"].to_string(), r["step"].to_string()));
    rows
}

/// The run ids `search` found, newest first.
fn found_ids(store: &str, args: &[&str]) -> Vec<String> {
    let mut all = vec!["search"];
    all.extend_from_slice(args);
    json(store, &all)["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["run_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The run ids whose `column` (of steps, or of runs for the context) contains `needle`, by
/// SQLite's own LIKE (ASCII case folding) over the raw text, newest first.
fn ids_where(conn: &rusqlite::Connection, sql: &str) -> Vec<String> {
    conn.prepare(sql)
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn stats_and_search_over_real_runs_on_sqlite_and_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    record(&db).await;
    let conn = rusqlite::Connection::open(&db).unwrap();
    let sqlite = db.to_str().unwrap().to_owned();
    let (day1, day2, day3) = (
        "2026-01-05T00:00:00.000000Z",
        "2026-01-06T00:00:00.000000Z",
        "2026-01-07T00:00:00.000000Z",
    );

    // the same runs in a real PostgreSQL server
    let server = flujo_test_postgres::TestServer::get();
    let postgres = server.create_database("stats_search");
    let (code, _, stderr) = lens(&sqlite, &["copy", "--to", &postgres]);
    assert_eq!(code, 0, "{stderr}");

    for store in [&sqlite, &postgres] {
        // by pipeline, over each day and over both: the figures of this test's own SQL
        for (since, until) in [(day1, day2), (day2, day3), (day1, day3)] {
            let stats = json(store, &["stats", "--since", since, "--until", until]);
            assert_eq!(
                actual_by_pipeline(&stats),
                expected_by_pipeline(&conn, since, until),
                "{store} {since}"
            );
            let total: i64 = conn
                .query_row(
                    "SELECT count(*) FROM runs WHERE start_time >= ?1 AND start_time < ?2",
                    [since, until],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(stats["total"]["runs"], total);
        }
        // by step
        let steps = json(store, &["stats", "--by", "step"]);
        assert_eq!(actual_by_step(&steps), expected_by_step(&conn), "{store}");
        // by hour: every hour of the window, the empty ones too, counts that add up
        let hours = json(
            store,
            &["stats", "--by", "hour", "--since", day1, "--until", day2],
        );
        let groups = hours["groups"].as_array().unwrap();
        assert_eq!(groups.len(), 24);
        let per_hour: Vec<i64> = groups.iter().map(|g| g["runs"].as_i64().unwrap()).collect();
        for (hour, runs) in per_hour.iter().enumerate() {
            let counted: i64 = conn
                .query_row(
                    "SELECT count(*) FROM runs WHERE substr(start_time, 1, 13) = ?1",
                    [format!("2026-01-05T{hour:02}")],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(*runs, counted, "{store} hour {hour}");
        }
        // an empty window says so and exits 1
        let (code, stdout, stderr) = lens(
            store,
            &["stats", "--since", "2025-01-01", "--until", "2025-01-02"],
        );
        assert_eq!((code, stdout.as_str()), (1, ""), "{stderr}");
        assert!(stderr.contains("no runs started 2025-01-01"), "{stderr}");

        // search: each field, against this test's own reading of the rows
        let since = ["--since", "2026-01-01"];
        let errors = found_ids(store, &["rate limit", "--in", "error", "-n", "100"]);
        let expected = ids_where(
            &conn,
            "SELECT DISTINCT r.run_id FROM runs r JOIN steps s ON s.run_id = r.run_id \
             WHERE s.error_blob LIKE '%rate limit%' ORDER BY r.start_time DESC",
        );
        assert_eq!(errors, expected, "{store}");
        assert_eq!(errors.len(), 8, "the 7 plain ones and the hostile one");
        // a substring in the middle of a word, in inputs
        let inputs = found_ids(
            store,
            &["nvoic", "--in", "input", "-n", "100", since[0], since[1]],
        );
        assert_eq!(inputs.len(), RUNS as usize, "{store}");
        // outputs: non-ASCII, case folded, and an escaped quote matched as the character
        let outputs = found_ids(
            store,
            &[
                "NÚMERO DE CASO",
                "--in",
                "output",
                "-n",
                "100",
                since[0],
                since[1],
            ],
        );
        let completed_triage = ids_where(
            &conn,
            "SELECT run_id FROM runs WHERE pipeline_name = 'support-triage' \
             AND status = 'completed' ORDER BY start_time DESC",
        );
        assert_eq!(outputs, completed_triage, "{store}");
        let quoted = found_ids(
            store,
            &[
                "\"gracias\"",
                "--in",
                "output",
                "-n",
                "100",
                since[0],
                since[1],
            ],
        );
        assert_eq!(quoted, completed_triage, "{store}");
        // contexts
        let gold = found_ids(
            store,
            &["gold", "--in", "context", "-n", "100", since[0], since[1]],
        );
        let expected_gold = ids_where(
            &conn,
            "SELECT run_id FROM runs WHERE final_context_blob LIKE '%gold%' ORDER BY start_time DESC",
        );
        assert_eq!(gold, expected_gold, "{store}");
        assert!(!gold.is_empty());
        // two characters: below the trigram index, every error is read
        let two = json(store, &["search", "42", "--in", "error", "-n", "100"]);
        let with_42: Vec<String> = two["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["run_id"].as_str().unwrap().to_owned())
            .collect();
        let expected_42 = ids_where(
            &conn,
            "SELECT DISTINCT r.run_id FROM runs r JOIN steps s ON s.run_id = r.run_id \
             WHERE s.error_blob LIKE '%42%' ORDER BY r.start_time DESC",
        );
        assert_eq!(with_42, expected_42, "{store}");
        assert!(!with_42.is_empty());
        assert!(
            two["notes"][0]
                .as_str()
                .unwrap_or("")
                .contains("shorter than the error index"),
            "{two}"
        );
        // no match: exit 1
        let (code, _, stderr) = lens(
            store,
            &["search", "no such words anywhere", "--since", "2026-01-01"],
        );
        assert_eq!(code, 1, "{stderr}");
        // list --grep with a status
        let (code, stdout, _) = lens(
            store,
            &[
                "-o",
                "json",
                "list",
                "--grep",
                "CRM timeout",
                "--status",
                "completed",
                "--since",
                "2026-01-01",
            ],
        );
        assert_eq!(code, 0);
        let listed: Value = serde_json::from_str(&stdout).unwrap();
        assert!(listed["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "completed"));
        assert!(!listed["runs"].as_array().unwrap().is_empty());
    }

    // what a user sees, on SQLite
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
        let cases: [(&str, &[&str]); 11] = [
            ("stats_by_pipeline", &["stats", "--since", day1, "--until", day3]),
            ("stats_by_version", &["stats", "--by", "version", "--since", day1, "--until", day3]),
            ("stats_by_step", &["stats", "--by", "step", "--pipeline", "support-triage"]),
            ("stats_by_hour_chart", &["stats", "--by", "hour", "--since", day1, "--until", day2]),
            ("stats_by_day_chart", &["stats", "--by", "day", "--since", "2026-01-01", "--until", "2026-01-08"]),
            ("stats_json", &["-o", "json", "stats", "--since", day2, "--until", day3, "-p", "nightly-etl"]),
            ("stats_csv_by_step", &["-o", "csv", "stats", "--by", "step"]),
            ("stats_empty", &["stats", "--since", "2025-01-01", "--until", "2025-01-02"]),
            ("search_errors_hostile", &["search", "rate limit", "--in", "error"]),
            ("search_outputs_folded", &["search", "NÚMERO DE CASO ES 4", "--since", "2026-01-01", "-n", "3"]),
            ("search_two_characters", &["search", "42", "--in", "error"]),
        ];
        for (name, args) in cases {
            insta::assert_snapshot!(name, transcript(&db, args));
        }
        insta::assert_snapshot!(
            "search_json",
            transcript(&db, &["-o", "json", "search", "disk quota", "--in", "error"])
        );
    });
}
