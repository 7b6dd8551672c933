//! The state-URI resolver shared by the runner and the lens (FR-27): where `flujo_ops.db` is,
//! and the `flujo.toml` it reads (with the runner's `[redaction]` settings and `[storage]`).
//!
//! Order: an explicit argument (the lens's `--state-uri`), then `FLUJO_STATE_URI`, then
//! `state_uri` in the nearest `flujo.toml` (the current directory, then its parents), then
//! `sqlite:///flujo_ops.db` in the current directory.
//!
//! Accepted forms: `sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite://` + `~`-free path,
//! a plain path, `postgres://` or `postgresql://` URIs (a PostgreSQL store, [`PostgresUri`]),
//! and `off` (any ASCII case; a file named `off` is `./off`): record nothing. A relative path is
//! relative to the current directory, except in `flujo.toml` where it is relative to the file's
//! directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A `flujo.toml` or `FLUJO_STATE_URI` that cannot be used; the message names the file or
/// variable and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// The whole message.
    pub message: String,
}

/// The environment variable naming the state database.
pub const STATE_URI_ENV: &str = "FLUJO_STATE_URI";

/// The configuration file searched for in the current directory and its parents.
pub const CONFIG_FILE_NAME: &str = "flujo.toml";

/// The state URI that turns recording off (`FLUJO_STATE_URI=off`, `state_uri = "off"`).
pub const STATE_URI_OFF: &str = "off";

/// The state URI used when nothing is configured.
pub const DEFAULT_STATE_URI: &str = "sqlite:///flujo_ops.db";

/// The contents of a `flujo.toml`. Unknown keys are accepted, so that a file written for a newer
/// flujo (or holding other tools' keys) still loads; [`FlujoToml::unknown_keys`] lists them, each
/// with the known key it probably meant.
///
/// ```toml
/// state_uri = "sqlite:///flujo_ops.db"   # relative to this file's directory
///
/// [redaction]
/// enabled = true                  # false records values as they are
/// keys = ["api_key", "password"]  # replaces the default list of secret-looking keys
/// extra_keys = ["ssn", "iban"]    # adds to it
///
/// [storage]
/// payload_cap_bytes = 1048576     # longer inputs, outputs, errors and contexts are stored cut
///
/// [otlp]
/// endpoint = "http://localhost:4318"  # export runs to this OTLP/HTTP collector (/v1/traces added)
/// payloads = true                 # false sends no inputs, outputs or contexts
/// payload_cap_bytes = 4096        # longer ones are sent cut
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct FlujoToml {
    /// Where runs are recorded: a path or a `sqlite://` URI, relative to the file's directory.
    pub state_uri: Option<String>,
    /// Which values are replaced by `"[REDACTED]"` before they are recorded.
    pub redaction: RedactionToml,
    /// How values are stored.
    pub storage: StorageToml,
    /// Where runs are exported with OpenTelemetry (OTLP/HTTP), and what they carry.
    pub otlp: OtlpToml,
    /// The keys of the file that flujo does not know (set by [`load_flujo_toml`]).
    #[serde(skip)]
    unknown_keys: Vec<UnknownKey>,
}

impl FlujoToml {
    /// The keys of the file that flujo does not know (typos, or settings of a newer flujo),
    /// sorted by dotted path. A key inside an unknown table is not listed on its own.
    pub fn unknown_keys(&self) -> &[UnknownKey] {
        &self.unknown_keys
    }
}

/// A key of a `flujo.toml` that flujo does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnknownKey {
    /// The key's dotted path, e.g. `redaction.extra_key` (a key of `[redaction]`) or `stat_uri`.
    pub key: String,
    /// The dotted path of the known key it is closest to, when one is close, e.g.
    /// `redaction.extra_keys`.
    pub did_you_mean: Option<&'static str>,
}

impl std::fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown key `{}`", self.key)?;
        if let Some(known) = self.did_you_mean {
            write!(f, " (did you mean `{known}`?)")?;
        }
        Ok(())
    }
}

