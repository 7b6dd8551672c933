//! `PostgresImporter`: whole runs with their steps written into a PostgreSQL store, for
//! `flujo lens copy` (moving a local history into the shared store). Idempotent: copying again
//! writes nothing twice, and brings a run copied while it was running up to date once it ended.

use flujo_trace_core::{PostgresUri, RunRecord, StepRecord};

use crate::sink::{Access, Heartbeat, PostgresSink};
use crate::Error;

/// A PostgreSQL store opened to import runs into (creating or upgrading its schema).
pub struct PostgresImporter {
    sink: PostgresSink,
}

impl std::fmt::Debug for PostgresImporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresImporter").finish_non_exhaustive()
    }
}

impl PostgresImporter {
    /// Connects to the store at `uri`, creating or upgrading its schema as a writer does.
    pub fn open(uri: &PostgresUri) -> Result<PostgresImporter, Error> {
        // an importer writes rows of other processes: it has no identity and never beats
        let heartbeat = Heartbeat {
            interval: std::time::Duration::from_secs(3600),
            missed: 1,
        };
        // with the server's durability: a copy that said it finished has every row on its disk
        let mut sink = PostgresSink::new(uri.clone(), Access::Import, None, heartbeat)?;
        sink.import(&[], &[])?;
        Ok(PostgresImporter { sink })
    }

    /// Writes `runs` and `steps` (steps of those runs, or of runs already there) in one
    /// transaction, in execution order.
    pub fn import(&mut self, runs: &[RunRecord], steps: &[StepRecord]) -> Result<(), Error> {
        self.sink.import(runs, steps)
    }
}
