//! The `COMMITTED` file of a gated store: the last publish limit it
//! learned, so that a restarted slave knows what it may show before its
//! master tells it again.
//!
//! Two fixed slots of [`SLOT_LEN`] bytes, each a magic, a generation, the
//! limit and a CRC. An update writes the slot the newest valid one is not
//! in, with the next generation, with one positional write; reading takes
//! the valid slot of the highest generation. A torn update damages only
//! the slot it wrote, so the other still holds the previous limit.
//!
//! Updates are **not synced**: every limit written is one the master has
//! declared durable, so whatever older (lower) value a crash leaves only
//! holds back more records, never shows one the master lost. Two writes
//! are synced, since they must not be lost: creating the file (a missing
//! file means "publish everything") and lowering the limit (only
//! installing a snapshot does). `FORMAT.md` draws the bytes.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use log::{info, warn};

use crate::error::{Error, Result};
use crate::fault::Faults;
use crate::lock::lock;
use crate::segment::{sync_dir, sync_metadata_file};

/// The file's name in the store's directory.
pub(crate) const FILE: &str = "COMMITTED";

/// The magic at the start of each slot: "DKVC".
const MAGIC: [u8; 4] = *b"DKVC";

/// Bytes of one slot: magic, generation, limit, CRC.
pub(crate) const SLOT_LEN: usize = 24;

/// What a gated store's directory holds before it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// No `COMMITTED` file: a store made before gating, or a new one.
    Missing,
    /// The valid slot of the highest generation.
    Found { generation: u64, limit: u64 },
    /// A file whose slots are both invalid.
    Damaged,
}

impl Stored {
    /// The limit recovery starts from: everything is shown when the file
    /// is missing, nothing of the log when it is damaged.
    pub(crate) fn limit(self) -> u64 {
        match self {
            Stored::Missing => u64::MAX,
            Stored::Found { limit, .. } => limit,
            Stored::Damaged => 0,
        }
    }
}

/// Reads the `COMMITTED` file of `dir`, warning if it is damaged.
pub(crate) fn read(dir: &Path) -> Result<Stored> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Stored::Missing),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    let newest = bytes
        .chunks_exact(SLOT_LEN)
        .take(2)
        .filter_map(decode_slot)
        .max_by_key(|&(generation, _)| generation);
    Ok(match newest {
        Some((generation, limit)) => Stored::Found { generation, limit },
        None => {
            warn!(
                "{}: no valid slot; holding every log record until the master \
                 declares it durable again",
                path.display()
            );
            Stored::Damaged
        }
    })
}

