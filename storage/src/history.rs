//! The history a store's log belongs to: a random ID, and the IDs of the
//! histories it continues, each with the last sequence number written
//! under it. Kept in the file `HISTORY` beside the segments.
//!
//! A new store draws an ID. A master *forks* a new history every time it
//! starts ([`Store::fork_history`](crate::Store::fork_history)): the old ID
//! becomes an ancestor that ended at the store's last sequence number, made
//! durable first. A master forwards writes to its slave before its own
//! `fdatasync` returns, so after a crash of the master's host the slave may
//! hold writes the master lost (never acknowledged: an acknowledgement waits
//! for the master's sync). The fork is what tells those writes apart: a
//! slave of an ancestor history whose log ends at or before the fork point
//! holds a prefix of the master's log and goes on from there; one whose log
//! ends after it holds writes the master may not have, and is resynced. A
//! store of an unrelated history (a master restarted on an empty
//! directory) is never continued from the master's log. This is Redis's
//! PSYNC2 (its `replid2` and `second_replid_offset`) with a longer memory.
//!
//! The file is text: the current ID in 16 hex digits and a newline, then
//! one line per ancestor, newest first: its ID in 16 hex digits, a space,
//! its last sequence number in decimal, a newline. At most
//! [`MAX_ANCESTORS`] are kept. A file of one line (as written before
//! ancestors were kept) is a history with none. It is replaced by writing a
//! temporary file, syncing it, renaming it and syncing the directory.

use std::fs;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::fault::Faults;
use crate::segment::{sync_dir, sync_metadata_file};

const FILE: &str = "HISTORY";

/// Ancestors kept: a slave away for more master restarts than this is
/// resynced in full.
pub const MAX_ANCESTORS: usize = 16;

/// A history an ID continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ancestor {
    /// The ancestor's history ID.
    pub id: u64,
    /// The last sequence number written under it; the next history began
    /// with the one after.
    pub last_seq: u64,
}

/// The history of a store's log: [`Store::history`](crate::Store::history).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct History {
    /// The current history ID (never 0).
    pub id: u64,
    /// The histories this one continues, newest first.
    pub ancestors: Vec<Ancestor>,
}

/// How a log of some history relates to a [`History`]: from
/// [`History::kinship`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kinship {
    /// The same history.
    Current,
    /// An ancestor, which ended at `last_seq`: a log of it that ends at or
    /// before `last_seq` is a prefix of this history's log.
    Ancestor {
        /// The ancestor's last sequence number.
        last_seq: u64,
    },
    /// Neither: the two logs have nothing known in common.
    Unrelated,
}

impl History {
    /// A history with no ancestors.
    pub fn new(id: u64) -> History {
        History {
            id,
            ancestors: Vec::new(),
        }
    }

    /// How a log of history `id` relates to this one.
    pub fn kinship(&self, id: u64) -> Kinship {
        if id == self.id {
            return Kinship::Current;
        }
        self.ancestors
            .iter()
            .find(|ancestor| ancestor.id == id)
            .map_or(Kinship::Unrelated, |ancestor| Kinship::Ancestor {
                last_seq: ancestor.last_seq,
            })
    }

    /// Whether a log of history `id` that ends at `last_seq` is a prefix of
    /// this history's log (as far as the IDs can tell).
    pub fn has_prefix(&self, id: u64, last_seq: u64) -> bool {
        match self.kinship(id) {
            Kinship::Current => true,
            Kinship::Ancestor { last_seq: end } => last_seq <= end,
            Kinship::Unrelated => false,
        }
    }

    /// How a log of history `log` that ends at `last_seq` relates to this
    /// history, seeing through forks that wrote nothing: a node that forks
    /// a history each time it starts (a master) and then writes nothing
    /// holds a log of the history it forked from, under its fork's ID. So
    /// the log's own ID is tried, then each ancestor that ended exactly at
    /// `last_seq`, newest first; the first kinship found is the answer
    /// ([`Kinship::Unrelated`] if none is known).
    pub fn kinship_of(&self, log: &History, last_seq: u64) -> Kinship {
        let same_log = std::iter::once(log.id).chain(
            log.ancestors
                .iter()
                .take_while(|ancestor| ancestor.last_seq == last_seq)
                .map(|ancestor| ancestor.id),
        );
        same_log
            .map(|id| self.kinship(id))
            .find(|kinship| *kinship != Kinship::Unrelated)
            .unwrap_or(Kinship::Unrelated)
    }

