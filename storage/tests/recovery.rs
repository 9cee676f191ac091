//! Recovery tests: what `Store::open` makes of a directory after a crash or
//! after damage.
//!
//! The store promises (see `recovery.rs`) that a torn tail of the newest
//! segment is cut off, that any other damage is `Error::Corrupt` naming the
//! file and offset, that a crash at any step of a compaction loses nothing,
//! and that under `Sync::Always` every acknowledged write survives a
//! `SIGKILL`. These tests damage real files byte by byte, and kill a real
//! child process, to hold it to that.
//!
//! Files are located through the public `format` module: a segment is a
//! 40-byte header followed by records of `29 + key + value` bytes.
//!
//! The crash and lock tests re-run this test binary as a child process,
//! selecting an `#[ignore]`d test that does nothing unless an environment
//! variable names its directory.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use duokv_storage::format::{self, RECORD_HEADER_LEN, RecordKind, SEGMENT_HEADER_LEN};
use duokv_storage::{CompactionPolicy, CompactionStep, Error, Options, Store};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Held for writing while a test spawns a child process, for reading while
/// a test opens a store. A child starts with a copy of every open file
/// descriptor until it execs, the store's `flock`ed LOCK file among them, so
/// a store dropped and reopened in one thread while another thread is
/// spawning could find its directory still locked by the child's copy.
static SPAWNING: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// `Store::open`, never during a child's spawn (see [`SPAWNING`]). Even so,
/// while the SIGKILL test runs its children alongside, a reopen right after
/// a drop was refused as `Locked` about once in twenty runs, with no process
/// holding the LOCK file a moment later; the cause is not pinned down (no
/// open file description of the store outlives its drop in this process),
/// so a `Locked` refusal is retried for up to 5 s. A store that really kept
/// its lock would still fail here.
fn open_store(dir: impl AsRef<Path>, options: Options) -> Result<Store, Error> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let opened = {
            let _no_spawn = SPAWNING.read().unwrap_or_else(|p| p.into_inner());
            Store::open(dir.as_ref(), options.clone())
        };
        match opened {
            Err(Error::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// `Sync::Always` (the default) with no automatic compaction, so that the
/// files are exactly what the test wrote.
fn opts() -> Options {
    Options::default().compaction(None)
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

/// The segment id in a file name such as `00000000000000000002.seg`.
fn segment_id(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The segment files of `dir`, oldest (smallest id) first.
fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut found: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .expect("list the store directory")
        .map(|entry| entry.expect("read a directory entry").path())
        .filter_map(|path| Some((segment_id(path.file_name()?.to_str()?)?, path)))
        .collect();
    found.sort();
    found
}

fn newest_segment(dir: &Path) -> PathBuf {
    segments(dir).pop().expect("at least one segment").1
}

/// Names in `dir` that end in `.seg.tmp` (unfinished compaction outputs).
fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| entry.unwrap().file_name().into_string().ok())
        .filter(|name| name.ends_with(".seg.tmp"))
        .collect()
}

/// Where one record lies in its segment file.
#[derive(Debug, Clone, Copy)]
struct RecordPos {
    offset: u64,
    len: u64,
    key_len: u64,
    seq: u64,
    /// Where the batch holding it starts (its batch header), in a framed
    /// log segment; the record's own offset otherwise.
    batch: u64,
}

/// Every record of a pristine segment file, checked with the crate's own
/// decoder: a log segment of the current format frames its records in
/// batches, each behind a batch header; a compacted one (or one of format
/// version 1) holds them back to back.
fn records_of(path: &Path) -> Vec<RecordPos> {
    let bytes = fs::read(path).expect("read a segment");
    let (header, version) = format::SegmentHeader::decode_versioned(&bytes).unwrap();
    let framed = version >= 2 && header.kind == format::SegmentKind::Log;
    let mut offset = SEGMENT_HEADER_LEN;
    let mut found = Vec::new();
    let (mut batch, mut batch_end) = (offset, offset);
    while offset < bytes.len() {
        if framed && offset == batch_end {
            let header = format::BatchHeader::decode_version(version, &bytes[offset..])
                .unwrap_or_else(|problem| panic!("{}: {problem:?} at {offset}", path.display()));
            let header_len = format::BatchHeader::len_for(version);
            batch = offset;
            batch_end = offset + header_len + header.len as usize;
            offset += header_len;
        } else if !framed {
            batch = offset;
        }
        let record = format::decode_record(&bytes[offset..])
            .unwrap_or_else(|problem| panic!("{}: {problem:?} at {offset}", path.display()));
        found.push(RecordPos {
            offset: offset as u64,
            len: u64::from(record.header.len),
            key_len: u64::from(record.header.key_len),
            seq: record.header.seq,
            batch: batch as u64,
        });
        offset += record.header.len as usize;
    }
    found
}

/// Copies every file of `from` into `to` (the lock is per open file, so a
/// copied `LOCK` is harmless).
fn copy_dir(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Copies `pristine` into a fresh directory and returns it with the path
/// that `file` (a path under `pristine`) has in the copy.
fn fresh_copy(pristine: &Path, file: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempdir();
    copy_dir(pristine, dir.path());
    let copy = dir.path().join(file.file_name().unwrap());
    (dir, copy)
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).unwrap().len()
}

fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Rewrites `path` after `patch` has changed its bytes.
fn patch_file(path: &Path, patch: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(path).unwrap();
    patch(&mut bytes);
    fs::write(path, bytes).unwrap();
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn write_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Every live key of `store` with its value.
fn contents(store: &Store) -> BTreeMap<Vec<u8>, Vec<u8>> {
    store
        .snapshot()
        .map(|entry| {
            let entry = entry.expect("read a snapshot entry");
            (entry.key, entry.value)
        })
        .collect()
}

fn model_contents(model: &HashMap<Vec<u8>, Vec<u8>>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    model.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// Opens `dir` expecting `Error::Corrupt` at `offset` of `file`, and
/// checks that the message names both.
fn assert_corrupt_at(dir: &Path, file: &Path, offset: u64, what: &str) {
    let err = match open_store(dir, opts()) {
        Ok(_) => panic!("{what}: open succeeded on a damaged log"),
        Err(err) => err,
    };
    match &err {
        Error::Corrupt {
            file: found,
            offset: at,
            reason,
        } => {
            assert_eq!(found, file, "{what}: wrong file ({reason})");
            assert_eq!(*at, offset, "{what}: wrong offset ({reason})");
        }
        other => panic!("{what}: expected Error::Corrupt, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains(&file.display().to_string()),
        "{what}: {message:?} does not name the file"
    );
    assert!(
        message.contains(&format!("offset {offset}")),
        "{what}: {message:?} does not name the offset"
    );
}

/// CRC-32 (IEEE, reflected), the checksum the format uses, computed
/// locally so that tests can re-seal a header they damaged on purpose.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// A small deterministic generator (SplitMix64): tests that pick random
/// points print their seed and can be replayed with `DUOKV_TEST_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn test_seed() -> u64 {
    std::env::var("DUOKV_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_D00C)
}

/// Writes `count` puts of distinct keys `k{i}` = `value-{i}` (seq `i + 1`)
/// into a new store in `dir`.
fn write_distinct(dir: &Path, count: usize, options: Options) {
    let store = open_store(dir, options).unwrap();
    for i in 0..count {
        let seq = store.put(format!("k{i}"), format!("value-{i}")).unwrap();
        assert_eq!(seq, i as u64 + 1);
    }
}

/// Checks that `k0..k{count}` hold their values.
fn assert_distinct(store: &Store, count: usize, what: &str) {
    for i in 0..count {
        assert_eq!(
            store.get(format!("k{i}")).unwrap(),
            Some(format!("value-{i}").into_bytes()),
            "{what}: k{i}"
        );
    }
}

// ---------------------------------------------------------------------------
// 1, 2: torn tails
// ---------------------------------------------------------------------------

/// A crash mid-append leaves any prefix of the newest record: for every cut
/// point inside it, reopening keeps every earlier record, drops the torn
/// one, reports the previous seq, and goes on writing right after it.
#[test]
fn torn_tail_at_every_offset_of_the_last_record_is_cut() {
    let pristine = tempdir();
    write_distinct(pristine.path(), 5, opts());
    let segment = newest_segment(pristine.path());
    let records = records_of(&segment);
    assert_eq!(records.len(), 5);
    let last = *records.last().unwrap();
    assert_eq!(last.seq, 5);
    assert_eq!(last.offset + last.len, file_len(&segment));

    for cut in last.offset..last.offset + last.len {
        let what = format!("cut at {cut}");
        let (dir, copy) = fresh_copy(pristine.path(), &segment);
        truncate(&copy, cut);

        let store = open_store(dir.path(), opts()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_distinct(&store, 4, &what);
        assert_eq!(store.get("k4").unwrap(), None, "{what}");
        assert_eq!(store.last_seq(), 4, "{what}");
        assert_eq!(file_len(&copy), last.batch, "{what}: tail not cut");
        assert_eq!(
            store.put("new", format!("after-{cut}")).unwrap(),
            5,
            "{what}"
        );
        drop(store);

        let store = open_store(dir.path(), opts()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_distinct(&store, 4, &what);
        assert_eq!(store.get("k4").unwrap(), None, "{what}");
        assert_eq!(
            store.get("new").unwrap(),
            Some(format!("after-{cut}").into_bytes()),
            "{what}"
        );
        assert_eq!(store.last_seq(), 5, "{what}");
    }
}

/// A last record whose checksum fails (its value was torn in place) is a
/// torn tail too: it is cut, earlier records are kept.
#[test]
fn last_record_with_a_bad_crc_is_cut() {
    let dir = tempdir();
    write_distinct(dir.path(), 5, opts());
    let segment = newest_segment(dir.path());
    let last = *records_of(&segment).last().unwrap();
    let value_byte = (last.offset + RECORD_HEADER_LEN as u64 + last.key_len + 1) as usize;
    patch_file(&segment, |bytes| bytes[value_byte] ^= 0x5A);

    let store = open_store(dir.path(), opts()).unwrap();
    assert_distinct(&store, 4, "value flipped");
    assert_eq!(store.get("k4").unwrap(), None);
    assert_eq!(store.last_seq(), 4);
    assert_eq!(file_len(&segment), last.batch);
    assert_eq!(store.put("k4", "again").unwrap(), 5);
}

/// Garbage after the last record (a torn append that got no further than
/// noise) is cut back to the last whole record; nothing is lost.
#[test]
fn garbage_after_the_last_record_is_cut() {
    let dir = tempdir();
    write_distinct(dir.path(), 5, opts());
    let segment = newest_segment(dir.path());
    let clean_len = file_len(&segment);
    let mut rng = Rng(test_seed());
    let garbage: Vec<u8> = (0..100).map(|_| 1 + rng.below(255) as u8).collect();
    patch_file(&segment, |bytes| bytes.extend_from_slice(&garbage));
    assert_eq!(file_len(&segment), clean_len + 100);

    let store = open_store(dir.path(), opts()).unwrap();
    assert_distinct(&store, 5, "garbage appended");
    assert_eq!(store.last_seq(), 5);
    assert_eq!(file_len(&segment), clean_len, "garbage not cut off");
    assert_eq!(store.put("k5", "value-5").unwrap(), 6);
    drop(store);
    let store = open_store(dir.path(), opts()).unwrap();
    assert_distinct(&store, 6, "after reopen");
}

/// A value is arbitrary bytes and may itself hold a well-formed record. A
/// torn copy of such a write is still a torn tail: the record inside the
/// value must not be taken for a valid record after damage.
#[test]
fn torn_tail_is_cut_even_when_its_value_holds_a_record() {
    let mut inner = Vec::new();
    format::encode_record(&mut inner, 1000, RecordKind::Put, b"inner", b"payload");
    let mut value = inner.clone();
    value.extend_from_slice(b"-and-the-rest");

    let dir = tempdir();
    {
        let store = open_store(dir.path(), opts()).unwrap();
        store.put("k0", "value-0").unwrap();
        store.put("k1", "value-1").unwrap();
        store.put("k2", &value).unwrap();
    }
    let segment = newest_segment(dir.path());
    let last = *records_of(&segment).last().unwrap();
    // The crash cut the write after the embedded record, before the end.
    let cut = last.offset + RECORD_HEADER_LEN as u64 + last.key_len + inner.len() as u64;
    assert!(cut < last.offset + last.len);
    truncate(&segment, cut);

    let store = open_store(dir.path(), opts())
        .unwrap_or_else(|e| panic!("a torn tail was taken for mid-log damage: {e}"));
    assert_distinct(&store, 2, "embedded record");
    assert_eq!(store.get("k2").unwrap(), None);
    assert_eq!(store.last_seq(), 2);
}

// ---------------------------------------------------------------------------
// 3, 4, 5: damage that must be reported
// ---------------------------------------------------------------------------

/// A store over several 512-byte segments, and a record to damage in it.
struct Damaged {
    pristine: tempfile::TempDir,
    /// `(description, segment path, record)`.
    targets: Vec<(String, PathBuf, RecordPos)>,
}

/// Writes 44 records of 6-byte keys and 32-byte values into 512-byte
/// segments (8 records each, 4 in the newest), and picks the records to
/// damage: an older record of the newest segment, a middle record and the
/// last record of the oldest segment.
fn damaged_fixture() -> Damaged {
    let pristine = tempdir();
    {
        let store = open_store(pristine.path(), opts().segment_size(512)).unwrap();
        for i in 0..44 {
            store
                .put(format!("key{i:03}"), format!("{i:0>32}"))
                .unwrap();
        }
    }
    let all = segments(pristine.path());
    assert!(all.len() >= 3, "expected several segments, got {all:?}");
    let newest = all.last().unwrap().1.clone();
    let oldest = all[0].1.clone();
    let newest_records = records_of(&newest);
    assert!(newest_records.len() >= 3, "{newest_records:?}");
    let oldest_records = records_of(&oldest);
    assert!(oldest_records.len() >= 3, "{oldest_records:?}");
    Damaged {
        targets: vec![
            (
                "older record of the newest segment".into(),
                newest.clone(),
                newest_records[1],
            ),
            (
                "middle record of an older segment".into(),
                oldest.clone(),
                oldest_records[oldest_records.len() / 2],
            ),
            (
                "last record of an older segment".into(),
                oldest,
                *oldest_records.last().unwrap(),
            ),
        ],
        pristine,
    }
}

/// One flipped byte anywhere but the newest segment's tail (in a record's
/// header, key or value) fails the open with `Error::Corrupt` naming the
/// segment and the damaged record's offset, in the struct and the message.
#[test]
fn flipped_byte_before_the_tail_is_reported_where_it_is() {
    let fixture = damaged_fixture();
    for (target, segment, record) in &fixture.targets {
        let parts = [
            ("header", record.offset + 10),
            ("key", record.offset + RECORD_HEADER_LEN as u64),
            (
                "value",
                record.offset + RECORD_HEADER_LEN as u64 + record.key_len + 3,
            ),
        ];
        for (part, at) in parts {
            let what = format!("{part} of the {target}");
            let (dir, copy) = fresh_copy(fixture.pristine.path(), segment);
            patch_file(&copy, |bytes| bytes[at as usize] ^= 0x01);
            assert_corrupt_at(dir.path(), &copy, record.offset, &what);
        }
    }
}

/// Length fields that claim gigabytes, with the header checksum left wrong
/// or re-sealed to match, are refused quickly as `Error::Corrupt` at that
/// record: nothing is allocated for them and nothing hangs.
#[test]
fn huge_length_fields_are_refused_quickly() {
    let fixture = damaged_fixture();
    // (case, key_len, value_len, reseal the header crc)
    let cases: [(&str, u32, u32, bool); 3] = [
        (
            "huge lengths, stale header crc",
            0x4000_0000,
            0xF000_0000,
            false,
        ),
        (
            "huge lengths, re-sealed header crc",
            0x4000_0000,
            0xF000_0000,
            true,
        ),
        ("u32::MAX value, re-sealed header crc", 6, u32::MAX, true),
    ];
    for (target, segment, record) in &fixture.targets {
        for (case, key_len, value_len, reseal) in cases {
            let what = format!("{case} in the {target}");
            let (dir, copy) = fresh_copy(fixture.pristine.path(), segment);
            let at = record.offset as usize;
            patch_file(&copy, |bytes| {
                let header = &mut bytes[at..at + RECORD_HEADER_LEN];
                assert_eq!(
                    crc32(&header[4..25]),
                    read_u32(header, 25),
                    "the local crc32 must agree with the format's"
                );
                write_u32(header, 17, key_len);
                write_u32(header, 21, value_len);
                if reseal {
                    let crc = crc32(&header[4..25]);
                    write_u32(header, 25, crc);
                }
            });
            let started = Instant::now();
            assert_corrupt_at(dir.path(), &copy, record.offset, &what);
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{what}: open took {:?}",
                started.elapsed()
            );
        }
    }
}

/// A segment written by a later format version (valid header checksum,
/// a version above `FORMAT_VERSION`) is refused with `Error::UnsupportedVersion`, not mistaken for
/// damage and never read.
#[test]
fn unknown_format_version_is_refused() {
    let dir = tempdir();
    write_distinct(dir.path(), 3, opts());
    let segment = newest_segment(dir.path());
    let future = format::FORMAT_VERSION + 1;
    patch_file(&segment, |bytes| {
        assert_eq!(read_u32(bytes, 8), format::FORMAT_VERSION);
        assert_eq!(crc32(&bytes[0..36]), read_u32(bytes, 36));
        write_u32(bytes, 8, future);
        let crc = crc32(&bytes[0..36]);
        write_u32(bytes, 36, crc);
    });
    let before = fs::read(&segment).unwrap();
    match open_store(dir.path(), opts()) {
        Err(err @ Error::UnsupportedVersion { .. }) => {
            let Error::UnsupportedVersion { file, version } = &err else {
                unreachable!()
            };
            assert_eq!(file, &segment);
            assert_eq!(*version, future);
            assert!(err.to_string().contains(&segment.display().to_string()));
        }
        Err(other) => panic!("expected UnsupportedVersion, got {other:?}"),
        Ok(_) => panic!("opened a segment of an unknown format version"),
    }
    assert_eq!(
        fs::read(&segment).unwrap(),
        before,
        "the segment was changed"
    );
}

// ---------------------------------------------------------------------------
// Torn writes inside the last batch, and format version 1
// ---------------------------------------------------------------------------

/// Appends one batch of `count` puts `b{seq}` = `batch-value-{seq}` from
/// `first_seq` on to `segment`, as group commit writes it: a batch header
/// and the records, and returns where the batch starts and ends.
fn append_batch(segment: &Path, first_seq: u64, count: u64) -> (u64, u64) {
    let mut records = Vec::new();
    for seq in first_seq..first_seq + count {
        format::encode_record(
            &mut records,
            seq,
            RecordKind::Put,
            format!("b{seq}").as_bytes(),
            format!("batch-value-{seq}").as_bytes(),
        );
    }
    let header = format::BatchHeader {
        count: count as u32,
        len: records.len() as u64,
        first_seq,
        written_ns: format::now_ns(),
    };
    let start = file_len(segment);
    patch_file(segment, |bytes| {
        bytes.extend_from_slice(&header.encode());
        bytes.extend_from_slice(&records);
    });
    (start, file_len(segment))
}

/// A power cut that tore the last, unsynced batch: the file system kept a
/// later part of it and not an earlier part (zeros from the batch's start
/// up to the split, then intact bytes, records among them). For every
/// split point of a four-record batch the store opens, keeps every record
/// of the synced batches, drops exactly the last batch (the file is cut
/// where it began) and reports the cut; it then takes new writes after the
/// last kept seq. Before batch headers this refused to open: "record
/// header checksum mismatch".
#[test]
fn torn_final_batch_is_cut_at_every_split_point() {
    let pristine = tempdir();
    write_distinct(pristine.path(), 3, opts());
    let segment = newest_segment(pristine.path());
    let (start, end) = append_batch(&segment, 4, 4);
    let records = records_of(&segment);
    assert_eq!(records.len(), 7);
    assert!(records[3..].iter().all(|r| r.batch == start));

    for split in start + 1..=end {
        let what = format!("zeros from {start} to {split}");
        let (dir, copy) = fresh_copy(pristine.path(), &segment);
        patch_file(&copy, |bytes| {
            bytes[start as usize..split as usize].fill(0);
        });
        let store = open_store(dir.path(), opts()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_distinct(&store, 3, &what);
        assert_eq!(store.last_seq(), 3, "{what}");
        for seq in 4..8 {
            assert_eq!(store.get(format!("b{seq}")).unwrap(), None, "{what}");
        }
        assert_eq!(file_len(&copy), start, "{what}: not cut at the batch");
        let cut = store.tail_cut().unwrap_or_else(|| panic!("{what}: no cut"));
        assert_eq!(cut.file, copy, "{what}");
        assert_eq!(cut.offset, start, "{what}");
        assert_eq!(cut.bytes, end - start, "{what}");
        // With the header gone, the seqs are those of the records that
        // survived whole.
        let surviving = records[3..].iter().find(|r| r.offset >= split);
        let expected = surviving.map(|r| (r.seq, 7));
        assert_eq!(cut.seqs, expected, "{what}");
        let report = cut.to_string();
        assert!(report.contains(&format!("at offset {start}")), "{report}");
        assert_eq!(store.put("next", "x").unwrap(), 4, "{what}");
        drop(store);
        let store = open_store(dir.path(), opts()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(store.tail_cut().is_none(), "{what}: cut twice");
        assert_eq!(store.last_seq(), 4, "{what}");
    }

    // The same batch torn the other way (a prefix persisted, the rest
    // zeros, or cut short) is dropped with its seqs known from its header.
    for keep in start + format::BATCH_HEADER_LEN as u64..end {
        let what = format!("intact up to {keep}");
        let (dir, copy) = fresh_copy(pristine.path(), &segment);
        patch_file(&copy, |bytes| bytes[keep as usize..].fill(0));
        let store = open_store(dir.path(), opts()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(store.last_seq(), 3, "{what}");
        assert_eq!(store.tail_cut().unwrap().seqs, Some((4, 7)), "{what}");
        assert_eq!(file_len(&copy), start, "{what}");
    }
}

/// Damage in a batch that a later batch follows was synced (the later
/// batch was written after it was, or after the store reopened): it is
/// refused with the file and offset, and the message names the repair
/// command. Zeros over a whole earlier batch, a zeroed batch header, a
/// flipped byte in one of its records: all refused.
#[test]
fn damage_in_a_synced_batch_is_refused_and_names_repair() {
    let pristine = tempdir();
    write_distinct(pristine.path(), 5, opts());
    let segment = newest_segment(pristine.path());
    let records = records_of(&segment);
    let third = records[2];
    let (batch, record, end) = (
        third.batch as usize,
        third.offset as usize,
        (third.offset + third.len) as usize,
    );
    // (case, where the error must point, the bytes zeroed or flipped, zero)
    let cases = [
        ("a zeroed batch", third.batch, batch..end, true),
        ("a zeroed batch header", third.batch, batch..record, true),
        (
            "a flipped value byte",
            third.offset,
            end - 2..end - 1,
            false,
        ),
    ];
    for (what, offset, range, zero) in cases {
        let (dir, copy) = fresh_copy(pristine.path(), &segment);
        patch_file(&copy, |bytes| {
            for byte in &mut bytes[range] {
                *byte = if zero { 0 } else { *byte ^ 0x40 };
            }
        });
        assert_corrupt_at(dir.path(), &copy, offset, what);
        let message = open_store(dir.path(), opts()).unwrap_err().to_string();
        assert!(
            message.contains(&format!("duokv repair {}", dir.path().display())),
            "{what}: {message}"
        );
    }
}

/// A store written by format version 1 (records back to back, no batch
/// headers) still opens, with the old rule for a torn tail; new writes go
/// to a new segment of the current format, and the whole log reads back.
#[test]
fn a_version_1_segment_still_opens() {
    let dir = tempdir();
    let header = format::SegmentHeader {
        kind: format::SegmentKind::Log,
        id: 2,
        horizon: 0,
    };
    let mut bytes = header.encode_version(1).to_vec();
    for i in 0..4u64 {
        format::encode_record(
            &mut bytes,
            i + 1,
            RecordKind::Put,
            format!("k{i}").as_bytes(),
            format!("value-{i}").as_bytes(),
        );
    }
    bytes.truncate(bytes.len() - 3); // the last record is torn
    let path = dir.path().join("00000000000000000002.seg");
    fs::write(&path, &bytes).unwrap();

    let store = open_store(dir.path(), opts()).unwrap();
    assert_distinct(&store, 3, "version 1");
    assert_eq!(store.last_seq(), 3);
    assert!(store.tail_cut().is_some());
    assert_eq!(store.put("k3", "value-3").unwrap(), 4);
    drop(store);
    assert_eq!(
        records_of(&path).len(),
        3,
        "the old segment is not appended to"
    );
    let segments = segments(dir.path());
    assert_eq!(segments.len(), 2, "{segments:?}");
    let store = open_store(dir.path(), opts()).unwrap();
    assert_distinct(&store, 4, "after reopen");
    let seqs: Vec<u64> = store
        .records_since(0)
        .unwrap()
        .map(|r| r.unwrap().seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}

/// A store written by format version 2 (32-byte batch headers, no write
/// times) still opens and reads back, its records with no time; new writes
/// go to a new segment of version 3, whose records carry the time they
/// were written, also after a reopen.
#[test]
fn a_version_2_segment_still_opens_and_reads_without_times() {
    let dir = tempdir();
    let header = format::SegmentHeader {
        kind: format::SegmentKind::Log,
        id: 2,
        horizon: 0,
    };
    let mut bytes = header.encode_version(2).to_vec();
    for (first_seq, count) in [(1u64, 2u64), (3, 1)] {
        let mut records = Vec::new();
        for seq in first_seq..first_seq + count {
            let key = format!("k{}", seq - 1);
            let value = format!("value-{}", seq - 1);
            format::encode_record(
                &mut records,
                seq,
                RecordKind::Put,
                key.as_bytes(),
                value.as_bytes(),
            );
        }
        let batch = format::BatchHeader {
            count: count as u32,
            len: records.len() as u64,
            first_seq,
            written_ns: Some(12_345),
        };
        let mut header_bytes = [0u8; format::BATCH_HEADER_LEN_V2];
        batch.encode_version_into(2, &mut header_bytes);
        bytes.extend_from_slice(&header_bytes);
        bytes.extend_from_slice(&records);
    }
    let path = dir.path().join("00000000000000000002.seg");
    fs::write(&path, &bytes).unwrap();

    let store = open_store(dir.path(), opts()).unwrap();
    assert_distinct(&store, 3, "version 2");
    assert!(store.tail_cut().is_none());
    let before = now_ns();
    assert_eq!(store.put("k3", "value-3").unwrap(), 4);
    let after = now_ns();
    let check = |store: &Store| {
        let timed: Vec<(u64, Option<u64>)> = store
            .records_with_times_since(0)
            .unwrap()
            .map(|r| r.map(|(record, ns)| (record.seq, ns)).unwrap())
            .collect();
        assert_eq!(timed.len(), 4, "{timed:?}");
        assert!(timed[..3].iter().all(|(_, ns)| ns.is_none()), "{timed:?}");
        let ns = timed[3].1.expect("a version 3 record has a time");
        assert!(
            (before..=after).contains(&ns),
            "{before} <= {ns} <= {after}"
        );
    };
    check(&store);
    drop(store);
    assert_eq!(
        records_of(&path).len(),
        3,
        "the old segment is not appended to"
    );
    let store = open_store(dir.path(), opts()).unwrap();
    assert_distinct(&store, 4, "after reopen");
    check(&store);
}

/// The wall-clock time now, in nanoseconds since the UNIX epoch.
fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

// ---------------------------------------------------------------------------
// 6: the directory lock
// ---------------------------------------------------------------------------

const LOCK_DIR_VAR: &str = "DUOKV_LOCK_DIR";

/// Runs the `lock_child` test in a child process on `dir` and returns its
/// verdict line.
fn open_in_child(dir: &Path) -> String {
    let _spawning = SPAWNING.write().unwrap_or_else(|p| p.into_inner());
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "lock_child", "--nocapture", "--ignored"])
        .env(LOCK_DIR_VAR, dir)
        .stderr(Stdio::inherit())
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("LOCK-RESULT "))
        .unwrap_or_else(|| panic!("no verdict from the child: {stdout}"))
        .to_string()
}

/// Child side of `second_open_is_locked_out`: opens the directory and
/// reports what happened. Does nothing unless run by the parent.
#[test]
#[ignore = "child process of second_open_is_locked_out"]
fn lock_child() {
    let Some(dir) = std::env::var_os(LOCK_DIR_VAR) else {
        return;
    };
    let verdict = match Store::open(&dir, opts()) {
        Ok(_) => "opened".to_string(),
        Err(Error::Locked { .. }) => "locked".to_string(),
        Err(e) => format!("error {e}"),
    };
    println!("LOCK-RESULT {verdict}");
}

/// While a store is open, a second open of its directory fails with
/// `Error::Locked`, from this process or another; once the first is
/// dropped, both succeed.
#[test]
fn second_open_is_locked_out() {
    let dir = tempdir();
    let first = open_store(dir.path(), opts()).unwrap();
    first.put("k", "v").unwrap();
    match Store::open(dir.path(), opts()) {
        Err(Error::Locked { dir: locked }) => assert_eq!(locked, dir.path()),
        Err(other) => panic!("expected Locked, got {other:?}"),
        Ok(_) => panic!("two stores opened one directory"),
    }
    assert_eq!(open_in_child(dir.path()), "locked");
    // The failed opens did not disturb the first store.
    assert_eq!(first.put("k2", "v2").unwrap(), 2);
    drop(first);

    assert_eq!(open_in_child(dir.path()), "opened");
    let second = open_store(dir.path(), opts()).unwrap();
    assert_eq!(second.get("k").unwrap(), Some(b"v".to_vec()));
    assert_eq!(second.last_seq(), 2);
}

// ---------------------------------------------------------------------------
// 7: SIGKILL under concurrent writers
// ---------------------------------------------------------------------------

const CRASH_DIR_VAR: &str = "DUOKV_CRASH_DIR";
const CRASH_MODE_VAR: &str = "DUOKV_CRASH_MODE";
const CRASH_SEED_VAR: &str = "DUOKV_CRASH_SEED";
const CRASH_THREADS: u64 = 4;
const KEYS_PER_THREAD: u64 = 20;
const VALUE_LEN: usize = 200;

/// The options of a crash run: `plain` (64 MiB segments), `small` (64 KiB
/// segments, so kills hit roll-overs) or `compacting` (small segments and
/// compaction whenever 16 KiB and 30% of the log are dead).
fn crash_options(mode: &str) -> Options {
    match mode {
        "plain" => opts(),
        "small" => opts().segment_size(64 * 1024),
        "compacting" => {
            Options::default()
                .segment_size(64 * 1024)
                .compaction(Some(CompactionPolicy {
                    min_dead_bytes: 16 * 1024,
                    dead_ratio: 0.3,
                }))
        }
        other => panic!("unknown crash mode {other}"),
    }
}

/// The unique value a thread's `counter`-th write puts.
fn crash_value(thread: u64, counter: u64) -> Vec<u8> {
    let mut value = format!("t{thread}-c{counter}-").into_bytes();
    value.resize(VALUE_LEN, b'x');
    value
}

/// Reads `(thread, counter)` back out of a value made by `crash_value`.
fn parse_crash_value(value: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.split('-');
    let thread = parts.next()?.strip_prefix('t')?.parse().ok()?;
    let counter = parts.next()?.strip_prefix('c')?.parse().ok()?;
    (crash_value(thread, counter) == value).then_some((thread, counter))
}

/// Child side of `sigkill_keeps_every_acknowledged_write`: four threads,
/// each owning its keys `t{t}-k{i}`, put and delete in a loop under
/// `Sync::Always` and print one `ACK` line per write that returned `Ok`,
/// until killed. Does nothing unless run by the parent.
#[test]
#[ignore = "child process of sigkill_keeps_every_acknowledged_write"]
fn crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR_VAR) else {
        return;
    };
    let mode = std::env::var(CRASH_MODE_VAR).unwrap();
    let seed: u64 = std::env::var(CRASH_SEED_VAR).unwrap().parse().unwrap();
    let store = open_store(&dir, crash_options(&mode)).unwrap();
    let stdout = Mutex::new(std::io::stdout());
    // A safety net, should the parent vanish without killing us.
    let give_up = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|scope| {
        for thread in 0..CRASH_THREADS {
            let (store, stdout) = (&store, &stdout);
            scope.spawn(move || {
                let mut rng = Rng(seed ^ (thread + 1).wrapping_mul(0x1234_5678_9ABC));
                let mut present = [false; KEYS_PER_THREAD as usize];
                for counter in 1.. {
                    if Instant::now() > give_up {
                        return;
                    }
                    let i = rng.below(KEYS_PER_THREAD);
                    let key = format!("t{thread}-k{i}");
                    let line = if present[i as usize] && rng.below(5) == 0 {
                        assert!(store.delete(&key).unwrap(), "{key} was present");
                        present[i as usize] = false;
                        format!("ACK del {key} {thread} {counter}")
                    } else {
                        store.put(&key, crash_value(thread, counter)).unwrap();
                        present[i as usize] = true;
                        format!("ACK put {key} {thread} {counter}")
                    };
                    let mut out = stdout.lock().unwrap();
                    writeln!(out, "{line}").unwrap();
                    out.flush().unwrap();
                }
            });
        }
    });
}

/// One acknowledged write, as the child printed it.
#[derive(Debug)]
struct Ack {
    put: bool,
    key: String,
    thread: u64,
    counter: u64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut words = line.strip_prefix("ACK ")?.split_whitespace();
    let put = match words.next()? {
        "put" => true,
        "del" => false,
        _ => return None,
    };
    Some(Ack {
        put,
        key: words.next()?.to_string(),
        thread: words.next()?.parse().ok()?,
        counter: words.next()?.parse().ok()?,
    })
}

/// Runs the child on a fresh directory, kills it after `kill_after`
/// acknowledged writes, and checks the reopened store against them.
fn crash_run(run: usize, mode: &str, kill_after: usize, seed: u64) {
    let what = format!("run {run} ({mode}, kill after {kill_after} acks, seed {seed})");
    let dir = tempdir();
    let spawning = SPAWNING.write().unwrap_or_else(|p| p.into_inner());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--ignored"])
        .env(CRASH_DIR_VAR, dir.path())
        .env(CRASH_MODE_VAR, mode)
        .env(CRASH_SEED_VAR, seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the crash child");
    drop(spawning);

    // A reader thread turns the child's stdout into whole lines, so the
    // parent can wait for them with a deadline.
    let (lines, received) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                // A line cut by the kill was never fully acknowledged.
                Ok(_) if !line.ends_with('\n') => return,
                Ok(_) => {
                    if lines.send(line.trim_end().to_string()).is_err() {
                        return;
                    }
                }
            }
        }
    });

    let mut acks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acks.len() < kill_after {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) => acks.extend(parse_ack(&line)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: only {} acks before {e:?}", acks.len());
            }
        }
    }
    child.kill().expect("kill the child");
    let status = child.wait().unwrap();
    assert!(!status.success(), "{what}: the child was not killed");
    // Lines already in the pipe were acknowledged too.
    acks.extend(received.iter().filter_map(|line| parse_ack(&line)));
    reader.join().unwrap();

    if mode == "compacting" {
        assert!(
            segments(dir.path()).iter().any(|(id, _)| id % 2 == 1),
            "{what}: no compaction ran before the kill"
        );
    }

    // What the acknowledged writes say each key holds, and each thread's
    // last acknowledged counter.
    let mut acked: HashMap<String, Option<(u64, u64)>> = HashMap::new();
    let mut last_counter = [0u64; CRASH_THREADS as usize];
    for ack in &acks {
        assert!(
            ack.counter > last_counter[ack.thread as usize],
            "{what}: {ack:?}"
        );
        last_counter[ack.thread as usize] = ack.counter;
        let state = ack.put.then_some((ack.thread, ack.counter));
        acked.insert(ack.key.clone(), state);
    }

    let store = open_store(dir.path(), crash_options(mode))
        .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let held = contents(&store);
    let mut deviations = [0u32; CRASH_THREADS as usize];
    for (key, value) in &held {
        let key = String::from_utf8(key.clone()).unwrap();
        let (thread, counter) = parse_crash_value(value)
            .unwrap_or_else(|| panic!("{what}: {key} holds a value never written"));
        assert!(key.starts_with(&format!("t{thread}-")), "{what}: {key}");
        if acked.get(&key).copied().flatten() == Some((thread, counter)) {
            continue;
        }
        // Only the write in flight when the child died may show, and only
        // the one right after the thread's last acknowledged write.
        assert_eq!(
            counter,
            last_counter[thread as usize] + 1,
            "{what}: {key} holds {counter}, acked state {:?}",
            acked.get(&key)
        );
        deviations[thread as usize] += 1;
    }
    for (key, state) in &acked {
        if let Some((thread, _)) = *state
            && !held.contains_key(key.as_bytes())
        {
            // An acknowledged put is gone: only an in-flight delete of the
            // same key may explain it.
            deviations[thread as usize] += 1;
        }
    }
    for (thread, count) in deviations.iter().enumerate() {
        assert!(
            *count <= 1,
            "{what}: thread {thread} has {count} keys away from their acknowledged state"
        );
    }
    let last_seq = store.last_seq();
    let acked_writes = acks.len() as u64;
    assert!(
        (acked_writes..=acked_writes + CRASH_THREADS).contains(&last_seq),
        "{what}: last seq {last_seq} after {acked_writes} acknowledged writes"
    );
    assert_eq!(store.put("after-crash", "ok").unwrap(), last_seq + 1);
}

