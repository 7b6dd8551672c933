//! The PostgreSQL migration driver: the schema versions of the core's one numbering, each as
//! this store's SQL (`schema/*.sql`), applied in one transaction under an advisory lock, so ten
//! processes starting at once on a fresh database migrate it exactly once.

use postgres::Client;

use flujo_trace_core::{SCHEMA_CHANGES, SCHEMA_VERSION};

/// The key of the advisory lock writers migrate under (the bytes of "flujo" and a 1).
const MIGRATION_LOCK: i64 = 0x666c_756a_6f00_0001;

/// The store's own tables (`flujo_schema`, `flujo_writers`), created before any version.
const SUPPORT: &str = include_str!("schema/support.sql");

/// The SQL that brings a database of version `version - 1` to `version`.
fn change_to(version: i64) -> &'static str {
    match version {
        1 => include_str!("schema/v1.sql"),
        2 => include_str!("schema/v1_to_v2.sql"),
        3 => include_str!("schema/v2_to_v3.sql"),
        4 => include_str!("schema/v3_to_v4.sql"),
        5 => include_str!("schema/v4_to_v5.sql"),
        6 => include_str!("schema/v5_to_v6.sql"),
        7 => include_str!("schema/v6_to_v7.sql"),
        _ => unreachable!("no PostgreSQL change for schema version {version}"),
    }
}

/// What a database holds, as far as flujo is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// No flujo tables.
    Nothing,
    /// Schema at this version.
    Version(i64),
}

/// The schema version stored in the database the client is connected to.
pub(crate) fn stored_version(client: &mut Client) -> Result<Stored, postgres::Error> {
    let row = client.query_one(
        "SELECT to_regclass('flujo_schema') IS NOT NULL AND to_regclass('runs') IS NOT NULL",
        &[],
    )?;
    if !row.get::<_, bool>(0) {
        return Ok(Stored::Nothing);
    }
    let row = client.query_one("SELECT coalesce(max(version), 0) FROM flujo_schema", &[])?;
    Ok(Stored::Version(row.get(0)))
}

/// What migrating found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Migrated {
    /// The schema is at [`SCHEMA_VERSION`] (`applied`: versions this call applied).
    Current {
        /// Versions applied by this call (0 when another process had migrated).
        applied: i64,
    },
    /// A newer flujo wrote this database: nothing was changed.
    TooNew(i64),
}

/// Brings the database to [`SCHEMA_VERSION`]: at once when it is there, else in one transaction
/// under [`MIGRATION_LOCK`], re-reading the version once the lock is held.
pub(crate) fn migrate(client: &mut Client) -> Result<Migrated, postgres::Error> {
    match stored_version(client)? {
        Stored::Version(version) if version == SCHEMA_VERSION => {
            return Ok(Migrated::Current { applied: 0 })
        }
        Stored::Version(version) if version > SCHEMA_VERSION => {
            return Ok(Migrated::TooNew(version))
        }
        _ => {}
    }
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(SUPPORT)?;
    let row = tx.query_one("SELECT coalesce(max(version), 0) FROM flujo_schema", &[])?;
    let found: i64 = row.get(0);
    if found > SCHEMA_VERSION {
        return Ok(Migrated::TooNew(found));
    }
    for (version, description) in SCHEMA_CHANGES.iter().filter(|(v, _)| *v > found) {
        tx.batch_execute(change_to(*version))?;
        tx.execute(
            "INSERT INTO flujo_schema (version, description) VALUES ($1, $2)",
            &[version, description],
        )?;
    }
    tx.commit()?;
    Ok(Migrated::Current {
        applied: SCHEMA_VERSION - found,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_version_has_its_postgres_change() {
        for (version, _) in flujo_trace_core::SCHEMA_CHANGES {
            assert!(!super::change_to(version).trim().is_empty());
        }
    }
}