    /// Whether a log of history `log` that ends at `last_seq` is a prefix
    /// of this history's log, seeing through forks that wrote nothing (see
    /// [`kinship_of`](Self::kinship_of)).
    pub fn has_prefix_of(&self, log: &History, last_seq: u64) -> bool {
        match self.kinship_of(log, last_seq) {
            Kinship::Current => true,
            Kinship::Ancestor { last_seq: end } => last_seq <= end,
            Kinship::Unrelated => false,
        }
    }

    /// The history that follows this one at `last_seq`, under a fresh ID.
    pub(crate) fn fork(&self, last_seq: u64) -> History {
        let mut ancestors = Vec::with_capacity(MAX_ANCESTORS);
        ancestors.push(Ancestor {
            id: self.id,
            last_seq,
        });
        ancestors.extend(self.ancestors.iter().take(MAX_ANCESTORS - 1));
        let mut id = draw();
        while id == self.id || ancestors.iter().any(|a| a.id == id) {
            id = draw();
        }
        History { id, ancestors }
    }

    fn to_text(&self) -> String {
        let mut text = format!("{:016x}\n", self.id);
        for ancestor in &self.ancestors {
            text.push_str(&format!("{:016x} {}\n", ancestor.id, ancestor.last_seq));
        }
        text
    }

    fn parse(text: &str, path: &Path) -> Result<History> {
        let corrupt = |line: usize, why: &'static str| Error::corrupt(path, line as u64, why);
        let mut lines = text.lines();
        let id = lines
            .next()
            .and_then(|line| u64::from_str_radix(line.trim(), 16).ok())
            .filter(|&id| id != 0)
            .ok_or_else(|| corrupt(0, "history id is not 16 hex digits"))?;
        let mut ancestors = Vec::new();
        for (n, line) in lines.enumerate() {
            let ancestor = line
                .split_once(' ')
                .and_then(|(id, seq)| {
                    Some(Ancestor {
                        id: u64::from_str_radix(id, 16).ok()?,
                        last_seq: seq.trim().parse().ok()?,
                    })
                })
                .ok_or_else(|| corrupt(n + 1, "an ancestor line is not `<hex id> <seq>`"))?;
            ancestors.push(ancestor);
        }
        ancestors.truncate(MAX_ANCESTORS);
        Ok(History { id, ancestors })
    }
}

/// The store's history, drawn and saved if it has none yet.
pub(crate) fn load_or_create(dir: &Path, faults: &Faults) -> Result<History> {
    let path = dir.join(FILE);
    match fs::read_to_string(&path) {
        Ok(text) => History::parse(&text, &path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let history = History::new(draw());
            save(dir, &history, faults)?;
            Ok(history)
        }
        Err(e) => Err(Error::io("read", &path, e)),
    }
}

/// Replaces the saved history, crash-safely and under every sync policy:
/// the file says what the store is, so a power cut must find either the
/// old file or the new one whole, never a renamed file with no bytes. It
/// writes `HISTORY.tmp`, syncs it, renames it over `HISTORY` and syncs the
/// directory.
pub(crate) fn save(dir: &Path, history: &History, faults: &Faults) -> Result<()> {
    let path = dir.join(FILE);
    let temp = dir.join(format!("{FILE}.tmp"));
    let mut file = fs::File::create(&temp).map_err(|e| Error::io("create", &temp, e))?;
    file.write_all(history.to_text().as_bytes())
        .map_err(|e| Error::io("write", &temp, e))?;
    sync_metadata_file(&file, &temp, faults)?;
    fs::rename(&temp, &path).map_err(|e| Error::io("rename", &temp, e))?;
    sync_dir(dir, faults)
}