/// Every key a `flujo.toml` may hold, as dotted paths; a table comes before its keys.
const KNOWN_KEYS: &[&str] = &[
    "state_uri",
    "redaction",
    "redaction.enabled",
    "redaction.keys",
    "redaction.extra_keys",
    "storage",
    "storage.payload_cap_bytes",
    "otlp",
    "otlp.endpoint",
    "otlp.payloads",
    "otlp.payload_cap_bytes",
];

/// The unknown keys of a parsed `flujo.toml`, at any depth under known tables.
fn unknown_keys(table: &toml::Table, prefix: &str, found: &mut Vec<UnknownKey>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if !KNOWN_KEYS.contains(&path.as_str()) {
            found.push(UnknownKey {
                did_you_mean: closest_known_key(&path),
                key: path,
            });
        } else if let toml::Value::Table(inner) = value {
            unknown_keys(inner, &path, found);
        }
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
}

/// The known key `path` probably meant: the most similar by its last part (Jaro-Winkler, at
/// least 0.8, ignoring ASCII case), in the same table first (`redaction.extra_key` ->
/// `redaction.extra_keys`), then in any table (`extra_keys` at the top ->
/// `redaction.extra_keys`); none when every known key is far.
fn closest_known_key(path: &str) -> Option<&'static str> {
    let (table, name) = split_key(path);
    let name = name.to_ascii_lowercase();
    let best = |same_table: bool| {
        // reversed: of equally close keys, `max_by` keeps the last, the first known
        KNOWN_KEYS
            .iter()
            .rev()
            .filter(|known| (split_key(known).0 == table) == same_table)
            .map(|known| (strsim::jaro_winkler(&name, split_key(known).1), *known))
            .filter(|(similarity, _)| *similarity >= 0.8)
            .max_by(|(a, _), (b, _)| a.total_cmp(b))
            .map(|(_, known)| known)
    };
    best(true).or_else(|| best(false))
}

/// A dotted path's table (`""` at the top) and last part.
fn split_key(path: &str) -> (&str, &str) {
    path.rsplit_once('.').unwrap_or(("", path))
}

/// The `[redaction]` table of a `flujo.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct RedactionToml {
    /// `false` turns redaction off (default: on).
    pub enabled: Option<bool>,
    /// Replaces the default list of secret-looking keys.
    pub keys: Option<Vec<String>>,
    /// Adds to the list.
    pub extra_keys: Vec<String>,
}

/// The `[storage]` table of a `flujo.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct StorageToml {
    /// Longer payloads are stored cut, with a marker and their size (default 1 MiB).
    pub payload_cap_bytes: Option<u64>,
}

/// The `[otlp]` table of a `flujo.toml`: OpenTelemetry export (the standard `OTEL_EXPORTER_OTLP_*`
/// environment variables win over it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[non_exhaustive]
pub struct OtlpToml {
    /// The collector's OTLP/HTTP base URL (`/v1/traces` is appended), e.g.
    /// `http://localhost:4318`; none: nothing is exported.
    pub endpoint: Option<String>,
    /// `false` exports no inputs, outputs or contexts (default: they are exported, redacted and
    /// cut to `payload_cap_bytes`).
    pub payloads: Option<bool>,
    /// Longer payloads and errors are exported cut (default 4 KiB).
    pub payload_cap_bytes: Option<u64>,
}

/// Where a state path came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateSource {
    /// The explicit argument (the lens's `--state-uri`).
    Argument,
    /// The `FLUJO_STATE_URI` environment variable.
    Env,
    /// `state_uri` in this `flujo.toml`.
    File(PathBuf),
    /// Nothing configured: `flujo_ops.db` in the current directory.
    Default,
}

impl std::fmt::Display for StateSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StateSource::Argument => f.write_str("--state-uri"),
            StateSource::Env => f.write_str(STATE_URI_ENV),
            StateSource::File(path) => write!(f, "state_uri in {}", path.display()),
            StateSource::Default => f.write_str("the default"),
        }
    }
}

/// A resolved state database path and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatePath {
    /// The database file (absolute when the current directory is).
    pub path: PathBuf,
    /// Where the setting came from.
    pub source: StateSource,
}

