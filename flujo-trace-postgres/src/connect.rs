//! From a `postgres://` URI to a connection, with the libpq conventions flujo honours: what the
//! URI gives first, then `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD` and `PGDATABASE` for what it
//! leaves out (then `USER` for the user, as libpq does). `~/.pgpass`, service files and
//! `PGSSLMODE` are not read. `sslmode` may be `disable` or `prefer` (the default, which connects
//! without TLS: this build has no TLS client); `require`, `verify-ca` and `verify-full` are one
//! clear error rather than a connection that is not what was asked for.

use std::str::FromStr as _;
use std::time::Duration;

use flujo_trace_core::PostgresUri;

use crate::Error;

/// How long a connection attempt waits for the server unless the URI sets `connect_timeout`.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Whether a connection may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The writer: migrates and writes.
    Write,
    /// The lens: every transaction is read-only (`default_transaction_read_only`).
    ReadOnly,
}

/// The client configuration for `uri`, or why it cannot be honoured.
pub(crate) fn config_for(uri: &PostgresUri, access: Access) -> Result<postgres::Config, Error> {
    let secret = uri.secret_uri();
    check_options(uri)?;
    let mut config = postgres::Config::from_str(secret).map_err(|error| Error::Config {
        message: format!(
            "the PostgreSQL URI {uri} cannot be used: {error}: write it as \
             postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
        ),
    })?;
    let env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    if config.get_hosts().is_empty() {
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
    if access == Access::ReadOnly {
        let options = match config.get_options() {
            Some(options) => format!("{options} -c default_transaction_read_only=on"),
            None => "-c default_transaction_read_only=on".to_owned(),
        };
        config.options(&options);
    }
    Ok(config)
}

/// Refuses the options of a URI this build cannot honour, naming them.
fn check_options(uri: &PostgresUri) -> Result<(), Error> {
    let secret = uri.secret_uri();
    let Some((_, query)) = secret.split_once('?') else {
        return Ok(());
    };
    for option in query.split('&') {
        let (key, value) = option.split_once('=').unwrap_or((option, ""));
        if key == "sslmode" && !matches!(value, "disable" | "prefer") {
            return Err(Error::Config {
                message: format!(
                    "the PostgreSQL URI {uri} asks for sslmode={value}, which this build of \
                     flujo cannot honour (it connects without TLS): use sslmode=disable or \
                     prefer on a trusted network, or reach the server through a TLS tunnel"
                ),
            });
        }
    }
    Ok(())
}

/// Connects with `config`; the error names the store without its password.
pub(crate) fn connect(
    uri: &PostgresUri,
    config: &postgres::Config,
) -> Result<postgres::Client, Error> {
    config
        .connect(postgres::NoTls)
        .map_err(|error| Error::from_client(uri, &error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> PostgresUri {
        PostgresUri::parse(text).unwrap()
    }

    #[test]
    fn options_it_cannot_honour_are_one_clear_error_without_the_password() {
        for mode in ["require", "verify-ca", "verify-full", "allow"] {
            let uri = uri(&format!("postgres://flujo:s3cret@db/ops?sslmode={mode}"));
            let message = config_for(&uri, Access::Write).unwrap_err().to_string();
            assert!(message.contains(&format!("sslmode={mode}")), "{message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
        let message = config_for(
            &uri("postgres://flujo:s3cret@db/ops?nonsense=1"),
            Access::Write,
        )
        .unwrap_err()
        .to_string();
        assert!(
            message.contains("nonsense") && !message.contains("s3cret"),
            "{message}"
        );
    }

    #[test]
    fn the_reader_is_read_only_and_defaults_are_set() {
        let config = config_for(&uri("postgres://flujo@db:5433/ops"), Access::ReadOnly).unwrap();
        assert_eq!(
            config.get_options(),
            Some("-c default_transaction_read_only=on")
        );
        assert_eq!(config.get_ports(), [5433]);
        assert_eq!(config.get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(config.get_application_name(), Some("flujo"));
        let writer = config_for(
            &uri("postgres://flujo@db/ops?sslmode=disable"),
            Access::Write,
        )
        .unwrap();
        assert_eq!(writer.get_options(), None);
    }
}
