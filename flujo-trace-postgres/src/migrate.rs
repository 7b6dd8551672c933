//! The PostgreSQL migration driver: the schema versions of the core's one numbering, each as
//! this store's SQL (`schema/*.sql`), applied in one transaction under an advisory lock, so ten
//! processes starting at once on a fresh database migrate it exactly once. The indexes of
//! versions 6 and 7 ([`LATE_INDEXES`]) are built in that transaction only while the tables are
//! small; over a large existing database they are built afterwards with `CREATE INDEX
//! CONCURRENTLY` ([`build_late_indexes`]), which never blocks a writer.

use postgres::Client;

use flujo_trace_core::{SCHEMA_CHANGES, SCHEMA_VERSION};

/// The key of the advisory lock writers migrate under (the bytes of "flujo" and a 1).
const MIGRATION_LOCK: i64 = 0x666c_756a_6f00_0001;

/// The store's own tables (`flujo_schema`, `flujo_writers`), created before any version.
const SUPPORT: &str = include_str!("schema/support.sql");

/// Below these many runs and steps, the migration builds [`LATE_INDEXES`] in its own
/// transaction (a second or so at most, while other writers' statements wait on the lock).
const SMALL_RUNS: i64 = 10_000;
const SMALL_STEPS: i64 = 100_000;

/// The key of the advisory lock of the one process that builds [`LATE_INDEXES`] concurrently.
const INDEX_LOCK: i64 = 0x666c_756a_6f00_0002;

/// An index added by a schema version after its tables held rows.
struct LateIndex {
    name: &'static str,
    /// What follows `CREATE INDEX [CONCURRENTLY] IF NOT EXISTS name`.
    definition: &'static str,
    /// Built only where `pg_trgm` exists (`Some(true)`), only where it does not (`Some(false)`).
    with_trgm: Option<bool>,
}

/// The indexes of schema versions 6 (short ids: the first) and 7 (stats, search in errors).
const LATE_INDEXES: &[LateIndex] = &[
    LateIndex {
        name: "idx_runs_id_tail",
        definition: "ON runs ((right(run_id, 8)))",
        with_trgm: None,
    },
    // a window of runs by start time, with every column stats count in the index itself, so a
    // window is an index-only scan once the table is vacuumed (autovacuum does it)
    LateIndex {
        name: "idx_runs_stats",
        definition: "ON runs (start_time) INCLUDE (pipeline_name, pipeline_version, status, \
                     duration_ms, total_tokens, total_cost)",
        with_trgm: None,
    },
    // search in errors: pg_trgm's trigram index where the extension could be created, else a
    // partial index of the steps that have an error, so a search reads only those
    LateIndex {
        name: "idx_steps_error_trgm",
        definition: "ON steps USING gin (lower(error_blob) gin_trgm_ops) \
                     WHERE error_blob IS NOT NULL",
        with_trgm: Some(true),
    },
    LateIndex {
        name: "idx_steps_error",
        definition: "ON steps (step_run_id) WHERE error_blob IS NOT NULL",
        with_trgm: Some(false),
    },
];

/// The late indexes a database of the current schema lacks, or holds invalid (a concurrent
/// build that was interrupted: its process died), by name, with whether one is there invalid.
fn missing_late_indexes(
    client: &mut impl postgres::GenericClient,
) -> Result<Vec<(&'static LateIndex, bool)>, postgres::Error> {
    let trgm: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm')",
            &[],
        )?
        .get(0);
    let mut missing = Vec::new();
    for index in LATE_INDEXES {
        if index.with_trgm.is_some_and(|wanted| wanted != trgm) {
            continue;
        }
        let row = client.query_opt(
            "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1::text)",
            &[&index.name],
        )?;
        match row.map(|row| row.get::<_, bool>(0)) {
            Some(true) => {}
            Some(false) => missing.push((index, true)),
            None => missing.push((index, false)),
        }
    }
    Ok(missing)
}

/// Whether a late index is missing or invalid.
pub(crate) fn late_indexes_pending(client: &mut Client) -> Result<bool, postgres::Error> {
    Ok(!missing_late_indexes(client)?.is_empty())
}

/// Builds the late indexes a database lacks with `CREATE INDEX CONCURRENTLY`, which lets every
/// writer go on meanwhile (an invalid one, left by a build whose process died, is dropped and
/// built again). One process at a time: another that holds [`INDEX_LOCK`] is left to it.
/// Returns whether this process built them all.
pub(crate) fn build_late_indexes(client: &mut Client) -> Result<bool, postgres::Error> {
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&INDEX_LOCK])?
        .get(0);
    if !locked {
        return Ok(false);
    }
    let built = create_late_indexes(client, "CONCURRENTLY").map(|()| true);
    // the lock goes with the session too
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&INDEX_LOCK]);
    built
}

/// Creates the late indexes a database lacks (dropping an invalid one first), each statement
/// with `how` (`CONCURRENTLY`, or nothing inside a transaction).
fn create_late_indexes(
    client: &mut impl postgres::GenericClient,
    how: &str,
) -> Result<(), postgres::Error> {
    for (index, invalid) in missing_late_indexes(client)? {
        if invalid {
            client.batch_execute(&format!("DROP INDEX {how} IF EXISTS {}", index.name))?;
        }
        client.batch_execute(&format!(
            "CREATE INDEX {how} IF NOT EXISTS {} {}",
            index.name, index.definition
        ))?;
    }
    Ok(())
}

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
    // small tables (a new database among them) get the late indexes at once; larger ones from
    // `build_late_indexes`, without blocking writers
    let small: bool = tx
        .query_one(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM runs LIMIT $1) r) < $1 \
               AND (SELECT count(*) FROM (SELECT 1 FROM steps LIMIT $2) s) < $2",
            &[&SMALL_RUNS, &SMALL_STEPS],
        )?
        .get(0);
    if small {
        create_late_indexes(&mut tx, "")?;
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
