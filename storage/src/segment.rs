//! Segment files: naming, creating, reading records back.
//!
//! A store's directory holds numbered segment files. Log segments (even
//! ids) are appended to by writers; a compacted segment (odd id) replaces
//! every segment with a smaller id. Reading goes through positional reads
//! (`pread`), so any number of threads can read one file at once.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fault::Faults;
use crate::format::{
    self, BATCH_HEADER_LEN, BatchHeader, BatchProblem, RECORD_HEADER_LEN, RecordHeader,
    RecordProblem, SEGMENT_HEADER_LEN, SegmentHeader, SegmentKind,
};

/// The file name suffix of a segment.
const SEGMENT_SUFFIX: &str = ".seg";
/// The file name suffix of a compaction output not yet renamed into place.
pub(crate) const TEMP_SUFFIX: &str = ".seg.tmp";

/// The file name of segment `id`: twenty digits, so names sort like ids.
pub(crate) fn file_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_SUFFIX}")
}

/// The name a compaction output has until it is renamed into place.
pub(crate) fn temp_file_name(id: u64) -> String {
    format!("{id:020}{TEMP_SUFFIX}")
}

/// The id in a segment file name, or `None` for any other file.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The smallest log segment id (even) greater than `id`.
pub(crate) fn next_log_id(id: u64) -> u64 {
    (id / 2 + 1) * 2
}

/// Fsyncs a directory, so that files created, renamed or removed in it
/// survive a crash.
pub(crate) fn sync_dir(dir: &Path, faults: &Faults) -> Result<()> {
    faults
        .before_metadata_sync(dir)
        .and_then(|()| File::open(dir))
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

/// Syncs `file` (at `path`), one that says what the store is, whatever the
/// sync policy.
pub(crate) fn sync_metadata_file(file: &File, path: &Path, faults: &Faults) -> Result<()> {
    faults
        .before_metadata_sync(path)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("sync", path, e))
}

/// One open segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    faults: Faults,
    pub(crate) id: u64,
    pub(crate) kind: SegmentKind,
    pub(crate) horizon: u64,
    /// The format version that wrote it (see [`format::FORMAT_VERSION`]).
    pub(crate) version: u32,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
}

impl Segment {
    /// The format version its batch headers are laid out in, if its
    /// records are framed in batches, each behind a batch header: log
    /// segments of format version 2 and later. Compacted segments hold
    /// records back to back (they are synced before they are renamed into
    /// place, so never torn), and keep no write times.
    pub(crate) fn framing(&self) -> Option<u32> {
        (self.version >= 2 && self.kind == SegmentKind::Log).then_some(self.version)
    }

    /// Creates segment `path` with its header, under every sync policy in
    /// the same crash-safe order: the header is written to `<id>.seg.tmp`,
    /// that file is synced and renamed to `path`, and `dir` is synced. A
    /// crash before the rename leaves a `.seg.tmp`, which recovery removes;
    /// after it, a whole header. So a power cut never leaves a segment
    /// whose header is missing or holds zeros, which would stop the store
    /// from opening (the header says what the file is).
    pub(crate) fn create(
        dir: &Path,
        path: PathBuf,
        header: SegmentHeader,
        faults: &Faults,
    ) -> Result<Segment> {
        if path.exists() {
            return Err(Error::io(
                "create",
                &path,
                io::Error::from(io::ErrorKind::AlreadyExists),
            ));
        }
        let temp = dir.join(temp_file_name(header.id));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(|e| Error::io("create", &temp, e))?;
        file.write_all_at(&header.encode(), 0)
            .map_err(|e| Error::io("write header of", &temp, e))?;
        sync_metadata_file(&file, &temp, faults)?;
        fs::rename(&temp, &path).map_err(|e| Error::io("rename", &temp, e))?;
        sync_dir(dir, faults)?;
        Ok(Segment {
            faults: faults.clone(),
            id: header.id,
            kind: header.kind,
            horizon: header.horizon,
            version: format::FORMAT_VERSION,
            path,
            file,
        })
    }

