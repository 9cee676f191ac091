//! Group commit: how a write becomes durable, then visible, with one
//! `pwrite` and one `fdatasync` for every batch of writers that wait at the
//! same time. [`GroupCommit`] owns the append side of the store (the
//! [`Writer`]: active segment, write buffer, sequence numbers) and the
//! protocol's state; other modules change them only through its methods.
//!
//! # The protocol
//!
//! A writer checks what its write expects of its key and encodes its record
//! into the writer's buffer, both under the writer mutex, and joins the
//! current [`Batch`]. Under `Sync::Always`, a writer that finds no round
//! running becomes the **leader** and runs one round
//! ([`GroupCommit::flush_round`]):
//! 1. it takes the flush gate and the batch, and writes the whole buffer
//!    with one `pwrite`: a batch header (its length, count and first seq,
//!    so that recovery knows where the batch ends) and the records;
//! 2. with the writer mutex released, so that the next batch fills
//!    meanwhile, it calls `fdatasync` once;
//! 3. it publishes every record of the batch to the index (and rolls to a
//!    new segment if the active one is full);
//! 4. it wakes the batch's writers, hands the lead to one of the next
//!    batch's blocked writers (or, when only [`Store::write_then`] writers
//!    wait, to one of the store's committer threads), and only then calls
//!    the batch's completions.
//!
//! So N writers that wait at the same time share one `fdatasync`.
//!
//! **Readers never see a record before it is durable**: a record enters the
//! index only once its round's sync has succeeded. A check (`Create`,
//! `Update`, `Delete`) that rests on a record written but not yet published
//! waits for that record's batch before it answers.
//!
//! **Held records**: in a store whose visibility is gated
//! ([`Options::gate_visibility`](crate::Options::gate_visibility)) step 3
//! hands each record to the index, which publishes it only if its sequence
//! number is at or below the publish limit and otherwise holds it until
//! [`Store::publish_through`](crate::Store::publish_through) raises the
//! limit (see the `keydir` module). The round is the same either way: the
//! record is written and synced at once and its writers are answered once
//! it is durable, visible or held. A check rests on held records as on
//! published ones: they are in the log, and will be visible.
//!
//! **Observers**: a [`WriteObserver`] is given each run of records at the
//! [`ObservePoint`] it asked for, right after the `pwrite` (a master
//! forwards them to its slave while it syncs) or once they are durable. The
//! gate (the writer mutex, under the other policies) keeps runs in sequence
//! order.
//!
//! **Poisoning**: a failed `fdatasync` is never retried, since the kernel
//! may have dropped the pages it failed to write. The store is poisoned:
//! the round's writers get the error and every later write
//! [`Error::Poisoned`] until the store is reopened. A failed `pwrite` only
//! fails its batch: the partial bytes are cut off and the batch's sequence
//! numbers handed out again.
//!
//! Under `Sync::Every` and `Sync::Never` a writer writes its own record
//! under the writer mutex and publishes it at once: no batch, no sync.
//!
//! # Locks
//!
//! Taken in this order, never the reverse: the flush gate, the writer,
//! then the index. The gate is held by a leader from its write to its
//! publish, and by compaction while it picks its inputs, so compaction never
//! misses a record that is written but not yet published.
//!
//! [`Store::write_then`]: crate::Store::write_then

use std::mem;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use crossbeam_channel::Sender;
use log::{debug, error, warn};

use crate::error::{Error, Result};
use crate::format::{
    BATCH_HEADER_LEN, BatchHeader, RECORD_HEADER_LEN, RecordKind, SEGMENT_HEADER_LEN,
    SegmentHeader, SegmentKind,
};
use crate::keydir::{Location, SegmentSlot, Written};
use crate::lock::lock;
use crate::options::{LogSyncHook, Sync};
use crate::record::{Op, Record, check_limits};
use crate::segment::{self, Segment};
use crate::shared::Shared;

/// Called with each run of records the store writes, at the point its
/// [`ObservePoint`] says: see [`Store::observe_writes`](crate::Store::observe_writes).
pub type WriteObserver = Box<dyn Fn(Vec<Record>) + Send + std::marker::Sync>;

