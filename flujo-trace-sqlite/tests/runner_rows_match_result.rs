//! With the real runner: when `run().await` returns (the observer waits on the barrier, as the
//! facade does), the database holds the run and every step execution exactly as the
//! `PipelineResult` reports them, nested steps under their parent.

mod layer_support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use flujo_runner::{
    format_timestamp, loop_until, map_over, parallel, step, Flujo, Pipeline, PipelineResult,
    RunObserver, RunStatus, StepContext, StepError, StepResult, Usage,
};
use flujo_trace_sqlite::{SqliteHandle, SqliteLayer, SqliteReader, StepRecord};
use layer_support::reader;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::prelude::*;

/// What the facade does: the run returns once its rows are committed.
struct Barrier(SqliteHandle);

impl RunObserver for Barrier {
    fn after_run<'a>(&'a self, _run_id: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        let flush = self.0.flush();
        Box::pin(async move {
            flush.await;
        })
    }
}

#[derive(Debug, Default, serde::Serialize)]
struct Ctx {
    drafts: u32,
}

fn pipeline() -> Pipeline<String, String, Ctx> {
    let classify = step(
        "classify",
        |ticket: String, cx: StepContext<Ctx>| async move {
            cx.add_usage(Usage {
                tokens: 120,
                cost_usd: 0.0004,
            });
            Ok(if ticket.contains("invoice") {
                "billing"
            } else {
                "general"
            }
            .to_owned())
        },
    );
    let flaky = step("call_model", |_: String, cx: StepContext<Ctx>| async move {
        cx.add_usage(Usage {
            tokens: 5,
            cost_usd: 0.01,
        });
        Err::<String, _>(StepError::new("model overloaded"))
    })
    .max_retries(1)
    .fallback(step(
        "template",
        |category: String, _: StepContext<Ctx>| async move { Ok(format!("{category} template")) },
    ));
    let draft = step("draft", |text: String, cx: StepContext<Ctx>| async move {
        let n = cx.update(|c| {
            c.drafts += 1;
            c.drafts
        })?;
        Ok(format!("{text} draft {n}"))
    });
    let refine = loop_until("refine", draft, |_: &String, c: &Ctx| c.drafts >= 2).max_iterations(5);
    let fan_out = parallel("fan_out")
        .branch(step("upper", |s: String, _: StepContext<Ctx>| async move {
            Ok(s.to_uppercase())
        }))
        .branch(step("len", |s: String, _: StepContext<Ctx>| async move {
            Ok(s.len().to_string())
        }))
        .combine(|parts: Vec<String>| parts.join(" | "));
    let words = step("split", |s: String, _: StepContext<Ctx>| async move {
        Ok(s.split(' ').map(str::to_owned).collect::<Vec<_>>())
    });
    let each = map_over(
        "each_word",
        step("word", |w: String, _: StepContext<Ctx>| async move {
            Ok(w.len())
        }),
        2,
    );
    let join = step("join", |lens: Vec<usize>, _: StepContext<Ctx>| async move {
        Ok(lens
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(","))
    });
    Pipeline::new(classify)
        .then(flaky)
        .then(refine)
        .then(fan_out)
        .then(words)
        .then(each)
        .then(join)
}

/// Every execution of the result, depth first, with its parent's step_run_id.
fn flatten<'a>(
    steps: &'a [StepResult],
    parent: Option<&'a str>,
    out: &mut Vec<(Option<&'a str>, &'a StepResult)>,
) {
    for step in steps {
        out.push((parent, step));
        flatten(&step.children, Some(&step.step_run_id), out);
    }
}

fn json(text: Option<&str>) -> Option<serde_json::Value> {
    text.map(|t| serde_json::from_str(t).unwrap())
}

fn check_rows_match(path: &std::path::Path, result: &PipelineResult<String, Ctx>) {
    let reader = SqliteReader::open(path).unwrap();
    let run = reader
        .get_run_details(&result.run_id)
        .unwrap()
        .expect("the run is committed");
    assert_eq!(run.pipeline_name, result.pipeline_name);
    assert_eq!(run.pipeline_version, result.pipeline_version);
    assert_eq!(run.status, result.status.as_str());
    assert_eq!(run.start_time, format_timestamp(result.start_time));
    assert_eq!(run.end_time, Some(format_timestamp(result.end_time)));
    assert_eq!(run.total_tokens, Some(result.total_tokens as i64));
    assert!((run.total_cost.unwrap() - result.total_cost_usd).abs() < 1e-12);
    assert_eq!(run.error_blob, result.error);
    assert_eq!(
        json(run.final_context_blob.as_deref()),
        Some(serde_json::to_value(&result.final_context).unwrap())
    );
    assert_eq!(
        json(run.input_blob.as_deref()),
        Some(serde_json::json!("my invoice is wrong"))
    );
    // the final output only for a completed run
    assert_eq!(
        json(run.output_blob.as_deref()),
        result
            .output
            .as_ref()
            .map(|output| serde_json::to_value(output).unwrap())
    );

    let mut expected = Vec::new();
    flatten(&result.step_history, None, &mut expected);
    let rows: Vec<StepRecord> = reader.list_run_steps(&result.run_id).unwrap();
    assert_eq!(run.n_steps, Some(expected.len() as i64));
    assert_eq!(rows.len(), expected.len());
    for (parent, step) in expected {
        let row = rows
            .iter()
            .find(|r| r.step_run_id == step.step_run_id)
            .unwrap_or_else(|| panic!("no row for step {}", step.name));
        assert_eq!(row.run_id, result.run_id);
        assert_eq!(row.parent_step_run_id.as_deref(), parent, "{}", step.name);
        assert_eq!(row.step_name, step.name);
        assert_eq!(row.step_index, step.index as i64, "{}", step.name);
        assert_eq!(row.step_kind.as_deref(), Some(step.kind.as_str()));
        assert_eq!(row.status, step.status.as_str(), "{}", step.name);
        assert_eq!(
            row.attempts,
            Some(i64::from(step.attempts)),
            "{}",
            step.name
        );
        assert_eq!(row.tokens, Some(step.tokens as i64), "{}", step.name);
        assert!(
            (row.cost.unwrap() - step.cost_usd).abs() < 1e-12,
            "{}",
            step.name
        );
        assert_eq!(
            json(row.input_blob.as_deref()),
            Some(step.input.clone()),
            "{}",
            step.name
        );
        assert_eq!(
            json(row.output_blob.as_deref()),
            step.output,
            "{}",
            step.name
        );
        assert_eq!(row.error_blob, step.error, "{}", step.name);
        assert_eq!(
            row.fallback_taken,
            Some(step.fallback_taken),
            "{}",
            step.name
        );
        assert_eq!(
            row.duration_ms,
            Some(step.duration.as_millis() as i64),
            "{}",
            step.name
        );
        assert!(row.end_time.is_some());
    }
}

