//! From a `postgres://` URI to a connection, with the libpq conventions flujo honours; the
//! writer (`sink.rs`) and the reader (`read.rs`) both connect through here.
//!
//! # Where the settings come from
//!
//! What the URI gives first, then `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`,
//! `PGSSLMODE`, `PGSSLROOTCERT` and `PGSSLNEGOTIATION` for what it leaves out (then `USER` for
//! the user, as libpq does). With no host at all the local socket in `/var/run/postgresql` is
//! used; a URI that gives only `hostaddr=` addresses uses them as host names too (so TLS checks
//! the certificate against those addresses). `~/.pgpass`, service files,
//! `~/.postgresql/root.crt` and client certificates (`~/.postgresql/postgresql.crt`) are not
//! read. An empty variable counts as unset.
//!
//! # TLS: `sslmode` and `sslrootcert`
//!
//! TLS is rustls with the *ring* provider: TLS 1.2 and 1.3, the server name sent (SNI) for a DNS
//! host name, ALPN `postgresql` offered. What each `sslmode` does:
//!
//! - `disable`: never TLS.
//! - `prefer` (the default): TLS when the server offers it (its `ssl` setting is on), else an
//!   unencrypted connection. The certificate is not verified, unless `sslrootcert` is given:
//!   then its chain must lead to one of those CAs (the host name is not checked). A certificate
//!   that fails that check, or a TLS handshake that fails (say, a server that speaks only TLS
//!   1.0 or 1.1), is an error, never a fall back to an unencrypted connection (libpq would retry
//!   without TLS; use `sslmode=disable` for such a server). Without `sslrootcert` this protects
//!   from eavesdropping, not from an active attacker (who can also answer that it has no TLS).
//! - `require`: TLS or no connection: a server that does not offer TLS is an error. As in libpq
//!   the certificate is not verified, unless `sslrootcert` is given: then it is checked as for
//!   `verify-ca`.
//! - `verify-ca`: TLS, and the certificate's chain must lead to a CA of `sslrootcert`, or of the
//!   system's trust store when it is not given (where libpq would refuse to connect without a
//!   root file). The host name is not checked; against the system's store, whose public CAs
//!   sign certificates for anyone's names, only `verify-full` proves much.
//! - `verify-full`: as `verify-ca`, and the certificate must be valid for the host the
//!   connection was made to: a DNS name of the URI against the certificate's DNS names, an IP
//!   address against its IP addresses (`hostaddr=` only chooses where to connect: the host name
//!   is what is checked, as in libpq).
//!
//! Whenever the chain is checked, the certificates' validity periods are checked too;
//! revocation is not (`sslcrl` is refused, below). The server's handshake signature is checked
//! in every mode, and with SCRAM authentication over TLS the client binds the authentication
//! to the TLS channel (`channel_binding=prefer`, rust-postgres' default). `allow` and any other
//! `sslmode` are an error, and so are `require`, `verify-ca` and `verify-full` towards a
//! Unix-domain socket (PostgreSQL never offers TLS there; `prefer` connects unencrypted).
//!
//! `sslrootcert=PATH` (percent-encoded in the URI like any value) is a PEM file of one or more
//! CA certificates, read when the store is opened (a missing or broken one is an error then)
//! and again at each connection (a renewed file is picked up when reconnecting);
//! `sslrootcert=system` (as in libpq 16) names the system's trust store: the file and
//! directory of `SSL_CERT_FILE` and `SSL_CERT_DIR` when set, else the operating system's.
//! `sslnegotiation` (`postgres`, the default, or `direct` for PostgreSQL 17) is honoured.
//!
//! The other libpq TLS options are one clear error naming them, rather than a connection that
//! is not what was asked for: `sslcert`, `sslkey`, `sslpassword` and `sslcertmode` (client
//! certificates), `sslcrl` and `sslcrldir` (revocation lists), `sslsni`, `sslcompression`,
//! `ssl_min_protocol_version` and `ssl_max_protocol_version`, in the URI or as their variables
//! (`PGSSLCERT`, `PGSSLKEY`, `PGSSLCERTMODE`, `PGSSLCRL`, `PGSSLCRLDIR`, `PGSSLSNI`,
//! `PGSSLCOMPRESSION`, `PGSSLMINPROTOCOLVERSION`, `PGSSLMAXPROTOCOLVERSION`); except an empty
//! value and the values that ask for what flujo does anyway (`sslcertmode=disable`,
//! `sslsni=1`, `sslcompression=0`). rust-postgres itself refuses any option it does not know.
//! No message ever holds the password: they name the store as [`PostgresUri::redacted`] shows
//! it, and never repeat an option's value that might be a secret (`sslpassword`).

