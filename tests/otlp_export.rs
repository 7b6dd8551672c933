//! OpenTelemetry export with one setting, checked on real OTLP/HTTP requests: a receiver on
//! 127.0.0.1 inside the test decodes what the exporter posts (`opentelemetry-proto`). The
//! quickstart pipeline arrives as one trace per run, named for the pipeline and its steps, with
//! the parallel branch, the retried and the failed step as recorded; a 10 MB output arrives cut;
//! the trace id `flujo lens show` prints is the one the receiver got. A collector that refuses
//! connections changes nothing in the results and rows, costs one warning, and one that never
//! answers holds the exit no longer than `flujo::EXIT_FLUSH_BOUND`. Also: a run inside the
//! application's span is its child; nothing the exporter does reaches another layer; an https://
//! collector is verified; `[otlp]` in `flujo.toml` sets the endpoint and turns payloads off; a
//! PostgreSQL store keeps the trace id too.
//!
//! Each case runs in a child process (this test binary again, with `FLUJO_TEST_CASE` set),
//! because export is wired into the process's global subscriber.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flujo::{step, Flujo, Pipeline, StepContext};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/quickstart.rs"]
mod quickstart;

/// Runs in a child only.
#[test]
#[ignore = "child process of the other tests of this file, which run it with --ignored --exact"]
fn case_process_entry() {
    let case = std::env::var("FLUJO_TEST_CASE").expect("FLUJO_TEST_CASE is set by the parent test");
    match case.as_str() {
        "quickstart" => quickstart::main(),
        "big-output" => {
            let big = step("big", |n: usize, _: StepContext<()>| async move {
                Ok("x".repeat(n))
            });
            let result = Flujo::new("big", Pipeline::new(big)).run_blocking(10_000_000);
            println!("run {} {}", result.run_id, result.status.as_str());
        }
        "spy" => spy_on_every_layer_event(),
        other => panic!("unknown case {other}"),
    }
    println!("pipeline done");
}

/// Which targets a layer beside `flujo::layer()` (with export on) saw spans and events of.
static SEEN: Mutex<std::collections::BTreeSet<String>> =
    Mutex::new(std::collections::BTreeSet::new());

struct Spy;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spy {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        SEEN.lock()
            .unwrap()
            .insert(attrs.metadata().target().to_owned());
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        SEEN.lock()
            .unwrap()
            .insert(event.metadata().target().to_owned());
    }
}

