//! [`Shared`]: what every part of a store reads and the write path
//! publishes to: the directory, the options, the index readers see, the
//! history the log belongs to, and (in a gated store) the `COMMITTED` file.
//!
//! The store, its group commit and its compaction each take a `&Shared`
//! instead of reaching into one another: this module imports none of them.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crossbeam_channel::Sender;

use crate::committed::Committed;
use crate::error::Result;
use crate::history::History;
use crate::keydir::Keydir;
use crate::lock::lock;
use crate::options::Options;

/// The state a store's parts share, behind the store's `Arc`.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The directory the store lives in.
    pub(crate) dir: PathBuf,
    /// The options the store was opened with.
    pub(crate) options: Options,
    /// What readers see. Under `Sync::Always` a record enters it only once
    /// it is durable; in a gated store, only once the publish limit reaches
    /// it.
    keydir: RwLock<Keydir>,
    /// The history (see the `history` module).
    history: Mutex<History>,
    /// The `COMMITTED` file, in a store whose visibility is gated.
    pub(crate) committed: Option<Committed>,
    /// Asks the background thread for a compaction.
    compaction_wanted: Sender<()>,
}

impl Shared {
    pub(crate) fn new(
        dir: PathBuf,
        options: Options,
        keydir: Keydir,
        history: History,
        committed: Option<Committed>,
        compaction_wanted: Sender<()>,
    ) -> Shared {
        Shared {
            dir,
            options,
            keydir: RwLock::new(keydir),
            history: Mutex::new(history),
            committed,
            compaction_wanted,
        }
    }

    pub(crate) fn read_keydir(&self) -> RwLockReadGuard<'_, Keydir> {
        self.keydir
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn write_keydir(&self) -> RwLockWriteGuard<'_, Keydir> {
        self.keydir
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The store's history, locked.
    pub(crate) fn history(&self) -> MutexGuard<'_, History> {
        lock(&self.history)
    }

    /// Saves `history` (durably, whatever the policy) and makes it the
    /// store's.
    pub(crate) fn set_history(&self, history: History) -> Result<()> {
        self.save_history(&history)?;
        *self.history() = history;
        Ok(())
    }

    /// Writes `history` to the `HISTORY` file, durably under every policy:
    /// it says what the store is.
    pub(crate) fn save_history(&self, history: &History) -> Result<()> {
        crate::history::save(&self.dir, history, self.options.faults())
    }

    /// Asks for a compaction if `keydir` is past the compaction policy.
    pub(crate) fn compact_if_due(&self, keydir: &Keydir) {
        if let Some(policy) = self.options.compaction_policy() {
            let dead = keydir.dead_bytes();
            if dead >= policy.min_dead_bytes
                && dead as f64 >= policy.dead_ratio * keydir.total_bytes() as f64
            {
                // A full channel means a compaction is already asked for.
                let _ = self.compaction_wanted.try_send(());
            }
        }
    }
}
