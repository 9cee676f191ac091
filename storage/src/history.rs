//! The history ID: a random number that names the history a store's log
//! belongs to, kept in the file `HISTORY` beside the segments.
//!
//! A new store draws one. A slave that installs its master's snapshot takes
//! the master's. Two stores hold the same history only if one was filled
//! from the other, so replication compares IDs before it streams a log from
//! where the slave's ends: a master restarted on an empty directory has a
//! new ID, and its writes are never spliced onto the slave's old ones.
//!
//! The file holds the ID in 16 hex digits and a newline; it is replaced by
//! writing a temporary file, syncing it, renaming it and syncing the
//! directory.

use std::fs;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::segment::sync_dir;

const FILE: &str = "HISTORY";

/// The store's history ID, drawn and saved if it has none yet.
pub(crate) fn load_or_create(dir: &Path, durable: bool) -> Result<u64> {
    let path = dir.join(FILE);
    match fs::read_to_string(&path) {
        Ok(text) => u64::from_str_radix(text.trim(), 16)
            .map_err(|_| Error::corrupt(&path, 0, "history id is not 16 hex digits")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = draw();
            save(dir, id, durable)?;
            Ok(id)
        }
        Err(e) => Err(Error::io("read", &path, e)),
    }
}

/// Replaces the saved history ID, crash-safely.
pub(crate) fn save(dir: &Path, id: u64, durable: bool) -> Result<()> {
    let path = dir.join(FILE);
    let temp = dir.join(format!("{FILE}.tmp"));
    let mut file = fs::File::create(&temp).map_err(|e| Error::io("create", &temp, e))?;
    file.write_all(format!("{id:016x}\n").as_bytes())
        .map_err(|e| Error::io("write", &temp, e))?;
    if durable {
        file.sync_all().map_err(|e| Error::io("sync", &temp, e))?;
    }
    fs::rename(&temp, &path).map_err(|e| Error::io("rename", &temp, e))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
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
    fn an_id_is_drawn_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let id = load_or_create(dir.path(), true).unwrap();
        assert_ne!(id, 0);
        assert_eq!(load_or_create(dir.path(), true).unwrap(), id);
        save(dir.path(), 42, true).unwrap();
        assert_eq!(load_or_create(dir.path(), true).unwrap(), 42);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create(other.path(), true).unwrap(), 42);
    }

    #[test]
    fn a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE), "not hex\n").unwrap();
        assert!(matches!(
            load_or_create(dir.path(), true),
            Err(Error::Corrupt { .. })
        ));
    }
}