use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use flujo_trace_core::PostgresUri;
use postgres::config::{Host, SslMode, SslNegotiation};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::Error;

/// How long a connection attempt waits for the server unless the URI sets `connect_timeout`.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The libpq TLS options flujo does not implement, with the variables that set them.
const OTHER_TLS_OPTIONS: &[(&str, Option<&str>)] = &[
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    ("sslpassword", None),
    ("sslcertmode", Some("PGSSLCERTMODE")),
    ("sslcrl", Some("PGSSLCRL")),
    ("sslcrldir", Some("PGSSLCRLDIR")),
    ("sslsni", Some("PGSSLSNI")),
    ("sslcompression", Some("PGSSLCOMPRESSION")),
    ("ssl_min_protocol_version", Some("PGSSLMINPROTOCOLVERSION")),
    ("ssl_max_protocol_version", Some("PGSSLMAXPROTOCOLVERSION")),
];

/// Why flujo cannot honour the TLS option `key` (one of [`OTHER_TLS_OPTIONS`]) set to `value`;
/// `None` when the value asks for what flujo does anyway.
fn cannot_honour(key: &str, value: &str) -> Option<&'static str> {
    match (key, value) {
        (_, "") | ("sslcertmode", "disable") | ("sslsni", "1") | ("sslcompression", "0") => None,
        ("sslcert" | "sslkey" | "sslpassword" | "sslcertmode", _) => {
            Some("flujo cannot present a client certificate")
        }
        ("sslcrl" | "sslcrldir", _) => Some("flujo does not check certificate revocation lists"),
        ("sslsni", _) => Some("flujo always sends the server name (SNI) of a DNS host name"),
        ("sslcompression", _) => Some("flujo has no TLS compression"),
        _ => Some("flujo offers TLS 1.2 and 1.3 and cannot narrow them"),
    }
}

/// What a connection is for, which decides its session settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The layer's writer: migrates and writes. Its commits are asynchronous
    /// (`synchronous_commit=off`) unless the URI's `options` set `synchronous_commit`; see
    /// [`RECORDER_DURABILITY`].
    Record,
    /// `flujo lens copy`'s importer: migrates and writes, with the server's `synchronous_commit`.
    Import,
    /// The lens: every transaction is read-only (`default_transaction_read_only`).
    ReadOnly,
}

/// The recorder's session setting, unless the URI's `options` set `synchronous_commit`
/// (`?options=-c%20synchronous_commit%3Don`): a commit is answered once it is in the server's
/// WAL, before that WAL is flushed to its disk. A run whose `run()` returned survives the crash
/// of the recording process and of its host; a crash of the server or of the server's host can
/// lose the commits of the last moments before it (at most 3 x `wal_writer_delay`, 600 ms by
/// default), whole, never part of one. The same class as the SQLite store's
/// `synchronous=NORMAL`, and it saves each run the wait for a WAL flush (1 to 2 ms here).
pub(crate) const RECORDER_DURABILITY: &str = "-c synchronous_commit=off";