/// Under `Sync::Always`, a `SIGKILL` at a random point of four threads'
/// puts and deletes loses no acknowledged write, and keeps no write but
/// the one each thread had in flight: with 64 MiB segments, with 64 KiB
/// segments (roll-overs) and with frequent automatic compaction.
#[test]
fn sigkill_keeps_every_acknowledged_write() {
    let seed = test_seed();
    let mut rng = Rng(seed);
    let modes = ["plain", "plain", "small", "small", "compacting"];
    for (run, mode) in modes.into_iter().enumerate() {
        // The compacting run must get far enough for compactions to run.
        let kill_after = if mode == "compacting" {
            1000 + rng.below(1001)
        } else {
            50 + rng.below(1951)
        };
        crash_run(run, mode, kill_after as usize, rng.next());
    }
}

// ---------------------------------------------------------------------------
// 8, 9: compaction
// ---------------------------------------------------------------------------

const ALL_STEPS: [CompactionStep; 6] = [
    CompactionStep::OutputWritten,
    CompactionStep::OutputSynced,
    CompactionStep::Renamed,
    CompactionStep::DirectorySynced,
    CompactionStep::IndexSwapped,
    CompactionStep::FirstInputRemoved,
];

/// Puts and deletes over 40 keys in 1 KiB segments, recorded in `model`.
fn churn(store: &Store, model: &mut HashMap<Vec<u8>, Vec<u8>>, rng: &mut Rng, ops: usize) {
    for _ in 0..ops {
        let key = format!("key{}", rng.below(40)).into_bytes();
        if rng.below(4) == 0 {
            let deleted = store.delete(&key).unwrap();
            assert_eq!(deleted, model.remove(&key).is_some());
        } else {
            let value = format!(
                "value-{}-{}",
                rng.next(),
                "v".repeat(rng.below(60) as usize)
            );
            store.put(&key, &value).unwrap();
            model.insert(key, value.into_bytes());
        }
    }
}