/// A random, non-zero ID (0 means "none" on the wire). `RandomState` is
/// seeded from the OS's randomness; mixing in the clock and the process id
/// keeps two draws in one process apart.
fn draw() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish().max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_history_is_drawn_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let history = load_or_create(dir.path(), &Faults::default()).unwrap();
        assert_ne!(history.id, 0);
        assert!(history.ancestors.is_empty());
        assert_eq!(
            load_or_create(dir.path(), &Faults::default()).unwrap(),
            history
        );
        save(dir.path(), &History::new(42), &Faults::default()).unwrap();
        assert_eq!(
            load_or_create(dir.path(), &Faults::default()).unwrap(),
            History::new(42)
        );
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            load_or_create(other.path(), &Faults::default()).unwrap().id,
            42
        );
    }

    #[test]
    fn the_file_is_the_documented_text() {
        let dir = tempfile::tempdir().unwrap();
        let history = History {
            id: 0xab,
            ancestors: vec![
                Ancestor {
                    id: 0x2,
                    last_seq: 90,
                },
                Ancestor {
                    id: 0x1,
                    last_seq: 7,
                },
            ],
        };
        save(dir.path(), &history, &Faults::default()).unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join(FILE)).unwrap(),
            "00000000000000ab\n0000000000000002 90\n0000000000000001 7\n"
        );
        assert_eq!(
            load_or_create(dir.path(), &Faults::default()).unwrap(),
            history
        );
    }

    #[test]
    fn a_one_line_file_has_no_ancestors() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), "00000000000000ab\n").unwrap();
        assert_eq!(
            load_or_create(dir.path(), &Faults::default()).unwrap(),
            History::new(0xab)
        );
    }

    #[test]
    fn forks_keep_the_newest_ancestors() {
        let mut history = History::new(1);
        for seq in 1..=(MAX_ANCESTORS as u64 + 5) {
            let before = history.id;
            history = history.fork(seq * 10);
            assert_ne!(history.id, before);
            assert_eq!(
                history.ancestors[0],
                Ancestor {
                    id: before,
                    last_seq: seq * 10
                }
            );
        }
        assert_eq!(history.ancestors.len(), MAX_ANCESTORS);
        let oldest = history.ancestors[MAX_ANCESTORS - 1];
        assert_eq!(oldest.last_seq, 60, "the oldest kept fork");
    }

    #[test]
    fn kinship_and_prefixes() {
        let forked = History::new(1).fork(100).fork(250);
        let middle = forked.ancestors[0].id;
        assert_eq!(forked.kinship(forked.id), Kinship::Current);
        assert_eq!(forked.kinship(middle), Kinship::Ancestor { last_seq: 250 });
        assert_eq!(forked.kinship(1), Kinship::Ancestor { last_seq: 100 });
        assert_eq!(forked.kinship(99), Kinship::Unrelated);
        assert!(forked.has_prefix(forked.id, 10_000));
        assert!(forked.has_prefix(1, 100));
        assert!(!forked.has_prefix(1, 101), "ahead of its fork");
        assert!(forked.has_prefix(middle, 250));
        assert!(!forked.has_prefix(99, 0));
    }

    #[test]
    fn a_fork_that_wrote_nothing_is_seen_through() {
        // A master of history 1 restarted at seq 10 (history 2, empty),
        // while its slave was promoted at seq 10 (history 3).
        let restarted = History::new(1).fork(10);
        let promoted = History::new(1).fork(10);
        assert_eq!(promoted.kinship(restarted.id), Kinship::Unrelated);
        assert_eq!(
            promoted.kinship_of(&restarted, 10),
            Kinship::Ancestor { last_seq: 10 }
        );
        assert!(promoted.has_prefix_of(&restarted, 10));
        // Once the restarted master wrote seq 11, its log is its own.
        assert_eq!(promoted.kinship_of(&restarted, 11), Kinship::Unrelated);
        assert!(!promoted.has_prefix_of(&restarted, 11));
    }

    #[test]
    fn a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        for text in [
            "not hex\n",
            "0000000000000000\n",
            "00000000000000ab\nzz 3\n",
        ] {
            fs::write(dir.path().join(FILE), text).unwrap();
            assert!(
                matches!(
                    load_or_create(dir.path(), &Faults::default()),
                    Err(Error::Corrupt { .. })
                ),
                "{text:?}"
            );
        }
    }
}