/// A PostgreSQL connection URI as configured (`postgres://` or `postgresql://`). It may hold a
/// password, so `Debug` and `Display` show it with the password replaced by `***`; only
/// [`secret_uri`](Self::secret_uri) gives it whole, to connect with.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUri {
    uri: String,
}

impl PostgresUri {
    /// `uri` when it is a `postgres://` or `postgresql://` URI (any ASCII case).
    pub fn parse(uri: &str) -> Option<PostgresUri> {
        let uri = uri.trim();
        let is_postgres = ["postgres://", "postgresql://"]
            .iter()
            .any(|scheme| strip_prefix_ignore_case(uri, scheme).is_some());
        is_postgres.then(|| PostgresUri {
            uri: uri.to_owned(),
        })
    }

    /// The whole URI, password included: only to connect with, never to print.
    pub fn secret_uri(&self) -> &str {
        &self.uri
    }

    /// The URI with its password (in the user info, a `password=` or an `sslpassword=` option)
    /// replaced by `***`.
    pub fn redacted(&self) -> String {
        let uri = &self.uri;
        let scheme_end = uri.find("://").map_or(0, |i| i + 3);
        let rest = &uri[scheme_end..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let authority = match authority.rsplit_once('@') {
            Some((user_info, host)) => match user_info.split_once(':') {
                Some((user, _password)) => format!("{user}:***@{host}"),
                None => authority.to_owned(),
            },
            None => authority.to_owned(),
        };
        let tail = match tail.split_once('?') {
            Some((path, query)) => {
                let options: Vec<String> = query
                    .split('&')
                    .map(|option| match option.split_once('=') {
                        Some((key, _))
                            if key.eq_ignore_ascii_case("password")
                                || key.eq_ignore_ascii_case("sslpassword") =>
                        {
                            format!("{key}=***")
                        }
                        _ => option.to_owned(),
                    })
                    .collect();
                format!("{path}?{}", options.join("&"))
            }
            None => tail.to_owned(),
        };
        format!("{}{authority}{tail}", &uri[..scheme_end])
    }
}

impl std::fmt::Debug for PostgresUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("PostgresUri")
            .field(&self.redacted())
            .finish()
    }
}

impl std::fmt::Display for PostgresUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// What the state URI says: record into this database, or record nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateSetting {
    /// Record into this SQLite database.
    Store(StatePath),
    /// Record into this PostgreSQL database.
    Postgres {
        /// The connection URI.
        uri: PostgresUri,
        /// Where the setting came from.
        source: StateSource,
    },
    /// The setting is `off`: record nothing, and say nothing about it.
    Off {
        /// Where the `off` came from.
        source: StateSource,
    },
}

/// The value of `FLUJO_STATE_URI`, `None` when unset; not UTF-8 is an error.
fn state_uri_env() -> Result<Option<String>, ConfigError> {
    match std::env::var_os(STATE_URI_ENV) {
        None => Ok(None),
        Some(value) => value.into_string().map(Some).map_err(|_| ConfigError {
            message: format!(
                "{STATE_URI_ENV} is not valid UTF-8: set it to a path or a sqlite:/// URI"
            ),
        }),
    }
}

fn current_dir() -> Result<PathBuf, ConfigError> {
    std::env::current_dir().map_err(|source| ConfigError {
        message: format!(
            "cannot read the current directory ({source}): run flujo from an existing directory"
        ),
    })
}

/// Resolves the state database from `explicit`, `FLUJO_STATE_URI`, the nearest `flujo.toml` and
/// the default, relative to the process's current directory. A setting of `off` is an
/// [`ConfigError`] here (there is no database to read): [`resolve_state_setting`] tells it apart.
pub fn resolve_state_path(explicit: Option<&str>) -> Result<StatePath, ConfigError> {
    let env = state_uri_env()?;
    resolve_state_path_in(explicit, env.as_deref(), &current_dir()?)
}