/// A crash right after any step of a compaction loses nothing: the
/// reopened store holds exactly the model and its last seq, no `.seg.tmp`
/// is left, inputs are gone once the output was renamed into place, and a
/// full compaction afterwards (with or without writes in between) keeps
/// the contents and leaves fewer segment files: the output and the active
/// one.
#[test]
fn crash_after_each_compaction_step_loses_nothing() {
    let options = || opts().segment_size(1024);
    for step in ALL_STEPS {
        for writes_between in [false, true] {
            let what = format!("{step:?}, writes between: {writes_between}");
            let dir = tempdir();
            let mut rng = Rng(test_seed());
            let mut model = HashMap::new();
            let store = open_store(dir.path(), options()).unwrap();
            churn(&store, &mut model, &mut rng, 300);
            // The newest writes are deletes, which compaction drops.
            let doomed: Vec<Vec<u8>> = model.keys().take(3).cloned().collect();
            for key in doomed {
                assert!(store.delete(&key).unwrap());
                model.remove(&key);
            }
            let last_seq = store.last_seq();
            let at_start = segments(dir.path()).len();
            assert!(at_start >= 4, "{what}: too few segments");
            store.compact_and_stop_after(step).unwrap();
            drop(store);

            // The crash left the files of that step.
            let odd = segments(dir.path())
                .iter()
                .filter(|(id, _)| id % 2 == 1)
                .count();
            let tmp = temp_files(dir.path()).len();
            match step {
                CompactionStep::OutputWritten | CompactionStep::OutputSynced => {
                    assert_eq!((tmp, odd), (1, 0), "{what}")
                }
                _ => assert_eq!((tmp, odd), (0, 1), "{what}"),
            }

            let store = open_store(dir.path(), options())
                .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
            assert_eq!(temp_files(dir.path()), Vec::<String>::new(), "{what}");
            assert_eq!(contents(&store), model_contents(&model), "{what}");
            assert_eq!(store.last_seq(), last_seq, "{what}");
            if odd == 1 {
                // Past the commit point, the reopen removed every input.
                assert_eq!(segments(dir.path()).len(), 2, "{what}: inputs left");
            }

            if writes_between {
                churn(&store, &mut model, &mut rng, 60);
                assert_eq!(contents(&store), model_contents(&model), "{what}");
            }
            let last_seq = store.last_seq();
            store.compact().unwrap();
            let after = segments(dir.path()).len();
            assert!(
                after < at_start,
                "{what}: {at_start} segment files, then {after}"
            );
            assert_eq!(after, 2, "{what}: one compacted segment and the active one");
            assert_eq!(contents(&store), model_contents(&model), "{what}");
            drop(store);

            let store = open_store(dir.path(), options())
                .unwrap_or_else(|e| panic!("{what}: reopen after compact failed: {e}"));
            assert_eq!(contents(&store), model_contents(&model), "{what}");
            assert_eq!(store.last_seq(), last_seq, "{what}");
        }
    }
}

