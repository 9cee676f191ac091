//! Compaction: rewriting the live records of old segments into one, so that
//! the space of overwritten values, deleted keys and tombstones comes back.
//!
//! The order of steps makes every crash point safe:
//! 1. Roll the active segment; every older segment is an input.
//! 2. Copy each input record the index still points to, byte for byte (its
//!    sequence number and CRC unchanged), in sequence order, into
//!    `<id>.seg.tmp`, where `id` is the newest input's id plus one.
//! 3. Sync that file, rename it to `<id>.seg`, sync the directory. The
//!    rename is the commit point: before it, recovery deletes the `.tmp`
//!    and the inputs are intact; after it, recovery sees a compacted
//!    segment and deletes every segment with a smaller id.
//! 4. Point the index at the copies (unless a write replaced them meanwhile).
//! 5. Delete the inputs, then sync the directory.
//!
//! Tombstones are dropped: every segment older than the output is an input,
//! so no older value is left for them to hide. The output's header records
//! the newest sequence number among the inputs (its horizon): catch-up from
//! below it is refused, since records were dropped.
//!
//! **Held records** (a gated store's records above its publish limit, see
//! the `keydir` module) are in no index entry, so a compaction that took
//! their segment as an input would drop them. The rule: while any record is
//! held, the inputs are the segments **below the oldest held record's
//! segment**, and step 1 does not roll (that segment, or a later one, is
//! the active one). Held records are the newest of the log, so every record
//! of those inputs is published, and the segments kept (the oldest held
//! record's and every later one) are all newer than the output, which
//! replaces only the inputs. If the only input is a compacted segment whose
//! id plus one is already taken (the held record's segment), there is
//! nothing to gain and the compaction does nothing.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use log::{info, warn};

use crate::committed::CommittedGuard;
use crate::error::{Error, Result};
use crate::fault::Faults;
use crate::format::{self, RecordKind, SEGMENT_HEADER_LEN, SegmentHeader, SegmentKind};
use crate::group_commit::GroupCommit;
use crate::history::History;
use crate::iter::SnapshotEntry;
use crate::keydir::{Keydir, Location, SegmentSlot};
use crate::lock::lock;
use crate::record::check_limits;
use crate::segment::{self, Segment};
use crate::shared::Shared;

/// A point in a compaction, for crash tests that stop right after it.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The output is written to its `.tmp` file, not yet synced.
    OutputWritten,
    /// The `.tmp` file is synced.
    OutputSynced,
    /// The output is renamed to its final name.
    Renamed,
    /// The directory is synced after the rename.
    DirectorySynced,
    /// The index points at the output.
    IndexSwapped,
    /// The first input file is deleted; the others are still there.
    FirstInputRemoved,
}

/// Runs compactions and snapshot installs, one at a time, on the store
/// whose [`Shared`] state and [`GroupCommit`] it is given.
#[derive(Debug, Default)]
pub(crate) struct Compactor {
    /// Held by the compaction or snapshot install that is running.
    running: Mutex<()>,
    /// Compactions finished since the store was opened.
    finished: AtomicU64,
}

impl Compactor {
    /// Compactions finished since the store was opened.
    pub(crate) fn count(&self) -> u64 {
        self.finished.load(Ordering::Relaxed)
    }

    /// Runs one compaction; with `stop_after`, stops right after that step.
    pub(crate) fn compact(
        &self,
        shared: &Shared,
        commit: &GroupCommit,
        stop_after: Option<Step>,
    ) -> Result<()> {
        let _one_at_a_time = lock(&self.running);
        let stop = |step| stop_after == Some(step);

        // 1. Roll, with no group-commit round in flight, so every record in
        // the inputs is either published or dropped.
        let (first_kept, horizon) = roll_inputs(shared, commit)?;
        // Entries pointing into the inputs can only be replaced or removed
        // from now on, never added: new records go to newer segments.
        let (inputs, live) = live_below(shared, first_kept);
        let Some(newest_input) = inputs.last() else {
            return Ok(());
        };
        let id = newest_input.id + 1;

        // 2. Copy.
        let (written, moved) = copy_live(&shared.dir, id, horizon, &inputs, live)?;
        if stop(Step::OutputWritten) {
            return Ok(());
        }

        // 3. Commit.
        let final_path = shared.dir.join(segment::file_name(id));
        let temp_path = shared.dir.join(segment::temp_file_name(id));
        let faults = shared.options.faults();
        if commit_output(
            &shared.dir,
            faults,
            &written.file,
            &temp_path,
            &final_path,
            stop,
        )? {
            return Ok(());
        }

        // 4. Swap.
        let output = written.into_slot(
            &final_path,
            id,
            shared.options.faults(),
            "compacted segment header cut short",
        )?;
        let end = output.end;
        swap_index(shared, &inputs, &moved, id, output, horizon);
        if stop(Step::IndexSwapped) {
            return Ok(());
        }

        // 5. Clean up.
        for (i, input) in inputs.iter().enumerate() {
            input.remove()?;
            if i == 0 && stop(Step::FirstInputRemoved) {
                return Ok(());
            }
        }
        segment::sync_dir(&shared.dir, shared.options.faults())?;
        self.finished.fetch_add(1, Ordering::Relaxed);
        info!(
            "compacted {} segments of {} into {} ({} live records, {} bytes)",
            inputs.len(),
            shared.dir.display(),
            final_path.display(),
            moved.len(),
            end
        );
        Ok(())
    }
}