/// Runs pipelines under `flujo::layer()` and a spy layer with no filter, waits until the
/// exporter has posted every span (the parent sets a short batch delay), and prints what the spy
/// saw.
fn spy_on_every_layer_event() {
    use tracing_subscriber::prelude::*;
    tracing_subscriber::registry()
        .with(flujo::layer().expect("the configured layers"))
        .with(Spy)
        .init();
    let inc = step("inc", |x: u32, _: StepContext<()>| async move { Ok(x + 1) });
    let flujo = Flujo::new("spied", Pipeline::new(inc));
    for i in 0..4 {
        assert!(flujo.run_blocking(i).is_completed());
    }
    // a run inside the application's own span is its child, in the application's trace
    let request = tracing::info_span!("request", route = "/triage");
    let _entered = request.enter();
    assert!(flujo.run_blocking(4).is_completed());
    drop(_entered);
    drop(request);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counts = flujo::otlp_counts();
        if counts.ended == 11 && counts.exported == 11 {
            break;
        }
        assert!(Instant::now() < deadline, "not exported: {counts:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let seen: Vec<String> = SEEN.lock().unwrap().iter().cloned().collect();
    println!("targets seen: {}", seen.join(","));
}

/// A child running `case` in `dir`, with these extra environment variables (and no `OTEL_*`
/// of the parent's).
fn child(case: &str, dir: &Path, env: &[(&str, String)]) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["case_process_entry", "--exact", "--ignored", "--nocapture"])
        .current_dir(dir)
        .env("FLUJO_TEST_CASE", case)
        .env("FLUJO_STATE_URI", dir.join("flujo_ops.db"));
    for (name, _) in std::env::vars() {
        if name.starts_with("OTEL_") {
            command.env_remove(name);
        }
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

fn run_child(case: &str, dir: &Path, env: &[(&str, String)]) -> (String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = child(case, dir, env).output().unwrap();
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    assert!(status.success(), "{case}: {stdout}\n{stderr}");
    (stdout, stderr)
}

/// What the receiver got: each request's headers and decoded body.
#[derive(Default)]
struct Received {
    requests: Vec<(String, HashMap<String, String>, ExportTraceServiceRequest)>,
}

/// An OTLP/HTTP receiver on 127.0.0.1: answers every POST with 200 and keeps what it decoded.
struct Receiver {
    server: Arc<tiny_http::Server>,
    received: Arc<Mutex<Received>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let received = Arc::new(Mutex::new(Received::default()));
        let thread = {
            let server = server.clone();
            let received = received.clone();
            std::thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    let mut body = Vec::new();
                    request.as_reader().read_to_end(&mut body).unwrap();
                    let headers = request
                        .headers()
                        .iter()
                        .map(|h| {
                            (
                                h.field.as_str().as_str().to_ascii_lowercase(),
                                h.value.as_str().to_owned(),
                            )
                        })
                        .collect();
                    let decoded = ExportTraceServiceRequest::decode(body.as_slice())
                        .expect("an OTLP protobuf ExportTraceServiceRequest");
                    received.lock().unwrap().requests.push((
                        request.url().to_owned(),
                        headers,
                        decoded,
                    ));
                    request
                        .respond(
                            tiny_http::Response::empty(200).with_header(
                                "Content-Type: application/x-protobuf"
                                    .parse::<tiny_http::Header>()
                                    .unwrap(),
                            ),
                        )
                        .unwrap();
                }
            })
        };
        Receiver {
            server,
            received,
            thread: Some(thread),
        }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.server.server_addr().to_ip().unwrap())
    }

    /// Every request received so far (the child has exited: its exit flushed them).
    fn stop(mut self) -> Received {
        self.server.unblock();
        self.thread.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text(span: &Span, key: &str) -> String {
    match attr(&span.attributes, key) {
        Some(Value::StringValue(s)) => s.clone(),
        other => panic!("{}: {key} is {other:?}", span.name),
    }
}

fn int(span: &Span, key: &str) -> i64 {
    match attr(&span.attributes, key) {
        Some(Value::IntValue(i)) => *i,
        other => panic!("{}: {key} is {other:?}", span.name),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn spans_of(received: &Received) -> Vec<Span> {
    received
        .requests
        .iter()
        .flat_map(|(_, _, request)| &request.resource_spans)
        .flat_map(|resource| &resource.scope_spans)
        .flat_map(|scope| scope.spans.clone())
        .collect()
}

fn lens(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_flujo"))
        .arg("lens")
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The run ids the quickstart printed, in order, with their status.
fn printed_runs(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter(|line| line.starts_with("T-"))
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            (words[2].to_owned(), words[3].to_owned())
        })
        .collect()
}

#[test]
fn the_quickstart_arrives_as_one_trace_per_run_with_names_attributes_and_the_lens_trace_id() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr) = run_child(
        "quickstart",
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url()),
            ("OTEL_SERVICE_NAME", "triage-worker".to_owned()),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=test".to_owned(),
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-team=ops".to_owned()),
        ],
    );
    let received = receiver.stop();
    assert!(
        !stderr.contains("flujo: warning"),
        "an export that works says nothing: {stderr}"
    );
    let runs = printed_runs(&stdout);
    assert_eq!(runs.len(), 4, "{stdout}");

    // the requests: the traces path, protobuf, the configured header, the resource
    assert!(!received.requests.is_empty());
    for (url, headers, request) in &received.requests {
        assert_eq!(url, "/v1/traces");
        assert_eq!(headers["content-type"], "application/x-protobuf");
        assert_eq!(headers["x-team"], "ops");
        for resource in &request.resource_spans {
            let attributes = &resource.resource.as_ref().unwrap().attributes;
            assert_eq!(
                attr(attributes, "service.name"),
                Some(&Value::StringValue("triage-worker".into()))
            );
            assert_eq!(
                attr(attributes, "deployment.environment"),
                Some(&Value::StringValue("test".into()))
            );
        }
    }

    let spans = spans_of(&received);
    let by_id: HashMap<&[u8], &Span> = spans.iter().map(|s| (s.span_id.as_slice(), s)).collect();
    let roots: Vec<&Span> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .collect();
    assert_eq!(roots.len(), 4, "one root span per run");
    for (run_id, status) in &runs {
        let root = roots
            .iter()
            .find(|s| text(s, "flujo.run.id") == *run_id)
            .unwrap_or_else(|| panic!("no span for run {run_id}"));
        assert_eq!(root.name, "support-triage");
        assert_eq!(text(root, "flujo.pipeline.name"), "support-triage");
        assert_eq!(text(root, "flujo.pipeline.version"), "1.0");
        assert_eq!(&text(root, "flujo.status"), status);
        assert!(int(root, "flujo.usage.tokens") > 0);
        assert!(matches!(
            attr(&root.attributes, "flujo.usage.cost_usd"),
            Some(Value::DoubleValue(cost)) if *cost > 0.0
        ));
        for raw in [
            "run_id",
            "pipeline_name",
            "status",
            "start_time",
            "trace_id",
            "busy_ns",
        ] {
            assert!(
                attr(&root.attributes, raw).is_none(),
                "{raw} is not exported as is"
            );
        }
        assert!(text(root, "flujo.input").contains("customer"));

        // the run's steps: children of the run span (or of their control-flow step), in the
        // run's trace
        let steps: Vec<&Span> = spans
            .iter()
            .filter(|s| s.trace_id == root.trace_id && s.span_id != root.span_id)
            .collect();
        let named = |name: &str| -> &Span {
            steps
                .iter()
                .find(|s| s.name == name)
                .unwrap_or_else(|| panic!("run {run_id}: no step span {name}"))
        };
        for step in &steps {
            assert!(
                by_id.contains_key(step.parent_span_id.as_slice()),
                "{}",
                step.name
            );
            assert_eq!(text(step, "flujo.run.id"), *run_id);
            assert_eq!(text(step, "flujo.step.name"), step.name);
            let _ = int(step, "flujo.step.index");
            let _ = text(step, "flujo.step.kind");
            let _ = int(step, "flujo.duration_ms");
        }
        assert_eq!(named("classify").parent_span_id, root.span_id);
        let retrieve = named("retrieve");
        assert_eq!(text(retrieve, "flujo.step.kind"), "parallel");
        let (kb, history) = (named("search_kb"), named("customer_history"));
        assert_eq!(kb.parent_span_id, retrieve.span_id);
        assert_eq!(history.parent_span_id, retrieve.span_id);
        assert!(
            kb.start_time_unix_nano < history.end_time_unix_nano
                && history.start_time_unix_nano < kb.end_time_unix_nano,
            "the parallel branches overlap"
        );

        // the lens prints the trace id the receiver got
        let shown: serde_json::Value =
            serde_json::from_str(&lens(dir.path(), &["show", run_id, "-o", "json"])).unwrap();
        let run_json = if shown.get("run_id").is_some() {
            &shown
        } else {
            &shown["run"]
        };
        assert_eq!(
            run_json["trace_id"].as_str(),
            Some(hex(&root.trace_id).as_str()),
            "{shown}"
        );
        let shown_text = lens(dir.path(), &["show", run_id]);
        assert!(shown_text.contains(&hex(&root.trace_id)), "{shown_text}");

        match status.as_str() {
            "completed" => {
                assert_eq!(root.status.as_ref().unwrap().code, StatusCode::Ok as i32);
                assert!(text(root, "flujo.output").contains("reply"));
            }
            "failed" => {
                let run_status = root.status.as_ref().unwrap();
                assert_eq!(run_status.code, StatusCode::Error as i32);
                assert!(
                    run_status.message.contains("no customer record"),
                    "{run_status:?}"
                );
                let failed = history;
                let step_status = failed.status.as_ref().unwrap();
                assert_eq!(step_status.code, StatusCode::Error as i32);
                assert!(step_status
                    .message
                    .contains("no customer record for kim@unknown.test"));
                let exception = failed
                    .events
                    .iter()
                    .find(|e| e.name == "exception")
                    .expect("an exception event on the failed step");
                assert!(matches!(
                    attr(&exception.attributes, "exception.message"),
                    Some(Value::StringValue(m)) if m.contains("no customer record")
                ));
                assert!(attr(&failed.attributes, "flujo.output").is_none());
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // the retried classifier (T-1002) made two attempts
    let retried: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "classify" && int(s, "flujo.step.attempts") == 2)
        .collect();
    assert_eq!(retried.len(), 1);
    assert!(text(retried[0], "flujo.error").contains("503"));
}

#[test]
fn a_ten_megabyte_output_arrives_cut_to_the_cap() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let (stdout, _) = run_child(
        "big-output",
        dir.path(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url())],
    );
    let received = receiver.stop();
    assert!(stdout.contains(" completed"), "{stdout}");
    let spans = spans_of(&received);
    let total: usize = received
        .requests
        .iter()
        .map(|(_, _, request)| request.encoded_len())
        .sum();
    assert!(total < 64 * 1024, "{total} bytes posted for a 10 MB output");
    for span in &spans {
        let output = text(span, "flujo.output");
        assert!(
            output.len() < flujo::DEFAULT_OTLP_PAYLOAD_CAP + 64,
            "{}: {} bytes",
            span.name,
            output.len()
        );
        assert!(output.starts_with("\"xxxx"), "{output:.40}");
        assert!(
            output.ends_with(&format!(" of {} bytes]", 10_000_002)),
            "{}",
            &output[output.len() - 60..]
        );
    }
    assert_eq!(spans.len(), 2, "the run and its step");
}