/// Compaction drops tombstones, yet the sequence number they took survives
/// a reopen: `last_seq()` is unchanged and new writes continue from it.
#[test]
fn last_seq_survives_compaction_of_trailing_deletes() {
    let dir = tempdir();
    let store = open_store(dir.path(), opts()).unwrap();
    store.put("a", "1").unwrap();
    store.put("b", "2").unwrap();
    store.put("c", "3").unwrap();
    assert!(store.delete("a").unwrap());
    assert!(store.delete("b").unwrap());
    assert_eq!(store.last_seq(), 5);
    store.compact().unwrap();
    assert_eq!(store.last_seq(), 5);
    drop(store);

    // The compacted segment holds only `c`: the deletes are really gone.
    let compacted: Vec<PathBuf> = segments(dir.path())
        .into_iter()
        .filter(|(id, _)| id % 2 == 1)
        .map(|(_, path)| path)
        .collect();
    assert_eq!(compacted.len(), 1);
    let kept = records_of(&compacted[0]);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].seq, 3);

    let store = open_store(dir.path(), opts())
        .unwrap_or_else(|e| panic!("reopen after compaction failed: {e}"));
    assert_eq!(store.last_seq(), 5);
    assert_eq!(store.get("a").unwrap(), None);
    assert_eq!(store.get("b").unwrap(), None);
    assert_eq!(store.get("c").unwrap(), Some(b"3".to_vec()));
    assert_eq!(store.put("d", "4").unwrap(), 6);
    drop(store);

    let store = open_store(dir.path(), opts()).unwrap();
    assert_eq!(store.last_seq(), 6);
    assert_eq!(store.get("d").unwrap(), Some(b"4".to_vec()));
    assert_eq!(store.get("c").unwrap(), Some(b"3".to_vec()));
}

