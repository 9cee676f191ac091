//! What recovery may cut off the end of the newest segment, and the one
//! rule that decides it (`FORMAT.md`, "Recovery"): recovery applies it when
//! it opens a store, and the repair tool's report says with it whether a
//! damaged region is a final batch that opening the store would cut.

use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::segment::{self, OpenBatch, Segment};

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
        write!(f, " ({})", seqs_text(self.seqs))
    }
}

/// Decides whether damage in the newest, framed segment lies in its final
/// batch, which may not have been synced: then it returns the cut, at the
/// start of that batch. `batch_start` is where the batch begins (the end
/// of the last whole one), `open` the batch the damage was found in if its
/// header passed its checks, `last_seq` the last seq of the whole batches.
///
/// The damaged batch is the final one if, after it (after its end when its
/// header is intact, else anywhere after its start), no valid batch header
/// starts and no valid record goes back in sequence: a valid batch header
/// there means the damage is in an earlier batch, which was synced before
/// the later one was written (or the store was opened since), and must be
/// refused.
pub(crate) fn final_batch_cut(
    segment: &Segment,
    file_len: u64,
    batch_start: u64,
    open: Option<OpenBatch>,
    last_seq: u64,
) -> Result<Option<TailCut>> {
    let search_from = open
        .filter(|batch| batch.start == batch_start)
        .map_or(batch_start + 1, |batch| batch.end());
    let after = tail_after(segment, search_from, file_len)?;
    let found = segment::scan_for_frames(segment.framing().unwrap_or(0), &after);
    if found.batch_header || found.seqs.is_some_and(|(first, _)| first <= last_seq) {
        return Ok(None);
    }
    let seqs = match open {
        Some(batch) => Some((batch.header.first_seq, batch.header.last_seq())),
        None => found.seqs,
    };
    Ok(Some(TailCut {
        file: segment.path.clone(),
        offset: batch_start,
        bytes: file_len - batch_start,
        seqs,
    }))
}

/// The bytes of `segment` from `start` to `file_len` (none if `start` is
/// past it).
pub(crate) fn tail_after(segment: &Segment, start: u64, file_len: u64) -> Result<Vec<u8>> {
    let mut tail = Vec::new();
    if start >= file_len {
        return Ok(tail);
    }
    let read_error = |e| Error::io("read", &segment.path, e);
    let mut file = &segment.file;
    file.seek(SeekFrom::Start(start)).map_err(read_error)?;
    file.take(file_len - start)
        .read_to_end(&mut tail)
        .map_err(read_error)?;
    Ok(tail)
}

/// The seqs of a cut, for people: `seqs 4 to 7`, or `no whole record`
/// when none survived to be counted.
pub(crate) fn seqs_text(seqs: Option<(u64, u64)>) -> String {
    match seqs {
        Some((first, last)) => format!("seqs {first} to {last}"),
        None => "no whole record".to_string(),
    }
}