    /// Opens an existing segment and checks its header. `Ok(None)` means
    /// the file is shorter than a header (a segment whose creation was cut
    /// short by a crash); the caller decides whether that is allowed.
    pub(crate) fn open(path: PathBuf, id: u64, faults: &Faults) -> Result<Option<Segment>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", &path, e))?
            .len();
        if len < SEGMENT_HEADER_LEN as u64 {
            return Ok(None);
        }
        let mut buf = [0u8; SEGMENT_HEADER_LEN];
        file.read_exact_at(&mut buf, 0)
            .map_err(|e| Error::io("read header of", &path, e))?;
        let (header, version) =
            SegmentHeader::decode_versioned(&buf).map_err(|problem| match problem {
                format::HeaderProblem::UnknownVersion(version) => Error::UnsupportedVersion {
                    file: path.clone(),
                    version,
                },
                format::HeaderProblem::Short => {
                    Error::corrupt(&path, 0, "segment header cut short")
                }
                format::HeaderProblem::BadMagic => {
                    Error::corrupt(&path, 0, "not a duokv segment (bad magic)")
                }
                format::HeaderProblem::BadChecksum => {
                    Error::corrupt(&path, 0, "segment header checksum mismatch")
                }
                format::HeaderProblem::UnknownKind(_) => {
                    Error::corrupt(&path, 0, "unknown segment kind")
                }
            })?;
        if header.id != id {
            return Err(Error::corrupt(
                &path,
                16,
                "segment id does not match the file name",
            ));
        }
        Ok(Some(Segment {
            faults: faults.clone(),
            id,
            kind: header.kind,
            horizon: header.horizon,
            version,
            path,
            file,
        }))
    }

    /// The file's current length in bytes.
    pub(crate) fn len(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| Error::io("stat", &self.path, e))?
            .len())
    }

    /// Reads and checks the record of `len` bytes at `offset`.
    pub(crate) fn read_record(&self, offset: u64, len: u32) -> Result<OwnedRecord> {
        let mut buf = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io("read", &self.path, e))?;
        let record = format::decode_record(&buf)
            .map_err(|problem| Error::corrupt(&self.path, offset, problem.describe()))?;
        if record.header.len != len {
            return Err(Error::corrupt(
                &self.path,
                offset,
                "record length differs from the index",
            ));
        }
        let key_end = RECORD_HEADER_LEN + record.header.key_len as usize;
        Ok(OwnedRecord {
            header: record.header,
            bytes: buf,
            key_end,
        })
    }

    /// Sets the file's length: drops a torn tail, or a half-written batch.
    pub(crate) fn truncate(&self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| Error::io("truncate", &self.path, e))
    }

    /// Forces the file's data to disk.
    pub(crate) fn sync_data(&self) -> Result<()> {
        self.faults
            .before_sync(&self.path)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io("sync", &self.path, e))
    }

    /// Writes `bytes` at `offset` (an append: the caller keeps the end).
    pub(crate) fn write_at(&self, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        self.faults.before_append(&self.path, bytes.len())?;
        self.file.write_all_at(bytes, offset)
    }

    /// Removes the file from the directory.
    pub(crate) fn remove(&self) -> Result<()> {
        fs::remove_file(&self.path).map_err(|e| Error::io("remove", &self.path, e))
    }
}

/// A whole record read into memory: its raw bytes and decoded header.
#[derive(Debug)]
pub(crate) struct OwnedRecord {
    pub(crate) header: RecordHeader,
    pub(crate) bytes: Vec<u8>,
    key_end: usize,
}

impl OwnedRecord {
    pub(crate) fn key(&self) -> &[u8] {
        &self.bytes[RECORD_HEADER_LEN..self.key_end]
    }

    pub(crate) fn into_value(mut self) -> Vec<u8> {
        self.bytes.drain(..self.key_end);
        self.bytes
    }
}

/// Reads a segment's bytes from `pos` up to `end` through `pread`, so that
/// readers never share a file offset.
pub(crate) struct PositionalReader {
    segment: Arc<Segment>,
    pos: u64,
    end: u64,
}

impl PositionalReader {
    pub(crate) fn new(segment: Arc<Segment>, pos: u64, end: u64) -> Self {
        PositionalReader { segment, pos, end }
    }
}

impl Read for PositionalReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end.saturating_sub(self.pos);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.segment.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// What is wrong with the bytes at one offset: a record, or the batch
/// framing around records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Damage {
    /// A record fails its checks.
    Record(RecordProblem),
    /// A batch header fails its checks, or its records disagree with it.
    Batch(BatchProblem),
}

impl Damage {
    /// A lowercase phrase for error messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Damage::Record(problem) => problem.describe(),
            Damage::Batch(problem) => problem.describe(),
        }
    }
}

/// What went wrong at one offset while reading records in order.
#[derive(Debug)]
pub(crate) enum ScanError {
    /// The bytes at `offset` are not a valid record (or batch header).
    Bad { offset: u64, problem: Damage },
    /// The reader failed.
    Io(io::Error),
}

/// One record as a scan sees it.
pub(crate) struct ScannedRecord<'a> {
    pub(crate) offset: u64,
    pub(crate) header: RecordHeader,
    pub(crate) key: &'a [u8],
    pub(crate) value: &'a [u8],
    /// In a framed segment, whether this record ends its batch.
    pub(crate) ends_batch: bool,
    /// When its batch was written, if its batch header says (format
    /// version 3 log segments).
    pub(crate) written_ns: Option<u64>,
}