// ---------------------------------------------------------------------------
// The repair library
// ---------------------------------------------------------------------------

/// Damage in the middle of synced data: `repair::scan` reports it and what
/// cutting drops, changing nothing; it refuses while a store has the
/// directory open. `repair::fix` cuts at the damaged batch, first copying
/// the cut bytes byte for byte into the backup directory (never over an
/// existing file), and the store then opens with every record before it.
#[test]
fn repair_scans_and_cuts_damage_in_synced_data() {
    let dir = tempdir();
    write_distinct(dir.path(), 6, opts());
    let segment = newest_segment(dir.path());
    let records = records_of(&segment);
    let third = records[2];
    patch_file(&segment, |bytes| {
        bytes[(third.offset + third.len - 2) as usize] ^= 0x40
    });
    let damaged = fs::read(&segment).unwrap();
    assert!(matches!(
        open_store(dir.path(), opts()),
        Err(Error::Corrupt { .. })
    ));

    let report = duokv_storage::repair::scan(dir.path()).unwrap();
    assert_eq!(report.damaged.len(), 1, "{report}");
    let region = &report.damaged[0];
    assert_eq!(region.file, segment);
    assert_eq!(region.offset, third.batch);
    assert_eq!(region.found_at, third.offset);
    assert_eq!(region.bytes, damaged.len() as u64 - third.batch);
    assert_eq!(region.last_good_seq, Some(2));
    assert_eq!(region.first_seq_after, Some(4));
    assert_eq!(region.seqs_dropped, Some((3, 6)));
    assert_eq!(region.records_dropped, 3, "seqs 4 to 6 are whole");
    assert!(!region.final_batch);
    let text = report.to_string();
    assert!(
        text.contains(&format!("cutting at offset {}", third.batch)),
        "{text}"
    );
    assert!(text.contains("may have been acknowledged"), "{text}");
    assert_eq!(fs::read(&segment).unwrap(), damaged, "scan changed nothing");

    let backups = tempdir();
    let backup_dir = backups.path().join("cut");
    let fixed = duokv_storage::repair::fix(dir.path(), &backup_dir).unwrap();
    assert_eq!(fixed.backups.len(), 1, "{fixed}");
    assert_eq!(
        fs::read(&fixed.backups[0]).unwrap(),
        damaged[third.batch as usize..],
        "the backup holds the cut bytes"
    );
    assert_eq!(file_len(&segment), third.batch);
    assert!(
        duokv_storage::repair::scan(dir.path())
            .unwrap()
            .damaged
            .is_empty()
    );

    let store = open_store(dir.path(), opts()).unwrap();
    assert_distinct(&store, 2, "after repair");
    assert_eq!(store.last_seq(), 2);
    assert!(store.tail_cut().is_none());
    // While the store is open, neither scan nor fix runs.
    assert!(matches!(
        duokv_storage::repair::scan(dir.path()),
        Err(Error::Locked { .. })
    ));
    assert!(matches!(
        duokv_storage::repair::fix(dir.path(), &backup_dir),
        Err(Error::Locked { .. })
    ));
}