/// Told the store's newest durable sequence number each time it moves:
/// see [`Store::observe_durable`](crate::Store::observe_durable).
pub type DurableObserver = Box<dyn Fn(u64) + Send + std::marker::Sync>;

/// When a [`WriteObserver`] is given a run of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObservePoint {
    /// Once the `pwrite` has succeeded, before the `fdatasync`: whatever
    /// the observer starts runs alongside the sync, and a record it is
    /// given may still be lost if the host crashes before the sync.
    Written,
    /// Once the records are durable (synced, under `Sync::Always`), before
    /// they are visible to readers.
    Durable,
}

/// Where a store keeps its [`WriteObserver`], if it has one. Replaceable:
/// a node whose role changes at run time stops and starts observing.
struct ObserverSlot(RwLock<Option<(ObservePoint, WriteObserver)>>);

impl ObserverSlot {
    fn read(&self) -> RwLockReadGuard<'_, Option<(ObservePoint, WriteObserver)>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.read() {
            Some((at, _)) => write!(f, "ObserverSlot({at:?})"),
            None => f.write_str("ObserverSlot(empty)"),
        }
    }
}

/// Where a store keeps its [`DurableObserver`], if it has one.
struct DurableSlot(RwLock<Option<DurableObserver>>);

impl DurableSlot {
    fn read(&self) -> RwLockReadGuard<'_, Option<DurableObserver>> {
        self.0.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for DurableSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.read().is_some() {
            "set"
        } else {
            "empty"
        };
        write!(f, "DurableSlot({state})")
    }
}

/// What must be true of a key before a write goes ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    Anything,
    Absent,
    Present,
}

/// One write on its way in: what it expects of its key, and the record it
/// writes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Write<'a> {
    pub(crate) expect: Expect,
    pub(crate) kind: RecordKind,
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
}

/// The write path of a store: its [`Writer`] and the state of group commit.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    /// Serialises appends: sequence numbers, the buffer, the active segment.
    writer: Mutex<Writer>,
    /// Held by a leader from its write to its publish (see the module docs).
    flush_gate: Mutex<()>,
    /// Told of every run of records once written (`observe_writes`).
    observer: ObserverSlot,
    /// The newest seq known durable (`Store::durable_seq`).
    durable_seq: AtomicU64,
    /// Told each time `durable_seq` moves (`observe_durable`).
    durable_observer: DurableSlot,
    /// Set by the first failed sync; the store refuses writes from then on.
    poisoned: AtomicBool,
    /// Group-commit syncs so far.
    syncs: AtomicU64,
    /// Told how long each sync of the log took, if anyone asked.
    log_sync: LogSyncHook,
    /// Asks a committer thread to lead a group-commit round.
    commit_wanted: Sender<()>,
}

impl GroupCommit {
    /// The write path of a store whose log ends at `offset` in `active`,
    /// after `last_seq`. `commit_wanted` reaches the committer threads;
    /// `log_sync` is told how long each sync of the log takes.
    pub(crate) fn new(
        active: Arc<Segment>,
        offset: u64,
        last_seq: u64,
        commit_wanted: Sender<()>,
        log_sync: LogSyncHook,
    ) -> GroupCommit {
        GroupCommit {
            writer: Mutex::new(Writer::new(active, offset, last_seq)),
            flush_gate: Mutex::new(()),
            observer: ObserverSlot(RwLock::new(None)),
            durable_seq: AtomicU64::new(last_seq),
            durable_observer: DurableSlot(RwLock::new(None)),
            poisoned: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            log_sync,
            commit_wanted,
        }
    }

