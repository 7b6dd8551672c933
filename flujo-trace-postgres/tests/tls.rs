//! TLS against a real server: this binary turns `ssl` on in its own test server (a CA and a
//! certificate for `localhost` and `127.0.0.1` made here with rcgen), then the writer and the
//! reader connect in every `sslmode`, the server's `pg_stat_ssl` says which connections are
//! encrypted, and a wrong host name, a wrong CA or an option flujo cannot honour is one clear
//! error. Every test of this binary shares the one server, with TLS on.

mod support;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use flujo_runner::RunStatus;
use flujo_test_postgres::TestServer;
use flujo_trace_postgres::{Error, PostgresLayer, PostgresReader, PostgresUri, RunReader};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tracing_subscriber::prelude::*;

/// The CA files the clients are given, in the server's own directory (removed with it).
struct Certificates {
    /// The CA that issued the server's certificate.
    ca: PathBuf,
    /// A CA that issued nothing the server shows.
    other_ca: PathBuf,
}

/// A store with one recorded run, for the tests that only connect and read.
struct Store {
    /// Its URI, without options.
    uri: String,
    /// The password in it, which no message may show.
    password: String,
    run_id: String,
}

/// Turns TLS on in the server, once for the whole binary.
fn tls_server() -> &'static Certificates {
    static CERTIFICATES: OnceLock<Certificates> = OnceLock::new();
    CERTIFICATES.get_or_init(|| {
        let server = TestServer::get();
        // the data directory belongs to the server's user (`postgres` when we are root) and is
        // removed with the server when the process ends
        let data = PathBuf::from(server.psql("postgres", "SHOW data_directory"));
        let owner = std::fs::metadata(&data).expect("the data directory");
        let dir = data.join("flujo-tls");
        std::fs::create_dir(&dir).unwrap();
        let write = |name: &str, text: &str, mode: u32| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            std::os::unix::fs::chown(&path, Some(owner.uid()), Some(owner.gid())).unwrap();
            path
        };
        std::os::unix::fs::chown(&dir, Some(owner.uid()), Some(owner.gid())).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

        let ca = certificate_authority("flujo test CA");
        let other_ca = certificate_authority("another CA");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "flujo test server");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &ca).unwrap();

        let cert_file = write("server.crt", &certificate.pem(), 0o644);
        // the server refuses a key others can read
        let key_file = write("server.key", &key.serialize_pem(), 0o600);
        let certificates = Certificates {
            ca: write("ca.pem", &ca.pem(), 0o644),
            other_ca: write("other-ca.pem", &other_ca.pem(), 0o644),
        };
        server.psql(
            "postgres",
            &format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert_file.display()),
        );
        server.psql(
            "postgres",
            &format!("ALTER SYSTEM SET ssl_key_file = '{}'", key_file.display()),
        );
        server.psql("postgres", "ALTER SYSTEM SET ssl = on");
        server.psql("postgres", "SELECT pg_reload_conf()");
        // a new session sees the setting once the server has reloaded its configuration
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.psql("postgres", "SHOW ssl") != "on" {
            assert!(
                Instant::now() < deadline,
                "ssl is still off after the reload: {}",
                server.psql(
                    "postgres",
                    "SELECT name || ': ' || error FROM pg_file_settings WHERE error IS NOT NULL"
                )
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // psql (libpq, sslmode=prefer) encrypts when the server loaded the certificate
        assert_eq!(
            server.psql(
                "postgres",
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ),
            "t",
            "the server turned ssl on but offers no TLS: it could not load {} or {}",
            cert_file.display(),
            key_file.display()
        );
        certificates
    })
}

/// A self-signed CA.
fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// The store the connection tests read: one run, recorded without TLS (`sslmode=disable`, which
/// the writer must still honour with TLS on).
fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        tls_server();
        let server = TestServer::get();
        let uri = server.create_database("tls_modes");
        let layer = PostgresLayer::open(&format!(
            "{uri}?sslmode=disable&application_name=flujo_tls_store"
        ))
        .expect("open the writer");
        let (result, handle) = support::run_once_with(layer, 7);
        assert_eq!(result.status, RunStatus::Completed);
        assert_eq!(handle.rows_not_recorded(), 0);
        assert_eq!(sessions("flujo_tls_store"), ["f"], "the writer used no TLS");
        Store {
            password: password_of(&uri),
            uri,
            run_id: result.run_id,
        }
    })
}

