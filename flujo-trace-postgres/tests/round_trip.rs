//! With the real runner and a real server: when `run().await` returns (the observer waits on
//! the barrier, as the facade does), PostgreSQL holds the run and every step as the
//! `PipelineResult` reports them, and hostile strings (NUL, escapes, a 1 MiB line) come back
//! from the reader byte for byte.

use std::future::Future;
use std::pin::Pin;

use flujo_runner::{
    parallel, step, Flujo, Pipeline, RunObserver, RunStatus, StepContext, StepError, Usage,
};
use flujo_test_postgres::TestServer;
use flujo_trace_postgres::{PostgresHandle, PostgresLayer, PostgresReader, PostgresUri, RunReader};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::prelude::*;

/// What the facade does: the run returns once its rows are committed.
struct Barrier(PostgresHandle);

impl RunObserver for Barrier {
    fn after_run<'a>(&'a self, _run_id: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        let flush = self.0.flush();
        Box::pin(async move {
            flush.await;
        })
    }
}

fn pipeline(fail: bool) -> Pipeline<String, String, ()> {
    let classify = step(
        "classify",
        |ticket: String, cx: StepContext<()>| async move {
            cx.add_usage(Usage {
                tokens: 120,
                cost_usd: 0.0004,
            });
            Ok(format!("{ticket} / classified"))
        },
    );
    let fan_out = parallel("fan_out")
        .branch(step("upper", |s: String, _: StepContext<()>| async move {
            Ok(s.to_uppercase())
        }))
        .branch(step("len", |s: String, _: StepContext<()>| async move {
            Ok(s.len().to_string())
        }));
    let last = step(
        "reply",
        move |parts: Vec<String>, _: StepContext<()>| async move {
            if fail {
                Err(StepError::new("bad\0error \\ \"quoted\" \u{E000} ünïcode"))
            } else {
                Ok(parts.join("|"))
            }
        },
    );
    Pipeline::new(classify).then(fan_out).then(last)
}

/// Every step execution of a result, children included.
fn all_steps(steps: &[flujo_runner::StepResult]) -> Vec<&flujo_runner::StepResult> {
    let mut all = Vec::new();
    for step in steps {
        all.push(step);
        all.extend(all_steps(&step.children));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_match_the_result_and_hostile_strings_round_trip() {
    let server = TestServer::get();
    let uri = server.create_database("round_trip");
    let layer = PostgresLayer::builder()
        .with_payload_cap(usize::MAX)
        .open(&uri)
        .expect("open");
    let handle = layer.handle();
    let subscriber = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));

    let long_line = "x".repeat(1024 * 1024);
    let hostile = format!("nul\0in input, \\backslash, \"quotes\", \u{E000}0, {long_line}");
    let ok = Flujo::new("triage", pipeline(false))
        .with_pipeline_version("v\0two")
        .with_observer(std::sync::Arc::new(Barrier(handle.clone())))
        .run(hostile.clone())
        .with_subscriber(subscriber.clone())
        .await;
    assert_eq!(ok.status, RunStatus::Completed);
    let failed = Flujo::new("triage", pipeline(true))
        .with_observer(std::sync::Arc::new(Barrier(handle.clone())))
        .run("short".to_owned())
        .with_subscriber(subscriber)
        .await;
    assert_eq!(failed.status, RunStatus::Failed);
    assert_eq!(handle.rows_not_recorded(), 0);

    // the synchronous client runs on a thread of its own, never on the runtime's workers
    std::thread::spawn(move || check_rows(&uri, &ok, &failed, &hostile))
        .join()
        .unwrap();
}

fn check_rows(
    uri: &str,
    ok: &flujo_runner::PipelineResult<String, ()>,
    failed: &flujo_runner::PipelineResult<String, ()>,
    hostile: &str,
) {
    let reader = PostgresReader::open(&PostgresUri::parse(uri).unwrap()).expect("reader");
    let run = reader
        .find_run(&ok.run_id)
        .unwrap()
        .expect("the run is there");
    assert_eq!(run.status, "completed");
    assert_eq!(run.pipeline_name, "triage");
    assert_eq!(run.pipeline_version, "v\0two");
    let executed = all_steps(&ok.step_history);
    assert_eq!(run.n_steps, Some(executed.len() as i64));
    let input: String = serde_json::from_str(run.input_blob.as_deref().unwrap()).unwrap();
    assert_eq!(
        input, hostile,
        "the 1 MiB input with NUL and escapes comes back whole"
    );
    assert_eq!(run.total_tokens, Some(120));

    let mut steps = Vec::new();
    reader
        .for_each_run_step::<flujo_trace_postgres::Error>(&ok.run_id, |step| {
            steps.push(step);
            Ok(())
        })
        .unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s.step_name.as_str()).collect();
    let expected: Vec<&str> = executed.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), expected.len(), "{names:?} vs {expected:?}");
    assert_eq!(names[0], "classify", "execution order: {names:?}");
    let fan_out = steps.iter().find(|s| s.step_name == "fan_out").unwrap();
    for branch in ["upper", "len"] {
        let step = steps.iter().find(|s| s.step_name == branch).unwrap();
        assert_eq!(
            step.parent_step_run_id.as_deref(),
            Some(fan_out.step_run_id.as_str())
        );
        assert_eq!(step.status, "completed");
    }

    let failed_run = reader.find_run(&failed.run_id).unwrap().unwrap();
    assert_eq!(failed_run.status, "failed");
    let error = failed_run.error_blob.unwrap();
    assert!(
        error.contains("bad\0error \\ \"quoted\" \u{E000} ünïcode"),
        "the error keeps its NUL and escapes: {error:?}"
    );
    let latest = reader.latest_run().unwrap().unwrap();
    assert_eq!(latest.run_id, failed.run_id);
    let prefix = &ok.run_id[..13];
    let found = reader.find_runs_by_prefix(prefix, 10).unwrap();
    assert!(found.iter().any(|run| run.run_id == ok.run_id));
}