/// The lens's session settings: every transaction read-only, and no JIT compilation. The
/// server JIT-compiles a query whose estimated cost passes `jit_above_cost`, which a scan over
/// a large history can: at 1,000,000 runs, `EXPLAIN ANALYZE` of the search of a day's outputs
/// with the window written as an expression spent 1.4 s of its 2.0 s compiling, for a query
/// that runs once. (The lens's own queries, with the window bound as a parameter, measured the
/// same with and without it in `bench postgres`: JIT is off so that no plan estimate makes a
/// lens command pay for it.)
pub(crate) const READER_SESSION: &str = "-c default_transaction_read_only=on -c jit=off";

/// The `sslmode` values flujo honours; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Option<TlsMode> {
        Some(match value {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }

    /// What rust-postgres negotiates: whether TLS is tried, and whether it must be had.
    fn client_mode(self) -> SslMode {
        match self {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        }
    }
}

/// Where the trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    /// A PEM file (`sslrootcert=PATH`).
    File(PathBuf),
    /// The system's trust store (`sslrootcert=system`, or no `sslrootcert` with `verify-*`).
    System,
}

impl Roots {
    fn describe(&self) -> String {
        match self {
            Roots::File(path) => format!("sslrootcert {}", path.display()),
            Roots::System => "the system's trust store".to_owned(),
        }
    }
}

/// What the URI and the environment ask of TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tls {
    mode: TlsMode,
    /// The CAs the chain is checked against; `None`: the certificate is not verified.
    roots: Option<Roots>,
    /// Whether the certificate must be valid for the host name.
    check_name: bool,
}

/// The URI cut in two: what rust-postgres parses, and the TLS options flujo handles itself.
struct Split {
    /// The URI without `sslmode` and `sslrootcert` (it keeps the password: never print it).
    client_uri: String,
    tls: Tls,
    /// `PGSSLNEGOTIATION` when the URI leaves `sslnegotiation` out.
    negotiation: Option<SslNegotiation>,
}

/// A variable of the environment, `None` when unset or empty.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The client configuration for `uri`, or why it cannot be honoured.
pub(crate) fn config_for(uri: &PostgresUri, access: Access) -> Result<postgres::Config, Error> {
    config_with(uri, access, &process_env)
}