/// The batch a framed scan is inside.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpenBatch {
    /// Where its header starts.
    pub(crate) start: u64,
    pub(crate) header: BatchHeader,
    /// Bytes of its header (its format version's).
    header_len: u64,
    /// Records of it read so far.
    seen: u32,
}

impl OpenBatch {
    /// Where the batch ends, as its header says.
    pub(crate) fn end(&self) -> u64 {
        self.start + self.header_len + self.header.len
    }
}

/// Reads checked records one after another from a byte stream that starts
/// at a record boundary (a batch boundary, when `framed`). Allocates at
/// most one record's worth of buffer, and only after the record's header
/// checksum and limits have passed.
pub(crate) struct RecordScanner<R> {
    reader: R,
    offset: u64,
    end: u64,
    body: Vec<u8>,
    /// The format version of the batch headers, if records come in batches.
    framing: Option<u32>,
    batch: Option<OpenBatch>,
}

impl<R: Read> RecordScanner<R> {
    /// `offset` is where `reader` starts in the file; `end` where the
    /// records end (the file's length). `framing`: records come in
    /// batches, each behind a [`BatchHeader`] of this format version
    /// ([`Segment::framing`]).
    pub(crate) fn new(reader: R, offset: u64, end: u64, framing: Option<u32>) -> Self {
        RecordScanner {
            reader,
            offset,
            end,
            body: Vec::new(),
            framing,
            batch: None,
        }
    }

    /// The batch being read, if the scan is inside one whose header
    /// passed its checks.
    pub(crate) fn batch(&self) -> Option<OpenBatch> {
        self.batch
    }

    /// The next record, `Ok(None)` at the end.
    pub(crate) fn next_record(&mut self) -> Result<Option<ScannedRecord<'_>>, ScanError> {
        if let Some(version) = self.framing
            && self.batch.is_none()
        {
            if self.offset == self.end {
                return Ok(None);
            }
            self.open_batch(version)?;
        }
        let offset = self.offset;
        let batch_end = self.batch.map_or(self.end, |b| b.end());
        let left = batch_end.min(self.end) - offset;
        let bad = |problem| ScanError::Bad {
            offset,
            problem: Damage::Record(problem),
        };
        if left == 0 {
            // Only a batch that runs past the end of the file gets here.
            return match self.batch {
                Some(_) => Err(bad(RecordProblem::Short)),
                None => Ok(None),
            };
        }
        if left < RECORD_HEADER_LEN as u64 {
            return Err(bad(RecordProblem::Short));
        }
        let mut header_bytes = [0u8; RECORD_HEADER_LEN];
        self.reader
            .read_exact(&mut header_bytes)
            .map_err(ScanError::Io)?;
        let header = RecordHeader::decode(&header_bytes).map_err(bad)?;
        if u64::from(header.len) > left {
            return Err(if offset + u64::from(header.len) > self.end {
                bad(RecordProblem::Short)
            } else {
                // A whole record that overruns its batch's end.
                ScanError::Bad {
                    offset,
                    problem: Damage::Batch(BatchProblem::Disagrees),
                }
            });
        }
        let body_len = header.len as usize - RECORD_HEADER_LEN;
        self.body.resize(body_len, 0);
        self.reader
            .read_exact(&mut self.body)
            .map_err(ScanError::Io)?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&header_bytes[4..]);
        hasher.update(&self.body);
        let stored_crc = u32::from_le_bytes([
            header_bytes[0],
            header_bytes[1],
            header_bytes[2],
            header_bytes[3],
        ]);
        if hasher.finalize() != stored_crc {
            return Err(bad(RecordProblem::BadChecksum));
        }
        let written_ns = self.batch.and_then(|batch| batch.header.written_ns);
        let ends_batch = self.count_in_batch(offset, &header)?;
        self.offset += u64::from(header.len);
        let (key, value) = self.body.split_at(header.key_len as usize);
        Ok(Some(ScannedRecord {
            offset,
            header,
            key,
            value,
            ends_batch,
            written_ns,
        }))
    }

    /// Counts a valid record at `offset` in the open batch, if any: its seq
    /// must be the batch's next, and it ends the batch exactly when it is
    /// the batch's last record and reaches the batch's end. Returns whether
    /// it ended the batch (which closes it).
    fn count_in_batch(&mut self, offset: u64, header: &RecordHeader) -> Result<bool, ScanError> {
        let Some(batch) = &mut self.batch else {
            return Ok(false);
        };
        let disagrees = ScanError::Bad {
            offset,
            problem: Damage::Batch(BatchProblem::Disagrees),
        };
        if header.seq != batch.header.first_seq + u64::from(batch.seen) {
            return Err(disagrees);
        }
        batch.seen += 1;
        let ends_batch = offset + u64::from(header.len) == batch.end();
        if ends_batch != (batch.seen == batch.header.count) {
            return Err(disagrees);
        }
        if ends_batch {
            self.batch = None;
        }
        Ok(ends_batch)
    }

    /// Reads and checks the batch header, of format `version`, at the
    /// scan's offset.
    fn open_batch(&mut self, version: u32) -> Result<(), ScanError> {
        let offset = self.offset;
        let left = self.end - offset;
        let bad = |problem| ScanError::Bad {
            offset,
            problem: Damage::Batch(problem),
        };
        let header_len = BatchHeader::len_for(version);
        if left < header_len as u64 {
            return Err(bad(BatchProblem::Short));
        }
        let mut bytes = [0u8; BATCH_HEADER_LEN];
        let bytes = &mut bytes[..header_len];
        self.reader.read_exact(bytes).map_err(ScanError::Io)?;
        let header = BatchHeader::decode_version(version, bytes).map_err(bad)?;
        self.offset += header_len as u64;
        self.batch = Some(OpenBatch {
            start: offset,
            header,
            header_len: header_len as u64,
            seen: 0,
        });
        Ok(())
    }
}