/// The quickstart's printed results without run ids, and the rows it recorded without ids and
/// times.
fn results_and_rows(stdout: &str, db: &Path) -> (Vec<String>, Vec<String>) {
    let results = stdout
        .lines()
        // libtest's own lines say how long it took
        .filter(|line| !line.starts_with("test result:"))
        .map(|line| {
            line.split_whitespace()
                .filter(|word| word.len() != 36)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut rows: Vec<String> = Vec::new();
    let mut runs = conn
        .prepare(
            "SELECT pipeline_name, status, n_steps, total_tokens, input_blob, error_blob, \
             trace_id IS NOT NULL FROM runs ORDER BY run_id",
        )
        .unwrap();
    rows.extend(
        runs.query_map([], |r| {
            Ok(format!(
                "run {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
                // the trace id is the span's, exported or not
                if r.get::<_, bool>(6)? {
                    "traced"
                } else {
                    "not traced"
                },
            ))
        })
        .unwrap()
        .map(Result::unwrap),
    );
    let mut steps = conn
        .prepare(
            "SELECT step_name, step_index, step_kind, status, attempts, output_blob, error_blob \
             FROM steps ORDER BY run_id, rowid",
        )
        .unwrap();
    rows.extend(
        steps
            .query_map([], |r| {
                Ok(format!(
                    "step {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            })
            .unwrap()
            .map(Result::unwrap),
    );
    (results, rows)
}

#[test]
fn a_collector_that_refuses_connections_changes_nothing_but_one_warning() {
    // a port nothing listens on: bound, then closed
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);

    let plain = tempfile::tempdir().unwrap();
    let (plain_out, plain_err) = run_child("quickstart", plain.path(), &[]);
    assert!(!plain_err.contains("flujo:"), "{plain_err}");
    let refused = tempfile::tempdir().unwrap();
    let (refused_out, refused_err) = run_child(
        "quickstart",
        refused.path(),
        &[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )],
    );
    let (plain_results, plain_rows) =
        results_and_rows(&plain_out, &plain.path().join("flujo_ops.db"));
    let (refused_results, refused_rows) =
        results_and_rows(&refused_out, &refused.path().join("flujo_ops.db"));
    assert_eq!(refused_results, plain_results);
    let traced = |rows: &[String]| {
        rows.iter()
            .map(|row| row.replace(" \"traced\"", " \"not traced\""))
            .collect::<Vec<_>>()
    };
    assert_eq!(traced(&refused_rows), plain_rows, "the same rows");
    assert_eq!(plain_rows.len(), 4 + 34, "{plain_rows:#?}");
    let runs_traced = |rows: &[String]| rows.iter().filter(|r| r.ends_with(" \"traced\"")).count();
    assert_eq!(
        runs_traced(&plain_rows),
        0,
        "no OpenTelemetry layer, no trace id"
    );
    assert_eq!(runs_traced(&refused_rows), 4, "each run keeps its trace id");

    let warnings: Vec<&str> = refused_err
        .lines()
        .filter(|line| line.starts_with("flujo:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{refused_err}");
    assert!(
        warnings[0].contains("OpenTelemetry export")
            && warnings[0].contains(&format!("127.0.0.1:{port}"))
            && warnings[0].contains("spans not exported"),
        "{}",
        warnings[0]
    );
}

#[test]
fn a_collector_that_never_answers_holds_the_exit_no_longer_than_the_bound() {
    // accepts connections (the kernel's backlog) and never answers
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut process = child(
        "big-output",
        dir.path(),
        &[
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            // the exporter alone would wait this long for an answer
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "30000".to_owned()),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stdout = BufReader::new(process.stdout.take().unwrap());
    let mut done = None;
    for line in stdout.lines() {
        if line.unwrap() == "pipeline done" {
            done = Some(Instant::now());
        }
    }
    let status = process.wait().unwrap();
    let exited = done.expect("the pipeline finished").elapsed();
    let mut stderr = String::new();
    process
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stderr}");
    assert!(
        exited < flujo::EXIT_FLUSH_BOUND + Duration::from_secs(3),
        "exit took {exited:?} after the pipeline ended"
    );
    assert!(
        stderr.contains("still queued after 2 s at exit"),
        "{stderr}"
    );
    drop(silent);
}

#[test]
fn a_run_recorded_in_postgres_keeps_the_trace_id_the_collector_got() {
    let server = flujo_test_postgres::TestServer::get();
    let uri = server.create_database("otlp");
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr) = run_child(
        "big-output",
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url()),
            ("FLUJO_STATE_URI", uri.clone()),
        ],
    );
    let received = receiver.stop();
    assert!(!stderr.contains("flujo: warning"), "{stderr}");
    let run_id = stdout
        .lines()
        .find_map(|line| line.strip_prefix("run "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the child printed its run")
        .to_owned();
    let spans = spans_of(&received);
    let root = spans
        .iter()
        .find(|s| s.parent_span_id.is_empty())
        .expect("the run's span");
    assert_eq!(text(root, "flujo.run.id"), run_id);
    let shown: serde_json::Value = serde_json::from_str(&lens(
        dir.path(),
        &["show", &run_id, "-o", "json", "--state-uri", &uri],
    ))
    .unwrap();
    assert_eq!(
        shown["run"]["trace_id"].as_str(),
        Some(hex(&root.trace_id).as_str()),
        "{shown}"
    );
}

/// An OTLP/HTTPS receiver on 127.0.0.1 with a certificate for `localhost` issued by a CA made
/// here: its port, the CA's PEM file (in `dir`), another CA's, and what it received.
fn tls_receiver(
    dir: &Path,
) -> (
    u16,
    std::path::PathBuf,
    std::path::PathBuf,
    Arc<Mutex<Received>>,
) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let authority = |name: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    };
    let (ca, other_ca) = (authority("flujo test CA"), authority("another CA"));
    let key = KeyPair::generate().unwrap();
    let certificate = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let other_ca_file = dir.join("other-ca.pem");
    std::fs::write(&other_ca_file, other_ca.pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![certificate.der().clone()],
                rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
            )
            .unwrap(),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Received::default()));
    let keep = received.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let (config, received) = (config.clone(), keep.clone());
            std::thread::spawn(move || {
                let connection = rustls::ServerConnection::new(config).unwrap();
                let mut stream = BufReader::new(rustls::StreamOwned::new(connection, tcp.unwrap()));
                // HTTP/1.1 requests on one connection: headers, a Content-Length body, 200
                loop {
                    let mut headers = HashMap::new();
                    let mut request_line = String::new();
                    if stream.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut line = String::new();
                        if stream.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let line = line.trim_end();
                        if line.is_empty() {
                            break;
                        }
                        let (name, value) = line.split_once(':').unwrap();
                        headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
                    }
                    let length: usize = headers["content-length"].parse().unwrap();
                    let mut body = vec![0; length];
                    stream.read_exact(&mut body).unwrap();
                    let path = request_line.split_whitespace().nth(1).unwrap().to_owned();
                    let decoded = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
                    received
                        .lock()
                        .unwrap()
                        .requests
                        .push((path, headers, decoded));
                    let answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
                    std::io::Write::write_all(stream.get_mut(), answer).unwrap();
                    std::io::Write::flush(stream.get_mut()).unwrap();
                }
            });
        }
    });
    (port, ca_file, other_ca_file, received)
}

