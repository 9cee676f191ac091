//! The in-memory index: for every live key, where its newest record lies.
//!
//! Bitcask calls this the keydir. It also owns the open segment files, so
//! that a reader takes a record's location and the file holding it under
//! one lock: a segment that compaction removes stays readable through the
//! `Arc` the reader holds.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::format::RecordKind;
use crate::segment::Segment;

/// Where one record lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) seq: u64,
}

/// An open segment and what the index knows of it.
#[derive(Debug)]
pub(crate) struct SegmentSlot {
    pub(crate) segment: Arc<Segment>,
    /// Bytes of records in it that readers may see.
    pub(crate) end: u64,
    /// Record bytes in it, live and dead.
    pub(crate) record_bytes: u64,
    /// The highest sequence number in it that readers may see; 0 if none.
    pub(crate) last_seq: u64,
}

impl SegmentSlot {
    /// The slot of a segment that holds no record yet.
    pub(crate) fn empty(segment: Arc<Segment>) -> SegmentSlot {
        SegmentSlot {
            segment,
            end: crate::format::SEGMENT_HEADER_LEN as u64,
            record_bytes: 0,
            last_seq: 0,
        }
    }
}

/// The index and the segment table.
#[derive(Debug, Default)]
pub(crate) struct Keydir {
    pub(crate) entries: HashMap<Vec<u8>, Location>,
    pub(crate) segments: BTreeMap<u64, SegmentSlot>,
    /// Sum of `len` over `entries`.
    pub(crate) live_bytes: u64,
    /// The newest sequence number readers may see.
    pub(crate) published_seq: u64,
    /// Records at or below this sequence number may have been compacted away.
    pub(crate) horizon: u64,
}

impl Keydir {
    /// Makes one record visible: the key now maps to it, or is gone.
    pub(crate) fn publish(&mut self, key: &[u8], kind: RecordKind, location: Location) {
        if let Some(slot) = self.segments.get_mut(&location.segment) {
            slot.end = slot.end.max(location.offset + u64::from(location.len));
            slot.record_bytes += u64::from(location.len);
            slot.last_seq = slot.last_seq.max(location.seq);
        }
        self.published_seq = self.published_seq.max(location.seq);
        let old = match kind {
            RecordKind::Put => match self.entries.get_mut(key) {
                Some(entry) => Some(std::mem::replace(entry, location)),
                None => {
                    self.entries.insert(key.to_vec(), location);
                    None
                }
            },
            RecordKind::Delete => self.entries.remove(key),
        };
        if kind == RecordKind::Put {
            self.live_bytes += u64::from(location.len);
        }
        if let Some(old) = old {
            self.live_bytes -= u64::from(old.len);
        }
    }

    /// Recovery's version of [`publish`](Self::publish): the segment's
    /// figures are kept by the caller, and a key is hashed once.
    pub(crate) fn load(&mut self, key: Vec<u8>, kind: RecordKind, location: Location) {
        let old = match kind {
            RecordKind::Put => {
                self.live_bytes += u64::from(location.len);
                self.entries.insert(key, location)
            }
            RecordKind::Delete => self.entries.remove(&key),
        };
        if let Some(old) = old {
            self.live_bytes -= u64::from(old.len);
        }
    }

    /// Record bytes in every segment, live and dead.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.segments.values().map(|slot| slot.record_bytes).sum()
    }

    /// Record bytes no longer reachable from the index.
    pub(crate) fn dead_bytes(&self) -> u64 {
        self.total_bytes().saturating_sub(self.live_bytes)
    }

    /// The segment holding `location`, for reading it.
    pub(crate) fn segment_of(&self, location: &Location) -> Option<Arc<Segment>> {
        self.segments
            .get(&location.segment)
            .map(|slot| slot.segment.clone())
    }
}