/// [`resolve_state_path`] with the environment value and the current directory given explicitly
/// (for tests and embedders). An empty `env` value counts as unset.
pub fn resolve_state_path_in(
    explicit: Option<&str>,
    env: Option<&str>,
    cwd: &Path,
) -> Result<StatePath, ConfigError> {
    let nearest = |cwd: &Path| match find_flujo_toml(cwd) {
        None => Ok(None),
        Some(file) => load_flujo_toml(&file).map(|toml| Some((file, toml.state_uri))),
    };
    match resolve_in(explicit, env, cwd, nearest)? {
        StateSetting::Store(state) => Ok(state),
        StateSetting::Postgres { uri, source } => Err(ConfigError {
            message: format!(
                "{source} names the PostgreSQL store {uri}, not a SQLite file: use \
                 resolve_state_in, which tells the two apart"
            ),
        }),
        StateSetting::Off { source } => Err(ConfigError {
            message: format!(
                "recording is off ({source} is {STATE_URI_OFF:?}), so there is no database to \
                 read: point --state-uri or {STATE_URI_ENV} at the flujo_ops.db your pipelines \
                 write"
            ),
        }),
    }
}

/// What the state URI says, from `explicit`, the environment value `env`, the nearest
/// `flujo.toml` from `cwd` and the default (the lens's order): a SQLite file, a PostgreSQL URI,
/// or `off`. An empty `env` value counts as unset.
pub fn resolve_state_in(
    explicit: Option<&str>,
    env: Option<&str>,
    cwd: &Path,
) -> Result<StateSetting, ConfigError> {
    resolve_in(explicit, env, cwd, |cwd: &Path| {
        match find_flujo_toml(cwd) {
            None => Ok(None),
            Some(file) => load_flujo_toml(&file).map(|toml| Some((file, toml.state_uri))),
        }
    })
}

/// What the state URI of a process says (`FLUJO_STATE_URI`, then `state_uri` in `nearest`, then
/// the default), relative to the current directory; `off` is [`StateSetting::Off`].
///
/// `nearest` is the nearest `flujo.toml` as its caller already read it (with
/// [`find_flujo_toml`] and [`load_flujo_toml`]), so that a process reads the file once: its path
/// and what loading it gave. A file that did not load is an error only when the environment
/// does not decide first.
pub fn resolve_state_setting(
    nearest: Option<(&Path, Result<&FlujoToml, &ConfigError>)>,
) -> Result<StateSetting, ConfigError> {
    let env = state_uri_env()?;
    let cwd = current_dir()?;
    resolve_in(None, env.as_deref(), &cwd, |_| match nearest {
        None => Ok(None),
        Some((file, Ok(toml))) => Ok(Some((file.to_owned(), toml.state_uri.clone()))),
        Some((_, Err(error))) => Err(error.clone()),
    })
}

/// The one resolution order. `nearest` gives the nearest `flujo.toml` and its `state_uri`; it
/// is only called when neither `explicit` nor `env` decides.
fn resolve_in(
    explicit: Option<&str>,
    env: Option<&str>,
    cwd: &Path,
    nearest: impl FnOnce(&Path) -> Result<Option<(PathBuf, Option<String>)>, ConfigError>,
) -> Result<StateSetting, ConfigError> {
    let setting = |uri: &str, dir: &Path, source: StateSource, name: &dyn Fn() -> String| {
        if is_off(uri) {
            return Ok(StateSetting::Off { source });
        }
        if let Some(uri) = PostgresUri::parse(uri) {
            return Ok(StateSetting::Postgres { uri, source });
        }
        let path = parse_state_uri(uri).map_err(|problem| ConfigError {
            message: format!("{} {problem}", name()),
        })?;
        Ok(StateSetting::Store(StatePath {
            path: dir.join(path),
            source,
        }))
    };
    if let Some(uri) = explicit {
        return setting(uri, cwd, StateSource::Argument, &|| {
            format!("--state-uri {uri:?}")
        });
    }
    if let Some(uri) = env.filter(|value| !value.is_empty()) {
        return setting(uri, cwd, StateSource::Env, &|| {
            format!("{STATE_URI_ENV}={uri:?}")
        });
    }
    if let Some((file, Some(uri))) = nearest(cwd)? {
        let dir = file.parent().unwrap_or(cwd).to_owned();
        let name = || format!("state_uri {uri:?} in {}", file.display());
        return setting(&uri, &dir, StateSource::File(file.clone()), &name);
    }
    let path = parse_state_uri(DEFAULT_STATE_URI).expect("the default state URI is valid");
    Ok(StateSetting::Store(StatePath {
        path: cwd.join(path),
        source: StateSource::Default,
    }))
}

