//! What lands in the database is what `run()` returned: every step execution (nested ones with
//! their parent) with its input, output, error, attempts, whether its fallback was taken, cost
//! and tokens, and the run's totals, status, output, error and final context; and a run dropped
//! mid-way is recorded `cancelled`.

use std::time::Duration;

use flujo::{
    loop_until, map_over, parallel, step, Flujo, Pipeline, PipelineResult, SqliteLayer,
    StepContext, StepError, StepResult, Usage,
};
use rusqlite::{Connection, OpenFlags};
use serde::Serialize;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug, Default, Serialize)]
struct Ctx {
    seen: Vec<u32>,
}

fn pipeline(fail_at: u32) -> Pipeline<u32, u32, Ctx> {
    let flaky = step("flaky", |x: u32, cx: StepContext<Ctx>| async move {
        cx.add_usage(Usage {
            tokens: 7,
            cost_usd: 0.25,
        });
        if cx.attempt() < 2 {
            return Err(StepError::new("transient"));
        }
        Ok(x + 1)
    })
    .max_retries(3);
    let spread = step("spread", |x: u32, _: StepContext<Ctx>| async move {
        Ok(vec![x, x + 1, x + 2])
    });
    let square = step("square", move |x: u32, cx: StepContext<Ctx>| async move {
        cx.add_usage(Usage {
            tokens: 3,
            cost_usd: 0.125,
        });
        cx.update(|c| c.seen.push(x))?;
        if x == fail_at {
            return Err(StepError::new(format!("cannot square {x}")));
        }
        Ok(x * x)
    });
    let sum = step("sum", |xs: Vec<u32>, _: StepContext<Ctx>| async move {
        Ok(xs.iter().sum::<u32>())
    });
    let halve = step(
        "halve",
        |x: u32, _: StepContext<Ctx>| async move { Ok(x / 2) },
    );
    let both = parallel("both")
        .branch(step(
            "left",
            |x: u32, _: StepContext<Ctx>| async move { Ok(x) },
        ))
        .branch(step("right", |x: u32, _: StepContext<Ctx>| async move {
            Ok(x + 1)
        }))
        .combine(|xs: Vec<u32>| xs.iter().sum::<u32>());
    let rounded = step("round", |_: u32, _: StepContext<Ctx>| async move {
        Err::<u32, _>(StepError::new("rounding service down"))
    })
    .fallback(step(
        "keep",
        |x: u32, _: StepContext<Ctx>| async move { Ok(x) },
    ));
    Pipeline::new(flaky)
        .then(spread)
        .then(map_over("squares", square, 2))
        .then(sum)
        .then(loop_until("shrink", halve, |x: &u32, _: &Ctx| *x < 10).max_iterations(10))
        .then(both)
        .then(rounded)
}

#[derive(Debug, PartialEq)]
struct Row {
    step_run_id: String,
    parent: Option<String>,
    name: String,
    index: i64,
    kind: String,
    status: String,
    attempts: i64,
    input: Option<String>,
    output: Option<String>,
    error: Option<String>,
    fallback_taken: Option<bool>,
    tokens: i64,
    cost: f64,
}

fn expected_rows(steps: &[StepResult], parent: Option<&str>, out: &mut Vec<Row>) {
    for s in steps {
        out.push(Row {
            step_run_id: s.step_run_id.clone(),
            parent: parent.map(str::to_owned),
            name: s.name.clone(),
            index: s.index as i64,
            kind: s.kind.as_str().to_owned(),
            status: s.status.as_str().to_owned(),
            attempts: i64::from(s.attempts),
            input: Some(serde_json::to_string(&s.input).unwrap()),
            output: s.output.as_ref().map(|v| serde_json::to_string(v).unwrap()),
            error: s.error.clone(),
            fallback_taken: Some(s.fallback_taken),
            tokens: s.tokens as i64,
            cost: s.cost_usd,
        });
        expected_rows(&s.children, Some(&s.step_run_id), out);
    }
}

fn recorded_rows(conn: &Connection, run_id: &str) -> Vec<Row> {
    let mut stmt = conn
        .prepare(
            "SELECT step_run_id, parent_step_run_id, step_name, step_index, step_kind, status, attempts,
                    input_blob, output_blob, error_blob, fallback_taken, tokens, cost
             FROM steps WHERE run_id = ?1",
        )
        .unwrap();
    let rows = stmt.query_map([run_id], |r| {
        Ok(Row {
            step_run_id: r.get(0)?,
            parent: r.get(1)?,
            name: r.get(2)?,
            index: r.get(3)?,
            kind: r.get(4)?,
            status: r.get(5)?,
            attempts: r.get(6)?,
            input: r.get(7)?,
            output: r.get(8)?,
            error: r.get(9)?,
            fallback_taken: r.get(10)?,
            tokens: r.get(11)?,
            cost: r.get(12)?,
        })
    });
    rows.unwrap().map(Result::unwrap).collect()
}

/// JSON text compared as values: key order is not part of the contract.
fn normalise(rows: &mut [Row]) {
    for row in rows.iter_mut() {
        for text in [&mut row.input, &mut row.output].into_iter().flatten() {
            *text = serde_json::from_str::<serde_json::Value>(text)
                .unwrap()
                .to_string();
        }
    }
    rows.sort_by(|a, b| a.step_run_id.cmp(&b.step_run_id));
}