    /// Holds the gate: while the guard lives no leader is between its write
    /// and its publish, so every record written to a file is published.
    pub(crate) fn hold_gate(&self) -> MutexGuard<'_, ()> {
        lock(&self.flush_gate)
    }

    /// Locks the writer: no write is staged while the guard lives.
    pub(crate) fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        lock(&self.writer)
    }

    /// Waits until no write is staged or in flight, then holds the gate and
    /// the writer: no write starts until the guards are dropped.
    pub(crate) fn pause(&self) -> (MutexGuard<'_, ()>, MutexGuard<'_, Writer>) {
        loop {
            let gate = self.hold_gate();
            let writer = self.lock_writer();
            if !writer.has_staged() {
                return (gate, writer);
            }
            drop(writer);
            drop(gate);
            std::thread::yield_now();
        }
    }

    /// Sets the store's one observer; `false` if it has one already.
    pub(crate) fn set_observer(&self, at: ObservePoint, observer: WriteObserver) -> bool {
        let mut slot = self.observer.0.write().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return false;
        }
        *slot = Some((at, observer));
        true
    }

    /// Removes both observers: once it returns, neither is called again.
    pub(crate) fn clear_observers(&self) {
        *self.observer.0.write().unwrap_or_else(|p| p.into_inner()) = None;
        *self
            .durable_observer
            .0
            .write()
            .unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The last sequence number handed out, written or not.
    pub(crate) fn handed_out_seq(&self) -> u64 {
        self.lock_writer().last_seq
    }

    /// Sets the store's one durable observer; `false` if it has one.
    pub(crate) fn set_durable_observer(&self, observer: DurableObserver) -> bool {
        let mut slot = self
            .durable_observer
            .0
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            return false;
        }
        *slot = Some(observer);
        true
    }

    /// The newest seq known durable.
    pub(crate) fn durable_seq(&self) -> u64 {
        self.durable_seq.load(Ordering::SeqCst)
    }

    /// Every record up to `seq` is durable: tells the durable observer if
    /// that moves the durable seq.
    fn note_durable(&self, seq: u64) {
        let before = self.durable_seq.fetch_max(seq, Ordering::SeqCst);
        if seq > before
            && let Some(observer) = &*self.durable_observer.read()
        {
            observer(seq);
        }
    }

    /// Group-commit syncs since the store was opened.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    fn poison(&self, cause: &Error) {
        if !self.poisoned.swap(true, Ordering::SeqCst) {
            error!("{cause}: the store now refuses writes until it is reopened");
        }
    }

    /// `fdatasync`s `segment` of the log, timed for the log-sync observer
    /// if there is one.
    fn sync_log(&self, segment: &Segment) -> Result<()> {
        self.log_sync.time(|| segment.sync_data())
    }

    /// Forces the active segment to disk, whatever the policy. A failure
    /// poisons the store, as every failed sync does.
    pub(crate) fn sync(&self) -> Result<()> {
        // Every record written so far is in this segment or in one synced
        // when it was closed.
        let (active, written) = {
            let writer = self.lock_writer();
            (writer.active.clone(), writer.written_seq())
        };
        self.sync_log(&active).inspect_err(|e| self.poison(e))?;
        self.note_durable(written);
        Ok(())
    }

    /// Syncs the active segment of `writer`, which the caller holds; a
    /// failure poisons the store.
    pub(crate) fn sync_active(&self, writer: &Writer) -> Result<()> {
        self.sync_log(&writer.active)
            .inspect_err(|e| self.poison(e))?;
        self.note_durable(writer.written_seq());
        Ok(())
    }

    /// The buffered records, for the observer, if there is one.
    fn records_to_observe(&self, writer: &Writer) -> Option<Vec<Record>> {
        self.observer
            .read()
            .as_ref()
            .map(|_| writer.buffered_records())
    }

    /// Gives records to the observer if it wants them at `point`; else
    /// hands them back, for a later point.
    fn observe(&self, point: ObservePoint, records: Option<Vec<Record>>) -> Option<Vec<Record>> {
        match (&*self.observer.read(), records) {
            (Some((at, observer)), Some(records)) if *at == point => {
                if !records.is_empty() {
                    observer(records);
                }
                None
            }
            (_, records) => records,
        }
    }

    /// Refuses a write over the limits or to a poisoned store, before it
    /// takes the writer's lock.
    fn admit(&self, write: &Write<'_>) -> Result<()> {
        check_limits(write.key, write.value)?;
        if self.is_poisoned() {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Checks what `write` expects of its key against the newest write to
    /// it, staged or visible: `None` if the write may go ahead, else the
    /// refusal, with the batch of the write it rests on if that write is
    /// not durable yet.
    fn refusal(
        &self,
        shared: &Shared,
        writer: &Writer,
        write: &Write<'_>,
    ) -> Option<(Error, Option<Arc<Batch>>)> {
        if write.expect == Expect::Anything {
            return None;
        }
        let (present, pending) = match writer.unpublished_state(write.key) {
            Some((present, batch)) => (present, Some(batch)),
            None => (shared.read_keydir().holds_value(write.key), None),
        };
        let refusal = match (write.expect, present) {
            (Expect::Absent, true) => Error::AlreadyExists,
            (Expect::Present, false) => Error::NotFound,
            _ => return None,
        };
        Some((refusal, pending))
    }

    /// Answers `write` with `refusal`. A refusal resting on a write that is
    /// not durable yet, nor visible to readers (`pending`), is answered only
    /// once it is, or a reader could see a state the refusal contradicts. If
    /// that write fails, the refusal was wrong: decide again. Call it with
    /// the writer's lock released.
    fn refuse(
        &self,
        shared: &Shared,
        seq: Option<u64>,
        write: Write<'_>,
        refusal: Error,
        pending: Option<Arc<Batch>>,
    ) -> Result<u64> {
        let Some(batch) = pending else {
            return Err(refusal);
        };
        match batch.wait(|| self.flush_round(shared)) {
            Ok(()) => Err(refusal),
            Err(_) => self.append(shared, seq, write),
        }
    }

    /// The write path shared by local writes (`seq` is `None`: the next
    /// number) and applied ones (`seq` given by the master).
    pub(crate) fn append(
        &self,
        shared: &Shared,
        seq: Option<u64>,
        write: Write<'_>,
    ) -> Result<u64> {
        self.admit(&write)?;
        let mut writer = self.lock_writer();
        if let Some((refusal, pending)) = self.refusal(shared, &writer, &write) {
            drop(writer);
            return self.refuse(shared, seq, write, refusal, pending);
        }
        let expected = writer.last_seq + 1;
        let seq = match seq {
            Some(given) if given != expected => {
                return Err(Error::OutOfOrder {
                    expected,
                    got: given,
                });
            }
            Some(given) => given,
            None => expected,
        };
        writer.stage(seq, write.kind, write.key, write.value);
        self.commit(shared, writer)?;
        Ok(seq)
    }

    /// Applies a run of a master's records with one commit (one sync under
    /// `Sync::Always`). Nothing is written unless every record is in limits
    /// and their sequence numbers follow the store's last one by one.
    pub(crate) fn apply_batch(&self, shared: &Shared, records: &[Record]) -> Result<()> {
        for record in records {
            let (_, key, value) = record.op.parts();
            check_limits(key, value)?;
        }
        if self.is_poisoned() {
            return Err(Error::Poisoned);
        }
        let mut writer = self.lock_writer();
        for (i, record) in records.iter().enumerate() {
            let expected = writer.last_seq + 1 + i as u64;
            if record.seq != expected {
                return Err(Error::OutOfOrder {
                    expected,
                    got: record.seq,
                });
            }
        }
        for record in records {
            let (kind, key, value) = record.op.parts();
            writer.stage(record.seq, kind, key, value);
        }
        self.commit(shared, writer)
    }

    /// Makes what is staged in the writer durable as its policy says, and
    /// visible: at once under `Sync::Never` and `Sync::Every`, through a
    /// group-commit batch under `Sync::Always`.
    fn commit(&self, shared: &Shared, mut writer: MutexGuard<'_, Writer>) -> Result<()> {
        if shared.options.sync_policy() != Sync::Always {
            let records = self.records_to_observe(&writer);
            let written = writer.write_buffer()?;
            // No sync here: written is as durable as this policy makes it.
            let records = self.observe(ObservePoint::Written, records);
            self.observe(ObservePoint::Durable, records);
            if shared.options.sync_policy() == Sync::Never
                && let Some(last) = written.last()
            {
                // The policy promises no more than the write itself.
                self.note_durable(last.location.seq);
            }
            self.publish(shared, written);
            if writer.offset >= shared.options.segment_size_limit() {
                self.roll_logged(shared, &mut writer);
            }
            return Ok(());
        }
        let batch = writer.batch.clone();
        batch.blocked.fetch_add(1, Ordering::SeqCst);
        let lead = writer.take_lead();
        drop(writer);
        if lead {
            self.flush_round(shared);
        }
        batch.wait(|| self.flush_round(shared))
    }

    /// The write path of [`Store::write_then`](crate::Store::write_then):
    /// stages the record and returns; `done` is called once the record is
    /// durable and visible. If no leader is running this thread leads one
    /// round itself (so a lone writer pays no hand-over), and the committer
    /// thread leads the rounds that follow while only `write_then` writers
    /// are waiting.
    pub(crate) fn append_then(&self, shared: &Shared, write: Write<'_>, done: Completion) {
        if let Err(e) = self.admit(&write) {
            return done(Err(e));
        }
        let mut writer = self.lock_writer();
        if let Some((refusal, pending)) = self.refusal(shared, &writer, &write) {
            drop(writer);
            // A refusal resting on a write not yet durable blocks for it,
            // as in `append`: rare enough to block for.
            return done(self.refuse(shared, None, write, refusal, pending));
        }
        let seq = writer.last_seq + 1;
        writer.stage(seq, write.kind, write.key, write.value);
        if shared.options.sync_policy() != Sync::Always {
            let outcome = self.commit(shared, writer).map(|()| seq);
            return done(outcome);
        }
        writer.batch.on_done(seq, done);
        let lead = writer.take_lead();
        drop(writer);
        if lead {
            self.flush_round(shared);
        }
    }

    /// One group-commit round under `Sync::Always`: write the buffer, sync
    /// once, publish, wake the batch, hand the lead on, and only then, with
    /// the next round free to start on another thread, call the batch's
    /// completions. The store's committer threads call it when asked.
    pub(crate) fn flush_round(&self, shared: &Shared) {
        let (finished, committer_leads) = self.flush_round_gated(shared);
        self.wake_committer(committer_leads);
        finished.complete();
    }

    /// The part of [`flush_round`](Self::flush_round) one thread at a time
    /// does: returns the batch's completions and whether the committer
    /// must lead next.
    fn flush_round_gated(&self, shared: &Shared) -> (Finished, bool) {
        let _gate = self.hold_gate();
        let mut writer = self.lock_writer();
        let batch = writer.start_batch();
        if self.is_poisoned() {
            writer.discard_buffer();
            let committer_leads = writer.hand_off();
            drop(writer);
            return (batch.finish(Err(Error::Poisoned)), committer_leads);
        }
        let records = self.records_to_observe(&writer);
        let written = match writer.write_buffer() {
            Ok(written) => written,
            Err(e) => {
                let committer_leads = writer.hand_off();
                drop(writer);
                return (batch.finish(Err(e)), committer_leads);
            }
        };
        let segment = writer.active.clone();
        let last_written = written.last().map(|record| record.location.seq);
        writer.in_flight = Some(InFlight {
            records: written,
            batch: batch.clone(),
        });
        drop(writer);
        // Written, not yet synced: an observer that wants them now (a
        // master's replication) starts on them while this thread syncs.
        let records = self.observe(ObservePoint::Written, records);

        let synced = self.sync_log(&segment);
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if synced.is_ok() {
            self.observe(ObservePoint::Durable, records);
            if let Some(last) = last_written {
                self.note_durable(last);
            }
        }

        let mut writer = self.lock_writer();
        let in_flight = writer.in_flight.take();
        match &synced {
            Ok(()) => {
                if let Some(in_flight) = in_flight {
                    self.publish(shared, in_flight.records);
                }
                // Roll only once the segment is synced: recovery accepts a
                // torn tail in the newest segment alone.
                if writer.offset >= shared.options.segment_size_limit() {
                    self.roll_logged(shared, &mut writer);
                }
            }
            Err(e) => self.poison(e),
        }
        drop(writer);
        // Wake the batch before handing the lead on: its writers, back at
        // once with their next write, join the next batch before it starts,
        // so batches stay large instead of alternating half and half.
        let finished = batch.finish(synced);
        let committer_leads = self.lock_writer().hand_off();
        (finished, committer_leads)
    }

    /// Asks the committer thread to lead the next round, when `needed`.
    fn wake_committer(&self, needed: bool) {
        if needed {
            // A full channel means the committer is asked already.
            let _ = self.commit_wanted.try_send(());
        }
    }

    /// Makes written records visible to readers, in order, or holds them
    /// behind the publish limit of a gated store; asks for a compaction
    /// when the policy says so.
    fn publish(&self, shared: &Shared, written: Vec<Written>) {
        if written.is_empty() {
            return;
        }
        let mut keydir = shared.write_keydir();
        for record in written {
            keydir.admit(record);
        }
        shared.compact_if_due(&keydir);
    }

    /// Closes the active segment and starts the next; on failure the store
    /// keeps appending to the current one and tries again later.
    fn roll_logged(&self, shared: &Shared, writer: &mut Writer) {
        if let Err(e) = self.roll(shared, writer) {
            warn!("cannot start a new segment, appending to the current one: {e}");
        }
    }

    /// Starts a new active segment. The old one is synced first, whatever
    /// the policy: recovery accepts a torn tail only in the newest segment,
    /// so a closed segment must be whole on disk before a newer one exists.
    pub(crate) fn roll(&self, shared: &Shared, writer: &mut Writer) -> Result<()> {
        if let Err(e) = self.sync_log(&writer.active) {
            // A failed sync is never retried: the store stops writing.
            self.poison(&e);
            return Err(e);
        }
        self.note_durable(writer.written_seq());
        let id = segment::next_log_id(writer.active.id);
        let header = SegmentHeader {
            kind: SegmentKind::Log,
            id,
            horizon: 0,
        };
        let path = shared.dir.join(segment::file_name(id));
        let segment = Arc::new(Segment::create(
            &shared.dir,
            path,
            header,
            shared.options.faults(),
        )?);
        debug!("rolled to segment {}", segment.path.display());
        shared
            .write_keydir()
            .segments
            .insert(id, SegmentSlot::empty(segment.clone()));
        writer.switch_to(segment);
        Ok(())
    }
}

/// A record in the buffer, not yet written to a file.
#[derive(Debug)]
struct Buffered {
    key: Vec<u8>,
    kind: RecordKind,
    buf_offset: usize,
    len: u32,
    seq: u64,
}

/// What a leader wrote and is syncing: published once synced.
#[derive(Debug)]
struct InFlight {
    records: Vec<Written>,
    /// The batch the records belong to.
    batch: Arc<Batch>,
}

/// The append side of the store, behind the writer mutex of
/// [`GroupCommit`].
#[derive(Debug)]
pub(crate) struct Writer {
    /// The segment records are appended to.
    active: Arc<Segment>,
    /// Bytes written to `active` so far.
    offset: u64,
    /// The last sequence number handed out, buffered records included.
    last_seq: u64,
    /// Encoded records waiting to be written.
    buf: Vec<u8>,
    /// What is in `buf`, in order.
    buffered: Vec<Buffered>,
    /// What a leader wrote and is syncing, if it is.
    in_flight: Option<InFlight>,
    /// The batch that records appended now belong to.
    batch: Arc<Batch>,
    /// Whether a leader is running (`Sync::Always` only).
    flushing: bool,
}

impl Writer {
    fn new(active: Arc<Segment>, offset: u64, last_seq: u64) -> Writer {
        Writer {
            active,
            offset,
            last_seq,
            buf: Vec::new(),
            buffered: Vec::new(),
            in_flight: None,
            batch: Arc::new(Batch::default()),
            flushing: false,
        }
    }

    /// The id of the segment records are appended to.
    pub(crate) fn active_id(&self) -> u64 {
        self.active.id
    }

    /// The last sequence number written to a file: buffered records are
    /// not.
    pub(crate) fn written_seq(&self) -> u64 {
        self.last_seq - self.buffered.len() as u64
    }

    /// Whether records are staged and not yet written.
    fn has_staged(&self) -> bool {
        !self.buffered.is_empty()
    }

    /// Appends from now on to `active`, a new empty segment.
    fn switch_to(&mut self, active: Arc<Segment>) {
        self.active = active;
        self.offset = SEGMENT_HEADER_LEN as u64;
    }

    /// Starts the log anew in `active`, a new empty segment, after
    /// `last_seq`: what installing a snapshot leaves. Call it with nothing
    /// staged.
    pub(crate) fn restart(&mut self, active: Arc<Segment>, last_seq: u64) {
        self.switch_to(active);
        self.last_seq = last_seq;
    }

    /// Makes this thread the leader if none is running: returns whether it
    /// must lead.
    fn take_lead(&mut self) -> bool {
        let lead = !self.flushing;
        self.flushing = true;
        lead
    }

    /// Takes the current batch for a round; writers join a new one.
    fn start_batch(&mut self) -> Arc<Batch> {
        mem::replace(&mut self.batch, Arc::new(Batch::default()))
    }

    /// Encodes one record into the buffer and hands out its sequence number.
    fn stage(&mut self, seq: u64, kind: RecordKind, key: &[u8], value: &[u8]) {
        if self.buf.is_empty() {
            // Room for the batch header, filled in by `write_buffer`: it
            // goes to disk in the same `pwrite` as the records.
            self.buf.resize(BATCH_HEADER_LEN, 0);
        }
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
    /// [`WriteObserver`] is given.
    fn buffered_records(&self) -> Vec<Record> {
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
    fn unpublished_state(&self, key: &[u8]) -> Option<(bool, Arc<Batch>)> {
        let buffered = self
            .buffered
            .iter()
            .rev()
            .find(|b| b.key == key)
            .map(|b| (b.kind == RecordKind::Put, self.batch.clone()));
        let in_flight = || {
            let in_flight = self.in_flight.as_ref()?;
            in_flight
                .records
                .iter()
                .rev()
                .find(|w| w.key == key)
                .map(|w| (w.kind == RecordKind::Put, in_flight.batch.clone()))
        };
        buffered.or_else(in_flight)
    }

    /// Writes the buffer to the active segment with one positional write:
    /// the batch header (filled in here, in the room `stage` left at the
    /// start of the buffer, with the wall-clock time read just before the
    /// write) and the records after it.
    /// On failure the partial bytes are cut off again, the buffered records
    /// are dropped and their sequence numbers handed out anew, so the log
    /// never holds half a record or a gap.
    fn write_buffer(&mut self) -> Result<Vec<Written>> {
        if self.buf.is_empty() {
            return Ok(Vec::new());
        }
        let start = self.offset;
        let first_seq = self.buffered.first().map_or(0, |b| b.seq);
        BatchHeader {
            count: self.buffered.len() as u32,
            len: (self.buf.len() - BATCH_HEADER_LEN) as u64,
            first_seq,
            // The time of the write itself: one clock read per batch.
            written_ns: crate::format::now_ns(),
        }
        .encode_into(&mut self.buf);
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
    fn discard_buffer(&mut self) {
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
    fn hand_off(&mut self) -> bool {
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
pub(crate) type Completion = Box<dyn FnOnce(Result<u64>) + Send>;

/// A done batch's completions, not called yet.
struct Finished {
    error: Option<Arc<Error>>,
    completions: Vec<(u64, Completion)>,
}

impl Finished {
    /// Calls every completion with its seq (or the batch's error), in seq
    /// order.
    fn complete(self) {
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
struct Batch {
    state: Mutex<BatchState>,
    changed: Condvar,
    /// Writers that will wait on the batch (one of them can lead it).
    blocked: AtomicUsize,
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
    fn on_done(&self, seq: u64, done: Completion) {
        lock(&self.completions).push((seq, done));
    }

    /// Wakes every writer of the batch with its outcome and returns the
    /// completions to call (see [`Finished::complete`]), so the caller can
    /// let the next round start first.
    #[must_use]
    fn finish(&self, outcome: Result<()>) -> Finished {
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
    fn wait(&self, lead: impl Fn()) -> Result<()> {
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