/// Whether a state URI turns recording off.
fn is_off(uri: &str) -> bool {
    uri.trim().eq_ignore_ascii_case(STATE_URI_OFF)
}

/// The nearest `flujo.toml`: in `start`, then in each parent directory.
pub fn find_flujo_toml(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(CONFIG_FILE_NAME))
        .find(|candidate| candidate.is_file())
}

/// Reads a `flujo.toml`. Never creates or rewrites it: a missing file is an error here, and one
/// that does not parse is an [`ConfigError`] naming the file and the problem. Unknown keys are
/// no error: see [`FlujoToml::unknown_keys`].
pub fn load_flujo_toml(path: &Path) -> Result<FlujoToml, ConfigError> {
    // confy creates a missing file (and may rewrite a broken one in other calls): only ever hand it
    // a file that exists, and only `load_path`, which reads
    if !path.is_file() {
        return Err(ConfigError {
            message: format!(
                "{} does not exist or is not a file: create it, or remove the reference to it",
                path.display()
            ),
        });
    }
    let mut config = confy::load_path::<FlujoToml>(path).map_err(|error| {
        let problem = match &error {
            confy::ConfyError::BadTomlData(cause) => {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                match cause.span() {
                    Some(span) => {
                        let before = &text[..span.start.min(text.len())];
                        let line = before.matches('\n').count() + 1;
                        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                        format!("{} at line {line}, column {column}", cause.message())
                    }
                    None => cause.message().to_owned(),
                }
            }
            _ => error.to_string(),
        };
        ConfigError {
            message: format!(
                "{} is not a valid flujo.toml: {}: fix the file, e.g. state_uri = \"sqlite:///flujo_ops.db\"",
                path.display(),
                problem.trim().replace('\n', " ")
            ),
        }
    })?;
    // It parsed as a FlujoToml, so it parses as a table.
    let text = std::fs::read_to_string(path).unwrap_or_default();
    if let Ok(table) = text.parse::<toml::Table>() {
        unknown_keys(&table, "", &mut config.unknown_keys);
    }
    Ok(config)
}

