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

use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use log::info;

use crate::error::{Error, Result};
use crate::format::{SEGMENT_HEADER_LEN, SegmentHeader, SegmentKind};
use crate::keydir::{Location, SegmentSlot};
use crate::segment::{self, Segment};
use crate::store::Inner;
use crate::writer::lock;

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

impl Inner {
    /// Runs one compaction; with `stop_after`, stops right after that step.
    pub(crate) fn compact(&self, stop_after: Option<Step>) -> Result<()> {
        let _one_at_a_time = lock(&self.compacting);
        let stop = |step| stop_after == Some(step);

        // 1. Roll, with no group-commit round in flight, so every record in
        // the inputs is either published or dropped.
        let (first_kept, horizon) = {
            let _gate = lock(&self.flush_gate);
            let mut writer = lock(&self.writer);
            let written_seq = writer.last_seq - writer.buffered.len() as u64;
            self.roll(&mut writer)?;
            (
                writer.active.id,
                written_seq.max(self.read_keydir().horizon),
            )
        };
        // Entries pointing into the inputs can only be replaced or removed
        // from now on, never added: new records go to newer segments.
        let (inputs, mut live) = {
            let keydir = self.read_keydir();
            let inputs: Vec<Arc<Segment>> = keydir
                .segments
                .range(..first_kept)
                .map(|(_, slot)| slot.segment.clone())
                .collect();
            let live: Vec<(Vec<u8>, Location)> = keydir
                .entries
                .iter()
                .filter(|(_, location)| location.segment < first_kept)
                .map(|(key, location)| (key.clone(), *location))
                .collect();
            (inputs, live)
        };
        let Some(newest_input) = inputs.last() else {
            return Ok(());
        };
        live.sort_unstable_by_key(|(_, location)| location.seq);
        let id = newest_input.id + 1;

        // 2. Copy.
        let final_path = self.dir.join(segment::file_name(id));
        let temp_path = self.dir.join(segment::temp_file_name(id));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp_path)
            .map_err(|e| Error::io("create", &temp_path, e))?;
        let header = SegmentHeader {
            kind: SegmentKind::Compacted,
            id,
            horizon,
        };
        let mut out = BufWriter::with_capacity(1 << 20, &file);
        let write_error = |e| Error::io("write", &temp_path, e);
        out.write_all(&header.encode()).map_err(write_error)?;
        let mut offset = SEGMENT_HEADER_LEN as u64;
        let mut moved = Vec::with_capacity(live.len());
        let mut last_seq = 0;
        for (key, old) in live {
            let source = inputs.iter().find(|s| s.id == old.segment).ok_or_else(|| {
                Error::corrupt(&self.dir, old.offset, "index points to a missing segment")
            })?;
            let record = source.read_record(old.offset, old.len)?;
            out.write_all(&record.bytes).map_err(write_error)?;
            moved.push((
                key,
                old,
                Location {
                    segment: id,
                    offset,
                    len: old.len,
                    seq: old.seq,
                },
            ));
            offset += u64::from(old.len);
            last_seq = old.seq;
        }
        out.flush().map_err(write_error)?;
        drop(out);
        if stop(Step::OutputWritten) {
            return Ok(());
        }

        // 3. Commit.
        file.sync_all()
            .map_err(|e| Error::io("sync", &temp_path, e))?;
        if stop(Step::OutputSynced) {
            return Ok(());
        }
        fs::rename(&temp_path, &final_path).map_err(|e| Error::io("rename", &temp_path, e))?;
        if stop(Step::Renamed) {
            return Ok(());
        }
        segment::sync_dir(&self.dir)?;
        if stop(Step::DirectorySynced) {
            return Ok(());
        }

        // 4. Swap.
        drop(file);
        let output =
            Arc::new(Segment::open(final_path.clone(), id)?.ok_or_else(|| {
                Error::corrupt(&final_path, 0, "compacted segment header cut short")
            })?);
        {
            let mut keydir = self.write_keydir();
            for (key, old, new) in &moved {
                if let Some(current) = keydir.entries.get_mut(key.as_slice())
                    && current == old
                {
                    *current = *new;
                }
            }
            for input in &inputs {
                keydir.segments.remove(&input.id);
            }
            keydir.segments.insert(
                id,
                SegmentSlot {
                    segment: output,
                    end: offset,
                    record_bytes: offset - SEGMENT_HEADER_LEN as u64,
                    last_seq,
                },
            );
            keydir.horizon = keydir.horizon.max(horizon);
        }
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
        segment::sync_dir(&self.dir)?;
        self.compactions.fetch_add(1, Ordering::Relaxed);
        info!(
            "compacted {} segments of {} into {} ({} live records, {} bytes)",
            inputs.len(),
            self.dir.display(),
            final_path.display(),
            moved.len(),
            offset
        );
        Ok(())
    }
}
