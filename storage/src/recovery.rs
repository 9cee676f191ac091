//! Opening a directory: finding the segments, checking them, and rebuilding
//! the index and the last sequence number from their records.
//!
//! The rules, in the order they are applied:
//! 1. `*.seg.tmp` files are compaction outputs that never got renamed into
//!    place; they are removed (the segments they were made from are intact).
//! 2. A compacted segment replaces every segment with a smaller id. Such
//!    segments left behind by a crash after the rename are removed.
//! 3. Every record is checked (header CRC, limits, record CRC) and sequence
//!    numbers must increase through the log.
//! 4. In a log segment of format version 2 or 3 records come in batches, each
//!    behind a batch header. Damage in the final batch of the newest
//!    segment (no valid batch header after it, no record after it that
//!    goes back in sequence) is an unsynced batch a power cut tore: the
//!    batch is cut off whole, with a warning. In a version 1 segment,
//!    damage in the newest segment after which no valid record follows is
//!    a torn tail and is cut. Any other damage is [`Error::Corrupt`]
//!    naming the file and offset (and, in its message, the repair
//!    command). `FORMAT.md` gives the reasons.
//! 5. In a gated store, records above the publish limit are held (see the
//!    `keydir` module): loaded in order, shown to no reader, counted in no
//!    segment figure. The limit is never below the newest compacted
//!    segment's horizon: what a compaction or a snapshot install wrote was
//!    visible (or declared durable) already.

