//! The one error type of the storage crate.
//!
//! Every failure a caller can see is a variant here, with the file and
//! offset where that helps. Messages are lowercase and do not repeat the
//! text of their source; walk [`std::error::Error::source`] for that.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A specialised `Result` for store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which part of a write was over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The key.
    Key,
    /// The value.
    Value,
}

/// Everything that can go wrong in the store.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed. `action` says what the store was doing
    /// ("open", "sync", "append to", …) and `path` on which file.
    Io {
        /// What the store was doing, as a verb phrase.
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Bytes on disk are damaged: a checksum failed, or a field is
    /// impossible. Never yields a wrong value. When the file is a segment,
    /// the message names the repair command, `duokv repair <dir>` (see the
    /// [`repair`](crate::repair) module).
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// The byte offset in that file where the damage was found.
        offset: u64,
        /// What is wrong, in a few lowercase words.
        reason: &'static str,
    },
    /// The directory holds a segment written by a format version this build
    /// does not read.
    UnsupportedVersion {
        /// The segment file.
        file: PathBuf,
        /// The version found in its header.
        version: u32,
    },
    /// A key or value is longer than the store accepts; nothing was written.
    TooLarge {
        /// The key or the value.
        field: Field,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// `update` or a delete named a key that is not in the store.
    NotFound,
    /// `create` named a key that is already in the store.
    AlreadyExists,
    /// `apply` was given a sequence number that does not follow the last one.
    OutOfOrder {
        /// The sequence number the store expected (its last plus one).
        expected: u64,
        /// The sequence number it was given.
        got: u64,
    },
    /// `records_since` was asked for records that compaction already
    /// dropped: the caller needs a full snapshot instead.
    Compacted {
        /// The sequence number asked for.
        since: u64,
        /// Records at or below this sequence number may be gone.
        horizon: u64,
    },
    /// `records_since` was asked for a sequence number newer than the store's
    /// last: the asker holds writes this store never had.
    UnknownSeq {
        /// The sequence number asked for.
        since: u64,
        /// The store's last sequence number.
        last_seq: u64,
    },
    /// `adopt_history` was given a history this store's log is not a
    /// prefix of: only `install_snapshot` can replace its contents.
    OtherHistory {
        /// This store's history ID.
        own: u64,
        /// This store's last sequence number.
        last_seq: u64,
        /// The history ID it was asked to take.
        theirs: u64,
    },
    /// Another `Store` (in this process or another) has the directory open.
    Locked {
        /// The directory.
        dir: PathBuf,
    },
    /// An earlier `fsync` failed, so the store no longer knows what is on
    /// disk and refuses every write until it is reopened.
    Poisoned,
    /// A call that holds records back was made on a store opened without
    /// gated visibility.
    NotGated,
}

impl Error {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(file: &Path, offset: u64, reason: &'static str) -> Error {
        Error::Corrupt {
            file: file.to_path_buf(),
            offset,
            reason,
        }
    }

    /// A copy of this error for another writer of the same failed batch
    /// (`io::Error` is not `Clone`: its kind and text are kept).
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io {
                action,
                path,
                source,
            } => Error::Io {
                action,
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Error::Corrupt {
                file,
                offset,
                reason,
            } => Error::Corrupt {
                file: file.clone(),
                offset: *offset,
                reason,
            },
            Error::Poisoned => Error::Poisoned,
            other => Error::Io {
                action: "write",
                path: PathBuf::new(),
                source: io::Error::other(other.to_string()),
            },
        }
    }

    /// The I/O error behind this error, if there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The file this error is about, if it is about one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Io { path, .. } => Some(path),
            Error::Corrupt { file, .. } | Error::UnsupportedVersion { file, .. } => Some(file),
            Error::Locked { dir } => Some(dir),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { action, path, .. } => write!(f, "cannot {action} {}", path.display()),
            Error::Corrupt {
                file,
                offset,
                reason,
            } => {
                write!(
                    f,
                    "corrupt log: {reason} in {} at offset {offset}",
                    file.display()
                )?;
                if file.extension().is_some_and(|ext| ext == "seg") {
                    let dir = file.parent().unwrap_or(Path::new("."));
                    write!(
                        f,
                        "; this is not an unsynced tail: run `duokv repair {}` to see what \
                         cutting the log there drops, and to cut it keeping a backup",
                        dir.display()
                    )?;
                }
                Ok(())
            }
            Error::UnsupportedVersion { file, version } => write!(
                f,
                "{} was written by format version {version}, this build reads versions {} to {}",
                file.display(),
                crate::format::OLDEST_FORMAT_VERSION,
                crate::format::FORMAT_VERSION
            ),
            Error::TooLarge { field, len, max } => {
                let name = match field {
                    Field::Key => "key",
                    Field::Value => "value",
                };
                write!(f, "{name} of {len} bytes is over the limit of {max} bytes")
            }
            Error::NotFound => write!(f, "key not found"),
            Error::AlreadyExists => write!(f, "key already exists"),
            Error::OutOfOrder { expected, got } => {
                write!(f, "sequence number {got} out of order: expected {expected}")
            }
            Error::Compacted { since, horizon } => write!(
                f,
                "records after sequence number {since} were compacted away (horizon {horizon})"
            ),
            Error::UnknownSeq { since, last_seq } => {
                write!(
                    f,
                    "sequence number {since} is newer than the store's last ({last_seq})"
                )
            }
            Error::OtherHistory {
                own,
                last_seq,
                theirs,
            } => write!(
                f,
                "this log (history {own:016x}, up to sequence number {last_seq}) is not a \
                 prefix of history {theirs:016x}"
            ),
            Error::Locked { dir } => {
                write!(f, "{} is already open in another store", dir.display())
            }
            Error::Poisoned => write!(f, "store refuses writes after a failed sync; reopen it"),
            Error::NotGated => write!(f, "the store was opened without gated visibility"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_and_name_the_place() {
        let err = Error::corrupt(Path::new("/d/seg"), 77, "record checksum mismatch");
        assert_eq!(
            err.to_string(),
            "corrupt log: record checksum mismatch in /d/seg at offset 77"
        );
        let err = Error::io("sync", Path::new("/d/seg"), io::Error::other("boom"));
        assert_eq!(err.to_string(), "cannot sync /d/seg");
        assert_eq!(std::error::Error::source(&err).unwrap().to_string(), "boom");
        let too_large = Error::TooLarge {
            field: Field::Key,
            len: 70000,
            max: 65536,
        };
        assert_eq!(
            too_large.to_string(),
            "key of 70000 bytes is over the limit of 65536 bytes"
        );
    }
}