/// A key whose record a compaction copies, and where that record lies.
type Live = (Vec<u8>, Location);

/// A key a compaction copied: where its record was, and where it is now.
type Moved = (Vec<u8>, Location, Location);

/// Step 1 of a compaction: rolls the active segment, holding the gate so
/// that no round is between its write and its publish. Returns the id of
/// the new active segment (every older one is an input) and the output's
/// horizon. While records are held it does not roll: it returns the id of
/// the oldest held record's segment (see the module docs).
fn roll_inputs(shared: &Shared, commit: &GroupCommit) -> Result<(u64, u64)> {
    let _gate = commit.hold_gate();
    let mut writer = commit.lock_writer();
    {
        let keydir = shared.read_keydir();
        if let Some(first_held) = keydir.first_held_segment() {
            let horizon = keydir
                .segments
                .range(..first_held)
                .map(|(_, slot)| slot.last_seq)
                .fold(keydir.horizon, u64::max);
            return Ok((first_held, horizon));
        }
    }
    let written_seq = writer.written_seq();
    commit.roll(shared, &mut writer)?;
    Ok((
        writer.active_id(),
        written_seq.max(shared.read_keydir().horizon),
    ))
}

/// The segments below `first_kept`, and the index entries that point into
/// them, oldest record first; none if the output's id (the newest input's
/// plus one) is taken.
fn live_below(shared: &Shared, first_kept: u64) -> (Vec<Arc<Segment>>, Vec<Live>) {
    let (inputs, mut live) = {
        let keydir = shared.read_keydir();
        let inputs: Vec<Arc<Segment>> = keydir
            .segments
            .range(..first_kept)
            .map(|(_, slot)| slot.segment.clone())
            .collect();
        if inputs
            .last()
            .is_some_and(|newest| keydir.segments.contains_key(&(newest.id + 1)))
        {
            return (Vec::new(), Vec::new());
        }
        let live: Vec<Live> = keydir
            .entries
            .iter()
            .filter(|(_, location)| location.segment < first_kept)
            .map(|(key, location)| (key.clone(), *location))
            .collect();
        (inputs, live)
    };
    live.sort_unstable_by_key(|(_, location)| location.seq);
    (inputs, live)
}

/// Step 2 of a compaction: copies the `live` records of `inputs`, byte for
/// byte, into the `.tmp` file of segment `id`.
fn copy_live(
    dir: &Path,
    id: u64,
    horizon: u64,
    inputs: &[Arc<Segment>],
    live: Vec<Live>,
) -> Result<(Written, Vec<Moved>)> {
    let mut output = Output::create(dir, id, horizon)?;
    let mut moved = Vec::with_capacity(live.len());
    for (key, old) in live {
        let source = inputs
            .iter()
            .find(|s| s.id == old.segment)
            .ok_or_else(|| Error::corrupt(dir, old.offset, "index points to a missing segment"))?;
        let record = source.read_record(old.offset, old.len)?;
        let location = output.push(&record.bytes, old.seq)?;
        moved.push((key, old, location));
    }
    Ok((output.finish()?, moved))
}

/// Step 3 of a compaction, and the commit of a snapshot install: syncs the
/// output's `.tmp` file, renames it into place (the commit point) and
/// syncs the directory. Returns `true` if `stop` said to stop after a step.
fn commit_output(
    dir: &Path,
    faults: &Faults,
    file: &File,
    temp_path: &Path,
    final_path: &Path,
    stop: impl Fn(Step) -> bool,
) -> Result<bool> {
    file.sync_all()
        .map_err(|e| Error::io("sync", temp_path, e))?;
    if stop(Step::OutputSynced) {
        return Ok(true);
    }
    fs::rename(temp_path, final_path).map_err(|e| Error::io("rename", temp_path, e))?;
    if stop(Step::Renamed) {
        return Ok(true);
    }
    segment::sync_dir(dir, faults)?;
    Ok(stop(Step::DirectorySynced))
}