/// Turns a state URI or plain path into a path (relative paths stay relative). The error is the
/// rest of a sentence that starts with the setting's name.
fn parse_state_uri(uri: &str) -> Result<PathBuf, String> {
    let uri = uri.trim();
    if uri.is_empty() {
        return Err(
            "is empty: give a path such as ./flujo_ops.db or sqlite:///flujo_ops.db".into(),
        );
    }
    let path = if let Some(rest) = strip_prefix_ignore_case(uri, "sqlite://") {
        // sqlite:///relative.db -> "/relative.db" -> relative.db; sqlite:////abs.db -> "//abs.db"
        // -> /abs.db; sqlite://relative.db (no third slash) is accepted as relative too
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let path = rest.strip_prefix('/').unwrap_or(rest);
        if path.is_empty() || path == ":memory:" {
            return Err(
                "names no file: use sqlite:///relative.db or sqlite:////absolute/path.db".into(),
            );
        }
        path
    } else if let Some((scheme, _)) = uri.split_once("://") {
        return Err(format!(
            "uses the unsupported scheme {scheme:?}: flujo records runs in SQLite (sqlite:///path.db or a plain path) or PostgreSQL (postgres://user@host/database)"
        ));
    } else {
        uri
    };
    Ok(PathBuf::from(path))
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(uri: &str, expected: Result<&str, &str>) {
        let actual = parse_state_uri(uri);
        match (actual, expected) {
            (Ok(path), Ok(expected)) => assert_eq!(path, PathBuf::from(expected), "{uri}"),
            (Err(problem), Err(expected)) => {
                assert!(problem.contains(expected), "{uri}: {problem}")
            }
            (actual, expected) => panic!("{uri}: got {actual:?}, expected {expected:?}"),
        }
    }

    fn check_unknown(toml: &str, expected: &[(&str, Option<&str>)]) {
        let table = toml.parse::<toml::Table>().unwrap();
        let mut found = Vec::new();
        unknown_keys(&table, "", &mut found);
        let found: Vec<(&str, Option<&str>)> = found
            .iter()
            .map(|unknown| (unknown.key.as_str(), unknown.did_you_mean))
            .collect();
        assert_eq!(found, expected, "{toml}");
    }

    #[test]
    fn unknown_keys_come_with_the_key_they_probably_meant() {
        check_unknown(
            "state_uri = 'a'\n[redaction]\nenabled = true\nkeys = []\nextra_keys = []\n[storage]\npayload_cap_bytes = 1\n",
            &[],
        );
        check_unknown(
            "[redaction]\nextra_key = ['ssn']\nExtra_Keys = []\nkey = []\nenable = true\n",
            &[
                ("redaction.Extra_Keys", Some("redaction.extra_keys")),
                ("redaction.enable", Some("redaction.enabled")),
                ("redaction.extra_key", Some("redaction.extra_keys")),
                ("redaction.key", Some("redaction.keys")),
            ],
        );
        check_unknown(
            "stat_uri = 'a'\nextra_keys = []\npayload_cap = 1\n[redactions]\nx = 1\n[storage]\npayload_cap = 2\n[tool.other]\nx = 1\n",
            &[
                ("extra_keys", Some("redaction.extra_keys")),
                ("payload_cap", Some("storage.payload_cap_bytes")),
                ("redactions", Some("redaction")),
                ("stat_uri", Some("state_uri")),
                ("storage.payload_cap", Some("storage.payload_cap_bytes")),
                ("tool", None),
            ],
        );
    }

    #[test]
    fn state_uri_forms() {
        check("sqlite:///flujo_ops.db", Ok("flujo_ops.db"));
        check("sqlite:///data/ops.db", Ok("data/ops.db"));
        check(
            "sqlite:////var/lib/flujo/ops.db",
            Ok("/var/lib/flujo/ops.db"),
        );
        check("SQLITE:///ops.db", Ok("ops.db"));
        check("sqlite://ops.db", Ok("ops.db"));
        check("sqlite:///ops.db?mode=rwc", Ok("ops.db"));
        check("./ops.db", Ok("./ops.db"));
        check("/abs/ops.db", Ok("/abs/ops.db"));
        check("ops.db", Ok("ops.db"));
        check("", Err("is empty"));
        assert!(is_off("off") && is_off(" OFF ") && !is_off("./off") && !is_off("sqlite:///off"));
        check("sqlite:///", Err("names no file"));
        check("sqlite:///:memory:", Err("names no file"));
        check("mysql://localhost/db", Err("unsupported scheme \"mysql\""));
    }

    #[test]
    fn postgres_uris_are_a_store_of_their_own_and_print_without_password() {
        let cwd = Path::new("/work");
        for uri in [
            "postgres://flujo:s3cret@db.internal/ops",
            "POSTGRESQL://flujo:s3cret@db.internal:5433/ops?sslmode=require",
        ] {
            match resolve_state_in(None, Some(uri), cwd) {
                Ok(StateSetting::Postgres { uri: found, source }) => {
                    assert_eq!(source, StateSource::Env);
                    assert_eq!(found.secret_uri(), uri);
                    let shown = format!("{found} {found:?}");
                    assert!(!shown.contains("s3cret"), "{shown}");
                    assert!(shown.contains("flujo:***@db.internal"), "{shown}");
                }
                other => panic!("{uri}: {other:?}"),
            }
        }
        let option = PostgresUri::parse("postgres:///ops?host=/run/pg&password=hunter2").unwrap();
        assert_eq!(
            option.redacted(),
            "postgres:///ops?host=/run/pg&password=***"
        );
        assert_eq!(
            PostgresUri::parse("postgres://db/ops").unwrap().redacted(),
            "postgres://db/ops"
        );
        let error = resolve_state_path_in(None, Some("postgres://db/ops"), cwd).unwrap_err();
        assert!(error.message.contains("PostgreSQL"), "{error}");
    }
}
