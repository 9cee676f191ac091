//! Repairing a store whose log is damaged where recovery must refuse to
//! guess, offline: [`scan`] reports every damaged region and what cutting
//! there would drop; [`fix`] cuts, keeping a backup of every byte it cuts.
//! The `duokv repair` command wraps them. Also [`TailCut`], what recovery
//! cut on its own.

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{BufReader, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fault::Faults;
use crate::format::SEGMENT_HEADER_LEN;
use crate::segment::{self, PositionalReader, RecordScanner, ScanError, Segment, sync_dir};
use crate::tail;
pub use crate::tail::TailCut;

/// One damaged region of a segment, as [`scan`] finds it: the first damage
/// in the file, and what cutting the file there would drop (everything
/// from there to its end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRegion {
    /// The segment file.
    pub file: PathBuf,
    /// Where the file would be cut: the start of the damaged batch (or of
    /// the damaged record, in segments without batches).
    pub offset: u64,
    /// Where the damage was found (a record or batch header).
    pub found_at: u64,
    /// What is wrong there, in a few lowercase words.
    pub reason: &'static str,
    /// Bytes from `offset` to the end of the file: what cutting drops.
    pub bytes: u64,
    /// The seq of the last valid record before the damage, if any.
    pub last_good_seq: Option<u64>,
    /// The smallest seq of a valid record after the damage, if any.
    pub first_seq_after: Option<u64>,
    /// Valid records cutting would drop: those of the damaged batch read
    /// before the damage, and those found after it.
    pub records_dropped: u64,
    /// The first and last seq cutting would drop, when known.
    pub seqs_dropped: Option<(u64, u64)>,
    /// Whether the damage lies in the final batch of the newest segment:
    /// then it was never synced, and the store cuts it on its own when it
    /// opens. Otherwise records after it, which may have been
    /// acknowledged, are lost by cutting.
    pub final_batch: bool,
}

/// What [`scan`] or [`fix`] found (and, for `fix`, did), shown as a report
/// for people by its `Display`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// The store's directory.
    pub dir: PathBuf,
    /// Segment files read.
    pub segments: u64,
    /// Every damaged region, one per damaged segment, in id order.
    pub damaged: Vec<DamagedRegion>,
    /// For [`fix`]: the files the cut bytes were copied to, one per region,
    /// in the same order; empty for [`scan`].
    pub backups: Vec<PathBuf>,
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} segment files, {} damaged",
            self.dir.display(),
            self.segments,
            self.damaged.len()
        )?;
        for (i, region) in self.damaged.iter().enumerate() {
            writeln!(
                f,
                "- {}: {} at offset {}",
                region.file.display(),
                region.reason,
                region.found_at
            )?;
            let seqs = tail::seqs_text(region.seqs_dropped);
            writeln!(
                f,
                "  cutting at offset {} drops {} bytes, {} records ({seqs}); last good seq before \
                 it: {}",
                region.offset,
                region.bytes,
                region.records_dropped,
                region
                    .last_good_seq
                    .map_or("none".to_string(), |s| s.to_string()),
            )?;
            if region.final_batch {
                writeln!(
                    f,
                    "  this is the final, unsynced batch: opening the store cuts it"
                )?;
            } else {
                writeln!(
                    f,
                    "  not the final batch: records after the damage may have been acknowledged \
                     and are lost by cutting"
                )?;
            }
            if let Some(backup) = self.backups.get(i) {
                writeln!(f, "  cut; the dropped bytes are in {}", backup.display())?;
            }
        }
        Ok(())
    }
}

/// Finds every damaged region of the store in `dir`, changing nothing: the
/// dry run of [`fix`]. Takes the store's lock shared, so it fails with
/// [`Error::Locked`] while a store (a running server) has it open.
pub fn scan(dir: &Path) -> Result<RepairReport> {
    let _lock = lock_dir(dir, false)?;
    scan_unlocked(dir)
}

/// Cuts every damaged segment at its first damage (see [`scan`]), first
/// copying the bytes it cuts into a new file in `backup_dir` (created if
/// needed; an existing file is never overwritten), then syncs the backup,
/// the segment and the directory. Takes the store's lock, so it fails with
/// [`Error::Locked`] while a store has it open. The store then opens with
/// every record before each damage.
pub fn fix(dir: &Path, backup_dir: &Path) -> Result<RepairReport> {
    let _lock = lock_dir(dir, true)?;
    let mut report = scan_unlocked(dir)?;
    if report.damaged.is_empty() {
        return Ok(report);
    }
    let faults = Faults::default();
    fs::create_dir_all(backup_dir).map_err(|e| Error::io("create directory", backup_dir, e))?;
    for region in &report.damaged {
        let name = region
            .file
            .file_name()
            .map_or("segment".into(), |n| n.to_string_lossy().into_owned());
        let backup = backup_dir.join(format!("{name}.from-{}", region.offset));
        let mut source =
            File::open(&region.file).map_err(|e| Error::io("open", &region.file, e))?;
        source
            .seek(SeekFrom::Start(region.offset))
            .map_err(|e| Error::io("seek", &region.file, e))?;
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&backup)
            .map_err(|e| Error::io("create", &backup, e))?;
        std::io::copy(&mut source, &mut out).map_err(|e| Error::io("copy to", &backup, e))?;
        out.sync_all().map_err(|e| Error::io("sync", &backup, e))?;
        sync_dir(backup_dir, &faults)?;
        let segment = OpenOptions::new()
            .write(true)
            .open(&region.file)
            .map_err(|e| Error::io("open", &region.file, e))?;
        segment
            .set_len(region.offset)
            .map_err(|e| Error::io("truncate", &region.file, e))?;
        segment
            .sync_all()
            .map_err(|e| Error::io("sync", &region.file, e))?;
        log::warn!(
            "cut {} bytes off {} at offset {}; they are in {}",
            region.bytes,
            region.file.display(),
            region.offset,
            backup.display()
        );
        report.backups.push(backup);
    }
    sync_dir(dir, &faults)?;
    Ok(report)
}

