//! Reading the log back out: [`RecordsSince`] for replication catch-up,
//! [`TimedRecords`] for the whole log's end with write times, and
//! [`Snapshot`] for a full resync.
//!
//! Both hold `Arc`s of the segment files they read, so a compaction that
//! runs meanwhile does not pull the files from under them: an unlinked file
//! stays readable while it is open.

use std::collections::VecDeque;
use std::io::BufReader;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{RecordKind, SEGMENT_HEADER_LEN};
use crate::keydir::Location;
use crate::record::Op;
use crate::segment::{PositionalReader, RecordScanner, ScanError, Segment};

#[doc(no_inline)]
pub use crate::record::Record;

/// The records above a sequence number, oldest first, from
/// [`Store::records_since`](crate::Store::records_since).
///
/// It yields what the log held when it was made, up to [`until`]
/// (the store's last visible record); records written after that, and a
/// gated store's held records, are not included. An error ends the
/// iteration.
///
/// [`until`]: RecordsSince::until
pub struct RecordsSince {
    since: u64,
    until: u64,
    /// The seq of the last record yielded, or `since`: the iteration ends
    /// once it reaches `until`, even in the middle of a batch (a gated
    /// store may publish part of one).
    last: u64,
    segments: VecDeque<(Arc<Segment>, u64)>,
    current: Option<(Arc<Segment>, RecordScanner<BufReader<PositionalReader>>)>,
    failed: bool,
}

impl std::fmt::Debug for RecordsSince {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordsSince")
            .field("since", &self.since)
            .field("until", &self.until)
            .finish()
    }
}

impl RecordsSince {
    pub(crate) fn new(since: u64, until: u64, segments: Vec<(Arc<Segment>, u64)>) -> Self {
        RecordsSince {
            since,
            until,
            last: since,
            segments: segments.into(),
            current: None,
            failed: false,
        }
    }

    /// The newest sequence number this iterator can yield: the store's last
    /// when it was made.
    pub fn until(&self) -> u64 {
        self.until
    }
}

impl RecordsSince {
    /// The next record with the time its batch was written.
    fn next_timed(&mut self) -> Option<Result<(Record, Option<u64>)>> {
        if self.failed || self.last >= self.until {
            return None;
        }
        loop {
            if self.current.is_none() {
                let (segment, end) = self.segments.pop_front()?;
                let start = SEGMENT_HEADER_LEN as u64;
                let reader = BufReader::with_capacity(
                    256 * 1024,
                    PositionalReader::new(segment.clone(), start, end),
                );
                let framing = segment.framing();
                self.current = Some((segment, RecordScanner::new(reader, start, end, framing)));
            }
            let (segment, scanner) = self.current.as_mut()?;
            match scanner.next_record() {
                Ok(Some(record)) if record.header.seq <= self.since => continue,
                Ok(Some(record)) => {
                    let key = record.key.to_vec();
                    let op = match record.header.kind {
                        RecordKind::Put => Op::Put {
                            key,
                            value: record.value.to_vec(),
                        },
                        RecordKind::Delete => Op::Delete { key },
                    };
                    self.last = record.header.seq;
                    let seq = record.header.seq;
                    return Some(Ok((Record { seq, op }, record.written_ns)));
                }
                Ok(None) => self.current = None,
                Err(error) => {
                    self.failed = true;
                    return Some(Err(match error {
                        ScanError::Io(e) => Error::io("read", &segment.path, e),
                        ScanError::Bad { offset, problem } => {
                            Error::corrupt(&segment.path, offset, problem.describe())
                        }
                    }));
                }
            }
        }
    }
}

impl Iterator for RecordsSince {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_timed().map(|item| item.map(|(record, _)| record))
    }
}

/// The records above a sequence number through the end of the log, held
/// records included, each with the wall-clock time it was written: from
/// [`Store::records_with_times_since`](crate::Store::records_with_times_since).
///
/// Yields `(record, written_ns)`, oldest first: `written_ns` is the time
/// its batch was written, in nanoseconds since the UNIX epoch, or `None`
/// when the log does not say (a segment of format version 1 or 2, or a
/// compacted segment, whose records keep no time). An error ends the
/// iteration.
#[derive(Debug)]
pub struct TimedRecords {
    records: RecordsSince,
    compacted_through: Option<u64>,
}

impl TimedRecords {
    pub(crate) fn new(records: RecordsSince, compacted_through: Option<u64>) -> Self {
        TimedRecords {
            records,
            compacted_through,
        }
    }

    /// The newest sequence number this iterator can yield: the store's
    /// [`applied_seq`](crate::Store::applied_seq) when it was made.
    pub fn until(&self) -> u64 {
        self.records.until()
    }

    /// `Some(horizon)` when compaction may have dropped records between
    /// the `since` asked for and `horizon`: of those, only the ones it kept
    /// (the newest put of each key still live, with no time) are yielded;
    /// overwritten values and deletes are gone. `None` when every record
    /// above `since` is yielded.
    pub fn compacted_through(&self) -> Option<u64> {
        self.compacted_through
    }
}

impl Iterator for TimedRecords {
    type Item = Result<(Record, Option<u64>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.records.next_timed()
    }
}

/// One live key of a [`Snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotEntry {
    /// The sequence number of the write that set the value.
    pub seq: u64,
    /// The key.
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
}

/// Every live key with its value, oldest write first, from
/// [`Store::snapshot`](crate::Store::snapshot). Values are read lazily.
pub struct Snapshot {
    seq: u64,
    entries: std::vec::IntoIter<(Vec<u8>, Location, Arc<Segment>)>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("seq", &self.seq)
            .field("remaining", &self.entries.len())
            .finish()
    }
}

impl Snapshot {
    pub(crate) fn new(seq: u64, entries: Vec<(Vec<u8>, Location, Arc<Segment>)>) -> Self {
        Snapshot {
            seq,
            entries: entries.into_iter(),
        }
    }

    /// The store's last sequence number when the snapshot was taken: every
    /// write up to it is reflected, none after it.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Iterator for Snapshot {
    type Item = Result<SnapshotEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        let (key, location, segment) = self.entries.next()?;
        Some(
            segment
                .read_record(location.offset, location.len)
                .map(|record| SnapshotEntry {
                    seq: location.seq,
                    key,
                    value: record.into_value(),
                }),
        )
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}