/// What [`scan_for_frames`] found in some bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frames {
    /// Whether a valid batch header starts anywhere in them.
    pub(crate) batch_header: bool,
    /// The smallest and largest seq of the valid records that start
    /// anywhere in them, if any does.
    pub(crate) seqs: Option<(u64, u64)>,
    /// How many valid records start in them.
    pub(crate) records: u64,
}

/// Looks at every offset of `bytes` (what follows damage in a framed
/// segment whose batch headers are of format `version`) for a valid batch
/// header and for valid records.
pub(crate) fn scan_for_frames(version: u32, bytes: &[u8]) -> Frames {
    let mut found = Frames::default();
    for start in 0..bytes.len() {
        let rest = &bytes[start..];
        if BatchHeader::decode_version(version, rest).is_ok() {
            found.batch_header = true;
        }
        if rest.len() >= RECORD_HEADER_LEN
            && let Ok(record) = format::decode_record(rest)
        {
            let seq = record.header.seq;
            found.records += 1;
            found.seqs = Some(
                found
                    .seqs
                    .map_or((seq, seq), |(low, high)| (low.min(seq), high.max(seq))),
            );
        }
    }
    found
}

/// Whether any valid record starts anywhere in `bytes`. Recovery asks this
/// of what follows a damaged record in the newest segment: nothing valid
/// after it means a torn tail; a valid record after it means damage in the
/// middle of the log.
pub(crate) fn any_valid_record_in(bytes: &[u8]) -> bool {
    (0..bytes.len()).any(|start| {
        let rest = &bytes[start..];
        rest.len() >= RECORD_HEADER_LEN
            && RecordHeader::decode(rest).is_ok()
            && format::decode_record(rest).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::RecordKind;

    #[test]
    fn file_names_round_trip_and_sort() {
        assert_eq!(file_name(42), "00000000000000000042.seg");
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name("00000000000000000042.seg.tmp"), None);
        assert_eq!(parse_file_name("LOCK"), None);
        assert!(file_name(9) < file_name(10));
    }

    #[test]
    fn log_ids_are_even_and_increase() {
        assert_eq!(next_log_id(0), 2);
        assert_eq!(next_log_id(2), 4);
        assert_eq!(next_log_id(3), 4);
    }

    #[test]
    fn scanner_reads_records_then_reports_a_torn_one() {
        let mut bytes = Vec::new();
        format::encode_record(&mut bytes, 1, RecordKind::Put, b"a", b"1");
        format::encode_record(&mut bytes, 2, RecordKind::Delete, b"a", b"");
        let full = bytes.len();
        format::encode_record(&mut bytes, 3, RecordKind::Put, b"b", b"22");
        bytes.truncate(bytes.len() - 1);
        let mut scanner = RecordScanner::new(&bytes[..], 0, bytes.len() as u64, None);
        assert_eq!(scanner.next_record().unwrap().unwrap().header.seq, 1);
        assert_eq!(scanner.next_record().unwrap().unwrap().header.seq, 2);
        match scanner.next_record() {
            Err(ScanError::Bad {
                offset,
                problem: Damage::Record(RecordProblem::Short),
            }) => assert_eq!(offset, full as u64),
            _ => panic!("expected a short record"),
        }
        assert!(!any_valid_record_in(&bytes[full..]));
        assert!(any_valid_record_in(&bytes[1..]));
    }
}