#[test]
fn an_https_collector_is_verified_against_the_systems_roots() {
    let certs = tempfile::tempdir().unwrap();
    let (port, ca, other_ca, received) = tls_receiver(certs.path());
    let endpoint = format!("https://localhost:{port}/v1/traces");

    // trusted (SSL_CERT_FILE replaces the system's roots, as for other rustls-native-certs users)
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr) = run_child(
        "big-output",
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint.clone()),
            ("SSL_CERT_FILE", ca.display().to_string()),
        ],
    );
    assert!(stdout.contains(" completed"), "{stdout}");
    assert!(!stderr.contains("flujo: warning"), "{stderr}");
    let spans = spans_of(&received.lock().unwrap());
    assert_eq!(spans.len(), 2, "the run and its step arrived over TLS");
    assert!(spans.iter().any(|s| s.name == "big"));

    // a certificate no trusted CA issued: not exported, one warning, the run recorded
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr) = run_child(
        "big-output",
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint),
            ("SSL_CERT_FILE", other_ca.display().to_string()),
        ],
    );
    assert!(stdout.contains(" completed"), "{stdout}");
    assert_eq!(
        spans_of(&received.lock().unwrap()).len(),
        2,
        "nothing more arrived"
    );
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.starts_with("flujo:")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("2 of 2 spans not exported"),
        "{}",
        warnings[0]
    );
}

