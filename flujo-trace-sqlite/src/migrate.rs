//! The schema (`schema/*.sql`) and the one migration driver that creates and upgrades databases.

/// The newest schema version this build writes and reads (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = 2;