/// [`config_for`] with the environment read through `env`.
fn config_with(uri: &PostgresUri, access: Access, env: Env<'_>) -> Result<postgres::Config, Error> {
    let split = split(uri, env)?;
    let mut config =
        postgres::Config::from_str(&split.client_uri).map_err(|error| Error::Config {
            message: format!(
                "the PostgreSQL URI {uri} cannot be used: {error}: write it as \
             postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
            ),
        })?;
    if config.get_hosts().is_empty() {
        let addresses: Vec<String> = config
            .get_hostaddrs()
            .iter()
            .map(ToString::to_string)
            .collect();
        if !addresses.is_empty() {
            for address in &addresses {
                config.host(address);
            }
        } else {
            match env("PGHOST") {
                Some(hosts) => {
                    for host in hosts.split(',') {
                        config.host(host);
                    }
                }
                None => {
                    config.host("/var/run/postgresql");
                }
            }
        }
    }
    if config.get_ports().is_empty() {
        if let Some(port) = env("PGPORT") {
            let port = port.parse::<u16>().map_err(|_| Error::Config {
                message: format!("PGPORT={port:?} is not a port number"),
            })?;
            config.port(port);
        }
    }
    if config.get_user().is_none() {
        match env("PGUSER").or_else(|| env("USER")) {
            Some(user) => {
                config.user(&user);
            }
            None => {
                return Err(Error::Config {
                    message: format!(
                        "the PostgreSQL URI {uri} names no user: write postgres://USER@HOST/DATABASE or set PGUSER"
                    ),
                })
            }
        }
    }
    if config.get_password().is_none() {
        if let Some(password) = env("PGPASSWORD") {
            config.password(password);
        }
    }
    if config.get_dbname().is_none() {
        if let Some(dbname) = env("PGDATABASE") {
            config.dbname(&dbname);
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("flujo");
    }
    config.keepalives(true);
    config.ssl_mode(split.tls.mode.client_mode());
    if let Some(negotiation) = split.negotiation {
        config.ssl_negotiation(negotiation);
    }
    if split.tls.mode.client_mode() == SslMode::Require {
        if let Some(Host::Unix(path)) = config
            .get_hosts()
            .iter()
            .find(|host| matches!(host, Host::Unix(_)))
        {
            return Err(Error::Config {
                message: format!(
                    "the PostgreSQL URI {uri} asks for sslmode={} over the Unix-domain socket \
                     in {}, where PostgreSQL never offers TLS: connect over TCP (a host name \
                     in the URI or PGHOST), or use sslmode=prefer",
                    split.tls.mode.name(),
                    path.display()
                ),
            });
        }
    }
    // the CA file (or the system's store) is read now, so a wrong one is an error when the
    // store is opened rather than at the first connection
    connector(uri, &split.tls)?;
    let session = match access {
        Access::ReadOnly => Some(READER_SESSION),
        Access::Record
            if !config
                .get_options()
                .is_some_and(|options| options.contains("synchronous_commit")) =>
        {
            Some(RECORDER_DURABILITY)
        }
        Access::Record | Access::Import => None,
    };
    if let Some(session) = session {
        let options = match config.get_options() {
            Some(options) => format!("{options} {session}"),
            None => session.to_owned(),
        };
        config.options(&options);
    }
    Ok(config)
}

/// Takes the TLS options flujo handles out of the URI, refusing those it cannot honour.
fn split(uri: &PostgresUri, env: Env<'_>) -> Result<Split, Error> {
    let secret = uri.secret_uri();
    let refuse = |what: String| Error::Config {
        message: format!("the PostgreSQL URI {} {what}", without_secrets(uri)),
    };
    for (key, variable) in OTHER_TLS_OPTIONS {
        let Some(variable) = variable else { continue };
        if let Some(reason) = env(variable).and_then(|value| cannot_honour(key, &value)) {
            return Err(Error::Config {
                message: format!(
                    "{variable} is set, and {reason}: unset it for flujo, or connect through a \
                     TLS proxy that does what it asks"
                ),
            });
        }
    }
    let (base, query) = match secret.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (secret, None),
    };
    let mut mode = None;
    let mut roots = None;
    let mut negotiation_given = false;
    let mut kept = Vec::new();
    for option in query.into_iter().flat_map(|query| query.split('&')) {
        let (key, value) = option.split_once('=').unwrap_or((option, ""));
        match key {
            "sslmode" => {
                let value = percent_decode(value);
                mode = Some(TlsMode::parse(&value).ok_or_else(|| {
                    refuse(format!(
                        "asks for sslmode={value}, which flujo does not honour: use disable, \
                         prefer, require, verify-ca or verify-full"
                    ))
                })?);
            }
            "sslrootcert" => {
                let value = percent_decode(value);
                roots = match value.as_str() {
                    "" => None,
                    "system" => Some(Roots::System),
                    path => Some(Roots::File(PathBuf::from(path))),
                };
            }
            key if OTHER_TLS_OPTIONS.iter().any(|(other, _)| *other == key) => {
                // the value is not repeated: sslpassword's is a secret
                if let Some(reason) = cannot_honour(key, &percent_decode(value)) {
                    return Err(refuse(format!(
                        "sets {key}, and {reason}: remove it, or connect through a TLS proxy \
                         that does what it asks"
                    )));
                }
            }
            _ => {
                negotiation_given |= key == "sslnegotiation";
                kept.push(option);
            }
        }
    }
    let mode = match mode {
        Some(mode) => mode,
        None => match env("PGSSLMODE") {
            Some(value) => TlsMode::parse(&value).ok_or_else(|| Error::Config {
                message: format!(
                    "PGSSLMODE={value} is not an sslmode flujo honours: use disable, prefer, \
                     require, verify-ca or verify-full"
                ),
            })?,
            None => TlsMode::Prefer,
        },
    };
    let roots = roots.or_else(|| {
        env("PGSSLROOTCERT").map(|value| match value.as_str() {
            "system" => Roots::System,
            path => Roots::File(PathBuf::from(path)),
        })
    });
    let negotiation = match env("PGSSLNEGOTIATION").filter(|_| !negotiation_given) {
        Some(value) => Some(match value.as_str() {
            "postgres" => SslNegotiation::Postgres,
            "direct" => SslNegotiation::Direct,
            _ => {
                return Err(Error::Config {
                    message: format!(
                        "PGSSLNEGOTIATION={value} is not one flujo honours: use postgres or direct"
                    ),
                })
            }
        }),
        None => None,
    };
    let tls = match mode {
        TlsMode::Disable => Tls {
            mode,
            roots: None,
            check_name: false,
        },
        TlsMode::Prefer | TlsMode::Require => Tls {
            mode,
            roots,
            check_name: false,
        },
        TlsMode::VerifyCa | TlsMode::VerifyFull => Tls {
            mode,
            roots: Some(roots.unwrap_or(Roots::System)),
            check_name: mode == TlsMode::VerifyFull,
        },
    };
    let client_uri = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok(Split {
        client_uri,
        tls,
        negotiation,
    })
}