#[tokio::test]
async fn a_run_is_committed_when_it_returns_and_matches_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    // only the barrier can commit within this test
    let layer = SqliteLayer::builder()
        .with_flush_interval(Duration::from_secs(3600))
        .open(&path)
        .unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let flujo = Flujo::new("triage", pipeline())
        .with_pipeline_version("2")
        .with_observer(Arc::new(Barrier(handle.clone())));

    let result = flujo
        .run("my invoice is wrong".to_owned())
        .with_subscriber(dispatch.clone())
        .await;

    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.output.as_deref(), Some("7,8,5,1,5,1,1,2"));
    check_rows_match(&path, &result);
    assert!(result.step("template").is_some());
    assert!(result.step("call_model").unwrap().fallback_taken);
    let reader = SqliteReader::open(&path).unwrap();
    let run = reader.get_run_details(&result.run_id).unwrap().unwrap();
    assert_eq!(run.output_blob.as_deref(), Some(r#""7,8,5,1,5,1,1,2""#));
    let steps = reader.list_run_steps(&result.run_id).unwrap();
    let taken: Vec<&str> = steps
        .iter()
        .filter(|step| step.fallback_taken == Some(true))
        .map(|step| step.step_name.as_str())
        .collect();
    assert_eq!(taken, ["call_model"]);
    assert_eq!(handle.rows_not_recorded(), 0);
}

#[tokio::test]
async fn a_failed_run_is_recorded_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::builder()
        .with_flush_interval(Duration::from_secs(3600))
        .open(&path)
        .unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let failing = Pipeline::new(step("fetch", |s: String, _: StepContext<Ctx>| async move {
        Ok(s)
    }))
    .then(step("parse", |_: String, _: StepContext<Ctx>| async move {
        Err::<String, _>(StepError::new("unexpected token"))
    }));
    let flujo = Flujo::new("triage", failing).with_observer(Arc::new(Barrier(handle)));

    let result = flujo
        .run("my invoice is wrong".to_owned())
        .with_subscriber(dispatch)
        .await;

    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.output, None);
    check_rows_match(&path, &result);
    let conn = reader(&path);
    let error: String = conn
        .query_row(
            "SELECT error_blob FROM steps WHERE step_name = 'parse'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(error.contains("unexpected token"), "{error}");
}

#[tokio::test]
async fn a_locked_database_leaves_the_result_intact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    // only the barriers write: each run is one batch
    let layer = SqliteLayer::builder()
        .with_busy_timeout(Duration::from_millis(20))
        .with_flush_interval(Duration::from_secs(3600))
        .with_retry_window(Duration::from_millis(100))
        .open(&path)
        .unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let flujo = Flujo::new("triage", pipeline()).with_observer(Arc::new(Barrier(handle.clone())));

    let mut other = rusqlite::Connection::open(&path).unwrap();
    let lock = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    // both runs' rows are refused for the retry window at their barriers, then counted
    let mut results = Vec::new();
    for _ in 0..2 {
        let result = flujo
            .run("my invoice is wrong".to_owned())
            .with_subscriber(dispatch.clone())
            .await;
        assert_eq!(result.status, RunStatus::Completed);
        assert_eq!(result.output.as_deref(), Some("7,8,5,1,5,1,1,2"));
        results.push(result);
    }
    let lost = handle.rows_not_recorded();
    assert!(lost > 0);
    lock.rollback().unwrap();
    drop(other);

    // writing works again: the next run is recorded whole, the lost ones stay lost
    let result = flujo
        .run("my invoice is wrong".to_owned())
        .with_subscriber(dispatch)
        .await;
    check_rows_match(&path, &result);
    let reader = SqliteReader::open(&path).unwrap();
    for lost_run in &results {
        assert_eq!(reader.get_run_details(&lost_run.run_id).unwrap(), None);
    }
    assert_eq!(handle.rows_not_recorded(), lost);
}