/// The password of a URI `postgres://USER:PASSWORD@...`.
fn password_of(uri: &str) -> String {
    let user_info = uri.split_once("://").unwrap().1.split_once('@').unwrap().0;
    user_info.split_once(':').unwrap().1.to_owned()
}

/// Whether each live session of `application_name` is encrypted (`t` or `f`), as the server
/// sees it.
fn sessions(application_name: &str) -> Vec<String> {
    let rows = TestServer::get().psql(
        "postgres",
        &format!(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = '{application_name}' ORDER BY 1"
        ),
    );
    rows.lines().map(str::to_owned).collect()
}

/// The reader of the store with `options`.
fn open_reader(uri: &str, options: &str) -> Result<PostgresReader, Error> {
    PostgresReader::open(&PostgresUri::parse(&format!("{uri}?{options}")).unwrap())
}

/// Opens the store's reader with `options` as `application_name`, reads the run, and returns
/// whether the server sees its session encrypted.
fn reads_the_run(uri: &str, options: &str, application_name: &str) -> bool {
    let store = store();
    let reader = open_reader(
        uri,
        &format!("{options}&application_name={application_name}"),
    )
    .unwrap_or_else(|error| panic!("{options}: {error}"));
    let run = reader.find_run(&store.run_id).unwrap().expect("the run");
    assert_eq!(run.status, "completed");
    let seen = sessions(application_name);
    assert_eq!(seen.len(), 1, "{options}: {seen:?}");
    seen[0] == "t"
}

/// `uri` with its host replaced by `host`, still connecting to 127.0.0.1 (`hostaddr`).
fn as_host(uri: &str, host: &str) -> String {
    uri.replacen("@127.0.0.1:", &format!("@{host}:"), 1)
}

