//! The server restarted in the middle of a burst: the writer reconnects, rows refused meanwhile
//! are written again (within the retry window) or held in the outage buffer, and every run of
//! the burst is there at the end, with nothing counted as lost. In a test binary of its own:
//! it restarts the binary's server.

mod support;

use std::sync::mpsc;

use flujo_test_postgres::TestServer;
use flujo_trace_postgres::PostgresLayer;
use support::*;
use tracing_subscriber::prelude::*;

const RUNS: u32 = 400;

#[test]
fn a_restart_mid_burst_loses_nothing() {
    let server = TestServer::get();
    let uri = server.create_database("restart");
    let layer = PostgresLayer::open(&uri).unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let (progress, runs_done) = mpsc::channel();
    let (resume, resumed) = mpsc::channel::<()>();
    let burst = {
        let handle = handle.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let mut pending_seen = 0;
            runtime.block_on(async {
                for n in 0..RUNS {
                    let result = run_once(&dispatch, &handle, n).await;
                    assert_eq!(result.output, Some((n + 1) * 2));
                    if n == RUNS / 4 {
                        // the restart begins now; keep running through it
                        progress.send(()).unwrap();
                    }
                    if n == RUNS / 2 {
                        // wait until the server is back, so the second half writes to it again
                        resumed.recv().unwrap();
                    }
                }
                let flushed = handle.flush().await;
                pending_seen += flushed.rows_pending;
                assert_eq!(flushed.rows_pending, 0, "nothing left in the outage buffer");
            });
            pending_seen
        })
    };
    runs_done.recv().unwrap();
    server.restart();
    resume.send(()).unwrap();
    burst.join().unwrap();
    assert_eq!(handle.rows_not_recorded(), 0, "nothing counted as lost");
    let db = uri.rsplit('/').next().unwrap();
    assert_eq!(
        server.psql(
            db,
            "SELECT count(*) || '/' || coalesce(sum(n_steps), 0) FROM runs WHERE status = 'completed'"
        ),
        format!("{RUNS}/{}", RUNS * 3)
    );
    assert_eq!(
        server.psql(db, "SELECT count(*) FROM steps WHERE status = 'completed'"),
        (RUNS * 3).to_string()
    );
}
