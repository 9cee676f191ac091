//! Repairing a store whose log is damaged where recovery must refuse to
//! guess: what recovery cut on its own ([`TailCut`]).

use std::fmt;
use std::path::PathBuf;

/// What recovery cut off the end of the newest segment when it opened a
/// store: the final batch, which a crash had left damaged before it was
/// synced (see `FORMAT.md`, "Recovery"). From
/// [`Store::tail_cut`](crate::Store::tail_cut).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailCut {
    /// The segment file.
    pub file: PathBuf,
    /// The offset it was truncated at: where the dropped batch began.
    pub offset: u64,
    /// How many bytes were dropped.
    pub bytes: u64,
    /// The first and last sequence numbers dropped, when known (from the
    /// batch header, or else from the records that survived in the batch).
    pub seqs: Option<(u64, u64)>,
}

impl fmt::Display for TailCut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cut {} bytes off {} at offset {}",
            self.bytes,
            self.file.display(),
            self.offset
        )?;
        match self.seqs {
            Some((first, last)) => write!(f, " (seqs {first} to {last})"),
            None => write!(f, " (no whole record)"),
        }
    }
}