fn path(file: &Path) -> String {
    file.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_and_the_reader_record_and_read_a_run_over_verified_tls() {
    let certificates = tls_server();
    let server = TestServer::get();
    let uri = format!(
        "{}?sslmode=verify-full&sslrootcert={}&application_name=flujo_tls_full",
        server.create_database("tls_full"),
        path(&certificates.ca)
    );
    let layer = PostgresLayer::open(&uri).expect("open the writer");
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let result = support::run_once(&dispatch, &handle, 1).await;
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(handle.rows_not_recorded(), 0);

    // the synchronous client runs on a thread of its own, never on the runtime's workers
    std::thread::spawn(move || {
        let reader = PostgresReader::open(&PostgresUri::parse(&uri).unwrap()).expect("reader");
        let run = reader.find_run(&result.run_id).unwrap().expect("the run");
        assert_eq!(run.status, "completed");
        assert_eq!(run.n_steps, Some(3));
        // the writer's connection and the reader's, both encrypted
        assert_eq!(sessions("flujo_tls_full"), ["t", "t"]);
        let version = TestServer::get().psql(
            "postgres",
            "SELECT DISTINCT s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'flujo_tls_full'",
        );
        assert!(version.starts_with("TLSv1."), "{version}");
    })
    .join()
    .unwrap();
    drop(dispatch);
}

#[test]
fn disable_prefer_and_require_connect_without_a_ca() {
    let uri = &store().uri;
    assert!(!reads_the_run(uri, "sslmode=disable", "flujo_tls_disable"));
    // prefer (also the default) and require encrypt without checking the certificate
    assert!(reads_the_run(uri, "connect_timeout=5", "flujo_tls_default"));
    assert!(reads_the_run(uri, "sslmode=prefer", "flujo_tls_prefer"));
    assert!(reads_the_run(uri, "sslmode=require", "flujo_tls_require"));
    let elsewhere = as_host(uri, "wrong.invalid");
    assert!(reads_the_run(
        &elsewhere,
        "sslmode=require&hostaddr=127.0.0.1",
        "flujo_tls_require_any_name"
    ));
}

#[test]
fn verified_modes_accept_the_right_ca_and_host_name() {
    let certificates = tls_server();
    let uri = &store().uri;
    let ca = path(&certificates.ca);
    // an IP address against the certificate's IP addresses, a name against its names
    assert!(reads_the_run(
        uri,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
        "flujo_tls_full_ip"
    ));
    assert!(reads_the_run(
        &as_host(uri, "localhost"),
        &format!("sslmode=verify-full&sslrootcert={ca}"),
        "flujo_tls_full_name"
    ));
    // verify-ca checks the chain, not the name
    assert!(reads_the_run(
        &as_host(uri, "wrong.invalid"),
        &format!("sslmode=verify-ca&sslrootcert={ca}&hostaddr=127.0.0.1"),
        "flujo_tls_ca"
    ));
    // with a CA given, prefer and require check the chain too (and it passes)
    assert!(reads_the_run(
        uri,
        &format!("sslmode=require&sslrootcert={ca}"),
        "flujo_tls_require_ca"
    ));
    assert!(reads_the_run(
        uri,
        &format!("sslrootcert={ca}"),
        "flujo_tls_prefer_ca"
    ));
}

#[test]
fn a_wrong_host_name_or_ca_is_one_clear_error() {
    let certificates = tls_server();
    let store = store();
    let uri = &store.uri;
    let ca = path(&certificates.ca);
    let other = path(&certificates.other_ca);
    let refused = |uri: &str, options: &str| -> String {
        let error = open_reader(uri, options).expect_err(options);
        let message = error.to_string();
        assert!(!message.contains(&store.password), "{message}");
        assert!(
            matches!(error, Error::Tls { .. }),
            "{options}: {error:?} is not a TLS error"
        );
        assert!(
            message
                .starts_with("cannot connect securely to PostgreSQL at postgres://postgres:***@"),
            "{message}"
        );
        message
    };

    let message = refused(
        &as_host(uri, "wrong.invalid"),
        &format!("sslmode=verify-full&sslrootcert={ca}&hostaddr=127.0.0.1"),
    );
    assert!(
        message.contains("not valid for the host name") && message.contains("wrong.invalid"),
        "{message}"
    );

    for mode in ["verify-full", "verify-ca", "require", "prefer"] {
        let message = refused(uri, &format!("sslmode={mode}&sslrootcert={other}"));
        assert!(
            message.contains(&format!("not issued by a CA of sslrootcert {other}"))
                && message.contains(&format!("sslmode={mode} checks")),
            "{message}"
        );
    }

    // no sslrootcert: the system's store, which does not hold our test CA (or holds nothing)
    let error = open_reader(uri, "sslmode=verify-full").expect_err("the system's store");
    let message = error.to_string();
    assert!(
        message.contains("the system's trust store") && !message.contains(&store.password),
        "{message}"
    );
}

#[test]
fn options_flujo_cannot_honour_are_refused_by_the_writer_and_the_reader() {
    let store = store();
    let uri = &store.uri;
    let missing = path(&tls_server().ca.with_file_name("missing.pem"));
    let cases = [
        ("sslmode=require&sslcert=/tmp/client.crt", "sslcert"),
        ("sslmode=require&sslkey=/tmp/client.key", "sslkey"),
        ("sslmode=verify-full&sslcrl=/tmp/root.crl", "sslcrl"),
        ("sslmode=allow", "sslmode=allow"),
        (
            &format!("sslmode=verify-full&sslrootcert={missing}"),
            "cannot read sslrootcert",
        ),
    ];
    for (options, named) in cases {
        let full = format!("{uri}?{options}");
        let writer = PostgresLayer::open(&full).map(drop).expect_err(options);
        let reader = open_reader(uri, options).expect_err(options);
        for error in [writer, reader] {
            let message = error.to_string();
            assert!(matches!(error, Error::Config { .. }), "{error:?}");
            assert!(
                message.contains(named) && !message.contains(&store.password),
                "{options}: {message}"
            );
        }
    }
}