/// The URI as [`PostgresUri::redacted`] shows it, with an `sslpassword` (a client key's
/// passphrase, refused anyway) hidden too.
fn without_secrets(uri: &PostgresUri) -> String {
    let redacted = uri.redacted();
    let Some((base, query)) = redacted.split_once('?') else {
        return redacted;
    };
    let options: Vec<&str> = query
        .split('&')
        .map(|option| match option.split_once('=') {
            Some(("sslpassword", _)) => "sslpassword=***",
            _ => option,
        })
        .collect();
    format!("{base}?{}", options.join("&"))
}

/// `%XX` escapes decoded (as rust-postgres decodes option values); a broken escape is kept.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The TLS connector `tls` asks for; `None` for `sslmode=disable`.
fn connector(uri: &PostgresUri, tls: &Tls) -> Result<Option<MakeRustlsConnect>, Error> {
    if tls.mode == TlsMode::Disable {
        return Ok(None);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &tls.roots {
        Some(roots) => Some(Arc::new(load_roots(uri, roots)?)),
        None => None,
    };
    let verifier = Verifier {
        roots,
        check_name: tls.check_name,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|error| Error::Config {
            message: format!("cannot set up TLS: {error}"),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // what libpq 17 offers; required by servers for sslnegotiation=direct, ignored by others
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Some(MakeRustlsConnect::new(config)))
}

/// The trusted CAs of `roots`, or a clear error.
fn load_roots(uri: &PostgresUri, roots: &Roots) -> Result<RootCertStore, Error> {
    let refuse = |what: String| Error::Config {
        message: format!("the PostgreSQL URI {uri} cannot be used: {what}"),
    };
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let pem = std::fs::read(path).map_err(|error| {
                refuse(format!(
                    "cannot read sslrootcert {}: {error}",
                    path.display()
                ))
            })?;
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|error| {
                    refuse(format!(
                        "sslrootcert {} is not a PEM file of certificates: {error}",
                        path.display()
                    ))
                })?;
                store.add(cert).map_err(|error| {
                    refuse(format!(
                        "sslrootcert {} holds a certificate that cannot be trusted as a CA: \
                         {error}",
                        path.display()
                    ))
                })?;
                found += 1;
            }
            if found == 0 {
                return Err(refuse(format!(
                    "sslrootcert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    path.display()
                )));
            }
        }
        Roots::System => {
            let native = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(native.certs);
            if store.is_empty() {
                let errors: Vec<String> = native.errors.iter().map(ToString::to_string).collect();
                return Err(refuse(format!(
                    "the system's trust store holds no CA certificate{}: install the CA \
                     certificates (ca-certificates), set SSL_CERT_FILE, or give \
                     sslrootcert=PATH",
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", errors.join("; "))
                    }
                )));
            }
        }
    }
    Ok(store)
}

