//! The real `flujo` binary over a database written by the real runner and `SqliteLayer`:
//! snapshots of `flujo lens list` and `flujo lens show` as a user sees them.
//!
//! The pipelines run for real; then, in the finished database, run ids, step ids, times,
//! durations and the writing process are replaced by fixed values (order preserved), so the
//! snapshots do not change from one run of the suite to the next. Every other value (statuses,
//! attempts, inputs, outputs, errors, costs, tokens, nesting) is what the layer wrote.

use std::path::Path;
use std::process::Command;

use flujo::{
    branch_on, loop_until, parallel, step, Flujo, Pipeline, SqliteLayer, StepContext, StepError,
    Usage,
};
use serde::Serialize;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug, Default, Serialize)]
struct Triage {
    category: String,
    notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
struct Ticket {
    id: u32,
    customer: &'static str,
    text: &'static str,
}

fn triage() -> Pipeline<Ticket, String, Triage> {
    let classify = step(
        "classify",
        |t: Ticket, cx: StepContext<Triage>| async move {
            cx.add_usage(Usage {
                tokens: 120,
                cost_usd: 0.0012,
            });
            if t.id == 2 && cx.attempt() == 1 {
                return Err(StepError::new("model endpoint answered 503 (overloaded)"));
            }
            let category = if t.text.contains("invoice") {
                "billing"
            } else {
                "technical"
            };
            cx.update(|c| c.category = category.to_owned())?;
            Ok(t)
        },
    )
    .max_retries(2);
    let kb = step(
        "search_kb",
        |t: Ticket, _: StepContext<Triage>| async move { Ok(vec![format!("KB-{} article", t.id * 11)]) },
    );
    let history = step(
        "customer_history",
        |t: Ticket, _: StepContext<Triage>| async move {
            match t.customer {
                "unknown" => Err(StepError::new(
                    "no customer record for 'unknown' in the CRM",
                )),
                customer => Ok(vec![format!("{customer}: 2 earlier tickets")]),
            }
        },
    );
    let retrieve = parallel("retrieve")
        .branch(kb)
        .branch(history)
        .combine(|found: Vec<Vec<String>>| found.concat());
    let drafter = |name: &'static str, opening: &'static str| {
        step(
            name,
            move |facts: Vec<String>, cx: StepContext<Triage>| async move {
                cx.add_usage(Usage {
                    tokens: 300,
                    cost_usd: 0.003,
                });
                Ok(format!("{opening} ({})", facts.join("; ")))
            },
        )
    };
    let draft = branch_on("draft", |_: &Vec<String>, c: &Triage| c.category.clone())
        .branch(
            "billing".to_owned(),
            drafter("draft_billing", "Refund on its way"),
        )
        .otherwise(drafter("draft_general", "Try this"));
    let translate = step(
        "translate",
        |text: String, _: StepContext<Triage>| async move {
            if text.contains("Refund") {
                return Err(StepError::new("translation service timed out"));
            }
            Ok(format!("[es] {text}"))
        },
    )
    .fallback(step(
        "keep_original",
        |text: String, _: StepContext<Triage>| async move { Ok(text) },
    ));
    let revise = step(
        "revise",
        |text: String, cx: StepContext<Triage>| async move {
            let round = cx.update(|c| {
                c.notes.push(format!("review {}", c.notes.len() + 1));
                c.notes.len()
            })?;
            Ok(if round >= 2 {
                format!("{text} -- approved")
            } else {
                text
            })
        },
    );
    let review = loop_until("review", revise, |text: &String, _: &Triage| {
        text.ends_with("approved")
    })
    .max_iterations(3);
    Pipeline::new(classify)
        .then(retrieve)
        .then(draft)
        .then(translate)
        .then(review)
}

fn report() -> Pipeline<u32, String> {
    let write = step(
        "write_report",
        |pages: u32, _: StepContext<()>| async move {
            Ok(format!(
                "{}END",
                "Quarterly figures, all regions. ".repeat(pages as usize * 25)
            ))
        },
    );
    Pipeline::new(write)
}

/// Runs the pipelines into `db` through the real layer, then fixes ids, times and durations.
async fn record(db: &Path) {
    let subscriber =
        tracing::Dispatch::new(tracing_subscriber::registry().with(SqliteLayer::open(db).unwrap()));
    let flujo = Flujo::new("support-triage", triage()).with_pipeline_version("2.1");
    for (id, customer, text) in [
        (1, "ana", "charged twice on my invoice"),
        (2, "li", "the app crashes on login"),
        (3, "unknown", "cannot log in"),
    ] {
        flujo
            .run(Ticket { id, customer, text })
            .with_subscriber(subscriber.clone())
            .await;
    }
    Flujo::new("quarterly-report", report())
        .run(4)
        .with_subscriber(subscriber)
        .await;
    normalise(db);
}

fn normalise(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    // ids change in both tables, one row at a time
    conn.pragma_update(None, "foreign_keys", false).unwrap();
    let runs: Vec<String> = conn
        .prepare("SELECT run_id FROM runs ORDER BY run_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let tx = conn.unchecked_transaction().unwrap();
    for (r, run_id) in runs.iter().enumerate() {
        // a tail that looks random, as a UUID v7's does, so the short ids are typical
        let tail = (r as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a) & 0xffff_ffff_ffff;
        let new_run = format!("0190c0de-{:04x}-7000-8000-{tail:012x}", r + 1);
        let run_start = 1_767_261_600 + r as i64 * 3600; // 2026-01-01T10:00:00Z + r hours
        let steps: Vec<String> = tx
            .prepare("SELECT step_run_id FROM steps WHERE run_id = ?1 ORDER BY step_run_id")
            .unwrap()
            .query_map([run_id], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (s, step_id) in steps.iter().enumerate() {
            let new_step = format!("0190c0de-{:04x}-7000-8000-{:012x}", r + 1, s + 1);
            let start = ts(run_start, 10 * s as i64);
            let end = ts(run_start, 10 * s as i64 + 7);
            tx.execute(
                "UPDATE steps SET step_run_id = ?1, run_id = ?2, start_time = ?3, end_time = ?4, duration_ms = 7 WHERE step_run_id = ?5",
                rusqlite::params![new_step, new_run, start, end, step_id],
            )
            .unwrap();
            tx.execute(
                "UPDATE steps SET parent_step_run_id = ?1 WHERE parent_step_run_id = ?2",
                [&new_step, step_id],
            )
            .unwrap();
            // the run's output is kept in its last step's row
            tx.execute(
                "UPDATE runs SET output_step_run_id = ?1 WHERE output_step_run_id = ?2",
                [&new_step, step_id],
            )
            .unwrap();
        }
        let end = ts(run_start, 10 * steps.len() as i64 + 3);
        tx.execute(
            "UPDATE runs SET run_id = ?1, start_time = ?2, end_time = ?3, duration_ms = ?4,
                    writer_host = 'build-host', writer_pid = 4242, writer_pid_start = 1,
                    writer_pid_ns = 4026531836
             WHERE run_id = ?5",
            rusqlite::params![
                new_run,
                ts(run_start, 0),
                end,
                10 * steps.len() as i64 + 3,
                run_id
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// RFC 3339 with six fractional digits, `millis` after `unix_seconds`.
fn ts(unix_seconds: i64, millis: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(unix_seconds).unwrap()
        + time::Duration::milliseconds(millis);
    flujo::format_timestamp(t)
}

fn flujo_lens(db: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flujo"))
        .arg("lens")
        .args(args)
        .env("FLUJO_STATE_URI", db)
        .env("COLUMNS", "110")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let shown = format!(
        "$ flujo lens {}\nexit: {}\n--- stdout\n{}--- stderr\n{}",
        args.join(" "),
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    shown.replace(db.parent().unwrap().to_str().unwrap(), "[dir]")
}

#[tokio::test]
async fn the_real_binary_over_a_database_the_real_layer_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    record(&db).await;

    let cases: [(&str, &[&str]); 12] = [
        ("cli_list", &["list"]),
        ("cli_list_failed", &["list", "--status", "failed"]),
        (
            "cli_list_pipeline_limit",
            &["list", "--pipeline", "support-triage", "--limit", "2"],
        ),
        ("cli_list_since", &["list", "--since", "2026-01-01 11:30"]),
        ("cli_list_none", &["list", "--status", "cancelled"]),
        ("cli_show_completed", &["show", "0190c0de-0001"]),
        (
            "cli_show_failed",
            &["show", "0190c0de-0003-7000-8000-daa66d2c7dde"],
        ),
        ("cli_show_latest_cut", &["show", "latest"]),
        ("cli_show_latest_full", &["show", "latest", "--full"]),
        ("cli_show_json", &["-o", "json", "show", "0190c0de-0002"]),
        ("cli_show_ambiguous", &["show", "0190c0de"]),
        ("cli_show_short_id", &["show", "6d2c7dde"]),
    ];
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
        for (name, args) in cases {
            insta::assert_snapshot!(name, flujo_lens(&db, args));
        }
    });
}
