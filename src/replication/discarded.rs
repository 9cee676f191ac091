//! Saving the writes a full resync would discard, before it runs.
//!
//! When a node joins a master as its slave, the slave's `join_history`
//! decides whether the master's history continues the store's. Two cases
//! end in a full resync that replaces the store's contents:
//!
//! - the master's history has this store's as an **ancestor that ended at
//!   seq `end`**, but the store holds writes after `end`: the old master
//!   of a pair, restarted as the slave of its promoted slave (which had not
//!   received them, async mode), or a slave holding writes its master lost
//!   in a crash (they are forwarded before the master's own sync). In async
//!   mode clients may have been told those writes succeeded;
//! - the master's history is **unrelated** and `--on-divergence resync`
//!   asks for the contents to be replaced.
//!
//! In both, before anything is replaced, every record the resync would
//! discard (seqs `end + 1` to [`Store::applied_seq`], held records
//! included; in the unrelated case the whole log) is written to a
//! discarded-writes file in the data directory
//! ([`crate::discarded_writes`]), synced, and named in a `warn!`. If that
//! fails the stream is refused: nothing is discarded unsaved. Nothing is
//! ever replayed on its own: an operator decides, with
//! `duokv replay-discarded`.
//!
//! **Saving the whole log of an unrelated history** may be large (it is the
//! store's whole log, to the limit of the disk); it is the safe choice, as
//! `--on-divergence resync` is asked for by name. What compaction already
//! dropped (overwritten values, deletes) cannot be saved: only the live
//! values of the compacted range, and the warning says so.
//!
//! A leaf: it imports nothing of `slave`, which calls it, nor of `master`.

use std::path::PathBuf;

use duokv_storage::{History, Kinship, Store};
use log::{info, warn};

use crate::clock::now_ns;
use crate::discarded_writes::{self, DiscardedError};

/// Saves the records of `store` that joining `master` (of history
/// `master_history`, at `peer`) would have a full resync discard, if any:
/// see the module docs. `resync_unrelated`: the slave runs with
/// `--on-divergence resync`, so an unrelated history is resynced (else it
/// is refused, and nothing needs saving).
///
/// Returns the file written, `None` when nothing is discarded or the range
/// was saved already (a previous attempt whose resync did not finish).
pub(crate) fn save_before_resync(
    store: &Store,
    resync_unrelated: bool,
    master_history: &History,
    peer: &str,
) -> Result<Option<PathBuf>, Unsaved> {
    let own = store.history_id();
    let last = store.applied_seq();
    if master_history.id == own || last == 0 {
        return Ok(None);
    }
    // As `join_history` decides: through forks that wrote nothing (a
    // stale master restarted before it learned it was replaced).
    let end = match master_history.kinship_of(&store.history(), last) {
        Kinship::Current => return Ok(None),
        Kinship::Ancestor { last_seq: end } if last <= end => return Ok(None),
        Kinship::Ancestor { last_seq: end } => end,
        Kinship::Unrelated if resync_unrelated => 0,
        Kinship::Unrelated => return Ok(None),
    };
    let theirs = master_history.id;
    let unsaved = |cause| Unsaved {
        count: last - end,
        end,
        theirs,
        cause,
    };
    let dir = store.dir();
    if let Some(path) = discarded_writes::already_saved(dir, own, end + 1, last).map_err(unsaved)? {
        info!(
            "the {} writes after seq {end}, which master {peer}'s history {theirs:016x} does \
             not hold, were saved to {} already",
            last - end,
            path.display()
        );
        return Ok(None);
    }
    let records = store
        .records_with_times_since(end)
        .map_err(|e| unsaved(DiscardedError::Store(e)))?;
    let compacted = records.compacted_through();
    let name = discarded_writes::file_name(own, end + 1, last, now_ns());
    let saved = discarded_writes::save(dir, &name, records).map_err(unsaved)?;
    warn!(
        "{} writes after seq {end}, which master {peer}'s history {theirs:016x} does not hold, \
         were saved to {} before the resync replaces them (replay them with `duokv \
         replay-discarded`)",
        saved.rows,
        saved.path.display()
    );
    if let Some(horizon) = compacted {
        warn!(
            "seqs {} to {horizon} of {} had been compacted: only the values still live among \
             them are saved, without their write times; their overwritten values and deletes \
             are gone",
            end + 1,
            saved.path.display()
        );
    }
    Ok(Some(saved.path))
}

/// Why the writes a resync would discard could not be saved: the slave
/// refuses the stream rather than discard them.
#[derive(Debug)]
pub(crate) struct Unsaved {
    count: u64,
    end: u64,
    theirs: u64,
    cause: DiscardedError,
}

impl Unsaved {
    /// The refusal's reason for both sides' logs: this error and its
    /// causes, in one line.
    pub(crate) fn reason(&self) -> String {
        let mut reason = self.to_string();
        let mut cause: Option<&dyn std::error::Error> = Some(&self.cause);
        while let Some(error) = cause {
            reason.push_str(": ");
            reason.push_str(&error.to_string());
            cause = error.source();
        }
        reason
    }
}

impl std::fmt::Display for Unsaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the slave keeps its {} writes after seq {}, which master history {:016x} does not \
             hold, and refuses the stream: it cannot save them before a resync would replace them",
            self.count, self.end, self.theirs
        )
    }
}

impl std::error::Error for Unsaved {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}
