//! The in-memory index: for every live key, where its newest record lies.
//!
//! Bitcask calls this the keydir. It also owns the open segment files, so
//! that a reader takes a record's location and the file holding it under
//! one lock: a segment that compaction removes stays readable through the
//! `Arc` the reader holds.
//!
//! # Held records
//!
//! In a store whose visibility is gated
//! ([`Options::gate_visibility`](crate::Options::gate_visibility)) a
//! record written to the log reaches `entries` only once its sequence
//! number is at or below the keydir's `limit` (a slave's master has
//! declared it durable). Until then it is **held**: kept, in sequence
//! order, in `held`, where no reader looks, and counted in no figure
//! (`published_seq`, `live_bytes`, a segment slot's `end`, `record_bytes`
//! or `last_seq`). Raising the limit publishes the held records at or
//! below it, oldest first, so a later record is never visible before an
//! earlier one. Records come in sequence order and every held one is above
//! the limit, so the held records are always the newest of the log: a
//! suffix of it. In an ungated store the limit is `u64::MAX` and nothing is
//! ever held.

use std::collections::{BTreeMap, HashMap, VecDeque};
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

/// A record written to a file, not visible to readers yet: in flight in a
/// group-commit round, or held behind the publish limit.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) key: Vec<u8>,
    pub(crate) kind: RecordKind,
    pub(crate) location: Location,
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
#[derive(Debug)]
pub(crate) struct Keydir {
    pub(crate) entries: HashMap<Vec<u8>, Location>,
    pub(crate) segments: BTreeMap<u64, SegmentSlot>,
    /// Sum of `len` over `entries`.
    pub(crate) live_bytes: u64,
    /// The newest sequence number readers may see.
    pub(crate) published_seq: u64,
    /// Records at or below this sequence number may have been compacted away.
    pub(crate) horizon: u64,
    /// The publish limit: records above it are held. `u64::MAX` in an
    /// ungated store.
    pub(crate) limit: u64,
    /// Records written above `limit`, oldest first (see the module docs).
    pub(crate) held: VecDeque<Written>,
}

impl Keydir {
    /// An empty index whose publish limit is `limit`.
    pub(crate) fn new(limit: u64) -> Keydir {
        Keydir {
            entries: HashMap::new(),
            segments: BTreeMap::new(),
            live_bytes: 0,
            published_seq: 0,
            horizon: 0,
            limit,
            held: VecDeque::new(),
        }
    }

    /// Takes a record just made durable: publishes it if the limit allows,
    /// else holds it. Records come in sequence order.
    pub(crate) fn admit(&mut self, record: Written) {
        if record.location.seq <= self.limit {
            self.publish(&record.key, record.kind, record.location);
        } else {
            debug_assert!(
                self.held
                    .back()
                    .is_none_or(|h| h.location.seq < record.location.seq)
            );
            self.held.push_back(record);
        }
    }

    /// Raises the publish limit to `limit` (a lower value changes nothing)
    /// and publishes the held records it now reaches, oldest first.
    pub(crate) fn raise_limit(&mut self, limit: u64) {
        self.limit = self.limit.max(limit);
        while self
            .held
            .front()
            .is_some_and(|held| held.location.seq <= self.limit)
        {
            if let Some(record) = self.held.pop_front() {
                self.publish(&record.key, record.kind, record.location);
            }
        }
    }

    /// The newest sequence number written to the log and published or
    /// held: where the log ends for replication.
    pub(crate) fn applied_seq(&self) -> u64 {
        self.held
            .back()
            .map_or(self.published_seq, |held| held.location.seq)
    }

    /// Whether the newest write to `key` that is published or held leaves
    /// it present: what a write's check rests on.
    pub(crate) fn holds_value(&self, key: &[u8]) -> bool {
        match self.held.iter().rev().find(|held| held.key == key) {
            Some(held) => held.kind == RecordKind::Put,
            None => self.entries.contains_key(key),
        }
    }

    /// The id of the segment holding the oldest held record, if any is
    /// held: compaction takes only segments below it.
    pub(crate) fn first_held_segment(&self) -> Option<u64> {
        self.held.front().map(|held| held.location.segment)
    }
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

    /// Recovery's version of [`admit`](Self::admit): the segment's
    /// figures are kept by the caller, and a key is hashed once. A record
    /// above the limit is held.
    pub(crate) fn load(&mut self, key: Vec<u8>, kind: RecordKind, location: Location) {
        if location.seq > self.limit {
            self.held.push_back(Written {
                key,
                kind,
                location,
            });
            return;
        }
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