/// Encodes one slot: magic, generation and limit (little-endian), and the
/// CRC-32 of the 20 bytes before it.
fn encode_slot(generation: u64, limit: u64) -> [u8; SLOT_LEN] {
    let mut slot = [0u8; SLOT_LEN];
    slot[0..4].copy_from_slice(&MAGIC);
    slot[4..12].copy_from_slice(&generation.to_le_bytes());
    slot[12..20].copy_from_slice(&limit.to_le_bytes());
    let crc = crc32fast::hash(&slot[..20]);
    slot[20..24].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// The generation and limit of a valid slot; `None` if it is not one.
fn decode_slot(slot: &[u8]) -> Option<(u64, u64)> {
    let slot: &[u8; SLOT_LEN] = slot.try_into().ok()?;
    let u64_at = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&slot[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    let crc = u32::from_le_bytes([slot[20], slot[21], slot[22], slot[23]]);
    if slot[0..4] != MAGIC || crc32fast::hash(&slot[..20]) != crc {
        return None;
    }
    Some((u64_at(4), u64_at(12)))
}

/// The open `COMMITTED` file and what it holds.
#[derive(Debug)]
pub(crate) struct Committed {
    path: PathBuf,
    file: File,
    faults: Faults,
    /// What the file holds; its lock serialises the updates.
    slots: Mutex<Slots>,
}

/// The newest slot written.
#[derive(Debug, Clone, Copy)]
struct Slots {
    generation: u64,
    limit: u64,
}

impl Committed {
    /// Opens the file of `dir`, found as `stored`. A missing file is
    /// created, durably, holding `last_seq` (every record of a store made
    /// before gating is shown, as it was).
    pub(crate) fn open(
        dir: &Path,
        stored: Stored,
        last_seq: u64,
        faults: &Faults,
    ) -> Result<Committed> {
        let path = dir.join(FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        let slots = match stored {
            Stored::Found { generation, limit } => Slots { generation, limit },
            Stored::Damaged => Slots {
                generation: 0,
                limit: 0,
            },
            Stored::Missing => {
                if last_seq > 0 {
                    info!(
                        "{}: created, showing every record through seq {last_seq} \
                         (written before visibility was gated)",
                        path.display()
                    );
                }
                let mut both = encode_slot(0, last_seq).to_vec();
                both.extend_from_slice(&encode_slot(1, last_seq));
                file.write_all_at(&both, 0)
                    .map_err(|e| Error::io("write", &path, e))?;
                sync_metadata_file(&file, &path, faults)?;
                sync_dir(dir, faults)?;
                Slots {
                    generation: 1,
                    limit: last_seq,
                }
            }
        };
        Ok(Committed {
            path,
            file,
            faults: faults.clone(),
            slots: Mutex::new(slots),
        })
    }

    /// Locks the file for an update: the lock is taken after the writer's
    /// and before the index's (see the `store` module).
    pub(crate) fn lock(&self) -> CommittedGuard<'_> {
        CommittedGuard {
            committed: self,
            slots: lock(&self.slots),
        }
    }
}

/// The `COMMITTED` file, locked for an update.
pub(crate) struct CommittedGuard<'a> {
    committed: &'a Committed,
    slots: MutexGuard<'a, Slots>,
}

impl CommittedGuard<'_> {
    /// The limit the file holds (as far as this store wrote it).
    pub(crate) fn limit(&self) -> u64 {
        self.slots.limit
    }

    /// Writes `limit` to the slot the newest is not in, with the next
    /// generation. Not synced unless `sync`; see the module docs.
    pub(crate) fn store(&mut self, limit: u64, sync: bool) -> Result<()> {
        let committed = self.committed;
        let generation = self.slots.generation + 1;
        let offset = (generation % 2) * SLOT_LEN as u64;
        committed
            .file
            .write_all_at(&encode_slot(generation, limit), offset)
            .map_err(|e| Error::io("write", &committed.path, e))?;
        if sync {
            sync_metadata_file(&committed.file, &committed.path, &committed.faults)?;
        }
        *self.slots = Slots { generation, limit };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_round_trips_and_any_flipped_bit_invalidates_it() {
        let slot = encode_slot(7, 42);
        assert_eq!(decode_slot(&slot), Some((7, 42)));
        for byte in 0..SLOT_LEN {
            let mut bad = slot;
            bad[byte] ^= 0x10;
            assert_eq!(decode_slot(&bad), None, "byte {byte}");
        }
        assert_eq!(decode_slot(&[0u8; SLOT_LEN]), None);
        assert_eq!(decode_slot(&slot[..20]), None);
    }

    #[test]
    fn updates_alternate_slots_and_reading_takes_the_newest_valid() {
        let dir = tempfile::tempdir().unwrap();
        let faults = Faults::default();
        let committed = Committed::open(dir.path(), Stored::Missing, 3, &faults).unwrap();
        assert_eq!(
            read(dir.path()).unwrap(),
            Stored::Found {
                generation: 1,
                limit: 3
            }
        );
        committed.lock().store(5, false).unwrap(); // generation 2, slot 0
        committed.lock().store(9, false).unwrap(); // generation 3, slot 1
        assert_eq!(read(dir.path()).unwrap().limit(), 9);

        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[SLOT_LEN + 13] ^= 1; // tear the newest
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(dir.path()).unwrap().limit(), 5);
        bytes[13] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Stored::Damaged);
    }
}