/// Takes the `flock` a store holds while open: exclusive for [`fix`],
/// shared for [`scan`]. Either fails while a store holds it.
fn lock_dir(dir: &Path, exclusive: bool) -> Result<Option<File>> {
    let path = dir.join("LOCK");
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", &path, e)),
    };
    let locked = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match locked {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
    }
}

fn scan_unlocked(dir: &Path) -> Result<RepairReport> {
    let faults = Faults::default();
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        if let Some(id) = entry
            .file_name()
            .to_str()
            .and_then(segment::parse_file_name)
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    let mut report = RepairReport {
        dir: dir.to_path_buf(),
        segments: ids.len() as u64,
        damaged: Vec::new(),
        backups: Vec::new(),
    };
    let mut last_seq = None;
    for (i, &id) in ids.iter().enumerate() {
        let path = dir.join(segment::file_name(id));
        let Some(segment) = Segment::open(path.clone(), id, &faults)? else {
            continue;
        };
        let segment = Arc::new(segment);
        if let Some(region) = scan_segment(&segment, i + 1 == ids.len(), &mut last_seq)? {
            report.damaged.push(region);
        }
    }
    Ok(report)
}

/// Reads one segment to its first damage, if any.
fn scan_segment(
    segment: &Arc<Segment>,
    is_newest: bool,
    last_seq: &mut Option<u64>,
) -> Result<Option<DamagedRegion>> {
    let path = &segment.path;
    let file_len = segment.len()?;
    let reader = BufReader::new(PositionalReader::new(
        segment.clone(),
        SEGMENT_HEADER_LEN as u64,
        file_len,
    ));
    let framing = segment.framing();
    let framed = framing.is_some();
    let mut scanner = RecordScanner::new(reader, SEGMENT_HEADER_LEN as u64, file_len, framing);
    // Where the last whole batch (or record) ends, and the records read of
    // the batch in progress.
    let (mut whole_end, mut in_batch, mut seq) = (SEGMENT_HEADER_LEN as u64, 0u64, *last_seq);
    loop {
        let (found_at, problem) = match scanner.next_record() {
            Ok(Some(record)) => {
                seq = Some(record.header.seq);
                in_batch += 1;
                if !framed || record.ends_batch {
                    whole_end = record.offset + u64::from(record.header.len);
                    in_batch = 0;
                    *last_seq = seq;
                }
                continue;
            }
            Ok(None) => return Ok(None),
            Err(ScanError::Io(e)) => return Err(Error::io("read", path, e)),
            Err(ScanError::Bad { offset, problem }) => (offset, problem),
        };
        let offset = if framed { whole_end } else { found_at };
        let open = scanner.batch().filter(|batch| batch.start == offset);
        let search_from = open.map_or(found_at + 1, |batch| batch.end().min(file_len));
        let mut tail = vec![0u8; (file_len - search_from.min(file_len)) as usize];
        segment
            .file
            .read_exact_at(&mut tail, search_from.min(file_len))
            .map_err(|e| Error::io("read", path, e))?;
        // In a version 1 segment (no framing) no batch header is looked for.
        let after = segment::scan_for_frames(framing.unwrap_or(0), &tail);
        // The very rule recovery applies: is this the final batch, which
        // opening the store cuts on its own?
        let final_batch = is_newest
            && framed
            && tail::final_batch_cut(
                segment,
                file_len,
                whole_end,
                scanner.batch(),
                last_seq.unwrap_or(0),
            )?
            .is_some();
        let first = open.map(|b| b.header.first_seq).or(after.seqs.map(|s| s.0));
        let last = after
            .seqs
            .map(|s| s.1)
            .max(open.map(|b| b.header.last_seq()))
            .or(seq.filter(|_| in_batch > 0));
        return Ok(Some(DamagedRegion {
            file: path.clone(),
            offset,
            found_at,
            reason: problem.describe(),
            bytes: file_len - offset,
            last_good_seq: *last_seq,
            first_seq_after: after.seqs.map(|s| s.0),
            records_dropped: in_batch + after.records,
            seqs_dropped: first.zip(last),
            final_batch,
        }));
    }
}
