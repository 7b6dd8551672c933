//! The one numbering of schema versions every store follows: version N of PostgreSQL has the
//! tables and columns of version N of SQLite. A store's migration driver applies, for each
//! version, its own SQL for that change; a change lands in every store under the next number.

/// The newest schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = 7;

/// Every schema version and what it changed, oldest first (`SCHEMA_CHANGES[n - 1]` is version
/// `n`).
pub const SCHEMA_CHANGES: [(i64, &str); SCHEMA_VERSION as usize] = [
    (1, "the runs and steps tables of FSD-08 section 5.2"),
    (
        2,
        "run input, output, error, tokens, duration, step count and writer; step parent, kind, \
         attempts and fallback; indexes for newest-first listing",
    ),
    (
        3,
        "the writer's PID namespace; steps(run_id, step_run_id) dropped (steps read in insertion order)",
    ),
    (
        4,
        "runs.output_step_run_id: the step whose row holds the run's output, kept once",
    ),
    (
        5,
        "runs.trace_id: the run span's OpenTelemetry trace id, a link to a tracing backend",
    ),
    (
        6,
        "an index on the end of runs.run_id: short ids (the id's last characters) are an index lookup",
    ),
    (
        7,
        "stats and search: the ended runs by start time with what stats count, and an index of \
         step errors by substring",
    ),
];

#[cfg(test)]
mod tests {
    #[test]
    fn versions_are_numbered_one_by_one() {
        for (i, (version, _)) in super::SCHEMA_CHANGES.iter().enumerate() {
            assert_eq!(*version, i as i64 + 1);
        }
    }
}