#[test]
fn nothing_the_exporter_does_reaches_another_layer() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr) = run_child(
        "spy",
        dir.path(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.base_url()),
            ("OTEL_BSP_SCHEDULE_DELAY", "10".to_owned()),
        ],
    );
    let received = receiver.stop();
    let spans = spans_of(&received);
    assert_eq!(spans.len(), 11, "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|line| line == "targets seen: flujo,otlp_export"),
        "only flujo's spans and the test's own reached the spy layer: {stdout}\n{stderr}"
    );
    let request = spans
        .iter()
        .find(|s| s.name == "request")
        .expect("the application's span");
    assert!(request.parent_span_id.is_empty());
    let runs: Vec<&Span> = spans.iter().filter(|s| s.name == "spied").collect();
    assert_eq!(runs.len(), 5);
    let inside: Vec<&&Span> = runs
        .iter()
        .filter(|s| s.parent_span_id == request.span_id)
        .collect();
    assert_eq!(
        inside.len(),
        1,
        "the run inside the request span is its child"
    );
    assert_eq!(inside[0].trace_id, request.trace_id);
    assert_eq!(
        runs.iter().filter(|s| s.parent_span_id.is_empty()).count(),
        4,
        "the others are roots"
    );
}

#[test]
fn the_endpoint_and_the_payload_switch_can_come_from_flujo_toml() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flujo.toml"),
        format!(
            "[otlp]\nendpoint = \"{}\"\npayloads = false\n",
            receiver.base_url()
        ),
    )
    .unwrap();
    let (stdout, stderr) = run_child("big-output", dir.path(), &[]);
    let received = receiver.stop();
    assert!(stdout.contains(" completed"), "{stdout}");
    assert!(!stderr.contains("flujo: warning"), "{stderr}");
    let spans = spans_of(&received);
    assert_eq!(spans.len(), 2);
    for span in &spans {
        for payload in ["flujo.input", "flujo.output", "flujo.final_context"] {
            assert!(
                attr(&span.attributes, payload).is_none(),
                "{}: {payload}",
                span.name
            );
        }
        assert_eq!(text(span, "flujo.status"), "completed");
    }
}