/// Step 4 of a compaction: points the index at the copies (unless a write
/// replaced them meanwhile) and swaps the inputs for the output.
fn swap_index(
    shared: &Shared,
    inputs: &[Arc<Segment>],
    moved: &[Moved],
    id: u64,
    output: SegmentSlot,
    horizon: u64,
) {
    let mut keydir = shared.write_keydir();
    for (key, old, new) in moved {
        if let Some(current) = keydir.entries.get_mut(key.as_slice())
            && current == old
        {
            *current = *new;
        }
    }
    for input in inputs {
        keydir.segments.remove(&input.id);
    }
    keydir.segments.insert(id, output);
    keydir.horizon = keydir.horizon.max(horizon);
}

/// A compacted segment being written to its `.tmp` file.
struct Output {
    id: u64,
    temp_path: PathBuf,
    out: BufWriter<File>,
    offset: u64,
    last_seq: u64,
}

impl Output {
    fn create(dir: &Path, id: u64, horizon: u64) -> Result<Output> {
        let temp_path = dir.join(segment::temp_file_name(id));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp_path)
            .map_err(|e| Error::io("create", &temp_path, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let header = SegmentHeader {
            kind: SegmentKind::Compacted,
            id,
            horizon,
        };
        out.write_all(&header.encode())
            .map_err(|e| Error::io("write", &temp_path, e))?;
        Ok(Output {
            id,
            temp_path,
            out,
            offset: SEGMENT_HEADER_LEN as u64,
            last_seq: 0,
        })
    }

    /// Appends one encoded record and says where it lies.
    fn push(&mut self, record: &[u8], seq: u64) -> Result<Location> {
        self.out
            .write_all(record)
            .map_err(|e| Error::io("write", &self.temp_path, e))?;
        let location = Location {
            segment: self.id,
            offset: self.offset,
            len: record.len() as u32,
            seq,
        };
        self.offset += record.len() as u64;
        self.last_seq = seq;
        Ok(location)
    }

    /// Flushes the buffer; returns the file with its length and last seq.
    fn finish(self) -> Result<Written> {
        let temp_path = self.temp_path;
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io("write", &temp_path, e.into_error()))?;
        Ok(Written {
            file,
            end: self.offset,
            last_seq: self.last_seq,
        })
    }
}

/// An output written in full to its `.tmp` file, not yet committed.
struct Written {
    file: File,
    /// Its length.
    end: u64,
    /// The sequence number of its last record.
    last_seq: u64,
}

impl Written {
    /// Closes the file, committed at `path`, and opens it again as segment
    /// `id`, for its slot in the index; `cut_short` is the error's reason
    /// if its header is cut short.
    fn into_slot(
        self,
        path: &Path,
        id: u64,
        faults: &Faults,
        cut_short: &'static str,
    ) -> Result<SegmentSlot> {
        drop(self.file);
        let segment = Segment::open(path.to_path_buf(), id, faults)?
            .ok_or_else(|| Error::corrupt(path, 0, cut_short))?;
        Ok(SegmentSlot {
            segment: Arc::new(segment),
            end: self.end,
            record_bytes: self.end - SEGMENT_HEADER_LEN as u64,
            last_seq: self.last_seq,
        })
    }
}

impl Compactor {
    /// Replaces the store's contents with a snapshot of `history`; see
    /// [`Store::install_snapshot`](crate::Store::install_snapshot). The
    /// history becomes the store's in memory at the moment the contents
    /// switch (the caller saves it to its file after), so no reader sees
    /// the new contents under the old history.
    pub(crate) fn install_snapshot(
        &self,
        shared: &Shared,
        commit: &GroupCommit,
        seq: u64,
        history: History,
        entries: &mut dyn Iterator<Item = Result<SnapshotEntry>>,
    ) -> Result<()> {
        let _one_at_a_time = lock(&self.running);
        // Wait until no write is staged or in flight, then hold the writer
        // so that none starts until the switch is done.
        let (_gate, mut writer) = commit.pause();
        let mut committed = lower_limit(shared, seq)?;
        // Above every existing segment, the active one included, so that
        // once renamed into place it replaces them all.
        let id = writer.active_id() + 1;
        let limit = committed.as_ref().map_or(u64::MAX, |_| seq);
        let (written, mut keydir) = write_snapshot(&shared.dir, id, seq, limit, entries)?;
        let temp_path = shared.dir.join(segment::temp_file_name(id));
        let final_path = shared.dir.join(segment::file_name(id));
        commit_output(
            &shared.dir,
            shared.options.faults(),
            &written.file,
            &temp_path,
            &final_path,
            |_| false,
        )?;

        // Committed: from here a crash reopens with the snapshot.
        let snapshot = written.into_slot(
            &final_path,
            id,
            shared.options.faults(),
            "snapshot segment header cut short",
        )?;
        let active = index_snapshot(shared, &mut keydir, id, snapshot, seq)?;
        let mut visible = shared.write_keydir();
        *shared.history() = history;
        let old = std::mem::replace(&mut *visible, keydir);
        drop(visible);
        writer.restart(active, seq);
        drop(writer);
        if let Some(file) = &mut committed
            && file.limit() != seq
            && let Err(e) = file.store(seq, false)
        {
            // The snapshot's horizon keeps the limit at `seq` on reopen.
            warn!("after installing a snapshot as of seq {seq}: {e}");
        }

        for slot in old.segments.values() {
            slot.segment.remove()?;
        }
        segment::sync_dir(&shared.dir, shared.options.faults())?;
        info!(
            "installed a snapshot as of seq {seq} in {} ({} keys)",
            shared.dir.display(),
            shared.read_keydir().entries.len()
        );
        Ok(())
    }
}