/// The columns of a run row that `check` compares.
struct RunRow {
    status: String,
    cost: f64,
    tokens: i64,
    error: Option<String>,
    context: String,
    n_steps: i64,
    version: String,
    end: Option<String>,
    output: Option<String>,
}

fn check(db: &std::path::Path, result: &PipelineResult<u32, Ctx>) {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let RunRow {
        status,
        cost,
        tokens,
        error,
        context,
        n_steps,
        version,
        end,
        output,
    } = conn
        .query_row(
            "SELECT status, total_cost, total_tokens, error_blob, final_context_blob, n_steps,
                    pipeline_version, end_time,
                    COALESCE(output_blob, (SELECT s.output_blob FROM steps s
                        WHERE s.step_run_id = runs.output_step_run_id))
             FROM runs WHERE run_id = ?1",
            [&result.run_id],
            |r| {
                Ok(RunRow {
                    status: r.get(0)?,
                    cost: r.get(1)?,
                    tokens: r.get(2)?,
                    error: r.get(3)?,
                    context: r.get(4)?,
                    n_steps: r.get(5)?,
                    version: r.get(6)?,
                    end: r.get(7)?,
                    output: r.get(8)?,
                })
            },
        )
        .unwrap();
    assert_eq!(status, result.status.as_str());
    assert!(
        (cost - result.total_cost_usd).abs() < 1e-12,
        "{cost} vs {}",
        result.total_cost_usd
    );
    assert_eq!(tokens as u64, result.total_tokens);
    assert_eq!(error, result.error);
    // the final output is recorded only for a completed run
    assert_eq!(
        output.map(|text| serde_json::from_str::<serde_json::Value>(&text).unwrap()),
        result
            .output
            .as_ref()
            .map(|output| serde_json::to_value(output).unwrap())
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&context).unwrap(),
        serde_json::to_value(&result.final_context).unwrap()
    );
    assert_eq!(version, "7");
    assert_eq!(
        end.as_deref(),
        Some(flujo::format_timestamp(result.end_time).as_str())
    );

    let mut expected = Vec::new();
    expected_rows(&result.step_history, None, &mut expected);
    let mut recorded = recorded_rows(&conn, &result.run_id);
    assert_eq!(n_steps as usize, expected.len());
    normalise(&mut expected);
    normalise(&mut recorded);
    assert_eq!(recorded, expected);
}

#[tokio::test]
async fn completed_and_failed_runs_are_recorded_as_returned() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    let subscriber = tracing::Dispatch::new(
        tracing_subscriber::registry().with(SqliteLayer::open(&db).unwrap()),
    );

    let ok = Flujo::new("recorded", pipeline(u32::MAX)).with_pipeline_version("7");
    let result = ok.run(1).with_subscriber(subscriber.clone()).await;
    assert!(result.is_completed(), "{:?}", result.error);
    assert_eq!(result.step("flaky").unwrap().attempts, 2);
    assert!(result.step("shrink").unwrap().children.len() > 1);
    assert!(result.step("round").unwrap().fallback_taken);
    assert!(result.output.is_some());
    check(&db, &result);

    let failing = Flujo::new("recorded", pipeline(3)).with_pipeline_version("7");
    let result = failing.run(1).with_subscriber(subscriber).await;
    assert!(!result.is_completed());
    assert!(
        result.error.as_deref().unwrap().contains("cannot square 3"),
        "{:?}",
        result.error
    );
    assert_eq!(result.output, None);
    check(&db, &result);
}

#[tokio::test]
async fn a_run_dropped_mid_way_is_recorded_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::open(&db).unwrap();
    let handle = layer.handle();
    let subscriber = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let started = std::sync::Arc::new(tokio::sync::Notify::new());
    let slow_started = started.clone();
    let slow = step("slow", move |x: u32, _: StepContext<()>| {
        let slow_started = slow_started.clone();
        async move {
            slow_started.notify_one();
            tokio::time::sleep(Duration::from_secs(600)).await;
            Ok(x)
        }
    });
    let fast = step("fast", |x: u32, _: StepContext<()>| async move { Ok(x) });
    let flujo = Flujo::new("dropped", Pipeline::new(fast).then(slow));
    // drop the run as soon as its slow step has started (the deadline only bounds a failure)
    let cut_off = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::select! {
            _ = flujo.run(5).with_subscriber(subscriber) => false,
            () = started.notified() => true,
        }
    })
    .await;
    assert_eq!(
        cut_off,
        Ok(true),
        "the run was dropped mid-way, in its slow step"
    );
    handle.flush().await;

    let conn = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let (status, output): (String, Option<String>) = conn
        .query_row(
            "SELECT status, output_blob FROM runs WHERE pipeline_name = 'dropped'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(status, "cancelled");
    assert_eq!(output, None, "a cancelled run has no output");
    let mut stmt = conn
        .prepare("SELECT step_name, status, fallback_taken FROM steps ORDER BY step_run_id")
        .unwrap();
    let steps: Vec<(String, String, Option<bool>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    // a cancelled step records no `fallback_taken`
    assert_eq!(
        steps,
        [
            ("fast".to_owned(), "completed".to_owned(), Some(false)),
            ("slow".to_owned(), "cancelled".to_owned(), None)
        ]
    );
}