use std::fs;
use std::io::{BufReader, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crossbeam_channel::Sender;
use log::{info, warn};

use crate::error::{Error, Result};
use crate::fault::Faults;
use crate::format::{
    FORMAT_VERSION, RECORD_HEADER_LEN, RecordHeader, RecordKind, RecordProblem, SEGMENT_HEADER_LEN,
    SegmentHeader, SegmentKind,
};
use crate::keydir::{Keydir, Location, SegmentSlot};
use crate::segment::{self, Damage, RecordScanner, ScanError, ScannedRecord, Segment};
use crate::tail::{self, TailCut};

/// What recovery hands to the store.
pub(crate) struct Recovered {
    pub(crate) keydir: Keydir,
    /// The segment new records are appended to, and its length.
    pub(crate) active: Arc<Segment>,
    pub(crate) active_len: u64,
    pub(crate) last_seq: u64,
    /// What was cut off the newest segment, if anything.
    pub(crate) cut: Option<TailCut>,
}

/// Rebuilds the store in `dir`. `durable` says whether to sync what
/// recovery changes (false only for `Sync::Never`); records above `limit`
/// are held (`u64::MAX` in an ungated store).
pub(crate) fn recover(
    dir: &Path,
    segment_size: u64,
    durable: bool,
    limit: u64,
    faults: &Faults,
) -> Result<Recovered> {
    let (ids, mut changed_dir) = list_segments(dir)?;
    let (mut segments, cut_short) = open_segments(dir, &ids, faults)?;
    changed_dir |= cut_short;
    changed_dir |= remove_replaced(&mut segments)?;
    if changed_dir && durable {
        segment::sync_dir(dir, faults)?;
    }

    let compacted = segments.iter().map(|s| s.horizon).max().unwrap_or(0);
    let limit = limit.max(compacted);
    let Loaded {
        mut keydir,
        last_seq,
        cut,
        newest_end,
    } = load_segments(segments, durable, limit)?;
    keydir.published_seq = last_seq.min(limit);

    let (active, active_len) = active_segment(dir, &mut keydir, newest_end, segment_size, faults)?;
    info!(
        "opened {}: {} keys, {} segments, last seq {}",
        dir.display(),
        keydir.entries.len(),
        keydir.segments.len(),
        last_seq
    );
    if !keydir.held.is_empty() {
        info!(
            "{}: holding {} records above the publish limit {limit}",
            dir.display(),
            keydir.held.len()
        );
    }
    Ok(Recovered {
        keydir,
        active,
        active_len,
        last_seq,
        cut,
    })
}

/// The ids of the segment files in `dir`, in order, after removing the
/// unfinished compaction outputs (rule 1); with whether any was removed.
fn list_segments(dir: &Path) -> Result<(Vec<u64>, bool)> {
    let mut ids = Vec::new();
    let mut changed_dir = false;
    let entries = fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(segment::TEMP_SUFFIX) {
            warn!(
                "removing unfinished compaction output {}",
                entry.path().display()
            );
            fs::remove_file(entry.path()).map_err(|e| Error::io("remove", &entry.path(), e))?;
            changed_dir = true;
        } else if let Some(id) = segment::parse_file_name(name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok((ids, changed_dir))
}

/// Opens the segments `ids`, checking their headers. The newest one's
/// creation may have been cut short: it is removed, and `true` says so.
fn open_segments(dir: &Path, ids: &[u64], faults: &Faults) -> Result<(Vec<Segment>, bool)> {
    let mut segments = Vec::with_capacity(ids.len());
    let mut changed_dir = false;
    for (i, &id) in ids.iter().enumerate() {
        let path = dir.join(segment::file_name(id));
        match Segment::open(path.clone(), id, faults)? {
            Some(segment) => segments.push(segment),
            None if i + 1 == ids.len() => {
                warn!("removing {}: its creation was cut short", path.display());
                fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
                changed_dir = true;
            }
            None => return Err(Error::corrupt(&path, 0, "segment header cut short")),
        }
    }
    Ok((segments, changed_dir))
}

/// Removes the segments the newest compacted segment replaces (rule 2);
/// returns whether there were any.
fn remove_replaced(segments: &mut Vec<Segment>) -> Result<bool> {
    let mut changed_dir = false;
    if let Some(newest_compacted) = segments
        .iter()
        .rposition(|s| s.kind == SegmentKind::Compacted)
    {
        for replaced in segments.drain(..newest_compacted) {
            warn!(
                "removing {}: replaced by a finished compaction",
                replaced.path.display()
            );
            replaced.remove()?;
            changed_dir = true;
        }
    }
    Ok(changed_dir)
}

/// The segment new records are appended to, and its length: the newest
/// segment (whose records end at `newest_end`, held ones included) if it
/// is a log segment under `segment_size`, else a new one, added to
/// `keydir`.
fn active_segment(
    dir: &Path,
    keydir: &mut Keydir,
    newest_end: u64,
    segment_size: u64,
    faults: &Faults,
) -> Result<(Arc<Segment>, u64)> {
    let reusable = keydir.segments.values().next_back().filter(|slot| {
        // A segment of an older format is closed: new batches go to a
        // new segment of the current one.
        slot.segment.kind == SegmentKind::Log
            && slot.segment.version == FORMAT_VERSION
            && newest_end < segment_size
    });
    if let Some(slot) = reusable {
        return Ok((slot.segment.clone(), newest_end));
    }
    let id = keydir
        .segments
        .keys()
        .next_back()
        .map_or(2, |&id| segment::next_log_id(id));
    let header = SegmentHeader {
        kind: SegmentKind::Log,
        id,
        horizon: 0,
    };
    let segment = Arc::new(Segment::create(
        dir,
        dir.join(segment::file_name(id)),
        header,
        faults,
    )?);
    keydir
        .segments
        .insert(id, SegmentSlot::empty(segment.clone()));
    Ok((segment, SEGMENT_HEADER_LEN as u64))
}

/// Records handed from the scanning thread to the indexing thread at once.
const BATCH: usize = 4096;

/// What the scanning thread hands over.
enum Scanned {
    /// Records in log order.
    Records(Vec<(Vec<u8>, RecordKind, Location)>),
    /// About this many more keys are coming: grow the index once now
    /// instead of rehashing it again and again.
    Expect(usize),
}

/// What [`load_segments`] found.
struct Loaded {
    /// The index, records above the limit held.
    keydir: Keydir,
    /// The last sequence number, held records included.
    last_seq: u64,
    /// What was cut off the newest segment, if anything.
    cut: Option<TailCut>,
    /// Where the records of the newest segment end, held ones included.
    newest_end: u64,
}

/// Scans `segments` in order into a new index whose publish limit is
/// `limit`. One thread reads and checks the records while this one inserts
/// them: reading and hashing overlap.
fn load_segments(segments: Vec<Segment>, durable: bool, limit: u64) -> Result<Loaded> {
    let total_bytes: u64 = segments.iter().map(|s| s.len()).sum::<Result<u64>>()?;
    let (sender, receiver) = crossbeam_channel::bounded::<Scanned>(8);
    std::thread::scope(|scope| {
        let scanning = scope.spawn(move || scan_log(segments, durable, limit, total_bytes, sender));
        let mut keydir = Keydir::new(limit);
        for message in receiver {
            match message {
                Scanned::Records(records) => {
                    for (key, kind, location) in records {
                        keydir.load(key, kind, location);
                    }
                }
                Scanned::Expect(keys) => keydir.entries.reserve(keys),
            }
        }
        let (scans, last_seq) = scanning
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        let mut cut = None;
        let mut newest_end = SEGMENT_HEADER_LEN as u64;
        for (segment, scan) in scans {
            cut = cut.or(scan.cut);
            newest_end = scan.end;
            keydir.horizon = keydir.horizon.max(segment.horizon);
            keydir.segments.insert(
                segment.id,
                SegmentSlot {
                    segment,
                    end: scan.shown_end,
                    record_bytes: scan.record_bytes,
                    last_seq: scan.last_seq,
                },
            );
        }
        Ok(Loaded {
            keydir,
            last_seq,
            cut,
            newest_end,
        })
    })
}

/// The scanning thread of [`load_segments`]: reads and checks every record
/// of `segments` in order and sends them to the indexing thread, with a
/// guess of how many keys are still to come. The figures of each segment
/// count only the records at or below `limit`.
fn scan_log(
    segments: Vec<Segment>,
    durable: bool,
    limit: u64,
    total_bytes: u64,
    sender: Sender<Scanned>,
) -> Result<ScannedLog> {
    let mut last_seq = 0;
    let mut scans = Vec::with_capacity(segments.len());
    let (mut scanned_bytes, mut scanned_records) = (0u64, 0u64);
    let count = segments.len();
    let mut batch = Vec::with_capacity(BATCH);
    for (i, segment) in segments.into_iter().enumerate() {
        let segment = Arc::new(segment);
        let scan = scan_segment(
            &segment,
            i + 1 == count,
            durable,
            limit,
            &mut last_seq,
            &mut |key, kind, location| {
                batch.push((key.to_vec(), kind, location));
                if batch.len() == BATCH {
                    // A closed channel means the indexing side is gone; its
                    // own error is the one reported.
                    let _ = sender.send(Scanned::Records(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(BATCH),
                    )));
                }
            },
        )?;
        // A compacted segment's records are at or below its horizon;
        // only the segments after it must go past it.
        last_seq = last_seq.max(segment.horizon);
        scanned_bytes += scan.end;
        scanned_records += scan.records;
        let expected = scanned_records as f64 / scanned_bytes as f64
            * total_bytes.saturating_sub(scanned_bytes) as f64;
        let _ = sender.send(Scanned::Records(std::mem::take(&mut batch)));
        let _ = sender.send(Scanned::Expect(expected as usize));
        scans.push((segment, scan));
    }
    Ok((scans, last_seq))
}

/// Every segment with what its scan found, and the last sequence number.
type ScannedLog = (Vec<(Arc<Segment>, SegmentScan)>, u64);

/// What scanning one segment found. `end` and `records` count every
/// record; the figures of its slot (`shown_end`, `record_bytes`,
/// `last_seq`) only those at or below the publish limit.
struct SegmentScan {
    /// Where its last valid record (of its last whole batch) ends.
    end: u64,
    records: u64,
    /// Where its last record at or below the limit ends.
    shown_end: u64,
    /// Bytes of the records at or below the limit, batch headers left out.
    record_bytes: u64,
    /// The seq of its last record at or below the limit; 0 if none.
    last_seq: u64,
    /// What was cut off its end, if it was the newest segment.
    cut: Option<TailCut>,
}

/// A record read but not yet indexed: in a framed segment, records wait
/// until their batch is whole, since a torn final batch is cut entirely.
struct Pending {
    key: Vec<u8>,
    kind: RecordKind,
    location: Location,
}

/// Reads every record of one segment into the index.
fn scan_segment(
    segment: &Arc<Segment>,
    is_newest: bool,
    durable: bool,
    limit: u64,
    last_seq: &mut u64,
    sink: &mut impl FnMut(&[u8], RecordKind, Location),
) -> Result<SegmentScan> {
    let path = &segment.path;
    let file_len = segment.len()?;
    let mut file = &segment.file;
    file.seek(SeekFrom::Start(SEGMENT_HEADER_LEN as u64))
        .map_err(|e| Error::io("seek", path, e))?;
    let reader = BufReader::with_capacity(1 << 20, file);
    let framing = segment.framing();
    let framed = framing.is_some();
    let mut scanner = RecordScanner::new(reader, SEGMENT_HEADER_LEN as u64, file_len, framing);
    let mut scanned = SegmentScan {
        end: SEGMENT_HEADER_LEN as u64,
        records: 0,
        shown_end: SEGMENT_HEADER_LEN as u64,
        record_bytes: 0,
        last_seq: 0,
        cut: None,
    };
    let mut batch = PendingBatch {
        records: Vec::new(),
        read_seq: *last_seq,
        limit,
    };
    loop {
        match scanner.next_record() {
            Ok(Some(record)) => {
                let seq = batch.take(segment, &record)?;
                if !framed || record.ends_batch {
                    batch.index_into(&mut scanned, sink);
                    *last_seq = seq;
                }
            }
            Ok(None) => return Ok(scanned),
            Err(ScanError::Io(e)) => return Err(Error::io("read", path, e)),
            Err(ScanError::Bad { offset, problem }) => {
                let cut = if !is_newest {
                    None
                } else if framed {
                    tail::final_batch_cut(
                        segment,
                        file_len,
                        scanned.end,
                        scanner.batch(),
                        *last_seq,
                    )?
                } else {
                    old_torn_tail(segment, offset, problem, file_len)?
                };
                let Some(cut) = cut else {
                    return Err(Error::corrupt(path, offset, problem.describe()));
                };
                cut_tail(segment, durable, &cut, offset, problem)?;
                scanned.cut = Some(cut);
                return Ok(scanned);
            }
        }
    }
}

/// The records of the batch being read: in a framed segment they wait
/// until their batch is whole, since a torn final batch is cut entirely.
struct PendingBatch {
    records: Vec<Pending>,
    /// The last seq read, pending records included.
    read_seq: u64,
    /// The publish limit: records above it are held, and left out of the
    /// segment's figures.
    limit: u64,
}

impl PendingBatch {
    /// Takes a record read from `segment`, checking that its seq increases;
    /// returns that seq.
    fn take(&mut self, segment: &Segment, record: &ScannedRecord<'_>) -> Result<u64> {
        let seq = record.header.seq;
        if seq <= self.read_seq {
            return Err(Error::corrupt(
                &segment.path,
                record.offset,
                "sequence number does not increase",
            ));
        }
        self.read_seq = seq;
        self.records.push(Pending {
            key: record.key.to_vec(),
            kind: record.header.kind,
            location: Location {
                segment: segment.id,
                offset: record.offset,
                len: record.header.len,
                seq,
            },
        });
        Ok(seq)
    }

    /// Hands the whole batch to the index, and counts it in `scanned`.
    fn index_into(
        &mut self,
        scanned: &mut SegmentScan,
        sink: &mut impl FnMut(&[u8], RecordKind, Location),
    ) {
        for record in self.records.drain(..) {
            let location = record.location;
            sink(&record.key, record.kind, location);
            scanned.records += 1;
            scanned.end = location.offset + u64::from(location.len);
            if location.seq <= self.limit {
                scanned.shown_end = scanned.end;
                scanned.record_bytes += u64::from(location.len);
                scanned.last_seq = location.seq;
            }
        }
    }
}

/// Truncates `segment` at `cut`, an unsynced tail recovery decided to drop,
/// with a warning naming the damage found at `offset` and what was cut.
fn cut_tail(
    segment: &Segment,
    durable: bool,
    cut: &TailCut,
    offset: u64,
    problem: Damage,
) -> Result<()> {
    let seqs = tail::seqs_text(cut.seqs);
    warn!(
        "{}: {} at offset {offset}; cutting off an unsynced tail at offset {} \
         ({} bytes, {seqs}); nothing in it was acknowledged as synced",
        segment.path.display(),
        problem.describe(),
        cut.offset,
        cut.bytes,
    );
    segment.truncate(cut.offset)?;
    if durable {
        segment.sync_data()?;
    }
    Ok(())
}

/// The rule of format version 1 (records back to back): damage is a torn
/// tail only if no valid record follows it; the cut is at the damaged
/// record.
fn old_torn_tail(
    segment: &Segment,
    offset: u64,
    problem: Damage,
    file_len: u64,
) -> Result<Option<TailCut>> {
    let Damage::Record(problem) = problem else {
        return Ok(None);
    };
    if valid_record_follows(segment, offset, problem, file_len)? {
        return Ok(None);
    }
    Ok(Some(TailCut {
        file: segment.path.clone(),
        offset,
        bytes: file_len - offset,
        seqs: None,
    }))
}

/// Whether a valid record starts anywhere after the damaged one at `offset`.
///
/// When the damaged record's header is intact (its own CRC and limits
/// pass), its length is trusted and the search starts where it ends: its
/// value may hold any bytes, a well-formed record among them, and must not
/// count. A record whose end lies past the file is then a torn tail. When
/// the header itself is damaged, every later offset is searched.
fn valid_record_follows(
    segment: &Segment,
    offset: u64,
    problem: RecordProblem,
    file_len: u64,
) -> Result<bool> {
    let read_error = |e| Error::io("read", &segment.path, e);
    let mut start = offset + 1;
    if matches!(problem, RecordProblem::Short | RecordProblem::BadChecksum) {
        let mut header = [0u8; RECORD_HEADER_LEN];
        let have = usize::try_from(file_len - offset)
            .unwrap_or(usize::MAX)
            .min(RECORD_HEADER_LEN);
        segment
            .file
            .read_exact_at(&mut header[..have], offset)
            .map_err(read_error)?;
        if let Ok(header) = RecordHeader::decode(&header[..have]) {
            start = offset + u64::from(header.len);
        }
    }
    Ok(segment::any_valid_record_in(&tail::tail_after(
        segment, start, file_len,
    )?))
}