/// Checks the server's certificate as the `sslmode` asks: against `roots` or not at all, with
/// the host name or not. The server's handshake signature is always checked.
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<RootCertStore>>,
    check_name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
            if self.check_name {
                rustls::client::verify_server_name(&cert, server_name)?;
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Connects with `config` (made by [`config_for`] for the same `uri`), over TLS as the URI
/// asks; the error names the store without its password.
pub(crate) fn connect(
    uri: &PostgresUri,
    config: &postgres::Config,
) -> Result<postgres::Client, Error> {
    let tls = split(uri, &process_env)?.tls;
    let connected = match connector(uri, &tls)? {
        None => config.connect(postgres::NoTls),
        Some(connector) => config.connect(connector),
    };
    connected.map_err(|error| match tls_failure(&tls, &error) {
        Some(message) => Error::Tls {
            store: uri.redacted(),
            message,
        },
        None => Error::from_client(uri, &error),
    })
}

/// What went wrong with TLS in `error`, said for a person; `None` when it is not about TLS.
fn tls_failure(tls: &Tls, error: &postgres::Error) -> Option<String> {
    if error.as_db_error().is_some() {
        return None;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let rustls_error = cause.downcast_ref::<rustls::Error>().or_else(|| {
            cause
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(rustls_error) = rustls_error {
            return Some(describe_rustls(tls, rustls_error));
        }
        if cause.to_string() == "server does not support TLS" {
            return Some(format!(
                "the server does not offer TLS (its ssl setting is off) and sslmode={} requires \
                 it: turn ssl on in the server, or use sslmode=prefer",
                tls.mode.name()
            ));
        }
        source = cause.source();
    }
    None
}

fn describe_rustls(tls: &Tls, error: &rustls::Error) -> String {
    let mode = tls.mode.name();
    let roots = tls.roots.as_ref().map_or_else(String::new, Roots::describe);
    match error {
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!(
            "the server's certificate was not issued by a CA of {roots} ({error}), which \
             sslmode={mode} checks: give the CA that issued it with sslrootcert=PATH"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the server's certificate is not valid for the host name flujo connected to \
             ({error}), which sslmode={mode} checks: connect with a name the certificate \
             lists, or use sslmode=verify-ca to check only that a trusted CA issued it"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => format!(
            "the server's certificate is outside its validity period ({error}), which \
             sslmode={mode} checks: renew it on the server"
        ),
        rustls::Error::InvalidCertificate(_) => format!(
            "the server's certificate was refused ({error}), checked against {roots} as \
             sslmode={mode} asks"
        ),
        _ => format!("the TLS handshake with the server failed ({error}), sslmode={mode}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> PostgresUri {
        PostgresUri::parse(text).unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_config(text: &str) -> Result<postgres::Config, Error> {
        config_with(&uri(text), Access::Record, &no_env)
    }

    fn tls(text: &str, env: Env<'_>) -> Tls {
        split(&uri(text), env).unwrap().tls
    }

    #[test]
    fn options_it_cannot_honour_are_one_clear_error_without_the_password() {
        for option in ["sslmode=allow", "sslmode=nonsense"] {
            let text = format!("postgres://flujo:s3cret@db/ops?{option}");
            let message = parse_config(&text).unwrap_err().to_string();
            assert!(message.contains(option), "{message}");
            assert!(message.contains("verify-full"), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
        for (option, variable) in OTHER_TLS_OPTIONS {
            let text = format!("postgres://flujo:s3cret@db/ops?sslmode=require&{option}=VALUE");
            let message = parse_config(&text).unwrap_err().to_string();
            assert!(
                message.contains(&format!("sets {option}, and ")),
                "{message}"
            );
            assert!(!message.contains("s3cret"), "{message}");
            if *option == "sslpassword" {
                assert!(!message.contains("VALUE"), "{message}");
            }
            let Some(variable) = variable else { continue };
            let env = |name: &str| (name == *variable).then(|| "/some/file".to_owned());
            let message = config_with(&uri("postgres://flujo@db/ops"), Access::Record, &env)
                .unwrap_err()
                .to_string();
            assert!(
                message.starts_with(&format!("{variable} is set")),
                "{message}"
            );
        }
        // values that ask for what flujo does anyway are fine, and not given to the client
        let split = split(
            &uri("postgres://flujo@db/ops?sslsni=1&sslcompression=0&sslcertmode=disable&sslcrl="),
            &no_env,
        )
        .unwrap();
        assert_eq!(split.client_uri, "postgres://flujo@db/ops");
        let message = parse_config("postgres://flujo:s3cret@db/ops?nonsense=1")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("nonsense") && !message.contains("s3cret"),
            "{message}"
        );
    }

    #[test]
    fn each_sslmode_checks_what_the_module_documentation_says() {
        let file = || Some(Roots::File(PathBuf::from("/etc/ca dir/ca.pem")));
        let cases = [
            ("sslmode=disable", TlsMode::Disable, None, false),
            (
                "sslmode=disable&sslrootcert=x",
                TlsMode::Disable,
                None,
                false,
            ),
            ("", TlsMode::Prefer, None, false),
            ("sslmode=prefer", TlsMode::Prefer, None, false),
            (
                "sslrootcert=%2Fetc%2Fca%20dir%2Fca.pem",
                TlsMode::Prefer,
                file(),
                false,
            ),
            ("sslmode=require", TlsMode::Require, None, false),
            (
                "sslmode=require&sslrootcert=/etc/ca%20dir/ca.pem",
                TlsMode::Require,
                file(),
                false,
            ),
            (
                "sslmode=verify-ca",
                TlsMode::VerifyCa,
                Some(Roots::System),
                false,
            ),
            (
                "sslmode=verify-ca&sslrootcert=/etc/ca%20dir/ca.pem",
                TlsMode::VerifyCa,
                file(),
                false,
            ),
            (
                "sslmode=verify-full",
                TlsMode::VerifyFull,
                Some(Roots::System),
                true,
            ),
            (
                "sslmode=verify-full&sslrootcert=system",
                TlsMode::VerifyFull,
                Some(Roots::System),
                true,
            ),
        ];
        for (query, mode, roots, check_name) in cases {
            let text = format!("postgres://flujo@db/ops?{query}");
            assert_eq!(
                tls(&text, &no_env),
                Tls {
                    mode,
                    roots,
                    check_name
                },
                "{query}"
            );
        }
        // the variables fill in what the URI leaves out, and only that
        let env = |name: &str| match name {
            "PGSSLMODE" => Some("verify-full".to_owned()),
            "PGSSLROOTCERT" => Some("/env/ca.pem".to_owned()),
            _ => None,
        };
        assert_eq!(
            tls("postgres://flujo@db/ops", &env),
            Tls {
                mode: TlsMode::VerifyFull,
                roots: Some(Roots::File(PathBuf::from("/env/ca.pem"))),
                check_name: true
            }
        );
        assert_eq!(
            tls("postgres://flujo@db/ops?sslmode=disable", &env).mode,
            TlsMode::Disable
        );
        let wrong = |name: &str| (name == "PGSSLMODE").then(|| "allow".to_owned());
        let message = config_with(&uri("postgres://flujo@db/ops"), Access::Record, &wrong)
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("PGSSLMODE=allow"), "{message}");
    }

    #[test]
    fn the_client_gets_the_uri_without_our_options_and_the_mode_it_negotiates() {
        let split = split(
            &uri("postgres://flujo:pw@db/ops?sslmode=verify-full&connect_timeout=9&sslrootcert=system"),
            &no_env,
        )
        .unwrap();
        assert_eq!(
            split.client_uri,
            "postgres://flujo:pw@db/ops?connect_timeout=9"
        );
        let cases = [
            ("sslmode=disable", SslMode::Disable),
            ("", SslMode::Prefer),
            ("sslmode=require", SslMode::Require),
            ("sslmode=verify-ca", SslMode::Require),
            ("sslmode=verify-full", SslMode::Require),
        ];
        for (query, expected) in cases {
            let text = format!("postgres://flujo@db/ops?{query}");
            assert_eq!(tls(&text, &no_env).mode.client_mode(), expected, "{query}");
        }
        // (verify-* would read the system's trust store here)
        for (query, expected) in &cases[..3] {
            let config = parse_config(&format!("postgres://flujo@db/ops?{query}")).unwrap();
            assert_eq!(config.get_ssl_mode(), *expected, "{query}");
        }
        let direct =
            parse_config("postgres://flujo@db/ops?sslmode=require&sslnegotiation=direct").unwrap();
        assert_eq!(direct.get_ssl_negotiation(), SslNegotiation::Direct);
        // hostaddr alone: the addresses are the host names TLS checks
        let by_address = parse_config("postgres://flujo@/ops?hostaddr=127.0.0.1").unwrap();
        assert_eq!(by_address.get_hosts(), [Host::Tcp("127.0.0.1".to_owned())]);
    }

    #[test]
    fn tls_over_a_unix_socket_and_bad_root_files_are_clear_errors() {
        let message = parse_config("postgres://flujo:s3cret@/ops?sslmode=require")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("Unix-domain socket in /var/run/postgresql")
                && !message.contains("s3cret"),
            "{message}"
        );
        assert!(parse_config("postgres://flujo@/ops?sslmode=prefer").is_ok());

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let message = parse_config(&format!(
            "postgres://flujo:s3cret@db/ops?sslmode=verify-full&sslrootcert={}",
            missing.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(
            message.contains(&format!("cannot read sslrootcert {}", missing.display()))
                && !message.contains("s3cret"),
            "{message}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let message = parse_config(&format!(
            "postgres://flujo@db/ops?sslmode=verify-ca&sslrootcert={}",
            empty.display()
        ))
        .unwrap_err()
        .to_string();
        assert!(message.contains("holds no PEM certificate"), "{message}");
    }

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(percent_decode("%2Fa%20b/c"), "/a b/c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn the_reader_is_read_only_and_defaults_are_set() {
        let config = config_with(
            &uri("postgres://flujo@db:5433/ops"),
            Access::ReadOnly,
            &no_env,
        )
        .unwrap();
        assert_eq!(
            config.get_options(),
            Some("-c default_transaction_read_only=on -c jit=off")
        );
        assert_eq!(config.get_ports(), [5433]);
        assert_eq!(config.get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(config.get_application_name(), Some("flujo"));
        let writer = parse_config("postgres://flujo@db/ops?sslmode=disable").unwrap();
        assert_eq!(writer.get_options(), Some(RECORDER_DURABILITY));
    }

    #[test]
    fn the_recorder_commits_asynchronously_unless_the_uri_says_otherwise() {
        let config = |text: &str, access| config_with(&uri(text), access, &no_env).unwrap();
        let recorder = config("postgres://flujo@db/ops", Access::Record);
        assert_eq!(recorder.get_options(), Some(RECORDER_DURABILITY));
        let importer = config("postgres://flujo@db/ops", Access::Import);
        assert_eq!(importer.get_options(), None);
        let asked = config(
            "postgres://flujo@db/ops?options=-c%20synchronous_commit%3Don",
            Access::Record,
        );
        assert_eq!(asked.get_options(), Some("-c synchronous_commit=on"));
        let other = config(
            "postgres://flujo@db/ops?options=-c%20work_mem%3D8MB",
            Access::Record,
        );
        assert_eq!(
            other.get_options(),
            Some("-c work_mem=8MB -c synchronous_commit=off")
        );
    }
}
