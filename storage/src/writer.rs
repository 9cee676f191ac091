//! The append side of the store: the active segment, the write buffer, and
//! the batches that group commit hands out.
//!
//! Writers encode their record into [`Writer::buf`] under the writer mutex
//! and join the current [`Batch`]. Under `Sync::Always` one of them, the
//! leader, writes the whole buffer with one `pwrite`, syncs the file once,
//! publishes every record of the batch to the index, and wakes the batch.
//! Writers that arrive while a leader is syncing fill the next batch; when
//! the leader is done it hands the lead to one of them. So N writers that
//! wait at the same time share one `fdatasync`.

use std::mem;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::error::{Error, Result};
use crate::format::{RECORD_HEADER_LEN, RecordKind};
use crate::keydir::Location;
use crate::lock::lock;
use crate::record::{Op, Record};
use crate::segment::Segment;

/// A record in the buffer, not yet written to a file.
#[derive(Debug)]
pub(crate) struct Buffered {
    pub(crate) key: Vec<u8>,
    pub(crate) kind: RecordKind,
    pub(crate) buf_offset: usize,
    pub(crate) len: u32,
    pub(crate) seq: u64,
}

/// A record written to a file but not yet visible to readers.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) key: Vec<u8>,
    pub(crate) kind: RecordKind,
    pub(crate) location: Location,
}

/// The writer's state, behind the store's writer mutex.
#[derive(Debug)]
pub(crate) struct Writer {
    /// The segment records are appended to.
    pub(crate) active: Arc<Segment>,
    /// Bytes written to `active` so far.
    pub(crate) offset: u64,
    /// The last sequence number handed out, buffered records included.
    pub(crate) last_seq: u64,
    /// Encoded records waiting to be written.
    pub(crate) buf: Vec<u8>,
    /// What is in `buf`, in order.
    pub(crate) buffered: Vec<Buffered>,
    /// Records a leader wrote and is syncing; published once synced.
    pub(crate) in_flight: Vec<Written>,
    /// The batch of `in_flight`.
    pub(crate) in_flight_batch: Option<Arc<Batch>>,
    /// The batch that records appended now belong to.
    pub(crate) batch: Arc<Batch>,
    /// Whether a leader is running (`Sync::Always` only).
    pub(crate) flushing: bool,
}

impl Writer {
    pub(crate) fn new(active: Arc<Segment>, offset: u64, last_seq: u64) -> Writer {
        Writer {
            active,
            offset,
            last_seq,
            buf: Vec::new(),
            buffered: Vec::new(),
            in_flight: Vec::new(),
            in_flight_batch: None,
            batch: Arc::new(Batch::default()),
            flushing: false,
        }
    }

    /// Encodes one record into the buffer and hands out its sequence number.
    pub(crate) fn stage(&mut self, seq: u64, kind: RecordKind, key: &[u8], value: &[u8]) {
        let buf_offset = self.buf.len();
        let len = crate::format::encode_record(&mut self.buf, seq, kind, key, value);
        self.buffered.push(Buffered {
            key: key.to_vec(),
            kind,
            buf_offset,
            len,
            seq,
        });
        self.last_seq = seq;
    }

    /// The records in the buffer, decoded from it, oldest first: what a
    /// [`WriteObserver`](crate::store::WriteObserver) is given.
    pub(crate) fn buffered_records(&self) -> Vec<Record> {
        self.buffered
            .iter()
            .map(|b| {
                let op = match b.kind {
                    RecordKind::Put => {
                        let start = b.buf_offset + RECORD_HEADER_LEN + b.key.len();
                        let end = b.buf_offset + b.len as usize;
                        Op::Put {
                            key: b.key.clone(),
                            value: self.buf[start..end].to_vec(),
                        }
                    }
                    RecordKind::Delete => Op::Delete { key: b.key.clone() },
                };
                Record { seq: b.seq, op }
            })
            .collect()
    }

    /// Whether the newest write not yet visible to readers leaves `key`
    /// present (`true`) or deleted (`false`), with the batch that makes that
    /// write durable; `None` if there is no such write (ask the index).
    pub(crate) fn unpublished_state(&self, key: &[u8]) -> Option<(bool, Arc<Batch>)> {
        let buffered = self
            .buffered
            .iter()
            .rev()
            .find(|b| b.key == key)
            .map(|b| (b.kind == RecordKind::Put, self.batch.clone()));
        let in_flight = || {
            let batch = self.in_flight_batch.clone()?;
            self.in_flight
                .iter()
                .rev()
                .find(|w| w.key == key)
                .map(|w| (w.kind == RecordKind::Put, batch))
        };
        buffered.or_else(in_flight)
    }

