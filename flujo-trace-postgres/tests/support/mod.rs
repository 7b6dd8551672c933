//! Test support shared by the PostgreSQL store's tests: the barrier observer, a small pipeline,
//! and running this test binary again as a child process (another "host" of the fleet).
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::Arc;

use flujo_runner::{step, Flujo, Pipeline, PipelineResult, RunObserver, StepContext, Usage};
use flujo_trace_postgres::{PostgresHandle, WriterProcess};

/// The URI of the database a child process writes to.
pub const URI_ENV: &str = "FLUJO_PG_TEST_URI";
/// The host name a child process writes as.
pub const HOST_ENV: &str = "FLUJO_PG_TEST_HOST";

/// What the facade does: the run returns once its rows are committed.
pub struct Barrier(pub PostgresHandle);

impl RunObserver for Barrier {
    fn after_run<'a>(&'a self, _run_id: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        let flush = self.0.flush();
        Box::pin(async move {
            flush.await;
        })
    }
}

/// Three steps: two plain ones and a retry-free third, with usage.
pub fn small_pipeline() -> Pipeline<u32, u32, ()> {
    let first = step("parse", |n: u32, cx: StepContext<()>| async move {
        cx.add_usage(Usage {
            tokens: 10,
            cost_usd: 0.001,
        });
        Ok(n + 1)
    });
    let second = step(
        "enrich",
        |n: u32, _: StepContext<()>| async move { Ok(n * 2) },
    );
    let third = step("store", |n: u32, _: StepContext<()>| async move { Ok(n) });
    Pipeline::new(first).then(second).then(third)
}

/// Runs `small_pipeline` once with the barrier on `handle`, in `dispatch`.
pub async fn run_once(
    dispatch: &tracing::Dispatch,
    handle: &PostgresHandle,
    n: u32,
) -> PipelineResult<u32, ()> {
    use tracing::instrument::WithSubscriber as _;
    Flujo::new("fleet", small_pipeline())
        .with_observer(Arc::new(Barrier(handle.clone())))
        .run(n)
        .with_subscriber(dispatch.clone())
        .await
}

/// Runs `small_pipeline` once on `n` through `layer` alone, on a runtime of its own (not on a
/// tokio worker: the `postgres` client must not be), once its rows are committed; returns the
/// result and the layer's handle.
pub fn run_once_with(
    layer: flujo_trace_postgres::PostgresLayer,
    n: u32,
) -> (PipelineResult<u32, ()>, PostgresHandle) {
    use tracing_subscriber::layer::SubscriberExt as _;
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(run_once(&dispatch, &handle, n));
    (result, handle)
}

/// This process as a writer of `host`: its real pid, on another host's name.
pub fn identity_on(host: &str) -> WriterProcess {
    WriterProcess {
        host: host.to_owned(),
        pid: i64::from(std::process::id()),
        pid_start: 1,
        pid_ns: None,
    }
}

/// Starts this test binary again running only the ignored test `name`, with `env` set; its
/// stdout and stderr are piped.
pub fn spawn_child(name: &str, env: &[(&str, &str)]) -> std::process::Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

/// Waits for a child and panics with its output when it failed; returns its stderr.
pub fn expect_success(child: std::process::Child, what: &str) -> String {
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stderr.into_owned()
}

/// The value of `name` in a child process (set by its parent).
pub fn child_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent test"))
}