/// Locks a gated store's `COMMITTED` file for a snapshot install as of
/// `seq`, first lowering the limit it holds to `seq`, durably, if it is
/// higher: a crash after the install's commit point must not find the old
/// limit, which would show records the new log holds that its master has
/// not declared durable. (Raising it needs no such care: on reopen the
/// limit is never below the snapshot's horizon, `seq`.) `None` in an
/// ungated store.
fn lower_limit(shared: &Shared, seq: u64) -> Result<Option<CommittedGuard<'_>>> {
    let Some(committed) = &shared.committed else {
        return Ok(None);
    };
    let mut file = committed.lock();
    if file.limit() > seq {
        file.store(seq, true)?;
    }
    Ok(Some(file))
}

/// Writes a snapshot's entries to the `.tmp` file of segment `id`, and
/// returns it with their index, whose publish limit is `limit`. On failure
/// the file is removed.
fn write_snapshot(
    dir: &Path,
    id: u64,
    seq: u64,
    limit: u64,
    entries: &mut dyn Iterator<Item = Result<SnapshotEntry>>,
) -> Result<(Written, Keydir)> {
    let mut output = Output::create(dir, id, seq)?;
    let mut keydir = Keydir::new(limit);
    if let Err(e) = write_entries(&mut output, &mut keydir, seq, entries) {
        // Nothing is committed: the old contents stay, the output goes.
        let _ = fs::remove_file(&output.temp_path);
        return Err(e);
    }
    Ok((output.finish()?, keydir))
}

/// Completes `keydir`, a committed snapshot's index, as of `seq`: the
/// snapshot in segment `id`, and a new active log segment after it, which
/// it creates and returns.
fn index_snapshot(
    shared: &Shared,
    keydir: &mut Keydir,
    id: u64,
    snapshot: SegmentSlot,
    seq: u64,
) -> Result<Arc<Segment>> {
    let active_id = segment::next_log_id(id);
    let header = SegmentHeader {
        kind: SegmentKind::Log,
        id: active_id,
        horizon: 0,
    };
    let active = Arc::new(Segment::create(
        &shared.dir,
        shared.dir.join(segment::file_name(active_id)),
        header,
        shared.options.faults(),
    )?);
    keydir.segments.insert(id, snapshot);
    keydir
        .segments
        .insert(active_id, SegmentSlot::empty(active.clone()));
    keydir.published_seq = seq;
    keydir.horizon = seq;
    Ok(active)
}

/// Writes a snapshot's entries into `output`, checking their order and
/// limits, and indexes them into `keydir`.
fn write_entries(
    output: &mut Output,
    keydir: &mut Keydir,
    seq: u64,
    entries: &mut dyn Iterator<Item = Result<SnapshotEntry>>,
) -> Result<()> {
    let mut record = Vec::new();
    let mut previous = 0;
    for entry in entries {
        let entry = entry?;
        if entry.seq <= previous || entry.seq > seq {
            return Err(Error::OutOfOrder {
                expected: previous + 1,
                got: entry.seq,
            });
        }
        check_limits(&entry.key, &entry.value)?;
        previous = entry.seq;
        record.clear();
        format::encode_record(
            &mut record,
            entry.seq,
            RecordKind::Put,
            &entry.key,
            &entry.value,
        );
        let location = output.push(&record, entry.seq)?;
        keydir.load(entry.key, RecordKind::Put, location);
    }
    Ok(())
}