    /// Writes the buffer to the active segment with one positional write.
    /// On failure the partial bytes are cut off again, the buffered records
    /// are dropped and their sequence numbers handed out anew, so the log
    /// never holds half a record or a gap.
    pub(crate) fn write_buffer(&mut self) -> Result<Vec<Written>> {
        if self.buf.is_empty() {
            return Ok(Vec::new());
        }
        let start = self.offset;
        if let Err(e) = self.active.write_at(&self.buf, start) {
            let err = Error::io("append to", &self.active.path, e);
            self.discard_buffer();
            // If even the truncate fails the next append overwrites the
            // partial bytes at the same offset, which recovery would also
            // cut off: nothing acknowledged is at risk either way.
            if let Err(truncate) = self.active.truncate(start) {
                log::error!("after a failed append: {truncate}");
            }
            return Err(err);
        }
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        let segment = self.active.id;
        let written = mem::take(&mut self.buffered)
            .into_iter()
            .map(|b| Written {
                location: Location {
                    segment,
                    offset: start + b.buf_offset as u64,
                    len: b.len,
                    seq: b.seq,
                },
                key: b.key,
                kind: b.kind,
            })
            .collect();
        Ok(written)
    }

    /// Drops every buffered record and takes back their sequence numbers.
    pub(crate) fn discard_buffer(&mut self) {
        if let Some(first) = self.buffered.first() {
            self.last_seq = first.seq - 1;
        }
        self.buffered.clear();
        self.buf.clear();
    }

    /// Called by a leader when its round is over: leading stops if no
    /// record waits; else one of the next batch's blocked writers leads it.
    /// Returns `true` when the next batch has records but no blocked writer
    /// (only [`Store::write_then`](crate::Store::write_then) ones): the
    /// store's committer thread must lead it.
    #[must_use]
    pub(crate) fn hand_off(&mut self) -> bool {
        if self.buf.is_empty() {
            self.flushing = false;
            false
        } else if self.batch.blocked.load(Ordering::SeqCst) > 0 {
            self.batch.ask_for_leader();
            false
        } else {
            true
        }
    }
}

/// How a batch stands.
#[derive(Debug, Default)]
enum BatchState {
    /// Records are being added, or a leader is writing them.
    #[default]
    Open,
    /// The previous leader is done and this batch needs one of its writers
    /// to lead.
    NeedsLeader,
    /// Written and synced (or failed); the outcome for every writer in it.
    Done(Option<Arc<Error>>),
}

/// What a [`Store::write_then`](crate::Store::write_then) caller is told
/// once its write is durable and visible (its seq), or failed.
pub type Completion = Box<dyn FnOnce(Result<u64>) + Send>;

/// A done batch's completions, not called yet.
pub(crate) struct Finished {
    error: Option<Arc<Error>>,
    completions: Vec<(u64, Completion)>,
}

impl Finished {
    /// Calls every completion with its seq (or the batch's error), in seq
    /// order.
    pub(crate) fn complete(self) {
        for (seq, done) in self.completions {
            done(match &self.error {
                None => Ok(seq),
                Some(error) => Err(error.duplicate()),
            });
        }
    }
}

/// The writers whose records go to disk in one write and one sync.
#[derive(Default)]
pub(crate) struct Batch {
    state: Mutex<BatchState>,
    changed: Condvar,
    /// Writers that will wait on the batch (one of them can lead it).
    pub(crate) blocked: AtomicUsize,
    /// What to call, with each record's seq, once the batch is done.
    completions: Mutex<Vec<(u64, Completion)>>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("state", &self.state)
            .field("blocked", &self.blocked)
            .field("completions", &lock(&self.completions).len())
            .finish()
    }
}

impl Batch {
    /// Calls `done` with `seq` once the batch is done.
    pub(crate) fn on_done(&self, seq: u64, done: Completion) {
        lock(&self.completions).push((seq, done));
    }

    /// Wakes every writer of the batch with its outcome and returns the
    /// completions to call (see [`Finished::complete`]), so the caller can
    /// let the next round start first.
    #[must_use]
    pub(crate) fn finish(&self, outcome: Result<()>) -> Finished {
        let error = outcome.err().map(Arc::new);
        *lock(&self.state) = BatchState::Done(error.clone());
        self.changed.notify_all();
        Finished {
            error,
            completions: std::mem::take(&mut *lock(&self.completions)),
        }
    }

    fn ask_for_leader(&self) {
        let mut state = lock(&self.state);
        if matches!(*state, BatchState::Open) {
            *state = BatchState::NeedsLeader;
            self.changed.notify_one();
        }
    }

    /// Waits until the batch is done; if it needs a leader first, this
    /// thread leads by calling `lead`.
    pub(crate) fn wait(&self, lead: impl Fn()) -> Result<()> {
        let mut state = lock(&self.state);
        loop {
            match &*state {
                BatchState::Done(None) => return Ok(()),
                BatchState::Done(Some(error)) => return Err(error.duplicate()),
                BatchState::NeedsLeader => {
                    *state = BatchState::Open;
                    drop(state);
                    lead();
                    state = lock(&self.state);
                }
                BatchState::Open => {
                    state = self
                        .changed
                        .wait(state)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
            }
        }
    }
}
